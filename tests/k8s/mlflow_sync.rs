//! `MlflowSecret.spec.mlflowGateway` on the test control plane with a real
//! `mlflow server` 3.17.2 (in-process controllers, SQLite store): the
//! operator pushes after an import, a re-import and an update through the
//! store, MLflow's own decrypt path reads each value, and `MlflowSynced`
//! reports a credentials Secret without consent, a gateway secret made by
//! hand (never overwritten) and an unreachable server.

use std::time::Duration;

use crate::support;
use crate::support::controller::{Harness, cond, value_from};
use mlflow_secrets::k8s::crd::MlflowSecret;
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;
use serde_json::json;
use testkit::mlflow::{MlflowServer, mlflow_decrypt_all, mlflow_seed};

const V1: &str = "sk-k8s-sync-first-0123456789";
const V2: &str = "sk-k8s-sync-reimported-abcdef";
const V3: &str = "sk-k8s-sync-cli-update-987654";
const HAND: &str = "sk-k8s-made-by-hand-424242";

/// Pushes happen on the object's resync (30 s) as well as on events, so
/// waits are longer than the harness's default.
const PUSH_WAIT: Duration = Duration::from_secs(120);

fn synced_is(o: &MlflowSecret, status: &str, reason: &str) -> bool {
    o.status
        .as_ref()
        .and_then(|s| cond(&s.conditions, "MlflowSynced"))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

fn synced_message(o: &MlflowSecret) -> String {
    o.status
        .as_ref()
        .and_then(|s| cond(&s.conditions, "MlflowSynced"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

async fn wait(
    h: &Harness,
    name: &str,
    what: &str,
    ok: impl Fn(&MlflowSecret) -> bool,
) -> MlflowSecret {
    let api = h.secrets();
    support::eventually(PUSH_WAIT, &format!("MlflowSecret {name}: {what}"), || {
        let api = api.clone();
        let ok = &ok;
        async move { api.get_opt(name).await.ok().flatten().filter(|o| ok(o)) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_keeps_the_gateway_secret_in_sync() {
    support::skip_if_off!();
    testkit::mlflow_skip_if_off!();
    let server = MlflowServer::start().await;
    let h = Harness::start("mlsync").await;

    h.put_source("openai", "api_key", V1).await;
    // MLflow here runs without auth; the token only exercises the consent
    // rule and the header plumbing.
    h.put_source_with("mlflow-creds", "token", "mlflow-token-123", false)
        .await;
    let gateway = json!({
        "trackingUri": server.url,
        "credentialsSecretRef": {"name": "mlflow-creds"}
    });
    h.create_secret(
        "judge",
        json!({"provider": "openai", "valueFrom": value_from("openai", "api_key"), "mlflowGateway": gateway}),
    )
    .await;
    let o = wait(&h, "judge", "credentials not importable", |o| {
        synced_is(o, "False", "CredentialsNotImportable")
    })
    .await;
    assert!(synced_message(&o).contains("secrets.mlflow.org/importable"));

    // Consent given: pushed, and MLflow's code reads our value.
    h.put_source_with("mlflow-creds", "token", "mlflow-token-123", true)
        .await;
    let o = wait(&h, "judge", "pushed", |o| synced_is(o, "True", "Pushed")).await;
    let first = synced_message(&o);
    assert!(mlflow_decrypt_all(&server.db_uri)["judge"] == json!({"api_key": V1}));

    // A re-import reaches MLflow.
    h.put_source("openai", "api_key", V2).await;
    let o = wait(&h, "judge", "re-pushed", |o| {
        synced_is(o, "True", "Pushed") && synced_message(o) != first
    })
    .await;
    let second = synced_message(&o);
    assert!(mlflow_decrypt_all(&server.db_uri)["judge"] == json!({"api_key": V2}));

    // So does an update through the store (the CLI's and REST's path).
    let id = o.status.unwrap().secret_id.unwrap();
    h.store
        .update_secret(
            &id,
            &SecretValue::from_string(V3.into()).unwrap(),
            "cli:tester",
        )
        .await
        .unwrap();
    wait(&h, "judge", "pushed after the update", |o| {
        synced_is(o, "True", "Pushed") && synced_message(o) != second
    })
    .await;
    assert!(mlflow_decrypt_all(&server.db_uri)["judge"] == json!({"api_key": V3}));

    // A gateway secret of that name made in MLflow by hand: a conflict,
    // never overwritten.
    mlflow_seed(
        &server.db_uri,
        &json!([{"name": "hand", "value": {"api_key": HAND}}]),
    );
    h.create_secret(
        "hand",
        json!({"valueFrom": value_from("openai", "api_key"), "mlflowGateway": {"trackingUri": server.url}}),
    )
    .await;
    let o = wait(&h, "hand", "conflict", |o| {
        synced_is(o, "False", "MlflowConflict")
    })
    .await;
    assert!(
        synced_message(&o).contains("mlflow-secrets did not create it"),
        "{}",
        synced_message(&o)
    );
    assert!(mlflow_decrypt_all(&server.db_uri)["hand"] == json!({"api_key": HAND}));

    // An unreachable server.
    h.create_secret(
        "far",
        json!({"valueFrom": value_from("openai", "api_key"), "mlflowGateway": {"trackingUri": "http://127.0.0.1:9"}}),
    )
    .await;
    wait(&h, "far", "unreachable", |o| {
        synced_is(o, "False", "MlflowUnreachable")
    })
    .await;

    // No value ever reached the objects, Events or logs the test can see.
    let written = h.written_text().await;
    for v in [V1, V2, V3, HAND, "mlflow-token-123"] {
        assert!(!written.contains(v), "a value was written to the cluster");
    }
    h.cleanup().await;
}
