//! The MlflowSecretBinding controller against the real control plane and a
//! real SQLite store (docs/design.md §8): why a binding cannot bind
//! (missing secret, another namespace, a private secret bound elsewhere, a
//! secret not Ready) and how it unbinds when its MlflowSecret goes. Same
//! in-process fixture as `controller.rs`.

use crate::support;
use crate::support::controller::{Harness, binding_ready_is, cond, secret_ready_is, value_from};
use mlflow_secrets::model::BindingFilter;
use mlflow_secrets::store::{SecretsStore, StoreError};
use mlflow_secrets::value::SecretValue;
use serde_json::json;

const VALUE_1: &str = "sk-bind-test-FIRSTVALUE-0123456789abcdef";
const VALUE_2: &str = "sk-bind-test-SECONDVALUE-9876543210zyxwvu";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_report_why_they_cannot_bind_and_unbind_on_deletion() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-bind").await;
    let ns = h.name().to_string();
    h.put_source("src", "v", VALUE_1).await;
    h.create_secret("private", json!({ "valueFrom": value_from("src", "v") }))
        .await;
    h.wait_secret("private", "Ready", |o| secret_ready_is(o, "True", "Active"))
        .await;

    let spec = |secret: &str, id: &str, env: &str| json!({ "secretRef": { "name": secret }, "resourceId": id, "bindingName": env });
    h.create_binding("missing", spec("nope", "job-1", "A"))
        .await;
    h.create_binding(
        "elsewhere",
        json!({ "secretRef": { "name": "private", "namespace": "kube-system" }, "resourceId": "job-1", "bindingName": "B" }),
    )
    .await;
    h.create_binding("first", spec("private", "job-1", "KEY"))
        .await;
    let first = h
        .wait_binding("first", "Bound", |o| binding_ready_is(o, "True", "Bound"))
        .await;
    h.create_binding("second", spec("private", "job-2", "KEY"))
        .await;

    h.wait_binding("missing", "SecretNotFound", |o| {
        binding_ready_is(o, "False", "SecretNotFound")
    })
    .await;
    h.wait_binding("elsewhere", "CrossNamespaceRef", |o| {
        binding_ready_is(o, "False", "CrossNamespaceRef")
    })
    .await;
    let second = h
        .wait_binding("second", "AlreadyBound", |o| {
            binding_ready_is(o, "False", "AlreadyBound")
        })
        .await;
    let msg = &cond(&second.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .message;
    assert!(
        msg.contains("job-1"),
        "names the resource it is bound to: {msg}"
    );

    // The missing secret appears: the binding follows without a poke.
    h.create_secret(
        "nope",
        json!({ "valueFrom": value_from("src", "v"), "shared": true }),
    )
    .await;
    h.wait_binding("missing", "Bound", |o| binding_ready_is(o, "True", "Bound"))
        .await;

    // A binding name already used for the resource by another secret.
    let other = SecretValue::from_string(VALUE_2.into()).unwrap();
    let other = h
        .store
        .create_secret(&ns, "other", &other, true, "cli:carol")
        .await
        .unwrap();
    let foreign = h
        .store
        .bind_secret(
            &other.secret_id,
            "SCORER_JOB",
            "job-9",
            "CLASH",
            "cli:carol",
        )
        .await
        .unwrap();
    h.create_binding("clash", spec("nope", "job-9", "CLASH"))
        .await;
    let clash = h
        .wait_binding("clash", "Conflict", |o| {
            binding_ready_is(o, "False", "Conflict")
        })
        .await;
    assert_eq!(clash.status.unwrap().binding_id, None);
    assert_eq!(
        h.store.get_binding(&foreign.binding_id).await.unwrap(),
        foreign
    );
    h.bindings()
        .delete("clash", &Default::default())
        .await
        .unwrap();
    h.wait_gone(&h.bindings(), "clash").await;
    assert_eq!(
        h.store.get_binding(&foreign.binding_id).await.unwrap(),
        foreign,
        "a binding it did not create is never unbound"
    );

    // Only the bindings that could be made exist in the store.
    let all = h
        .store
        .list_bindings(&BindingFilter {
            workspace: Some(ns.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    let mut names: Vec<_> = all
        .iter()
        .map(|b| format!("{}:{}", b.resource_id, b.binding_name))
        .collect();
    names.sort();
    assert_eq!(names, ["job-1:A", "job-1:KEY", "job-9:CLASH"]);

    // Deleting a binding unbinds it.
    let first_id = first.status.unwrap().binding_id.unwrap();
    h.bindings()
        .delete("first", &Default::default())
        .await
        .unwrap();
    h.wait_gone(&h.bindings(), "first").await;
    assert!(matches!(
        h.store.get_binding(&first_id).await,
        Err(StoreError::NotFound(_))
    ));
    // ... which frees the private secret for the other resource.
    h.bindings()
        .patch(
            "second",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "metadata": { "annotations": { "poke": "1" } } })),
        )
        .await
        .unwrap();
    h.wait_binding("second", "Bound", |o| binding_ready_is(o, "True", "Bound"))
        .await;
    let events = h.events().await;
    assert!(
        events.iter().any(|e| e.1 == "Unbound" && e.2 == "first"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "AlreadyBound" && e.2 == "second"),
        "{events:?}"
    );
    let text = h.metrics.render();
    assert!(
        text.contains("mlflow_secrets_operator_reconciles_total{controller=\"mlflowsecretbinding\",result=\"ok\"}"),
        "{text}"
    );
    h.cleanup().await;
}
