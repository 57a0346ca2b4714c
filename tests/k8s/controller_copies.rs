//! Revocation reaches every copy (docs/design.md §8, §10 rule 11): revoking,
//! deleting or unbinding a secret removes its value from every per-Job
//! Secret that holds it, through the CRDs at once (within the reconcile)
//! and through the CLI or REST within one sweep; a value update leaves
//! running Jobs alone; each removal is in the audit log. Against the real
//! control plane, with the controllers in-process on a real SQLite store.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mlflow_secrets::model::AuditEntry;
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;
use serde_json::json;

use crate::support;
use crate::support::controller::{
    Harness, SETTLE, TEST_SWEEP_EVERY, binding_ready_is, secret_ready_is, value_from,
};
use crate::support::eventually;

const LEAKED: &str = "sk-copies-LEAKED-0123456789abcdef";
const OTHER_1: &str = "sk-copies-OTHER-first-0123456789";
const OTHER_2: &str = "sk-copies-OTHER-second-987654321";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn scrubs(audit: &[AuditEntry]) -> Vec<&AuditEntry> {
    audit.iter().filter(|e| e.action == "SCRUB_COPY").collect()
}

async fn ready_id(h: &Harness, name: &str) -> String {
    let o = h
        .wait_secret(name, "Ready", |o| secret_ready_is(o, "True", "Active"))
        .await;
    o.status.unwrap().secret_id.unwrap()
}

/// The sweep period is an hour here, so what happens is the reconcile's own
/// doing: when the status says REVOKED (or the object is gone), no copy is
/// left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_delete_and_unbind_through_the_crds_scrub_every_copy_within_the_reconcile() {
    support::skip_if_off!();
    let h = Harness::start_with_sweep("ctrl-copies", Duration::from_secs(3600)).await;
    h.put_source("openai", "token", LEAKED).await;
    h.put_source("other", "token", OTHER_1).await;
    h.create_secret(
        "openai-key",
        json!({ "valueFrom": value_from("openai", "token") }),
    )
    .await;
    h.create_secret(
        "other-key",
        json!({ "valueFrom": value_from("other", "token") }),
    )
    .await;
    let a = ready_id(&h, "openai-key").await;
    let b = ready_id(&h, "other-key").await;
    for (name, secret, env) in [
        ("bind-openai", "openai-key", "OPENAI_API_KEY"),
        ("bind-other", "other-key", "OTHER_KEY"),
    ] {
        h.create_binding(
            name,
            json!({ "secretRef": { "name": secret }, "resourceId": "judge", "bindingName": env }),
        )
        .await;
        h.wait_binding(name, "Bound", |o| binding_ready_is(o, "True", "Bound"))
            .await;
    }

    // Two Jobs of the resource ran: their per-Job Secrets hold the value.
    h.put_copy(
        "job-a",
        "judge",
        &[("OPENAI_API_KEY", &a, LEAKED), ("OTHER_KEY", &b, OTHER_1)],
        true,
    )
    .await;
    h.put_copy("job-b", "judge", &[("OPENAI_API_KEY", &a, LEAKED)], true)
        .await;
    // A look-alike without the managed label: never the operator's to touch.
    h.put_copy("mine", "judge", &[("OPENAI_API_KEY", &a, LEAKED)], false)
        .await;

    // An update leaves running Jobs alone: job-a keeps the version it
    // started with.
    let rv = h
        .secrets()
        .get("other-key")
        .await
        .unwrap()
        .status
        .unwrap()
        .source
        .unwrap()
        .resource_version;
    h.put_source("other", "token", OTHER_2).await;
    h.wait_secret("other-key", "re-imported", |o| {
        o.status
            .as_ref()
            .and_then(|s| s.source.as_ref())
            .is_some_and(|s| s.resource_version != rv)
    })
    .await;

    // Revoke through the CRD.
    h.patch_secret_spec("openai-key", json!({ "revoked": true }))
        .await;
    h.wait_secret("openai-key", "REVOKED", |o| {
        o.status.as_ref().and_then(|s| s.state.as_deref()) == Some("REVOKED")
    })
    .await;
    assert_eq!(
        h.copy("job-b").await,
        None,
        "job-b held only the revoked key"
    );
    let (data, ids) = h.copy("job-a").await.expect("job-a keeps its other key");
    assert_eq!(
        data,
        map(&[("OTHER_KEY", OTHER_1)]),
        "the revoked key is gone, the updated one kept at its old version"
    );
    assert_eq!(
        serde_json::from_str::<BTreeMap<String, String>>(&ids).unwrap(),
        map(&[("OTHER_KEY", &b)])
    );
    let (mine, _) = h.copy("mine").await.expect("the look-alike stays");
    assert_eq!(mine, map(&[("OPENAI_API_KEY", LEAKED)]));

    // Audited: one row per per-Job Secret, naming it, never the value.
    let audit = h.audit_of(&a).await;
    let rows = scrubs(&audit);
    assert_eq!(rows.len(), 2, "{audit:?}");
    for job in ["job-a", "job-b"] {
        assert!(
            rows.iter().any(|e| {
                let d = e.detail.as_deref().unwrap_or_default();
                d.contains(&format!("{job}-mlflow-secrets"))
                    && d.contains("OPENAI_API_KEY (revoked)")
            }),
            "{job}: {rows:?}"
        );
    }
    assert!(rows.iter().all(|e| {
        e.resource.as_deref() == Some("SCORER_JOB/judge")
            && !e.detail.as_deref().unwrap_or_default().contains(LEAKED)
    }));

    // Unbind through the CRD: job-a's last key goes, and with it the Secret.
    h.bindings()
        .delete("bind-other", &Default::default())
        .await
        .unwrap();
    h.wait_gone(&h.bindings(), "bind-other").await;
    assert_eq!(
        h.copy("job-a").await,
        None,
        "unbound: nothing left in job-a"
    );
    assert!(scrubs(&h.audit_of(&b).await).iter().any(|e| {
        e.detail
            .as_deref()
            .unwrap_or_default()
            .contains("OTHER_KEY (unbound)")
    }));

    // Delete through the CRD: a later Job's copy of other-key goes too.
    h.put_copy("job-c", "judge", &[("OTHER_KEY", &b, OTHER_2)], true)
        .await;
    h.delete_secret("other-key").await;
    h.wait_gone(&h.secrets(), "other-key").await;
    assert_eq!(
        h.copy("job-c").await,
        None,
        "deleted: nothing left in job-c"
    );

    let written = h.written_text().await;
    for v in [LEAKED, OTHER_1, OTHER_2] {
        assert!(!written.contains(v), "a value reached the API objects");
    }
    h.cleanup().await;
}

