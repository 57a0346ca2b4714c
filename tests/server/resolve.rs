//! `POST resolve` and the runner role (docs/design.md §7, §10 rule 9) on SQLite,
//! PostgreSQL and MariaDB: a runner token gets exactly what the webhook's
//! read path gives for its one resource, and nothing else anywhere.

use crate::support::*;
use axum::Router;
use axum::http::{Method, StatusCode};
use mlflow_secrets::model::ResourceRef;
use mlflow_secrets::server::{AppState, AuthMode, ServeConfig, Server, TokenStore, router};
use mlflow_secrets::store::{HttpStore, SecretsStore};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::sync::Arc;
use testkit::{Backend, TestDb};

const KEY: &str = "sk-resolve-0123456789";

fn ok_id(r: &Resp, what: &str) -> String {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()[what][format!("{what}_id")]
        .as_str()
        .unwrap()
        .to_string()
}

async fn bind(app: &axum::Router, secret: &str, resource: &str, name: &str) -> String {
    let b = json!({"secret_id": secret, "resource_id": resource, "binding_name": name});
    ok_id(
        &post(app, "bind", Some(WRITER), &b.to_string()).await,
        "binding",
    )
}

fn resolve_body(ws: &str, resource: &str) -> String {
    json!({"workspace": ws, "resource_type": "SCORER_JOB", "resource_id": resource}).to_string()
}

/// `resolve` of `SCORER_JOB/<resource>` in `ws`, as `token`.
async fn resolve_as(app: &Router, token: &str, ws: &str, resource: &str) -> Resp {
    post(app, "resolve", Some(token), &resolve_body(ws, resource)).await
}

async fn runner_resolves_its_resource_only(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let fx = Fixture::around(tempfile::tempdir().unwrap(), db.store.clone());
    let app = fx.app(0);
    let create = |name: &str, value: Value| {
        json!({"workspace": "team-a", "secret_name": name, "value": value, "is_shared": true})
            .to_string()
    };
    let key = ok_id(
        &post(&app, "create", Some(WRITER), &create("key", json!(KEY))).await,
        "secret",
    );
    let azure = ok_id(
        &post(
            &app,
            "create",
            Some(WRITER),
            &create(
                "azure",
                json!({"api_key": "az-0123456789", "api_base": "https://a.example"}),
            ),
        )
        .await,
        "secret",
    );
    bind(&app, &key, RUNNER_RESOURCE, "OPENAI_API_KEY").await;
    bind(&app, &azure, RUNNER_RESOURCE, "AZURE").await;
    bind(&app, &key, "other-job", "OPENAI_API_KEY").await;

    let r = resolve_as(&app, RUNNER, "team-a", RUNNER_RESOURCE).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let got = r.json();
    // A string as it is; an object as compact JSON with sorted keys.
    assert_eq!(
        got["values"],
        json!({
            "OPENAI_API_KEY": KEY,
            "AZURE": r#"{"api_base":"https://a.example","api_key":"az-0123456789"}"#,
        })
    );
    // The same as the webhook's read path for the same bindings.
    let webhook = db
        .store
        .get_all_bound_values(
            ResourceRef::new("team-a", "SCORER_JOB", RUNNER_RESOURCE),
            "webhook",
        )
        .await
        .unwrap();
    assert_eq!(webhook.len(), 2);
    let injected = got["injected"].as_array().unwrap();
    for (name, b) in &webhook {
        assert_eq!(
            got["values"][name],
            b.value.injected_text().expose_secret(),
            "{name}"
        );
        let entry = injected
            .iter()
            .find(|e| e["binding_name"] == name.as_str())
            .unwrap();
        assert_eq!(entry["secret_id"], b.secret_id.as_str());
        assert_eq!(entry["version"], b.last_updated_at);
    }

    // Another resource, another workspace, every other endpoint: 403.
    for body in [
        resolve_body("team-a", "other-job"),
        resolve_body("team-b", RUNNER_RESOURCE),
        json!({"workspace": "team-a", "resource_type": "OTHER", "resource_id": RUNNER_RESOURCE})
            .to_string(),
    ] {
        let r = post(&app, "resolve", Some(RUNNER), &body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", r.text);
        assert!(!r.text.contains(KEY));
    }
    for (method, op, body) in [
        (Method::GET, "list?workspace=team-a", None),
        (Method::GET, &format!("get?secret_id={key}") as &str, None),
        (Method::GET, "list-bindings", None),
        (Method::GET, "list-audit", None),
        (
            Method::POST,
            "create",
            Some(create("x", json!("sk-0123456789abc"))),
        ),
        (
            Method::POST,
            "revoke",
            Some(json!({"secret_id": key}).to_string()),
        ),
    ] {
        let r = call(
            &app,
            method.clone(),
            &format!("{API}/{op}"),
            Some(RUNNER),
            body.as_deref(),
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {op}: {}", r.text);
    }
    // Writers and admins, of every scope, may not resolve.
    for t in [WRITER, ADMIN, READER, TEAM_A_WRITER, TEAM_A_ADMIN] {
        let r = resolve_as(&app, t, "team-a", RUNNER_RESOURCE).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(!r.text.contains(KEY));
    }

    // Audited: the principal, the resource, binding names, ids, versions.
    let r = get(&app, "list-audit?max_results=1000", Some(ADMIN)).await;
    let rows: Vec<Value> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["principal"] == "nightly" && e["action"] == "READ_RESOURCE_VALUES")
        .cloned()
        .collect();
    let ok: Vec<&Value> = rows.iter().filter(|e| e["outcome"] == "SUCCESS").collect();
    assert_eq!(ok.len(), 1, "{rows:?}");
    let detail = ok[0]["detail"].as_str().unwrap();
    let version = webhook["OPENAI_API_KEY"].last_updated_at;
    assert!(
        detail.contains(&format!("OPENAI_API_KEY={key}@kek_v"))
            && detail.contains(&format!(":version={version}")),
        "{detail}"
    );
    assert_eq!(ok[0]["resource"], format!("SCORER_JOB/{RUNNER_RESOURCE}"));
    assert!(rows.iter().filter(|e| e["outcome"] == "DENIED").count() >= 3);
    assert!(!r.text.contains(KEY));

    // A revoked binding fails the whole call; no value comes back.
    let r = post_json(&app, "revoke", Some(WRITER), json!({"secret_id": azure})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = resolve_as(&app, RUNNER, "team-a", RUNNER_RESOURCE).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::CONFLICT, "RESOURCE_CONFLICT"),
        "{}",
        r.text
    );
    assert!(!r.text.contains(KEY) && !r.text.contains("az-0123456789"));
}

