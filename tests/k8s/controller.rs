//! The MlflowSecret and MlflowSecretBinding controllers against the real
//! control plane and a real SQLite store (docs/design.md §8).
//! The controllers run in-process, scoped by label to each test's objects;
//! the operator process itself is tested elsewhere, and the binding
//! controller's refusals in `binding_controller.rs`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ListParams, PostParams};
use mlflow_secrets::k8s::crd::MlflowSecret;
use mlflow_secrets::model::SecretState;
use mlflow_secrets::store::{SecretsStore, StoreError};
use mlflow_secrets::value::{SecretValue, mask_str};
use serde_json::json;

use crate::support;
use crate::support::controller::{Harness, binding_ready_is, cond, secret_ready_is, value_from};

const VALUE_1: &str = "sk-ctrl-test-FIRSTVALUE-0123456789abcdef";
const VALUE_2: &str = "sk-ctrl-test-SECONDVALUE-9876543210zyxwvu";

fn status_of(o: &MlflowSecret) -> &mlflow_secrets::k8s::crd::MlflowSecretStatus {
    o.status.as_ref().expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_enforces_the_schema_and_cel_rules() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-schema").await;
    let base =
        json!({ "secretRef": { "name": "s" }, "resourceId": "job-1", "bindingName": "OK_NAME" });
    let ok = h.binding_object("ok", base.clone());
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let accepted = h
        .bindings()
        .create(&dry, &ok)
        .await
        .expect("a valid binding");
    assert_eq!(accepted.spec.resource_type, "SCORER_JOB", "defaulted");

    for (name, patch, expect) in [
        (
            "bad-env",
            json!({ "bindingName": "1-NOT-AN-ENV" }),
            "bindingName",
        ),
        ("bad-env2", json!({ "bindingName": "A B" }), "bindingName"),
        (
            "empty-id",
            json!({ "resourceId": "" }),
            "resourceId must not be empty",
        ),
        (
            "bad-type",
            json!({ "resourceType": "scorer" }),
            "resourceType",
        ),
    ] {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let err = h
            .bindings()
            .create(&dry, &h.binding_object(name, spec))
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(expect) && text.contains("Invalid"),
            "{name}: {text}"
        );
    }

    // secretName follows the store's name rule.
    let bad: MlflowSecret = serde_json::from_value(json!({
        "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecret",
        "metadata": { "name": "bad-name" },
        "spec": { "secretName": "has space" },
    }))
    .unwrap();
    let err = h
        .secrets()
        .create(&dry, &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("secretName"), "{err}");

    // Transition rules: revocation is one-way, the binding spec immutable.
    h.create_secret("one-way", json!({ "revoked": true })).await;
    let err = h
        .secrets()
        .patch(
            "one-way",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "revoked": false } })),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("revocation is one-way"), "{err}");
    h.create_binding("fixed", base.clone()).await;
    let err = h
        .bindings()
        .patch(
            "fixed",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "spec": { "resourceId": "job-2" } })),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec is immutable"), "{err}");
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_reimports_with_a_new_dek_binds_revokes_and_deletes() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-import").await;
    let ns = h.name().to_string();
    h.put_source("openai", "token", VALUE_1).await;
    let created = h
        .create_secret(
            "openai-key",
            json!({ "valueFrom": value_from("openai", "token") }),
        )
        .await;
    let uid = created.metadata.uid.clone().unwrap();

    let obj = h
        .wait_secret("openai-key", "Ready", |o| {
            secret_ready_is(o, "True", "Active")
        })
        .await;
    let st = status_of(&obj);
    let row = h.store.get_secret_by_name(&ns, "openai-key").await.unwrap();
    assert_eq!(st.secret_id.as_deref(), Some(row.secret_id.as_str()));
    assert_eq!(st.state.as_deref(), Some("ACTIVE"));
    assert_eq!(st.kek_version, Some(1));
    // No mask of an imported value (security review finding 15): whoever
    // reads the MlflowSecret may not be allowed to read its source.
    assert_eq!(st.masked_value, None);
    assert_eq!(row.masked_value, mask_str(VALUE_1), "the store keeps it");
    assert_eq!(st.shared, Some(false));
    let first_rv = st.source.as_ref().unwrap().resource_version.clone();
    assert_eq!(st.observed_generation, obj.metadata.generation);
    assert_eq!(
        cond(&st.conditions, "Conflict").map(|c| c.status.as_str()),
        Some("False")
    );
    assert!(
        row.created_by.as_deref().unwrap().contains(&uid),
        "created_by names the object: {:?}",
        row.created_by
    );
    assert!(
        obj.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f.contains("cleanup")))
    );
    assert_eq!(h.plain_value(&row.secret_id).await, VALUE_1);
    let (dek_1, kek_1) = h.raw_row(&row.secret_id).await;
    assert_eq!(kek_1, 1);

    // A binding to it.
    h.create_binding(
        "openai-job",
        json!({ "secretRef": { "name": "openai-key" }, "resourceId": "job-7", "bindingName": "OPENAI_API_KEY" }),
    )
    .await;
    let b = h
        .wait_binding("openai-job", "Ready", |o| {
            binding_ready_is(o, "True", "Bound")
        })
        .await;
    let binding_id = b.status.as_ref().unwrap().binding_id.clone().unwrap();
    let sb = h.store.get_binding(&binding_id).await.unwrap();
    assert_eq!(
        (
            sb.secret_id.as_str(),
            sb.resource_type.as_str(),
            sb.resource_id.as_str()
        ),
        (row.secret_id.as_str(), "SCORER_JOB", "job-7")
    );
    assert_eq!(sb.binding_name, "OPENAI_API_KEY");

    // The source Secret changes: the row is re-encrypted under a new DEK.
    h.put_source("openai", "token", VALUE_2).await;
    let obj = h
        .wait_secret("openai-key", "re-imported", |o| {
            o.status
                .as_ref()
                .and_then(|s| s.source.as_ref())
                .is_some_and(|s| s.resource_version != first_rv)
        })
        .await;
    assert_eq!(status_of(&obj).masked_value, None);
    assert!(secret_ready_is(&obj, "True", "Active"));
    assert_eq!(h.plain_value(&row.secret_id).await, VALUE_2);
    let (dek_2, _) = h.raw_row(&row.secret_id).await;
    assert_ne!(dek_1, dek_2, "a new DEK for the new value");
    assert_eq!(
        h.store
            .get_secret_by_name(&ns, "openai-key")
            .await
            .unwrap()
            .secret_id,
        row.secret_id,
        "same row, updated in place"
    );
    let events = h.events().await;
    for reason in ["Created", "Updated"] {
        assert!(
            events.iter().any(|e| e.1 == reason && e.2 == "openai-key"),
            "{reason} event: {events:?}"
        );
    }

    // Revoked: one-way, reported, and the binding follows.
    h.patch_secret_spec("openai-key", json!({ "revoked": true }))
        .await;
    let obj = h
        .wait_secret("openai-key", "REVOKED", |o| {
            o.status.as_ref().and_then(|s| s.state.as_deref()) == Some("REVOKED")
        })
        .await;
    assert!(secret_ready_is(&obj, "False", "Revoked"));
    assert_eq!(
        h.store.get_secret(&row.secret_id).await.unwrap().state,
        SecretState::Revoked
    );
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Normal" && e.1 == "Revoked" && e.2 == "openai-key"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.0 == "Warning" && e.2 == "openai-key"),
        "a requested revocation is not a warning: {events:?}"
    );
    h.wait_binding("openai-job", "SecretNotReady", |o| {
        binding_ready_is(o, "False", "SecretNotReady")
    })
    .await;

    // Deleted (policy Delete): the row and its bindings go, and the binding
    // object says so.
    h.delete_secret("openai-key").await;
    h.wait_gone(&h.secrets(), "openai-key").await;
    assert!(matches!(
        h.store.get_secret(&row.secret_id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        h.store.get_binding(&binding_id).await,
        Err(StoreError::NotFound(_))
    ));
    h.wait_binding("openai-job", "SecretNotFound", |o| {
        binding_ready_is(o, "False", "SecretNotFound")
    })
    .await;

    // Nothing the operator wrote holds a value.
    let written = h.written_text().await;
    for v in [VALUE_1, VALUE_2] {
        assert!(
            !written.contains(v),
            "a plaintext value reached the API objects"
        );
    }
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_row_and_missing_sources_are_reported() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-retain").await;
    let ns = h.name().to_string();

    // The source does not exist yet: SourceNotFound, then imported once it
    // appears (the Secret watch triggers the reconcile).
    h.create_secret(
        "kept",
        json!({ "valueFrom": value_from("later", "k"), "deletionPolicy": "Retain", "shared": true }),
    )
    .await;
    h.wait_secret("kept", "SourceNotFound", |o| {
        secret_ready_is(o, "False", "SourceNotFound")
    })
    .await;
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "SourceNotFound" && e.2 == "kept"),
        "{events:?}"
    );
    h.put_source("later", "other-key", VALUE_1).await;
    let o = h
        .wait_secret("kept", "missing key", |o| {
            secret_ready_is(o, "False", "SourceNotFound")
                && cond(&o.status.as_ref().unwrap().conditions, "Ready")
                    .is_some_and(|c| c.message.contains("no key 'k'"))
        })
        .await;
    assert!(!serde_json::to_string(&o).unwrap().contains(VALUE_1));
    h.put_source("later", "k", VALUE_1).await;
    let o = h
        .wait_secret("kept", "Ready", |o| secret_ready_is(o, "True", "Active"))
        .await;
    assert_eq!(status_of(&o).shared, Some(true));
    let id = status_of(&o).secret_id.clone().unwrap();

    h.delete_secret("kept").await;
    h.wait_gone(&h.secrets(), "kept").await;
    let row = h.store.get_secret(&id).await.expect("Retain keeps the row");
    assert_eq!(row.workspace, ns);
    assert_eq!(row.state, SecretState::Active);
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_it_did_not_create_is_a_conflict_and_never_touched() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-conflict").await;
    let ns = h.name().to_string();
    let mine = SecretValue::from_string(VALUE_1.into()).unwrap();
    let row = h
        .store
        .create_secret(&ns, "taken", &mine, false, "cli:alice")
        .await
        .unwrap();
    let (dek_before, _) = h.raw_row(&row.secret_id).await;

    h.put_source("src", "v", VALUE_2).await;
    h.create_secret("taken", json!({ "valueFrom": value_from("src", "v") }))
        .await;
    let o = h
        .wait_secret("taken", "Conflict", |o| {
            o.status
                .as_ref()
                .and_then(|s| cond(&s.conditions, "Conflict"))
                .is_some_and(|c| c.status == "True")
        })
        .await;
    assert!(secret_ready_is(&o, "False", "Conflict"));
    assert_eq!(
        status_of(&o).secret_id,
        None,
        "a foreign row is not reported as ours"
    );
    let msg = &cond(&status_of(&o).conditions, "Ready").unwrap().message;
    assert!(
        msg.contains("cli:alice") && msg.contains("did not create"),
        "{msg}"
    );
    let events = h.events().await;
    assert!(
        events
            .iter()
            .any(|e| e.0 == "Warning" && e.1 == "Conflict" && e.2 == "taken"),
        "{events:?}"
    );

    // A change of the source must not reach the foreign row either.
    h.put_source("src", "v", "sk-ctrl-test-THIRDVALUE-aaaaaaaaaaaaaaaa")
        .await;
    h.poke_secret("taken").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Deleting the object leaves the foreign row alone.
    h.delete_secret("taken").await;
    h.wait_gone(&h.secrets(), "taken").await;
    let after = h.store.get_secret(&row.secret_id).await.expect("row kept");
    assert_eq!(
        after, row,
        "metadata untouched (same updated_at, same mask)"
    );
    let (dek_after, _) = h.raw_row(&row.secret_id).await;
    assert_eq!(dek_before, dek_after);
    assert_eq!(h.plain_value(&row.secret_id).await, VALUE_1);
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_value_from_it_mirrors_a_cli_row_and_never_deletes_it() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-mirror").await;
    let ns = h.name().to_string();
    h.create_secret("by-cli", json!({})).await;
    let o = h
        .wait_secret("by-cli", "ValueNotSet", |o| {
            secret_ready_is(o, "False", "ValueNotSet")
        })
        .await;
    let msg = &cond(&status_of(&o).conditions, "Ready").unwrap().message;
    assert!(msg.contains("mlflow-secrets create by-cli"), "{msg}");

    let v = SecretValue::from_string(VALUE_1.into()).unwrap();
    let row = h
        .store
        .create_secret(&ns, "by-cli", &v, true, "cli:bob")
        .await
        .unwrap();
    h.poke_secret("by-cli").await;
    let o = h
        .wait_secret("by-cli", "Ready", |o| secret_ready_is(o, "True", "Active"))
        .await;
    let st = status_of(&o);
    assert_eq!(st.secret_id.as_deref(), Some(row.secret_id.as_str()));
    assert_eq!(st.masked_value.as_deref(), Some(row.masked_value.as_str()));
    assert_eq!(st.shared, Some(true));

    // Revoking a row it did not create is refused, and reported.
    h.patch_secret_spec("by-cli", json!({ "revoked": true }))
        .await;
    h.wait_secret("by-cli", "RevokeNotAllowed", |o| {
        secret_ready_is(o, "False", "RevokeNotAllowed")
    })
    .await;
    assert_eq!(
        h.store.get_secret(&row.secret_id).await.unwrap().state,
        SecretState::Active
    );

    h.delete_secret("by-cli").await;
    h.wait_gone(&h.secrets(), "by-cli").await;
    assert_eq!(h.store.get_secret(&row.secret_id).await.unwrap(), row);
    h.cleanup().await;
}

