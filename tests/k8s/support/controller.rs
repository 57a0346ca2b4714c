//! A harness for the controller tests: the CRDs applied to the shared
//! control plane, a namespace, a real `SqlStore` on a fresh SQLite file with
//! a real keystore, and `controller::run` in-process, limited by a label
//! selector to this test's objects (other tests, and other operators, share
//! the control plane).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use mlflow_secrets::k8s::controller::{self, Context};
use mlflow_secrets::k8s::crd::{Condition, MlflowSecret, MlflowSecretBinding};
use mlflow_secrets::k8s::metrics::OperatorMetrics;
use mlflow_secrets::k8s::scope::WatchScope;
use mlflow_secrets::store::{SecretsStore as _, SqlStore};
use serde_json::{Value, json};
use sqlx::Row;

use super::{TestEnv, TestNamespace, eventually, wait_crd_established};
use testkit::{Backend, TestDb};

/// Field manager of the test's own writes (CRDs, objects).
pub const TEST_MANAGER: &str = "mlflow-secrets-test-controller";
/// Label that scopes an in-process controller to one test's objects.
pub const SCOPE_LABEL: &str = "mlflow-secrets.test/controller";
/// The source Secret's consent to `valueFrom` (docs/design.md §8).
pub const IMPORTABLE: &str = "secrets.mlflow.org/importable";
/// Period of the revocation sweep in these tests (the operator's is 30 s).
pub const TEST_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How long a test waits for the controller to reach a state.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Apply the generated CRDs (server-side apply, idempotent) and wait until
/// the apiserver serves them.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [MlflowSecret::crd(), MlflowSecretBinding::crd()] {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        wait_crd_established(client, &name, SETTLE).await;
    }
}

/// One test's world.
pub struct Harness {
    pub ns: TestNamespace,
    pub client: Client,
    pub db: TestDb,
    pub store: Arc<SqlStore>,
    pub metrics: Arc<OperatorMetrics>,
    task: Option<AbortOnDrop>,
    sweep_every: Duration,
}

