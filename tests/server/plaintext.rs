//! docs/design.md §10 rule 2 for the server: no response of any endpoint, on any
//! path (success or error), and no log line at TRACE level contains a
//! plaintext value, wherever a client put it (the value field, a wrong
//! field, a malformed body, a query string).

use crate::support::*;
use axum::http::Method;
use serde_json::json;
use testkit::CapturedLogs;

const C: [&str; 16] = [
    "sk-CANARY-00-create-string-9f8e7d",
    "CANARY-01-create-object-5a4b3c",
    "sk-CANARY-02-update-1d2e3f4a5b",
    "CANARY-03-bad-name-path-77aa",
    "98765432123456789",
    "CANARY-05-wrong-type-field-66bb",
    "CANARY-06-unknown-field-55cc",
    "CANARY-07-malformed-json-44dd",
    "CANARY-08-too-large-33ee",
    "CANARY-09-update-revoked-22ff",
    "CANARY-10-duplicate-name-11aa",
    "CANARY-11-query-string-00bb",
    "CANARY-12-reader-denied-99cc",
    "CANARY-13-no-token-88dd",
    "CANARY-14-empty-key-77ee",
    "CANARY-15-key-holds-value-66ff",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_in_responses_or_trace_logs() {
    let logs = CapturedLogs::install_global_trace();

    let fx = Fixture::new().await;
    let app = fx.app(0);
    let body = |v: serde_json::Value| v.to_string();

    // Successes.
    let r = post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "s", "value": C[0]})),
    )
    .await;
    let id = r.secret_id();
    let r = post(
        &app,
        "create",
        Some(WRITER),
        &body(
            json!({"secret_name": "o", "value": {"api_key": C[1], "org": "x"}, "is_shared": true}),
        ),
    )
    .await;
    let oid = r.secret_id();
    patch(
        &app,
        "update",
        Some(WRITER),
        &body(json!({"secret_id": id, "value": C[2]})),
    )
    .await;
    let r = post(
        &app,
        "bind",
        Some(WRITER),
        &body(json!({"secret_id": oid, "resource_id": "job", "binding_name": "K"})),
    )
    .await;
    let bid = r.json()["binding"]["binding_id"]
        .as_str()
        .unwrap()
        .to_string();
    get(&app, &format!("get?secret_id={id}"), Some(READER)).await;
    get(&app, "get?secret_name=o", Some(READER)).await;
    get(&app, "list", Some(READER)).await;
    get(&app, &format!("get-binding?binding_id={bid}"), Some(READER)).await;
    get(&app, "list-bindings", Some(READER)).await;

    // Failures, with the value in every place a client might put it.
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "bad name", "value": C[3]})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &format!(r#"{{"secret_name":"n","value":{{"k":{}}}}}"#, C[4]),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &format!(r#"{{"secret_name":"n","value":{}}}"#, C[4]),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "n", "value": "v", "is_shared": C[5]})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "w", "value": C[5], "workspace": 7})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "n", "value": "v", "api_key": C[6]})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &format!(r#"{{"secret_name":"n","value":"{}""#, C[7]),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &format!(r#"{{"secret_name":"n","value":"{}" x}}"#, C[7]),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "n", "value": format!("{}{}", C[8], "x".repeat(70 * 1024))})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "n", "value": format!("{}{}", C[8], "x".repeat(300 * 1024))})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "s", "value": C[10]})),
    )
    .await;
    post(
        &app,
        "revoke",
        Some(WRITER),
        &body(json!({"secret_id": id})),
    )
    .await;
    patch(
        &app,
        "update",
        Some(WRITER),
        &body(json!({"secret_id": id, "value": C[9]})),
    )
    .await;
    patch(
        &app,
        "update",
        Some(WRITER),
        &body(json!({"secret_id": "nope", "value": C[9]})),
    )
    .await;
    get(&app, &format!("list?value={}", C[11]), Some(READER)).await;
    post(
        &app,
        "create",
        Some(READER),
        &body(json!({"secret_name": "r", "value": C[12]})),
    )
    .await;
    post(
        &app,
        "create",
        None,
        &body(json!({"secret_name": "r", "value": C[13]})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "e", "value": {"": C[14]}})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "e", "value": [C[14]]})),
    )
    .await;
    post(
        &app,
        "create",
        Some(WRITER),
        &body(json!({"secret_name": "e", "value": {"k": [C[15]]}})),
    )
    .await;
    call(
        &app,
        Method::PUT,
        &format!("{API}/create"),
        Some(WRITER),
        Some(&body(json!({"value": C[0]}))),
    )
    .await;
    delete(
        &app,
        "delete",
        Some(WRITER),
        &body(json!({"secret_id": id, "value": C[0]})),
    )
    .await;

    // And the audit log itself.
    get(&app, "list-audit?max_results=1000", Some(ADMIN)).await;
    call(&app, Method::GET, "/metrics", None, None).await;

    let seen = SEEN.lock().unwrap().join("\n----\n");
    assert!(
        seen.contains("RESOURCE_ALREADY_EXISTS") && seen.contains("REVOKED"),
        "the calls ran"
    );
    let log = logs.text();
    assert!(
        log.contains("INSERT INTO secrets"),
        "logs were captured at TRACE level"
    );
    // Bearer tokens never reach the logs either (only principals do).
    assert!(log.contains("wendy"), "the access log names principals");
    for t in [ADMIN, WRITER, READER] {
        assert!(!log.contains(t), "a token reached the logs");
    }
    for (i, c) in C.iter().enumerate() {
        assert!(!seen.contains(c), "canary {i} in a response:\n{seen}");
        assert!(!log.contains(c), "canary {i} in the logs");
    }
}