/// Runs `f(0..n)`, 32 at a time, as a user's `kubectl apply` of many
/// objects would.
async fn fan_out<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future,
{
    futures::stream::iter(0..n)
        .map(f)
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// How long 1,000 MlflowSecrets with `valueFrom` take to become Ready (the
/// issue's target is under 60 s on this machine). A measurement, not a
/// timed assertion: `cargo test --test k8s_controller -- --ignored
/// --nocapture thousand`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: creates 2,000 objects on the shared control plane"]
async fn thousand_secrets_to_ready() {
    support::skip_if_off!();
    const N: usize = 1000;
    let h = Harness::start("ctrl-bench").await;
    let t0 = Instant::now();
    fan_out(N, |i| {
        let h = &h;
        async move {
            h.put_source(&format!("src-{i}"), "v", &format!("{VALUE_1}-{i}"))
                .await
        }
    })
    .await;
    let sources = t0.elapsed();
    let t1 = Instant::now();
    fan_out(N, |i| {
        let h = &h;
        async move {
            h.create_secret(
                &format!("s-{i}"),
                json!({ "valueFrom": value_from(&format!("src-{i}"), "v") }),
            )
            .await
        }
    })
    .await;
    let created = t1.elapsed();
    let api = h.secrets();
    let ready_all = loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|o| secret_ready_is(o, "True", "Active"))
            .count();
        if ready == N {
            break t1.elapsed();
        }
        assert!(
            t1.elapsed() < Duration::from_secs(600),
            "only {ready}/{N} Ready after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rows = h.store.count_secrets().await.unwrap();
    println!(
        "thousand_secrets_to_ready: {N} source Secrets written in {:.1}s; {N} MlflowSecrets created in {:.1}s; \
         all Ready {:.1}s after the first create ({rows} rows)",
        sources.as_secs_f64(),
        created.as_secs_f64(),
        ready_all.as_secs_f64()
    );
    println!(
        "{}",
        h.metrics
            .render()
            .lines()
            .filter(|l| l.contains("reconcile"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(rows, N as u64);
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_are_counted_retried_and_recovered_from() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-outage").await;
    h.put_source("src", "v", VALUE_1).await;
    // Take the table away behind the store's back: every reconcile fails.
    let mut conn = h.db.raw().await;
    sqlx::query("ALTER TABLE secrets RENAME TO secrets_away")
        .execute(&mut conn)
        .await
        .unwrap();
    h.create_secret("later", json!({ "valueFrom": value_from("src", "v") }))
        .await;
    let errors = r#"reconciles_total{controller="mlflowsecret",result="error"}"#;
    support::eventually(Duration::from_secs(30), "failed reconciles", || {
        let text = h.metrics.render();
        async move {
            text.lines()
                .any(|l| l.starts_with(&format!("mlflow_secrets_operator_{errors} ")))
                .then_some(())
        }
    })
    .await;
    let o = h.secrets().get("later").await.unwrap();
    assert!(
        !secret_ready_is(&o, "True", "Active"),
        "not Ready while the store fails"
    );
    // A few retries with backoff, not a hot loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let count = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("mlflow_secrets_operator_{errors} ")))
            .map(|n| n.trim().parse().unwrap())
            .unwrap_or(0)
    };
    let failed = count(&h.metrics.render());
    assert!((1..=6).contains(&failed), "{failed} failures in ~3s");

    sqlx::query("ALTER TABLE secrets_away RENAME TO secrets")
        .execute(&mut conn)
        .await
        .unwrap();
    h.wait_secret("later", "Ready after the store is back", |o| {
        secret_ready_is(o, "True", "Active")
    })
    .await;
    h.cleanup().await;
}
