//! The REST API in-process: every endpoint, every error code, the MLflow
//! error shape, the audit rows the server adds, and the OpenAPI document
//! against the routes.

use crate::support::*;
use axum::http::{Method, StatusCode};
use mlflow_secrets::keystore::Keystore;
use mlflow_secrets::server::openapi;
use serde_json::json;

#[tokio::test]
async fn secret_lifecycle_over_every_endpoint() {
    let fx = Fixture::new().await;
    let app = fx.app(0);

    // create: a string value, then an object value, in another workspace.
    let r = post(
        &app,
        "create",
        Some(WRITER),
        r#"{"secret_name":"openai","value":"sk-proj-abcdefghijklmnop1234"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let s = r.json()["secret"].clone();
    let id = s["secret_id"].as_str().unwrap().to_string();
    assert_eq!(s["workspace"], "default");
    assert_eq!(s["created_by"], "wendy");
    assert_eq!(s["is_shared"], false);
    assert_eq!(s["state"], "ACTIVE");
    assert!(s["masked_value"].as_str().unwrap().contains("..."));
    let r = post(&app, "create", Some(WRITER),
        r#"{"secret_name":"judge","value":{"api_key":"k-1234567890abcdef","org":"o"},"is_shared":true,"workspace":"team-a"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let judge = r.secret_id();

    // get: by id, by name (default workspace), by name in a workspace.
    let r = get(&app, &format!("get?secret_id={id}"), Some(READER)).await;
    assert_eq!(
        (r.status, r.json()["secret"]["secret_name"].as_str()),
        (StatusCode::OK, Some("openai"))
    );
    let r = get(&app, "get?secret_name=openai", Some(READER)).await;
    assert_eq!(r.json()["secret"]["secret_id"], id.as_str());
    let r = get(&app, "get?secret_name=judge&workspace=team-a", Some(READER)).await;
    assert_eq!(r.json()["secret"]["is_shared"], true);

    // list: all workspaces, one workspace, filters, paging.
    let r = get(&app, "list", Some(READER)).await;
    assert_eq!(r.json()["secrets"].as_array().unwrap().len(), 2);
    assert!(r.json().get("next_page_token").is_none());
    let r = get(
        &app,
        "list?workspace=team-a&is_shared=true&state=ACTIVE",
        Some(READER),
    )
    .await;
    assert_eq!(r.json()["secrets"].as_array().unwrap().len(), 1);
    let r = get(&app, "list?max_results=1", Some(READER)).await;
    let token = r.json()["next_page_token"].as_str().unwrap().to_string();
    let r = get(
        &app,
        &format!("list?max_results=1&page_token={token}"),
        Some(READER),
    )
    .await;
    assert_eq!(r.json()["secrets"].as_array().unwrap().len(), 1);
    assert!(r.json().get("next_page_token").is_none());

    // update: a new value, updated_by from the principal.
    let r = patch_json(
        &app,
        "update",
        Some(ADMIN),
        json!({"secret_id": id, "value": "sk-proj-zyxwvutsrqponm9876"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["secret"]["last_updated_by"], "alice");
    assert_eq!(r.json()["secret"]["created_by"], "wendy");

    // bind, get-binding, list-bindings, unbind.
    let r = post_json(
        &app,
        "bind",
        Some(WRITER),
        json!({"secret_id": id, "resource_id": "job-1", "binding_name": "OPENAI_API_KEY"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = r.json()["binding"].clone();
    assert_eq!(b["resource_type"], "SCORER_JOB");
    assert_eq!(b["created_by"], "wendy");
    let bid = b["binding_id"].as_str().unwrap().to_string();
    let r = get(&app, &format!("get-binding?binding_id={bid}"), Some(READER)).await;
    assert_eq!(r.json()["binding"]["binding_name"], "OPENAI_API_KEY");
    let r = post_json(&app, "bind", Some(WRITER), json!({"secret_id": judge, "resource_type": "SCORER_JOB", "resource_id": "job-9", "binding_name": "JUDGE"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = get(
        &app,
        "list-bindings?workspace=default&resource_type=SCORER_JOB&resource_id=job-1",
        Some(READER),
    )
    .await;
    assert_eq!(r.json()["bindings"].as_array().unwrap().len(), 1);
    let r = get(
        &app,
        &format!("list-bindings?secret_id={judge}"),
        Some(READER),
    )
    .await;
    assert_eq!(r.json()["bindings"][0]["workspace"], "team-a");
    let r = get(&app, "list-bindings?max_results=1", Some(READER)).await;
    assert!(r.json()["next_page_token"].is_string());
    let r = delete_json(&app, "unbind", Some(WRITER), json!({"binding_id": bid})).await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({})));
    let r = get(&app, &format!("get-binding?binding_id={bid}"), Some(READER)).await;
    r.assert_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST");

    // revoke: one-way, then a conflict.
    let r = post_json(&app, "revoke", Some(WRITER), json!({"secret_id": id})).await;
    assert_eq!(r.json()["secret"]["state"], "REVOKED");
    assert_eq!(r.json()["secret"]["revoked_by"], "wendy");
    let r = post_json(&app, "revoke", Some(WRITER), json!({"secret_id": id})).await;
    r.assert_error(StatusCode::CONFLICT, "RESOURCE_CONFLICT");
    let r = get(&app, "list?state=REVOKED", Some(READER)).await;
    assert_eq!(r.json()["secrets"].as_array().unwrap().len(), 1);

    // delete: gone afterwards.
    let r = delete_json(&app, "delete", Some(WRITER), json!({"secret_id": id})).await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({})));
    let r = get(&app, &format!("get?secret_id={id}"), Some(READER)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // list-audit: admin only; it holds the store's rows and the server's.
    let r = get(&app, "list-audit?max_results=1000", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let actions: Vec<String> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in [
        "CREATE",
        "UPDATE",
        "BIND",
        "UNBIND",
        "REVOKE",
        "DELETE",
        "GET_SECRET",
        "GET_BINDING",
        "LIST_SECRETS",
        "LIST_BINDINGS",
    ] {
        assert!(actions.iter().any(|x| x == a), "no {a} row in {actions:?}");
    }
    let r = get(
        &app,
        &format!("list-audit?secret_id={judge}&workspace=team-a&after_seq=1&max_results=5"),
        Some(ADMIN),
    )
    .await;
    let entries = r.json()["entries"].as_array().unwrap().clone();
    assert!(
        !entries.is_empty()
            && entries
                .iter()
                .all(|e| e["secret_id"] == judge.as_str() && e["seq"].as_i64().unwrap() > 1)
    );
}

#[tokio::test]
async fn every_error_code_in_mlflow_shape() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let id = create(&app, "taken", "sk-abcdefghijklmnopqrstu", false).await;
    let unknown = "00000000-0000-4000-8000-000000000000";

    // Each case: (response, status, error_code, a word the message must hold).
    let cases = vec![
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"taken","value":"x"}"#).await, 400, "RESOURCE_ALREADY_EXISTS", "taken"),
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"a","value":"x""#).await, 400, "INVALID_PARAMETER_VALUE", "JSON"),
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"a","value":"x","colour":"red"}"#).await, 400, "INVALID_PARAMETER_VALUE", "colour"),
        (post_json(&app, "create", Some(WRITER), json!({"secret_name": "n".repeat(256), "value": "x"})).await, 400, "INVALID_PARAMETER_VALUE", "secret_name"),
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"a","value":"x","workspace":"Not_A_Label"}"#).await, 400, "INVALID_PARAMETER_VALUE", "workspace"),
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"a","value":"x","is_shared":"yes"}"#).await, 400, "INVALID_PARAMETER_VALUE", "is_shared"),
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"a","value":""}"#).await, 400, "INVALID_PARAMETER_VALUE", "value"),
        (post(&app, "create", Some(WRITER), r#"{"secret_name":"a","value":{"k":1}}"#).await, 400, "INVALID_PARAMETER_VALUE", "value"),
        (post(&app, "create", Some(WRITER), r#"{"value":"x"}"#).await, 400, "INVALID_PARAMETER_VALUE", "secret_name"),
        (post(&app, "create", Some(WRITER), "").await, 400, "INVALID_PARAMETER_VALUE", "empty"),
        (post_json(&app, "bind", Some(WRITER), json!({"secret_id": id, "resource_id": "j", "binding_name": "1BAD-NAME"})).await, 400, "INVALID_PARAMETER_VALUE", "binding_name"),
        (post_json(&app, "bind", Some(WRITER), json!({"secret_id": id, "resource_type": "lower", "resource_id": "j", "binding_name": "A"})).await, 400, "INVALID_PARAMETER_VALUE", "resource_type"),
        (post(&app, "revoke", Some(WRITER), r#"{"secret_id":"not-a-uuid"}"#).await, 400, "INVALID_PARAMETER_VALUE", "secret_id"),
        (get(&app, "get", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "secret_id"),
        (get(&app, &format!("get?secret_id={id}&secret_name=taken"), Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "either"),
        (get(&app, "list?max_results=0", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "max_results"),
        (get(&app, "list?max_results=many", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "max_results"),
        (get(&app, "list?state=active", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "state"),
        (get(&app, "list?page_token=garbage", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "page_token"),
        (get(&app, "list?colour=red", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "colour"),
        (get(&app, "list-bindings?resource_id=a%20b", Some(READER)).await, 400, "INVALID_PARAMETER_VALUE", "resource_id"),
        (get(&app, "list-audit?after_seq=-1", Some(ADMIN)).await, 400, "INVALID_PARAMETER_VALUE", "after_seq"),
        (get(&app, &format!("get?secret_id={unknown}"), Some(READER)).await, 404, "RESOURCE_DOES_NOT_EXIST", unknown),
        (get(&app, "get?secret_name=nope&workspace=ws", Some(READER)).await, 404, "RESOURCE_DOES_NOT_EXIST", "nope"),
        (patch_json(&app, "update", Some(WRITER), json!({"secret_id": unknown, "value": "v"})).await, 404, "RESOURCE_DOES_NOT_EXIST", unknown),
        (delete_json(&app, "unbind", Some(WRITER), json!({"binding_id": unknown})).await, 404, "RESOURCE_DOES_NOT_EXIST", unknown),
        (get(&app, "list", None).await, 401, "UNAUTHENTICATED", "token"),
        (get(&app, "list", Some("mlss_wrong")).await, 401, "UNAUTHENTICATED", "token"),
        (post(&app, "create", Some(READER), r#"{"secret_name":"a","value":"x"}"#).await, 403, "PERMISSION_DENIED", "rita"),
        (get(&app, "list-audit", Some(WRITER)).await, 403, "PERMISSION_DENIED", "admin"),
    ];
    for (i, (r, status, code, word)) in cases.iter().enumerate() {
        assert_eq!(r.status.as_u16(), *status, "case {i}: {}", r.text);
        let body = r.json();
        assert_eq!(body.as_object().unwrap().len(), 2, "case {i}: {}", r.text);
        assert_eq!(r.code(), *code, "case {i}: {}", r.text);
        assert!(
            r.message().contains(word),
            "case {i}: {word:?} not in {}",
            r.message()
        );
        assert_eq!(r.headers["content-type"], "application/json", "case {i}");
    }
    // 401 says how to authenticate.
    assert!(cases[26].0.headers.contains_key("www-authenticate"));

    // Conflict: a private secret bound to a second resource.
    let bind =
        |rid: &str| json!({"secret_id": id, "resource_id": rid, "binding_name": "K"}).to_string();
    assert_eq!(
        post(&app, "bind", Some(WRITER), &bind("job-1"))
            .await
            .status,
        StatusCode::OK
    );
    let r = post(&app, "bind", Some(WRITER), &bind("job-2")).await;
    r.assert_error(StatusCode::CONFLICT, "RESOURCE_CONFLICT");

    // 413: a body over the limit; 415: not JSON; 405: a method the path lacks.
    let big = format!(
        r#"{{"secret_name":"a","value":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let r = post(&app, "create", Some(WRITER), &big).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_PARAMETER_VALUE");
    let r = post_json(
        &app,
        "create",
        Some(WRITER),
        json!({"secret_name": "a", "value": "v".repeat(65 * 1024)}),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE");
    assert!(r.message().contains("larger than"), "{}", r.text);
    let req = axum::http::Request::post(format!("{API}/create"))
        .header("authorization", format!("Bearer {WRITER}"))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = call(
        &app,
        Method::PUT,
        &format!("{API}/create"),
        Some(WRITER),
        Some("{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers.contains_key("allow"));
}

#[tokio::test]
async fn internal_errors_are_generic_and_health_reports_them() {
    // A keystore with no KEK: writes fail inside the store.
    let fx = Fixture::with_keystore(Keystore::metadata_only()).await;
    let app = fx.app(0);
    let r = post(
        &app,
        "create",
        Some(WRITER),
        r#"{"secret_name":"a","value":"sk-some-value-1234"}"#,
    )
    .await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR");
    let m = r.message().to_lowercase();
    assert!(m.starts_with("internal error (incident "), "{m}");
    for leak in ["kek", "keystore", "sql", "loaded"] {
        assert!(!m.contains(leak), "{m}");
    }
    let r = call(&app, Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "degraded");
    assert_eq!(r.json()["keystore"]["loaded"], false);
    assert_eq!(r.json()["store"]["reachable"], true);
}

#[tokio::test]
async fn health_metrics_and_openapi_need_no_token() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    create(&app, "m", "sk-abcdefghijklmnopqrstu", false).await;
    let r = call(&app, Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let h = r.json();
    assert_eq!(
        (h["status"].as_str(), h["store"]["reachable"].as_bool()),
        (Some("ok"), Some(true))
    );
    assert_eq!(
        (
            h["keystore"]["active_version"].as_u64(),
            h["keystore"]["test_mode"].as_bool()
        ),
        // Test mode's KEK is version 0, which no real keystore has.
        (Some(0), Some(true))
    );
    let r = call(&app, Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    for needle in [
        "mlflow_secrets_http_requests_total{method=\"POST\",route=\"/api/2.0/mlflow/secrets/create\",status=\"200\"} 1",
        "mlflow_secrets_http_request_duration_seconds_bucket",
        "mlflow_secrets_encrypts_total 1",
        "mlflow_secrets_decrypts_total",
        "mlflow_secrets_audit_writes_total",
    ] {
        assert!(
            r.text.contains(needle),
            "{needle} missing from:\n{}",
            r.text
        );
    }
    let r = call(
        &app,
        Method::GET,
        &format!("{API}/openapi.json"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["openapi"], "3.0.3");
}

/// Every operation of the document is routed (an empty call gets anything
/// but 404/405), and every routed API path is in the document.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let ops = openapi::operations();
    assert_eq!(ops.len(), 14, "{ops:?}");
    for (method, path) in &ops {
        let m: Method = method.parse().unwrap();
        let body = (m != Method::GET).then_some("{}");
        let r = call(&app, m.clone(), path, Some(ADMIN), body).await;
        let routed = r.status != StatusCode::NOT_FOUND || r.headers.get("content-type").is_some();
        assert!(routed, "{method} {path} is not routed");
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        // Other methods on the same path are refused.
        let other = if m == Method::GET {
            Method::POST
        } else {
            Method::GET
        };
        let r = call(&app, other.clone(), path, Some(ADMIN), None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
    }
    let expected = [
        ("POST", "create"),
        ("PATCH", "update"),
        ("POST", "revoke"),
        ("DELETE", "delete"),
        ("POST", "bind"),
        ("DELETE", "unbind"),
        ("GET", "get"),
        ("GET", "list"),
        ("GET", "get-binding"),
        ("GET", "list-bindings"),
        ("GET", "list-audit"),
        ("POST", "resolve"),
    ];
    for (m, op) in expected {
        let path = format!("{API}/{op}");
        assert!(
            ops.contains(&(m.to_string(), path.clone())),
            "{m} {path} not in the document"
        );
    }
    assert!(
        call(&app, Method::GET, &format!("{API}/nope"), Some(ADMIN), None)
            .await
            .status
            == StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn anonymous_loopback_mode_acts_as_local() {
    let fx = Fixture::new().await;
    let app = fx.anonymous_app();
    let r = post(
        &app,
        "create",
        None,
        r#"{"secret_name":"a","value":"sk-abcdefghijklmnop"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["secret"]["created_by"], "local");
    // Even a body naming another principal changes nothing: unknown field.
    let r = post(
        &app,
        "create",
        None,
        r#"{"secret_name":"b","value":"v","created_by":"mallory"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "list-audit", None).await.status, StatusCode::OK);
}

/// Over REST: the added fields round-trip, and reserved binding
/// names are refused (the same store validator as the CLI and the CRD).
#[tokio::test]
async fn added_fields_and_reserved_binding_names() {
    let fx = Fixture::new().await;
    let app = fx.app(0);
    let r = post(&app, "create", Some(WRITER),
        r#"{"secret_name":"azure","value":{"api_key":"k-1234567890abcdef","api_base":"https://x"},"is_shared":true,"provider":"azure"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["secret"]["provider"], "azure");
    let id = r.secret_id();
    let r = post_json(
        &app,
        "bind",
        Some(WRITER),
        json!({"secret_id": id, "resource_id": "job-1", "binding_name": "AZURE_API_KEY",
                "value_field": "api_key", "service_accounts": ["scorer"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["binding"]["value_field"], "api_key");
    assert_eq!(r.json()["binding"]["service_accounts"], json!(["scorer"]));
    for name in ["LD_PRELOAD", "http_proxy", "PYTHONSTARTUP"] {
        let r = post_json(
            &app,
            "bind",
            Some(WRITER),
            json!({"secret_id": id, "resource_id": "job-1", "binding_name": name}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
        assert_eq!(r.json()["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(
            r.json()["message"].as_str().unwrap().contains("reserved"),
            "{}",
            r.text
        );
    }
}
