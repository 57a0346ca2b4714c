//! The per-Job Kubernetes Secret `<job>-mlflow-secrets` that carries the
//! decrypted values to the Job's pods (docs/design.md §8, `secret-env` and
//! `secret-file` modes).
//!
//! Created by a Job's first pod and replaced whole by later ones, so a
//! binding removed since the last pod of the Job disappears from the Secret
//! too. The Secret is owned by the Job, so Kubernetes' garbage collector
//! deletes it with the Job.
//!
//! Only our own Secret is ever replaced (docs/design.md §8, "The per-Job Secret is
//! ours"): one labelled `app.kubernetes.io/managed-by: mlflow-secrets` with
//! an owner reference to the same Job uid, and only at the resourceVersion
//! we read. Any other Secret of that name fails the write, naming it, and
//! stays as it is.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use zeroize::Zeroize;

use crate::k8s::{ANNOTATION_RESOURCE_ID, ANNOTATION_RESOURCE_TYPE, FIELD_MANAGER};

/// Why the per-Job Secret was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A Secret of that name exists and is not ours for this Job: it is
    /// left untouched.
    #[error(
        "Secret {namespace}/{name} exists and is not managed by mlflow-secrets for this Job ({why}); it was not modified"
    )]
    NotOurs {
        namespace: String,
        name: String,
        why: String,
    },
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Whether `existing` is a per-Job Secret we wrote for the Job `job_uid`:
/// our managed-by label and an owner reference with that uid. `Err` says
/// what is missing.
pub fn owned_by_us(existing: &Secret, job_uid: &str) -> Result<(), String> {
    let labelled = existing
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY);
    if !labelled {
        return Err(format!("no label {LABEL_MANAGED_BY}={MANAGED_BY}"));
    }
    let owned = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "Job" && r.uid == job_uid);
    if !owned {
        return Err(format!("no owner reference to the Job with uid {job_uid}"));
    }
    Ok(())
}
use crate::value::SecretValue;

/// Suffix of the per-Job Secret's name (docs/design.md §8).
pub const SECRET_SUFFIX: &str = "-mlflow-secrets";
/// Label on every per-Job Secret, so an operator can find them all.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`] on per-Job Secrets (docs/design.md §8).
pub const MANAGED_BY: &str = "mlflow-secrets";
/// Label naming the Job a per-Job Secret belongs to.
pub const LABEL_JOB: &str = "secrets.mlflow.org/job";
/// Label `"true"` on every per-Job Secret the webhook wrote (docs/design.md §8,
/// "Revocation reaches every copy"): the revocation sweep lists Secrets by
/// this label, so it never has to scan every Secret of the cluster.
pub const LABEL_MANAGED: &str = "secrets.mlflow.org/managed";
/// Annotation on every per-Job Secret: which stored secret each data key
/// holds, as compact JSON `{"<data key>":"<secret id>",...}` (keys are the
/// binding names, sorted). The revocation sweep reads it to find the keys
/// to delete when a secret is revoked or deleted or a binding removed; it
/// names ids only, never a value. Read it with [`parse_secret_ids`].
pub const ANNOTATION_SECRET_IDS: &str = "secrets.mlflow.org/secret-ids";

/// The [`ANNOTATION_SECRET_IDS`] value for `key -> secret id`.
pub fn secret_ids_annotation(ids: &BTreeMap<String, String>) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "{}".into())
}

/// Parse an [`ANNOTATION_SECRET_IDS`] value: `data key -> secret id`. An
/// annotation that is not such an object is an error naming the problem
/// (someone edited the Secret); the caller decides what to do with it.
pub fn parse_secret_ids(annotation: &str) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_str(annotation).map_err(|e| {
        format!(
            "annotation {ANNOTATION_SECRET_IDS} is not a JSON object of data key to secret id: {e}"
        )
    })
}

/// `<job-name>-mlflow-secrets`.
pub fn secret_name(job_name: &str) -> String {
    format!("{job_name}{SECRET_SUFFIX}")
}

/// The Job that owns a pod: its controller owner reference of kind Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwningJob {
    pub name: String,
    pub uid: String,
    pub api_version: String,
}

impl OwningJob {
    /// The pod's controlling Job, if any. Only a `controller: true`
    /// reference counts: that is the Job that created the pod.
    pub fn of(refs: Option<&[OwnerReference]>) -> Option<Self> {
        refs?
            .iter()
            .find(|r| {
                r.kind == "Job" && r.api_version.starts_with("batch/") && r.controller == Some(true)
            })
            .map(|r| Self {
                name: r.name.clone(),
                uid: r.uid.clone(),
                api_version: r.api_version.clone(),
            })
    }
}

/// The bytes a value becomes in the Secret (and so in the env var or
/// file): a string as it is, an object of strings as its compact JSON.
fn value_bytes(v: &SecretValue) -> Vec<u8> {
    use secrecy::ExposeSecret;
    v.injected_text().expose_secret().as_bytes().to_vec()
}

/// The per-Job Secret's `data`: binding name to the bytes injected under
/// it. `run` injects the same strings (`ResolvedResource::from_bound`);
/// tests/cli_run.rs checks the two agree.
pub fn secret_data(values: &BTreeMap<String, SecretValue>) -> BTreeMap<String, ByteString> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(value_bytes(v))))
        .collect()
}

