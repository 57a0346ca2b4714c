//! End to end: `mlflow-secrets operator` as a process against the real
//! control plane (kube-apiserver, etcd, kube-controller-manager), a real
//! SQLite store and a real keystore.
//!
//! Covered here: import and re-import from a Kubernetes Secret, injection
//! into a Job's Pod through the webhook (and the garbage collection of the
//! per-Job Secret), deny and namespace isolation, deletion with both
//! policies, the Conflict rule, and the keystore hot reload through a real
//! kubelet-style `..data` symlink swap. Failover and faults are in
//! tests/k8s/operator_faults.rs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support;
use crate::support::operator::{
    OperatorProc, OperatorSetup, apply_secret_and_import, condition, crd_api, install_crds,
    scorer_job, wait_condition,
};
use crate::support::{TestEnv, TestNamespace, eventually, unique_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use mlflow_secrets::store::{SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use secrecy::ExposeSecret;
use sqlx::{Connection, Row};
use testkit::{PASSPHRASE_V1, PASSPHRASE_V2, TestKeystore};

const READY: Duration = Duration::from_secs(60);

/// One test's world: a workload namespace, an operator namespace, a
/// keystore, an SQLite store and one operator process.
struct World {
    env: &'static TestEnv,
    ns: TestNamespace,
    op_ns: TestNamespace,
    setup: OperatorSetup,
    op: OperatorProc,
    ks: TestKeystore,
    store_uri: String,
    _tmp: tempfile::TempDir,
}

impl World {
    async fn new(prefix: &str) -> Self {
        let env = TestEnv::get().await;
        install_crds(env).await;
        let ns = env.namespace(prefix).await;
        let op_ns = env.namespace(&format!("{prefix}-op")).await;
        let tmp = tempfile::tempdir().unwrap();
        let ks = TestKeystore::new();
        let store_uri = format!("sqlite://{}", tmp.path().join("secrets.db").display());
        let setup = OperatorSetup::for_keystore(store_uri.clone(), &ks, op_ns.name(), tmp.path());
        setup.select(env, &ns).await;
        let op = setup.start(env, "replica-a").await;
        op.wait_ready(READY).await;
        Self {
            env,
            ns,
            op_ns,
            setup,
            op,
            ks,
            store_uri,
            _tmp: tmp,
        }
    }

    async fn client(&self) -> kube::Client {
        self.env.client().await
    }

    async fn store(&self) -> SqlStore {
        SqlStore::connect(&self.store_uri, self.ks.handle())
            .await
            .unwrap()
    }

    async fn secrets(&self) -> Api<DynamicObject> {
        crd_api(self.client().await, self.ns.name(), "MlflowSecret")
    }

    async fn bindings(&self) -> Api<DynamicObject> {
        crd_api(self.client().await, self.ns.name(), "MlflowSecretBinding")
    }

    async fn k8s_secret(&self, name: &str, key: &str, value: &str) {
        let api: Api<Secret> = Api::namespaced(self.client().await, self.ns.name());
        let s: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            // The source consents to import (docs/design.md §8).
            "metadata": { "name": name, "annotations": { "secrets.mlflow.org/importable": "true" } },
            "stringData": { key: value }
        }))
        .unwrap();
        api.patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&s),
        )
        .await
        .unwrap();
    }

    async fn apply(
        &self,
        api: &Api<DynamicObject>,
        kind: &str,
        name: &str,
        spec: serde_json::Value,
    ) {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": kind,
            "metadata": { "name": name, "labels": self.setup.labels() },
            "spec": spec
        }))
        .unwrap();
        api.patch(
            name,
            &PatchParams::apply("e2e-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }

    /// An imported MlflowSecret, Ready.
    async fn imported(&self, name: &str, value: &str, extra: serde_json::Value) -> DynamicObject {
        self.k8s_secret(&format!("{name}-src"), "api-key", value)
            .await;
        let mut spec = serde_json::json!({
            "valueFrom": { "secretKeyRef": { "name": format!("{name}-src"), "key": "api-key" } }
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let api = self.secrets().await;
        self.apply(&api, "MlflowSecret", name, spec).await;
        wait_condition(&api, name, "Ready", "True", READY).await
    }

    async fn bound(
        &self,
        name: &str,
        secret: &str,
        resource_id: &str,
        binding: &str,
    ) -> DynamicObject {
        let api = self.bindings().await;
        self.apply(
            &api,
            "MlflowSecretBinding",
            name,
            serde_json::json!({
                "secretRef": { "name": secret },
                "resourceId": resource_id,
                "bindingName": binding
            }),
        )
        .await;
        wait_condition(&api, name, "Ready", "True", READY).await
    }

    async fn finish(self) {
        self.setup.cleanup(self.env).await;
        drop(self.op);
        self.ns.cleanup().await;
        self.op_ns.cleanup().await;
    }
}

async fn create_job(client: &kube::Client, ns: &str, job: &Job) -> Job {
    Api::<Job>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), job)
        .await
        .unwrap()
}

/// The first Pod of Job `job`, once kube-controller-manager made it.
async fn job_pod(client: &kube::Client, ns: &str, job: &str, timeout: Duration) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(timeout, &format!("a pod of job {job}"), || {
        let pods = pods.clone();
        let sel = format!("job-name={job}");
        async move {
            let l = pods.list(&ListParams::default().labels(&sel)).await.ok()?;
            l.items.into_iter().next()
        }
    })
    .await
}

