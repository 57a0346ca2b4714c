//! Authentication, roles and rate limits: role × endpoint, denials in the
//! audit log, the tokens file reloading, and 429 with Retry-After then
//! recovery.

use std::time::Duration;

use crate::support::*;
use axum::http::{Method, StatusCode};
use mlflow_secrets::server::auth::{Role, Scope, tokens_file_line};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Admin,
    Writer,
    Reader,
    Runner,
    NoToken,
    BadToken,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Who::Admin => Some(ADMIN),
            Who::Writer => Some(WRITER),
            Who::Reader => Some(READER),
            Who::Runner => Some(RUNNER),
            Who::NoToken => None,
            Who::BadToken => Some("mlss_not-a-token-anyone-has"),
        }
    }

    fn role(self) -> Option<Role> {
        match self {
            Who::Admin => Some(Role::Admin),
            Who::Writer => Some(Role::Writer),
            Who::Reader => Some(Role::Reader),
            Who::Runner => Some(Role::Runner),
            _ => None,
        }
    }
}

#[tokio::test]
async fn role_by_endpoint_matrix() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let unknown = "00000000-0000-4000-8000-000000000000";
    // Each endpoint with a request that reaches the handler and fails there
    // in a known way (404 or 400) when the caller may call it, so that
    // "allowed" is visible without changing any state.
    let endpoints: Vec<(Method, &str, Option<String>, Role, u16)> = vec![
        (
            Method::POST,
            "create",
            Some(r#"{"secret_name":"x","value":""}"#.into()),
            Role::Writer,
            400,
        ),
        (
            Method::PATCH,
            "update",
            Some(json!({"secret_id": unknown, "value": "v"}).to_string()),
            Role::Writer,
            404,
        ),
        (
            Method::POST,
            "revoke",
            Some(json!({"secret_id": unknown}).to_string()),
            Role::Writer,
            404,
        ),
        (
            Method::DELETE,
            "delete",
            Some(json!({"secret_id": unknown}).to_string()),
            Role::Writer,
            404,
        ),
        (
            Method::POST,
            "bind",
            Some(
                json!({"secret_id": unknown, "resource_id": "j", "binding_name": "K"}).to_string(),
            ),
            Role::Writer,
            404,
        ),
        (
            Method::DELETE,
            "unbind",
            Some(json!({"binding_id": unknown}).to_string()),
            Role::Writer,
            404,
        ),
        (
            Method::GET,
            "get?secret_id=00000000-0000-4000-8000-000000000000",
            None,
            Role::Reader,
            404,
        ),
        (Method::GET, "list", None, Role::Reader, 200),
        (
            Method::GET,
            "get-binding?binding_id=00000000-0000-4000-8000-000000000000",
            None,
            Role::Reader,
            404,
        ),
        (Method::GET, "list-bindings", None, Role::Reader, 200),
        (Method::GET, "list-audit", None, Role::Admin, 200),
        // The runner's own resource, which has no binding yet: 404.
        (
            Method::POST,
            "resolve",
            Some(r#"{"workspace":"team-a","resource_id":"nightly-eval"}"#.into()),
            Role::Runner,
            404,
        ),
    ];
    let people = [
        Who::Admin,
        Who::Writer,
        Who::Reader,
        Who::Runner,
        Who::NoToken,
        Who::BadToken,
    ];
    let (mut denials, mut unauthenticated) = (0, 0);
    for (method, op, body, needs, allowed_status) in &endpoints {
        for who in people {
            let r = call(
                &app,
                method.clone(),
                &format!("{API}/{op}"),
                who.token(),
                body.as_deref(),
            )
            .await;
            let expect = match who.role() {
                None => 401,
                Some(role) if !role.permits(*needs) => 403,
                Some(_) => *allowed_status,
            };
            assert_eq!(
                r.status.as_u16(),
                expect,
                "{who:?} {method} {op}: {}",
                r.text
            );
            if expect == 401 {
                unauthenticated += 1;
            }
            if expect == 403 {
                denials += 1;
            }
            if expect == 401 || expect == 403 {
                let code = if expect == 401 {
                    "UNAUTHENTICATED"
                } else {
                    "PERMISSION_DENIED"
                };
                assert_eq!(r.code(), code);
            }
        }
    }
    // Every denial of a known principal is in the audit log with it; the
    // unauthenticated ones are aggregated, one row per peer and minute.
    let r = get(&app, "list-audit?max_results=1000", Some(ADMIN)).await;
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "AUTH_DENIED")
        .collect();
    assert!(denied.iter().all(|e| e["outcome"] == "DENIED"));
    let known = denied.iter().filter(|e| !e["principal"].is_null()).count();
    assert_eq!(known, denials);
    assert!(denied.iter().any(|e| e["principal"] == "rita"));
    assert!(denied.iter().any(|e| e["principal"] == "nightly"));
    let anonymous = denied.len() - known;
    assert!(
        (1..=2).contains(&anonymous) && unauthenticated > 2,
        "{anonymous} rows for {unauthenticated} unauthenticated requests"
    );
    // Tokens never reach the log.
    let text = r.text;
    for t in [ADMIN, WRITER, READER, RUNNER, "mlss_not-a-token-anyone-has"] {
        assert!(!text.contains(t));
    }
}

