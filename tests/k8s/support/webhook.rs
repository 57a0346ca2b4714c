//! A webhook served in-process for one test, registered with the shared
//! control plane through its own URL-based MutatingWebhookConfiguration.
//!
//! Isolation from other tests on the same control plane: the configuration
//! has a test-unique name and a namespaceSelector on a test-unique label,
//! which only this test's namespaces carry. It is deleted when the fixture
//! is dropped.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mlflow_secrets::k8s::metrics::OperatorMetrics;
use mlflow_secrets::k8s::webhook::certs::{self, CertConfig, WebhookCerts};
use mlflow_secrets::k8s::webhook::{WebhookState, router, server};
use mlflow_secrets::model::AuditEntry;
use mlflow_secrets::store::{AuditFilter, DecryptLimits, SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use serde_json::json;
use tokio::task::JoinHandle;

use super::{TestEnv, TestNamespace, eventually, unique_name};
use testkit::{Backend, TestDb};

/// Label that puts a namespace in scope of one test's webhook.
pub const SCOPE_LABEL: &str = "mlflow-secrets.test/webhook";

/// Options of [`Webhook::start`].
pub struct Opts {
    pub deadline: Duration,
    pub limits: Option<DecryptLimits>,
    /// Certificate lifetimes (rotation tests make them short).
    pub validity: Option<(Duration, Duration, Duration)>,
    /// `--webhook-client-ca`: require the API server's client certificate.
    pub client_ca: Option<std::path::PathBuf>,
    /// Decrypts per ServiceAccount per minute.
    pub service_account_limit: Option<u32>,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            limits: None,
            validity: None,
            client_ca: None,
            service_account_limit: None,
        }
    }
}

pub struct Webhook {
    pub env: &'static TestEnv,
    pub client: kube::Client,
    pub db: TestDb,
    pub store: Arc<SqlStore>,
    pub metrics: Arc<OperatorMetrics>,
    pub certs: Arc<WebhookCerts>,
    pub cfg: CertConfig,
    pub scope: String,
    /// The port `/mutate` is served on (127.0.0.1).
    pub port: u16,
    /// The namespace holding the TLS Secret (the operator's namespace),
    /// held so that it lives as long as the webhook (deleted on drop).
    _op_ns: TestNamespace,
    tasks: Vec<JoinHandle<()>>,
}

impl Webhook {
    pub async fn start(opts: Opts) -> Self {
        mlflow_secrets_test_init();
        let env = TestEnv::get().await;
        let client = env.client().await;
        let db = TestDb::new(Backend::Sqlite)
            .await
            .expect("sqlite always runs");
        let mut store = db.store.clone();
        if let Some(l) = opts.limits {
            store = store.with_decrypt_limits(l);
        }
        let store = Arc::new(store);
        let metrics = Arc::new(OperatorMetrics::new());
        let op_ns = env.namespace("wh-op").await;
        let scope = unique_name("scope");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut cfg = CertConfig::new(op_ns.name(), "");
        cfg.secret_name = "webhook-tls".into();
        cfg.extra_sans = vec!["127.0.0.1".into()];
        cfg.webhook_config_name = unique_name("mlflow-secrets-test");
        cfg.webhook_url = Some(format!("https://127.0.0.1:{port}/mutate"));
        cfg.check_interval = Duration::from_millis(500);
        cfg.namespace_selector = Some(LabelSelector {
            match_labels: Some([(SCOPE_LABEL.to_string(), scope.clone())].into()),
            match_expressions: None,
        });
        if let Some((validity, ca_validity, renew_before)) = opts.validity {
            cfg.validity = validity;
            cfg.ca_validity = ca_validity;
            cfg.renew_before = renew_before;
        }
        let certs = certs::bootstrap(client.clone(), &cfg)
            .await
            .expect("bootstrap");
        let state = Arc::new(
            WebhookState::new(
                client.clone(),
                store.clone(),
                metrics.clone(),
                opts.deadline,
            )
            .with_service_account_limit(opts.service_account_limit),
        );
        let app = router(state);
        let client_ca = opts
            .client_ca
            .as_deref()
            .map(|p| server::client_verifier(p).expect("client CA"));
        let tasks = vec![
            tokio::spawn(certs::refresh_loop(
                client.clone(),
                cfg.clone(),
                certs.clone(),
                metrics.clone(),
            )),
            tokio::spawn(certs::leader_loop(
                client.clone(),
                cfg.clone(),
                metrics.clone(),
            )),
            tokio::spawn({
                let certs = certs.clone();
                async move {
                    server::serve(listener, app, certs, client_ca, std::future::pending())
                        .await
                        .expect("webhook server");
                }
            }),
        ];
        Self {
            env,
            client,
            db,
            store,
            metrics,
            certs,
            cfg,
            scope,
            port,
            _op_ns: op_ns,
            tasks,
        }
    }