/// The events of Job `job`, as "reason: message" lines.
async fn job_events(client: &kube::Client, ns: &str, job: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={job}")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.message.unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn wrapped_dek(store_uri: &str, secret_id: &str) -> Vec<u8> {
    let mut c = sqlx::AnyConnection::connect(store_uri).await.unwrap();
    let row = sqlx::query("SELECT wrapped_dek FROM secrets WHERE secret_id = ?")
        .bind(secret_id.to_string())
        .fetch_one(&mut c)
        .await
        .unwrap();
    row.get("wrapped_dek")
}

fn as_string(v: SecretValue) -> String {
    match v {
        SecretValue::String(s) => s.expose_secret().to_string(),
        other => panic!("expected a string value, got {other:?}"),
    }
}

fn status_str(o: &DynamicObject, field: &str) -> String {
    o.data["status"][field]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| o.data["status"][field].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_reimport_from_a_kubernetes_secret() {
    support::skip_if_off!();
    sqlx::any::install_default_drivers();
    let w = World::new("e2e-import").await;
    let canary = format!("sk-import-canary-{}", unique_name("v"));
    let obj = w
        .imported("openai-key", &canary, serde_json::json!({}))
        .await;
    let id = status_str(&obj, "secretId");
    assert_eq!(status_str(&obj, "state"), "ACTIVE");
    assert_eq!(obj.data["status"]["kekVersion"], 1);
    assert!(
        !obj.data.to_string().contains(&canary),
        "status must not hold the value"
    );

    let store = w.store().await;
    let row = store
        .get_secret_by_name(w.ns.name(), "openai-key")
        .await
        .unwrap();
    assert_eq!(row.secret_id, id);
    let v = store.get_secret_value(&id, "e2e-test").await.unwrap();
    assert_eq!(as_string(v), canary);
    let dek_before = wrapped_dek(&w.store_uri, &id).await;

    // Change the source Secret: the row is re-encrypted with a new DEK.
    let canary2 = format!("sk-import-canary-2-{}", unique_name("v"));
    w.k8s_secret("openai-key-src", "api-key", &canary2).await;
    eventually(READY, "the re-imported value", || {
        let store = store.clone();
        let id = id.clone();
        let want = canary2.clone();
        async move {
            let v = store.get_secret_value(&id, "e2e-test").await.ok()?;
            (as_string(v) == want).then_some(())
        }
    })
    .await;
    let dek_after = wrapped_dek(&w.store_uri, &id).await;
    assert_ne!(dek_before, dek_after, "a new value must get a new DEK");

    let logs = w.op.logs();
    assert!(
        !logs.contains(&canary) && !logs.contains(&canary2),
        "value in operator log"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_isolation_deny_and_garbage_collection() {
    support::skip_if_off!();
    sqlx::any::install_default_drivers();
    let w = World::new("e2e-inject").await;
    let client = w.client().await;
    let canary = format!("sk-inject-canary-{}", unique_name("v"));
    w.imported("judge-key", &canary, serde_json::json!({}))
        .await;
    let b = w
        .bound("judge-binding", "judge-key", "job-42", "OPENAI_API_KEY")
        .await;
    assert!(!status_str(&b, "bindingId").is_empty());

    // A labelled Job: its Pod passes through the webhook.
    let job = create_job(
        &client,
        w.ns.name(),
        &scorer_job("scorer-1", "job-42", true, None),
    )
    .await;
    let pod = job_pod(&client, w.ns.name(), "scorer-1", READY).await;
    let pod_json = serde_json::to_string(&pod).unwrap();
    assert!(!pod_json.contains(&canary), "plaintext in the Pod object");
    let secret_name = "scorer-1-mlflow-secrets";
    for c in &pod.spec.as_ref().unwrap().containers {
        let env = c.env.clone().unwrap_or_default();
        let e = env
            .iter()
            .find(|e| e.name == "OPENAI_API_KEY")
            .unwrap_or_else(|| panic!("container {} not injected: {pod_json}", c.name));
        let r = support::secret_key_ref(e);
        assert_eq!(r.name, secret_name);
        assert_eq!(r.key, "OPENAI_API_KEY");
        assert!(e.value.is_none());
    }
    let sidecar_env = pod.spec.as_ref().unwrap().containers[1]
        .env
        .clone()
        .unwrap();
    assert!(
        sidecar_env.iter().any(|e| e.name == "EXISTING"),
        "existing env kept"
    );
    let injected = pod.metadata.annotations.clone().unwrap_or_default();
    let note = injected
        .get("secrets.mlflow.org/injected")
        .expect("injected annotation");
    assert!(note.contains("OPENAI_API_KEY"), "{note}");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), w.ns.name());
    let per_job = secrets.get(secret_name).await.unwrap();
    let data = per_job.data.clone().unwrap();
    assert_eq!(data["OPENAI_API_KEY"].0, canary.as_bytes());
    let owner = &per_job.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "Job");
    assert_eq!(owner.name, "scorer-1");
    assert_eq!(Some(owner.uid.clone()), job.metadata.uid);

    // The probes and metrics are on their own port, not the webhook's.
    for path in ["/metrics", "/ready", "/health"] {
        assert_eq!(w.op.status_on(w.op.port, path).await, Some(404), "{path}");
        assert_eq!(w.op.probe(path).await, Some(200), "{path}");
    }

    // Unlabelled pod: never sent to the webhook (no admission counted).
    let before = w.op.body("/metrics").await;
    let count = |m: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with("mlflow_secrets_operator_injections_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    let n_before = count(&before);
    create_job(
        &client,
        w.ns.name(),
        &scorer_job("plain-1", "job-42", false, None),
    )
    .await;
    let plain = job_pod(&client, w.ns.name(), "plain-1", READY).await;
    assert!(
        plain.spec.unwrap().containers[0].env.is_none(),
        "unlabelled pod was changed"
    );
    assert_eq!(
        count(&w.op.body("/metrics").await),
        n_before,
        "unlabelled pod reached the webhook"
    );

    // Another namespace claiming the same resource id gets nothing.
    let other = w.env.namespace("e2e-other").await;
    w.setup.select(w.env, &other).await;
    create_job(
        &client,
        other.name(),
        &scorer_job("thief", "job-42", true, None),
    )
    .await;
    let ev = eventually(READY, "a FailedCreate event on the thief Job", || {
        let client = client.clone();
        let ns = other.name().to_string();
        async move {
            let ev = job_events(&client, &ns, "thief").await;
            ev.iter()
                .any(|e| e.starts_with("FailedCreate"))
                .then_some(ev)
        }
    })
    .await;
    assert!(ev.iter().any(|e| e.contains("job-42")), "{ev:?}");
    let stolen: Api<Secret> = Api::namespaced(client.clone(), other.name());
    assert!(
        stolen
            .get_opt("thief-mlflow-secrets")
            .await
            .unwrap()
            .is_none()
    );
    let other_pods: Api<Pod> = Api::namespaced(client.clone(), other.name());
    assert!(
        other_pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    other.cleanup().await;

    // secret-file mode mounts the per-Job Secret read-only.
    create_job(
        &client,
        w.ns.name(),
        &scorer_job("scorer-file", "job-42", true, Some("secret-file")),
    )
    .await;
    let fpod = job_pod(&client, w.ns.name(), "scorer-file", READY).await;
    let spec = fpod.spec.unwrap();
    let vol = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                == Some("scorer-file-mlflow-secrets")
        })
        .expect("a volume of the per-Job Secret");
    for c in &spec.containers {
        let m = c
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name == vol.name)
            .expect("mounted in every container");
        assert_eq!(m.mount_path, "/var/run/secrets/mlflow");
        assert_eq!(m.read_only, Some(true));
    }

    // Revoked: the next Job's pod is denied and the Job says why.
    let api = w.secrets().await;
    api.patch(
        "judge-key",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": { "revoked": true } })),
    )
    .await
    .unwrap();
    eventually(READY, "state REVOKED", || {
        let api = api.clone();
        async move {
            let o = api.get("judge-key").await.ok()?;
            (o.data["status"]["state"] == "REVOKED").then_some(())
        }
    })
    .await;
    create_job(
        &client,
        w.ns.name(),
        &scorer_job("scorer-2", "job-42", true, None),
    )
    .await;
    let ev = eventually(READY, "a FailedCreate event on scorer-2", || {
        let client = client.clone();
        let ns = w.ns.name().to_string();
        async move {
            let ev = job_events(&client, &ns, "scorer-2").await;
            ev.iter()
                .any(|e| e.starts_with("FailedCreate"))
                .then_some(ev)
        }
    })
    .await;
    assert!(
        ev.iter().any(|e| e.contains("revoked")),
        "the Job's events must give the reason: {ev:?}"
    );

    // Deleting the Job garbage-collects its Secret.
    Api::<Job>::namespaced(client.clone(), w.ns.name())
        .delete("scorer-1", &DeleteParams::background())
        .await
        .unwrap();
    eventually(READY, "the per-Job Secret to be garbage-collected", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get_opt(secret_name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;

    let logs = w.op.logs();
    assert!(!logs.contains(&canary), "value in operator log");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_honours_the_policy_and_bindings_report_it() {
    support::skip_if_off!();
    sqlx::any::install_default_drivers();
    let w = World::new("e2e-delete").await;
    w.imported("gone", "sk-delete-me-0001", serde_json::json!({}))
        .await;
    w.bound("gone-binding", "gone", "job-7", "KEY").await;
    w.imported(
        "kept",
        "sk-keep-me-0002",
        serde_json::json!({ "deletionPolicy": "Retain" }),
    )
    .await;
    let store = w.store().await;
    let gone_id = store
        .get_secret_by_name(w.ns.name(), "gone")
        .await
        .unwrap()
        .secret_id;

    let api = w.secrets().await;
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    api.delete("kept", &DeleteParams::default()).await.unwrap();
    for name in ["gone", "kept"] {
        eventually(READY, &format!("MlflowSecret {name} to be deleted"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }
    assert!(
        store.get_secret_by_name(w.ns.name(), "gone").await.is_err(),
        "Delete policy: row must go"
    );
    let bindings = store
        .list_bindings(&mlflow_secrets::model::BindingFilter {
            secret_id: Some(gone_id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(bindings.items.is_empty(), "bindings cascade");
    store
        .get_secret_by_name(w.ns.name(), "kept")
        .await
        .expect("Retain policy: row stays");

    let b = wait_condition(&w.bindings().await, "gone-binding", "Ready", "False", READY).await;
    let (_, reason, message) = condition(&b, "Ready").unwrap();
    assert!(
        !reason.is_empty() && message.contains("gone"),
        "{reason}: {message}"
    );
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_made_with_the_cli_is_a_conflict_and_left_alone() {
    support::skip_if_off!();
    sqlx::any::install_default_drivers();
    let w = World::new("e2e-conflict").await;
    // The CLI creates the row first, in the namespace's workspace.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mlflow-secrets"))
        .args([
            "--store-uri",
            &w.store_uri,
            "--workspace",
            w.ns.name(),
            "--keystore",
        ])
        .arg(&w.ks.config.dir)
        .args(["create", "taken", "--value-stdin"])
        .env(
            "MLFLOW_SECRETS_KEK_PASSPHRASE_FILE",
            w.ks.config.passphrase.path(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(b"cli-value-0001")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = w.store().await;
    let before = store
        .get_secret_by_name(w.ns.name(), "taken")
        .await
        .unwrap();

    w.k8s_secret("taken-src", "api-key", "operator-value-0002")
        .await;
    let api = w.secrets().await;
    w.apply(
        &api,
        "MlflowSecret",
        "taken",
        serde_json::json!({ "valueFrom": { "secretKeyRef": { "name": "taken-src", "key": "api-key" } } }),
    )
    .await;
    let o = wait_condition(&api, "taken", "Conflict", "True", READY).await;
    let (ready, _, _) = condition(&o, "Ready").unwrap();
    assert_eq!(ready, "False");
    let after = store
        .get_secret_by_name(w.ns.name(), "taken")
        .await
        .unwrap();
    assert_eq!(
        before.last_updated_at, after.last_updated_at,
        "row untouched"
    );
    let v = store
        .get_secret_value(&before.secret_id, "e2e")
        .await
        .unwrap();
    assert_eq!(as_string(v), "cli-value-0001");

    // Deleting the object never deletes a row it did not create.
    api.delete("taken", &DeleteParams::default()).await.unwrap();
    eventually(READY, "MlflowSecret taken to be deleted", || {
        let api = api.clone();
        async move { api.get_opt("taken").await.ok()?.is_none().then_some(()) }
    })
    .await;
    store
        .get_secret_by_name(w.ns.name(), "taken")
        .await
        .expect("the CLI's row survives");
    w.finish().await;
}

/// A kubelet-style projected volume: `<dir>/<file> -> ..data/<file>`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped directory
/// and renames a new `..data` link over the old one (atomic swap).
struct Projected {
    root: PathBuf,
    generation: u32,
}

impl Projected {
    fn new(root: &Path, files: &[(&str, Vec<u8>)]) -> Self {
        std::fs::create_dir_all(root).unwrap();
        let mut p = Self {
            root: root.to_path_buf(),
            generation: 0,
        };
        p.update(files);
        p
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.generation += 1;
        let dir = format!(
            "..2026_11_29_00_00_{:02}.{}",
            self.generation, self.generation
        );
        std::fs::create_dir(self.root.join(&dir)).unwrap();
        for (name, content) in files {
            std::fs::write(self.root.join(&dir).join(name), content).unwrap();
        }
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(&dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
    }
}

fn borrow(v: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<u8>)> {
    v.iter().map(|(n, c)| (n.as_str(), c.clone())).collect()
}

fn dir_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_rotation_through_a_projected_volume_needs_no_restart() {
    support::skip_if_off!();
    sqlx::any::install_default_drivers();
    let env = TestEnv::get().await;
    install_crds(env).await;
    let ns = env.namespace("e2e-rotate").await;
    let op_ns = env.namespace("e2e-rotate-op").await;
    let tmp = tempfile::tempdir().unwrap();

    // The source keystore (v1), as `kek generate` made it; then mirrored
    // into kubelet-style projected directories.
    let ks = TestKeystore::new();
    let ks_files = dir_files(&ks.config.dir);
    let mount = tmp.path().join("etc-mlflow");
    let mut keystore_vol = Projected::new(&mount.join("keystore"), &borrow(&ks_files));
    let pass_files = vec![("v1".to_string(), format!("{PASSPHRASE_V1}\n").into_bytes())];
    let mut pass_vol = Projected::new(&mount.join("kek-passphrase"), &borrow(&pass_files));

    let store_uri = format!("sqlite://{}", tmp.path().join("secrets.db").display());
    let setup = OperatorSetup::new(
        store_uri.clone(),
        &mount.join("keystore"),
        &mount.join("kek-passphrase"),
        op_ns.name(),
        tmp.path(),
    );
    setup.select(env, &ns).await;
    let op = setup.start(env, "replica-rotate").await;
    op.wait_ready(READY).await;

    let client = env.client().await;
    let secrets = crd_api(client.clone(), ns.name(), "MlflowSecret");
    let apply_import = |name: &'static str, value: &'static str| {
        let (setup, client, secrets, ns) = (&setup, &client, &secrets, ns.name());
        async move {
            apply_secret_and_import(setup, false, client, ns, name, value).await;
            wait_condition(secrets, name, "Ready", "True", READY).await
        }
    };
    let before = apply_import("before-rotation", "sk-before-rotation-1").await;
    assert_eq!(before.data["status"]["kekVersion"], 1);

    // Rotate on the "admin's machine", then publish the new Secrets' contents
    // the way the kubelet does: a new timestamped dir and a `..data` swap.
    ks.rotate();
    keystore_vol.update(&borrow(&dir_files(&ks.config.dir)));
    let pass_files = vec![
        ("v1".to_string(), format!("{PASSPHRASE_V1}\n").into_bytes()),
        ("v2".to_string(), format!("{PASSPHRASE_V2}\n").into_bytes()),
    ];
    pass_vol.update(&borrow(&pass_files));

    // The operator notices the swap (polled) and reloads; new writes then
    // use v2, with no restart.
    eventually(READY, "the operator to reload the keystore", || {
        let logs = op.logs();
        async move { logs.contains("reloaded the keystore").then_some(()) }
    })
    .await;
    let after = apply_import("after-rotation", "sk-after-rotation-2").await;
    assert_eq!(after.data["status"]["kekVersion"], 2);
    // The old row still decrypts (v1 stays decrypt-only).
    let store = SqlStore::connect(&store_uri, ks.handle()).await.unwrap();
    let id = status_str(&before, "secretId");
    assert_eq!(
        as_string(store.get_secret_value(&id, "e2e").await.unwrap()),
        "sk-before-rotation-1"
    );
    setup.cleanup(env).await;
    drop(op);
    ns.cleanup().await;
    op_ns.cleanup().await;
}