/// The CLI and the REST API change only the database: the periodic sweep
/// finds it. Here the store is written directly, as `mlflow-secrets revoke`
/// does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_delete_and_unbind_outside_kubernetes_reach_copies_within_one_sweep() {
    support::skip_if_off!();
    let h = Harness::start("ctrl-sweep").await;
    let ns = h.name().to_string();
    let value = |s: &str| SecretValue::from_string(s.to_string()).unwrap();
    let mut ids = Vec::new();
    let mut bindings = Vec::new();
    for (i, env) in ["REVOKED_KEY", "DELETED_KEY", "UNBOUND_KEY", "KEPT_KEY"]
        .iter()
        .enumerate()
    {
        let s = h
            .store
            .create_secret(&ns, &format!("s{i}"), &value(OTHER_1), false, "cli:alice")
            .await
            .unwrap();
        let b = h
            .store
            .bind_secret(&s.secret_id, "SCORER_JOB", "judge", env, "cli:alice")
            .await
            .unwrap();
        ids.push(s.secret_id);
        bindings.push(b.binding_id);
    }
    // The namespace holds an object this (label-scoped) operator
    // reconciles, so it is one the sweep serves.
    h.create_secret("mirror", json!({ "secretName": "s3" }))
        .await;
    ready_id(&h, "mirror").await;
    h.put_copy(
        "job-x",
        "judge",
        &[
            ("REVOKED_KEY", &ids[0], OTHER_1),
            ("DELETED_KEY", &ids[1], OTHER_1),
            ("UNBOUND_KEY", &ids[2], OTHER_1),
            ("KEPT_KEY", &ids[3], OTHER_1),
        ],
        true,
    )
    .await;
    // A sweep with every key live changes nothing.
    tokio::time::sleep(TEST_SWEEP_EVERY * 3).await;
    assert_eq!(h.copy("job-x").await.unwrap().0.len(), 4);

    let started = Instant::now();
    h.store.revoke_secret(&ids[0], "cli:alice").await.unwrap();
    h.store.delete_secret(&ids[1], "cli:alice").await.unwrap();
    h.store
        .unbind_secret(&bindings[2], "cli:alice")
        .await
        .unwrap();
    h.store
        .update_secret(&ids[3], &value(OTHER_2), "cli:alice")
        .await
        .unwrap();
    let (data, annotation) = eventually(SETTLE, "the sweep to scrub job-x", || async {
        h.copy("job-x").await.filter(|(d, _)| d.len() == 1)
    })
    .await;
    let latency = started.elapsed();
    assert_eq!(
        data,
        map(&[("KEPT_KEY", OTHER_1)]),
        "update: old version kept"
    );
    assert_eq!(
        serde_json::from_str::<BTreeMap<String, String>>(&annotation).unwrap(),
        map(&[("KEPT_KEY", &ids[3])])
    );
    assert!(
        latency < TEST_SWEEP_EVERY * 10,
        "took {latency:?} with a {TEST_SWEEP_EVERY:?} sweep"
    );
    for (id, why) in [
        (&ids[0], "REVOKED_KEY (revoked)"),
        (&ids[1], "DELETED_KEY (deleted)"),
        (&ids[2], "UNBOUND_KEY (unbound)"),
    ] {
        let audit = h.audit_of(id).await;
        assert!(
            scrubs(&audit)
                .iter()
                .any(|e| e.detail.as_deref().unwrap_or_default().contains(why)),
            "{why}: {audit:?}"
        );
    }

    // The last key revoked: the Secret goes.
    h.store.revoke_secret(&ids[3], "cli:alice").await.unwrap();
    eventually(SETTLE, "job-x to be deleted", || async {
        h.copy("job-x").await.is_none().then_some(())
    })
    .await;
    h.cleanup().await;
}