#[tokio::test]
async fn sqlite_runner_resolves_its_resource_only() {
    runner_resolves_its_resource_only(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_runner_resolves_its_resource_only() {
    runner_resolves_its_resource_only(Backend::Postgres).await;
}

#[tokio::test]
async fn mysql_runner_resolves_its_resource_only() {
    runner_resolves_its_resource_only(Backend::Mysql).await;
}

/// Plain HTTP outside loopback (`--insecure-http`): `resolve` refuses.
#[tokio::test]
async fn resolve_needs_tls_off_loopback() {
    let fx = Fixture::new().await;
    let ts = TokenStore::load(&fx.tokens).unwrap();
    let mut state = AppState::new(fx.store.clone(), AuthMode::Tokens(Arc::new(ts)), 0);
    state.resolve_transport_ok = false;
    let app = router(state);
    let r = resolve_as(&app, RUNNER, "team-a", RUNNER_RESOURCE).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.message().contains("TLS"), "{}", r.text);
}

/// The REST client store calls `resolve` and gets the same values.
#[tokio::test]
async fn http_store_resolves_through_the_server() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let body = json!({"workspace": "team-a", "secret_name": "k", "value": KEY}).to_string();
    let key = ok_id(&post(&app, "create", Some(WRITER), &body).await, "secret");
    bind(&app, &key, RUNNER_RESOURCE, "OPENAI_API_KEY").await;
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens_file: Some(fx.tokens.clone()),
        rate_limit_per_minute: 0,
        ..Default::default()
    };
    let server = Server::bind(&cfg, fx.store.clone()).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let runner = HttpStore::new(&url, Some(SecretString::from(RUNNER)), None).unwrap();
    let r = runner
        .resolve_resource(
            ResourceRef::new("team-a", "SCORER_JOB", RUNNER_RESOURCE),
            "ignored",
        )
        .await
        .unwrap();
    assert_eq!(r.values["OPENAI_API_KEY"].expose_secret(), KEY);
    assert_eq!(r.injected.len(), 1);
    assert_eq!(r.injected[0].secret_id, key);
    assert!(!format!("{r:?}").contains(KEY));
    let writer = HttpStore::new(&url, Some(SecretString::from(WRITER)), None).unwrap();
    let e = writer
        .resolve_resource(
            ResourceRef::new("team-a", "SCORER_JOB", RUNNER_RESOURCE),
            "ignored",
        )
        .await
        .unwrap_err();
    assert_eq!(e.error_code(), "PERMISSION_DENIED");
    let _ = tx.send(());
    running.await.unwrap().unwrap();
}
