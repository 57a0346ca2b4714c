//! Importable sources (docs/design.md §8, security review findings 6 and 15): a
//! `valueFrom` source must consent with `secrets.mlflow.org/importable:
//! "true"`, or its value is never read; withdrawing consent stops
//! re-imports; an imported value's mask is never in the status. Real
//! control plane, in-process controllers, SQLite. The CRD fields that reach
//! the store's columns are in `controller_columns.rs`.

use mlflow_secrets::model::SecretFilter;
use mlflow_secrets::store::SecretsStore;
use serde_json::json;

use crate::support;
use mlflow_secrets::k8s::crd::{Condition, MlflowSecretStatus};

use crate::support::controller::{Harness, cond, secret_ready_is, value_from};

const ROOT_PW: &str = "db-root-CANARY-0123456789abcdef";
const NEW_PW: &str = "db-root-CANARY-rotated-987654321";

/// Waits until `stolen` reports `SourceNotImportable`: its status and Ready
/// condition.
async fn not_importable(h: &Harness, what: &str) -> (MlflowSecretStatus, Condition) {
    let o = h
        .wait_secret("stolen", what, |o| {
            secret_ready_is(o, "False", "SourceNotImportable")
        })
        .await;
    let st = o.status.unwrap();
    let ready = cond(&st.conditions, "Ready").unwrap().clone();
    (st, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_the_importable_annotation_is_never_read() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-consent").await;
    let ns = h.name().to_string();
    let reads = || h.metrics.decrypts.with_label_values(&[ns.as_str()]).get();

    // The attack of finding 6: import a Secret its author cannot read.
    h.put_source_with("db-root", "password", ROOT_PW, false)
        .await;
    h.create_secret(
        "stolen",
        json!({ "valueFrom": value_from("db-root", "password") }),
    )
    .await;
    let (st, ready) = not_importable(&h, "SourceNotImportable").await;
    assert!(
        ready.message.contains("secrets.mlflow.org/importable")
            && ready.message.contains("was not read"),
        "{}",
        ready.message
    );
    assert_eq!((st.secret_id, st.masked_value), (None, None));
    let rows = h
        .store
        .list_secrets(&SecretFilter {
            workspace: Some(ns.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(rows.items.is_empty(), "a row was created: {:?}", rows.items);
    assert_eq!(reads(), 0, "the source's value was read");

    // Consent given: imported, and still no mask in the status.
    h.put_source_with("db-root", "password", ROOT_PW, true)
        .await;
    let o = h
        .wait_secret("stolen", "Ready", |o| secret_ready_is(o, "True", "Active"))
        .await;
    let st = o.status.unwrap();
    assert_eq!(st.masked_value, None);
    let id = st.secret_id.unwrap();
    assert_eq!(h.plain_value(&id).await, ROOT_PW);
    assert_eq!(reads(), 1);

    // Consent withdrawn while the value changes: not re-imported; the row
    // keeps the value imported last, and the status says so.
    h.put_source_with("db-root", "password", NEW_PW, false)
        .await;
    let (st, ready) = not_importable(&h, "SourceNotImportable again").await;
    assert!(
        ready.message.contains("keeps the value imported last"),
        "{}",
        ready.message
    );
    assert_eq!(st.secret_id.as_deref(), Some(id.as_str()), "the row stays");
    assert_eq!(h.plain_value(&id).await, ROOT_PW);
    assert_eq!(reads(), 1, "the withdrawn source was read");

    let written = h.written_text().await;
    for v in [ROOT_PW, NEW_PW] {
        assert!(!written.contains(v), "a value reached the API objects");
    }
    h.cleanup().await;
}