    /// In this webhook's scope but without the injection opt-in label: the
    /// API server must never call the webhook for it.
    pub async fn namespace_opted_out(&self, prefix: &str) -> TestNamespace {
        let ns = self.env.namespace_opted_out(prefix).await;
        self.scope_in(&ns).await;
        ns
    }

    async fn scope_in(&self, ns: &TestNamespace) {
        let patch = json!({"metadata": {"labels": {SCOPE_LABEL: self.scope}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(ns.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// A namespace in this webhook's scope (and opted in), once the API
    /// server calls the webhook for it and the webhook's namespace watch
    /// knows it (probed with a dryRun pod the webhook must deny for having
    /// no Job).
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let ns = self.env.namespace(prefix).await;
        self.scope_in(&ns).await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns.name());
        let probe = pod_json("probe", "scorer-probe", None, &[]);
        eventually(Duration::from_secs(30), "the webhook to be called", || {
            let pods = pods.clone();
            let probe = probe.clone();
            async move {
                match pods
                    .create(
                        &PostParams {
                            dry_run: true,
                            ..Default::default()
                        },
                        &probe,
                    )
                    .await
                {
                    Err(kube::Error::Api(s)) if s.message.contains("no owning Job") => Some(()),
                    _ => None,
                }
            }
        })
        .await;
        ns
    }

    /// Create a secret in `ns` and bind it to `SCORER_JOB/<rid>` as `binding`.
    /// The audit rows of workspace (namespace) `ns`, oldest first.
    pub async fn audit(&self, ns: &str) -> Vec<AuditEntry> {
        self.store
            .list_audit(&AuditFilter {
                workspace: Some(ns.to_string()),
                max_results: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap()
    }

    pub async fn bind(
        &self,
        ns: &str,
        secret: &str,
        value: &str,
        rid: &str,
        binding: &str,
    ) -> String {
        self.bind_for(ns, secret, value, rid, binding, &[]).await
    }

    /// Admission requests seen for `ns`, by result.
    pub fn count(&self, ns: &str, result: &str) -> u64 {
        self.metrics
            .injections
            .with_label_values(&[ns, result])
            .get()
    }

    pub fn total(&self, ns: &str) -> u64 {
        ["injected", "dry_run", "denied", "skipped", "error"]
            .iter()
            .map(|r| self.count(ns, r))
            .sum()
    }

    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let _ = api
            .delete(&self.cfg.webhook_config_name, &DeleteParams::default())
            .await;
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        // On a panic, still remove the cluster-scoped configuration.
        let env = self.env;
        let name = self.cfg.webhook_config_name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let api: Api<MutatingWebhookConfiguration> = Api::all(env.client().await);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            })
        })
        .join();
    }
}

fn mlflow_secrets_test_init() {
    testkit::init();
}

/// A labelled scorer pod. `owner`: `(job name, job uid)`.
pub fn pod_json(
    name: &str,
    rid: &str,
    owner: Option<(&str, &str)>,
    extra_ann: &[(&str, &str)],
) -> Pod {
    let mut ann = serde_json::Map::new();
    ann.insert("secrets.mlflow.org/resource-id".into(), rid.into());
    for (k, v) in extra_ann {
        ann.insert((*k).into(), (*v).into());
    }
    let owners = owner.map(|(n, uid)| {
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": n, "uid": uid, "controller": true}])
    });
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"secrets.mlflow.org/inject": "true"},
            "annotations": ann,
            "ownerReferences": owners.unwrap_or(json!([])),
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]
        }
    }))
    .unwrap()
}

/// A labelled Job whose pod template carries the injection annotations.
/// `suspend`: no pods are created (tests then create pods themselves).
pub fn job_json(name: &str, rid: &str, extra_ann: &[(&str, &str)], suspend: bool) -> Job {
    let mut ann = serde_json::Map::new();
    ann.insert("secrets.mlflow.org/resource-id".into(), rid.into());
    for (k, v) in extra_ann {
        ann.insert((*k).into(), (*v).into());
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "suspend": suspend,
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {"secrets.mlflow.org/inject": "true"},
                    "annotations": ann
                },
                "spec": {
                    "restartPolicy": "Never",
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "containers": [
                        {"name": "main", "image": "busybox", "env": [{"name": "KEEP", "value": "kept"}]},
                        {"name": "side", "image": "busybox"}
                    ]
                }
            }
        }
    }))
    .unwrap()
}