/// Create or update the per-Job Secret in `namespace` with `values`.
///
/// The values pass through a `Secret` object and the request body; our own
/// copies are wiped afterwards (the HTTP client's buffers are beyond reach).
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    job: &OwningJob,
    resource_type: &str,
    resource_id: &str,
    values: &BTreeMap<String, SecretValue>,
    secret_ids: &BTreeMap<String, String>,
) -> Result<String, WriteError> {
    let name = secret_name(&job.name);
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                (LABEL_JOB.to_string(), job.name.clone()),
                (LABEL_MANAGED.to_string(), "true".to_string()),
            ])),
            annotations: Some(BTreeMap::from([
                (
                    ANNOTATION_RESOURCE_TYPE.to_string(),
                    resource_type.to_string(),
                ),
                (ANNOTATION_RESOURCE_ID.to_string(), resource_id.to_string()),
                (
                    ANNOTATION_SECRET_IDS.to_string(),
                    secret_ids_annotation(secret_ids),
                ),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: job.api_version.clone(),
                kind: "Job".into(),
                name: job.name.clone(),
                uid: job.uid.clone(),
                controller: None,
                // The Job may be deleted without waiting for the Secret.
                block_owner_deletion: Some(false),
            }]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(secret_data(values)),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let r = write(&api, namespace, &name, &mut secret, &job.uid).await;
    wipe(&mut secret);
    // The answer echoes the data back: wipe it before dropping.
    let mut written = r?;
    wipe(&mut written);
    Ok(name)
}

/// Create the Secret; if it exists, replace it whole — but only when it is
/// ours for this Job (another pod of the same Job wrote it), and only at
/// the resourceVersion just read, so a Secret swapped in meanwhile is not
/// overwritten either. A Job's first pod is the common case (scorer Jobs
/// run one pod), and a plain create costs the API server about half a
/// server-side apply (docs/webhook.md). The replace is complete, so the
/// Secret holds exactly the current bindings: a key unbound since the
/// previous pod does not linger.
async fn write(
    api: &Api<Secret>,
    namespace: &str,
    name: &str,
    secret: &mut Secret,
    job_uid: &str,
) -> Result<Secret, WriteError> {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    match api.create(&pp, secret).await {
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        other => return Ok(other?),
    }
    let mut existing = api.get(name).await?;
    let verdict = owned_by_us(&existing, job_uid);
    let rv = existing.metadata.resource_version.take();
    wipe(&mut existing);
    verdict.map_err(|why| WriteError::NotOurs {
        namespace: namespace.to_string(),
        name: name.to_string(),
        why,
    })?;
    secret.metadata.resource_version = rv;
    Ok(api.replace(name, &pp, secret).await?)
}

fn wipe(s: &mut Secret) {
    if let Some(data) = s.data.as_mut() {
        for v in data.values_mut() {
            v.0.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oref(kind: &str, api: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: api.into(),
            kind: kind.into(),
            name: "n".into(),
            uid: "u".into(),
            controller,
            block_owner_deletion: None,
        }
    }

    #[test]
    fn owning_job_needs_a_controller_job_reference() {
        assert_eq!(OwningJob::of(None), None);
        assert_eq!(OwningJob::of(Some(&[])), None);
        assert_eq!(OwningJob::of(Some(&[oref("Job", "batch/v1", None)])), None);
        assert_eq!(
            OwningJob::of(Some(&[oref("ReplicaSet", "apps/v1", Some(true))])),
            None
        );
        assert_eq!(
            OwningJob::of(Some(&[oref("Job", "example.com/v1", Some(true))])),
            None
        );
        let j = OwningJob::of(Some(&[
            oref("ConfigMap", "v1", None),
            oref("Job", "batch/v1", Some(true)),
        ]))
        .unwrap();
        assert_eq!((j.name.as_str(), j.uid.as_str()), ("n", "u"));
        assert_eq!(secret_name("train"), "train-mlflow-secrets");
    }

    #[test]
    fn values_become_raw_bytes_or_compact_json() {
        let s = SecretValue::from_string("sk-abc".into()).unwrap();
        assert_eq!(value_bytes(&s), b"sk-abc");
        let o = SecretValue::from_json_text(r#"{"user":"u","password":"p"}"#).unwrap();
        assert_eq!(value_bytes(&o), br#"{"password":"p","user":"u"}"#);
    }

    #[test]
    fn only_our_secret_for_the_same_job_is_ours() {
        let secret = |labels: serde_json::Value, uid: &str| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "j-mlflow-secrets", "labels": labels,
                  "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": uid}]}
            }))
            .unwrap()
        };
        let ours = serde_json::json!({LABEL_MANAGED_BY: MANAGED_BY});
        owned_by_us(&secret(ours.clone(), "u1"), "u1").unwrap();
        let e = owned_by_us(&secret(ours, "u2"), "u1").unwrap_err();
        assert!(e.contains("uid u1"), "{e}");
        let e = owned_by_us(&secret(serde_json::json!({}), "u1"), "u1").unwrap_err();
        assert!(e.contains(LABEL_MANAGED_BY), "{e}");
        let other = serde_json::json!({LABEL_MANAGED_BY: "helm"});
        assert!(owned_by_us(&secret(other, "u1"), "u1").is_err());
    }

    #[test]
    fn secret_ids_annotation_round_trips_and_rejects_junk() {
        let ids = BTreeMap::from([
            ("OPENAI_API_KEY".to_string(), "id-1".to_string()),
            ("B".to_string(), "id-2".to_string()),
        ]);
        let text = secret_ids_annotation(&ids);
        assert_eq!(text, r#"{"B":"id-2","OPENAI_API_KEY":"id-1"}"#);
        assert_eq!(parse_secret_ids(&text).unwrap(), ids);
        let e = parse_secret_ids("id-1,id-2").unwrap_err();
        assert!(e.contains(ANNOTATION_SECRET_IDS), "{e}");
        assert!(parse_secret_ids(r#"{"A":1}"#).is_err());
    }
}