#[tokio::test]
async fn authorization_header_forms() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    for (header, status) in [
        (format!("Bearer {READER}"), 200),
        (format!("bearer {READER}"), 200),
        (format!("Basic {READER}"), 401),
        (READER.to_string(), 401),
        ("Bearer ".to_string(), 401),
        (format!("Bearer {READER}x"), 401),
    ] {
        let req = axum::http::Request::get(format!("{API}/list"))
            .header("authorization", header.clone())
            .header("host", "localhost")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{header}");
    }
}

#[tokio::test]
async fn tokens_file_changes_take_effect_without_restart() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    assert_eq!(get(&app, "list", Some(READER)).await.status, StatusCode::OK);
    let newcomer = "mlss_newcomer-token";
    assert_eq!(
        get(&app, "list", Some(newcomer)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Replace rita with a new principal (the file's size changes, so the
    // change is seen even within one mtime tick).
    std::fs::write(
        &fx.tokens,
        format!(
            "{}\n{}\n",
            tokens_file_line("alice", Role::Admin, &Scope::everything(), ADMIN),
            tokens_file_line(
                "newcomer-with-a-longer-name",
                Role::Writer,
                &Scope::everything(),
                newcomer
            )
        ),
    )
    .unwrap();
    // The file is checked at most every 2 s.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        get(&app, "list", Some(READER)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = post(
        &app,
        "create",
        Some(newcomer),
        r#"{"secret_name":"n","value":"sk-abcdefghijklmnop"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json()["secret"]["created_by"],
        "newcomer-with-a-longer-name"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_then_recovers() {
    let fx = Fixture::new().await;
    // 60 a minute: a burst of 60, then one more per second.
    let app = fx.app(60);
    for i in 0..60 {
        let r = get(&app, "list", Some(READER)).await;
        assert_eq!(r.status, StatusCode::OK, "request {i}");
    }
    let r = get(&app, "list", Some(READER)).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "REQUEST_LIMIT_EXCEEDED");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another principal has a bucket of its own.
    assert_eq!(get(&app, "list", Some(WRITER)).await.status, StatusCode::OK);
    // After Retry-After, the reader may call again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(get(&app, "list", Some(READER)).await.status, StatusCode::OK);
    // The refusal was audited and counted.
    let r = get(&app, "list-audit?max_results=1000", Some(ADMIN)).await;
    assert!(
        r.text.contains("rate limit exceeded for principal 'rita'"),
        "{}",
        r.text
    );
    let m = call(&app, Method::GET, "/metrics", None, None).await;
    assert!(
        m.text.contains("mlflow_secrets_rate_limited_total 1"),
        "{}",
        m.text
    );
}