/// Create `job` in `ns` and return its uid.
pub async fn create_job(client: &kube::Client, ns: &str, job: &Job) -> String {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let j = jobs.create(&PostParams::default(), job).await.unwrap();
    j.metadata.uid.unwrap()
}

/// The first pod of Job `job` in `ns`, once kube-controller-manager made it.
pub async fn job_pod(client: &kube::Client, ns: &str, job: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sel = format!("batch.kubernetes.io/job-name={job}");
    eventually(Duration::from_secs(60), "the Job's pod", || {
        let pods = pods.clone();
        let sel = sel.clone();
        async move {
            pods.list(&kube::api::ListParams::default().labels(&sel))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        }
    })
    .await
}

/// The messages of the events about `kind/name` in `ns`, one per line.
pub async fn events_of(client: &kube::Client, ns: &str, kind: &str, name: &str) -> String {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .map(|e| e.message.unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A pod as Job `job` (uid `uid`) would create it from its template: the
/// template's labels, annotations and spec, and the Job as controlling
/// owner. For tests that create a Job's pod themselves (the Job suspended)
/// and want the webhook's answer directly.
pub fn template_pod(name: &str, job: &Job, uid: &str) -> Pod {
    let tpl = &job.spec.as_ref().unwrap().template;
    let mut v = serde_json::to_value(tpl).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Pod");
    v["metadata"]["name"] = json!(name);
    v["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": uid, "controller": true
    }]);
    serde_json::from_value(v).unwrap()
}

/// An AdmissionReview for `pod` in `ns`, as the API server would send it.
pub fn review_json(pod: &Pod, ns: &str, dry_run: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7e0c9f3a-1111-2222-3333-444455556666",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": pod,
            "dryRun": dry_run
        }
    }))
    .unwrap()
}

/// POST `body` to `https://127.0.0.1:<port>/mutate` with curl, like a
/// caller that reached the port (server certificate not checked),
/// presenting `client_cert` (cert, key) when given. `Err(curl exit code)`
/// when there was no HTTP answer (e.g. the TLS handshake was refused).
pub async fn post_to_port(
    port: u16,
    body: &[u8],
    client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<serde_json::Value, i32> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("review.json");
    std::fs::write(&file, body).unwrap();
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sk",
        "--max-time",
        "10",
        "-H",
        "content-type: application/json",
    ])
    .arg("--data-binary")
    .arg(format!("@{}", file.display()));
    if let Some((c, k)) = client_cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}/mutate"))
        .output()
        .await
        .expect("curl runs");
    if !out.status.success() {
        return Err(out.status.code().unwrap_or(-1));
    }
    Ok(serde_json::from_slice(&out.stdout).expect("an AdmissionReview"))
}

impl Webhook {
    /// Like [`Webhook::bind`], restricted to pods of `service_accounts`.
    pub async fn bind_for(
        &self,
        ns: &str,
        secret: &str,
        value: &str,
        rid: &str,
        binding_name: &str,
        service_accounts: &[&str],
    ) -> String {
        let s = self
            .store
            .create_secret(
                ns,
                secret,
                &SecretValue::from_string(value.into()).unwrap(),
                false,
                "test",
            )
            .await
            .unwrap();
        let sas: Vec<String> = service_accounts.iter().map(|s| s.to_string()).collect();
        self.store
            .bind_secret_with(
                &mlflow_secrets::model::NewBinding {
                    secret_id: &s.secret_id,
                    resource_type: "SCORER_JOB",
                    resource_id: rid,
                    binding_name,
                    value_field: None,
                    service_accounts: &sas,
                },
                "test",
            )
            .await
            .unwrap();
        s.secret_id
    }
}

/// `job` with its pod template running as ServiceAccount `sa`.
/// Create `pod`, which the webhook must deny (`why` says so when it does
/// not); the API server's error text.
pub async fn denied(pods: &Api<Pod>, pod: &Pod, why: &str) -> String {
    pods.create(&PostParams::default(), pod)
        .await
        .expect_err(why)
        .to_string()
}

pub fn with_service_account(mut job: Job, sa: &str) -> Job {
    let spec = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.service_account_name = Some(sa.to_string());
    job
}