/// The controllers' task, stopped when the harness goes (also on panic).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Harness {
    /// CRDs, a namespace, a store, and the controllers running, sweeping
    /// every [`TEST_SWEEP_EVERY`].
    pub async fn start(prefix: &str) -> Self {
        Self::start_with_sweep(prefix, TEST_SWEEP_EVERY).await
    }

    /// [`Harness::start`] with another revocation sweep period (an hour
    /// shows what the reconcile does on its own).
    pub async fn start_with_sweep(prefix: &str, sweep_every: Duration) -> Self {
        let env = TestEnv::get().await;
        let client = env.client().await;
        install_crds(&client).await;
        let ns = env.namespace(prefix).await;
        let db = TestDb::new(Backend::Sqlite).await.expect("SQLite store");
        let store = Arc::new(db.store.clone());
        let metrics = Arc::new(OperatorMetrics::new());
        let mut h = Self {
            ns,
            client,
            db,
            store,
            metrics,
            task: None,
            sweep_every,
        };
        h.start_controllers().await;
        h
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// (Re)start the in-process controllers and wait for their caches.
    pub async fn start_controllers(&mut self) {
        self.stop_controllers();
        let ctx = Context::new(
            self.client.clone(),
            self.store.clone(),
            self.metrics.clone(),
            "test-controller".into(),
        )
        .with_label_selector(format!("{SCOPE_LABEL}={}", self.ns.name()))
        // Only this test's namespace: the sweep must not touch (or even
        // list) other tests' per-Job Secrets, which their own store knows
        // nothing about.
        .with_scope(WatchScope::Namespaces(vec![self.ns.name().to_string()]))
        .with_sweep_every(self.sweep_every);
        let synced = Arc::new(AtomicBool::new(false));
        self.task = Some(AbortOnDrop(tokio::spawn(controller::run(
            Arc::new(ctx),
            synced.clone(),
        ))));
        eventually(SETTLE, "the controller caches to sync", || {
            let s = synced.clone();
            async move { s.load(Ordering::SeqCst).then_some(()) }
        })
        .await;
    }

    pub fn stop_controllers(&mut self) {
        self.task = None;
    }

    pub fn secrets(&self) -> Api<MlflowSecret> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    pub fn bindings(&self) -> Api<MlflowSecretBinding> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    pub fn kube_secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), self.ns.name())
    }

    fn labels(&self) -> Value {
        json!({ SCOPE_LABEL: self.ns.name() })
    }

    /// Create a Kubernetes Secret with one string key, annotated as
    /// importable (the source's consent to `valueFrom`, docs/design.md §8).
    pub async fn put_source(&self, name: &str, key: &str, value: &str) {
        self.put_source_with(name, key, value, true).await;
    }

    /// Server-side apply a Kubernetes Secret with one string key, with or
    /// without the importable annotation (this test's field manager owns
    /// the annotation, so applying without it removes it).
    pub async fn put_source_with(&self, name: &str, key: &str, value: &str, importable: bool) {
        let annotations = if importable {
            json!({ IMPORTABLE: "true" })
        } else {
            json!({})
        };
        let s: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "annotations": annotations },
            "stringData": { key: value },
        }))
        .unwrap();
        self.kube_secrets()
            .patch(
                name,
                &PatchParams::apply(TEST_MANAGER).force(),
                &Patch::Apply(&s),
            )
            .await
            .unwrap_or_else(|e| panic!("writing Secret {name}: {e}"));
    }

    /// A per-Job Secret `<job>-mlflow-secrets` as the webhook writes it
    /// (docs/design.md §8): labelled `secrets.mlflow.org/managed: "true"`, annotated
    /// with the resource and `secrets.mlflow.org/secret-ids`, holding
    /// `entries` (data key, secret id, value). `managed: false` leaves the
    /// label out: a look-alike the operator must never touch.
    pub async fn put_copy(
        &self,
        job: &str,
        rid: &str,
        entries: &[(&str, &str, &str)],
        managed: bool,
    ) {
        let name = format!("{job}-mlflow-secrets");
        let ids: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(k, id, _)| (k.to_string(), json!(id)))
            .collect();
        let data: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(k, _, v)| (k.to_string(), json!(v)))
            .collect();
        let mut labels = json!({ "app.kubernetes.io/managed-by": "mlflow-secrets-operator", "secrets.mlflow.org/job": job });
        if managed {
            labels["secrets.mlflow.org/managed"] = json!("true");
        }
        let s: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    "secrets.mlflow.org/resource-type": "SCORER_JOB",
                    "secrets.mlflow.org/resource-id": rid,
                    "secrets.mlflow.org/secret-ids": Value::Object(ids).to_string(),
                },
            },
            "stringData": Value::Object(data),
        }))
        .unwrap();
        self.kube_secrets()
            .create(&PostParams::default(), &s)
            .await
            .unwrap_or_else(|e| panic!("creating Secret {name}: {e}"));
    }

    /// A per-Job Secret's data as text (key -> value), and its secret-ids
    /// annotation; `None` when it does not exist.
    pub async fn copy(
        &self,
        job: &str,
    ) -> Option<(std::collections::BTreeMap<String, String>, String)> {
        let s = self
            .kube_secrets()
            .get_opt(&format!("{job}-mlflow-secrets"))
            .await
            .unwrap()?;
        let data = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect();
        let ids = s
            .metadata
            .annotations
            .unwrap_or_default()
            .remove("secrets.mlflow.org/secret-ids")
            .unwrap_or_default();
        Some((data, ids))
    }

    /// The store's audit rows of one secret.
    pub async fn audit_of(&self, secret_id: &str) -> Vec<mlflow_secrets::model::AuditEntry> {
        use mlflow_secrets::store::SecretsStore as _;
        self.store
            .list_audit(&mlflow_secrets::store::AuditFilter {
                secret_id: Some(secret_id.to_string()),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    /// Create an MlflowSecret (labelled for this test's controller).
    pub async fn create_secret(&self, name: &str, spec: Value) -> MlflowSecret {
        let obj: MlflowSecret = serde_json::from_value(json!({
            "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecret",
            "metadata": { "name": name, "labels": self.labels() },
            "spec": spec,
        }))
        .unwrap();
        self.secrets()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating MlflowSecret {name}: {e}"))
    }

    /// Create an MlflowSecretBinding (labelled for this test's controller).
    pub async fn create_binding(&self, name: &str, spec: Value) -> MlflowSecretBinding {
        let obj = self.binding_object(name, spec);
        self.bindings()
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating MlflowSecretBinding {name}: {e}"))
    }

    pub fn binding_object(&self, name: &str, spec: Value) -> MlflowSecretBinding {
        serde_json::from_value(json!({
            "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecretBinding",
            "metadata": { "name": name, "labels": self.labels() },
            "spec": spec,
        }))
        .unwrap()
    }

    /// Merge-patch an MlflowSecret's spec.
    pub async fn patch_secret_spec(&self, name: &str, spec: Value) {
        self.secrets()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("patching MlflowSecret {name}: {e}"));
    }

    /// Touch an object so that its controller reconciles it now.
    pub async fn poke_secret(&self, name: &str) {
        let stamp = format!("{:?}", std::time::Instant::now());
        self.secrets()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "annotations": { "test/poke": stamp } } })),
            )
            .await
            .unwrap();
    }

    pub async fn delete_secret(&self, name: &str) {
        self.secrets()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting MlflowSecret {name}: {e}"));
    }

    /// Wait until the MlflowSecret satisfies `ok`.
    pub async fn wait_secret(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&MlflowSecret) -> bool,
    ) -> MlflowSecret {
        self.wait_for(self.secrets(), "MlflowSecret", name, what, ok)
            .await
    }

    /// Wait until the binding satisfies `ok`.
    pub async fn wait_binding(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&MlflowSecretBinding) -> bool,
    ) -> MlflowSecretBinding {
        self.wait_for(self.bindings(), "MlflowSecretBinding", name, what, ok)
            .await
    }

    async fn wait_for<K>(
        &self,
        api: Api<K>,
        kind: &str,
        name: &str,
        what: &str,
        ok: impl Fn(&K) -> bool,
    ) -> K
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let what = format!("{kind} {}/{name}: {what}", self.ns.name());
        eventually(SETTLE, &what, || {
            let api = api.clone();
            let name = name.to_string();
            let ok = &ok;
            async move { api.get_opt(&name).await.ok().flatten().filter(|o| ok(o)) }
        })
        .await
    }

    /// Wait until an object is gone (its finalizer ran).
    pub async fn wait_gone<K>(&self, api: &Api<K>, name: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let what = format!("{name} to be deleted");
        eventually(SETTLE, &what, || {
            let api = api.clone();
            let name = name.to_string();
            async move {
                match api.get_opt(&name).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        })
        .await
    }

    /// The plaintext the store decrypts for a string secret (an audited
    /// read by `test`).
    pub async fn plain_value(&self, secret_id: &str) -> String {
        plain(
            &self
                .store
                .get_secret_value(secret_id, "test")
                .await
                .unwrap(),
        )
    }

    /// The raw `wrapped_dek` and `kek_version` columns of a row.
    pub async fn raw_row(&self, secret_id: &str) -> (Vec<u8>, i64) {
        let mut conn = self.db.raw().await;
        let row = sqlx::query("SELECT wrapped_dek, kek_version FROM secrets WHERE secret_id = ?")
            .bind(secret_id.to_string())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (
            row.try_get("wrapped_dek").unwrap(),
            row.try_get("kek_version").unwrap(),
        )
    }

    /// Every Event of the namespace, as (type, reason, regarding name, note).
    pub async fn events(&self) -> Vec<(String, String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), self.ns.name());
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.regarding.and_then(|r| r.name).unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Everything the operator wrote to Kubernetes in this namespace
    /// (MlflowSecrets, bindings, Events) as one JSON text.
    pub async fn written_text(&self) -> String {
        let s = self.secrets().list(&ListParams::default()).await.unwrap();
        let b = self.bindings().list(&ListParams::default()).await.unwrap();
        let e: Api<Event> = Api::namespaced(self.client.clone(), self.ns.name());
        let e = e.list(&ListParams::default()).await.unwrap();
        format!(
            "{}\n{}\n{}",
            serde_json::to_string(&s).unwrap(),
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&e).unwrap()
        )
    }

    pub async fn cleanup(mut self) {
        self.stop_controllers();
        self.ns.cleanup().await;
    }
}

/// A string value's plaintext (for asserting what the store holds).
pub fn plain(v: &mlflow_secrets::value::SecretValue) -> String {
    use secrecy::ExposeSecret as _;
    match v {
        mlflow_secrets::value::SecretValue::String(s) => s.expose_secret().to_string(),
        mlflow_secrets::value::SecretValue::Object(_) => panic!("expected a string value"),
    }
}

/// `spec.valueFrom` importing key `key` of Kubernetes Secret `secret`.
pub fn value_from(secret: &str, key: &str) -> Value {
    json!({ "secretKeyRef": { "name": secret, "key": key } })
}

pub fn cond<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the object's Ready condition has this status and reason.
pub fn secret_ready_is(o: &MlflowSecret, status: &str, reason: &str) -> bool {
    o.status
        .as_ref()
        .and_then(|s| cond(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == status && c.reason == reason)
}

pub fn binding_ready_is(o: &MlflowSecretBinding, status: &str, reason: &str) -> bool {
    o.status
        .as_ref()
        .and_then(|s| cond(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == status && c.reason == reason)
}
