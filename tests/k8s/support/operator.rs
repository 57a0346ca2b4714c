//! The `mlflow-secrets operator` as a real process against the test control
//! plane, for the end-to-end tests in tests/k8s/operator.rs.
//!
//! Each test gets its own operator namespace (Lease, certificate Secret),
//! its own MutatingWebhookConfiguration name and a namespace label that the
//! configuration selects, so tests running side by side never see each
//! other's webhooks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

use testkit::TestKeystore;

use super::{TestEnv, TestNamespace, eventually, repo_root, unique_name};

/// The shared control plane with the CRDs installed and the database
/// drivers loaded: where every operator test starts.
pub async fn operator_env() -> (&'static TestEnv, kube::Client) {
    sqlx::any::install_default_drivers();
    let env = TestEnv::get().await;
    install_crds(env).await;
    let client = env.client().await;
    (env, client)
}

/// Label key the operator's URL-based configuration selects namespaces by.
pub const SELECTOR_KEY: &str = "mlflow-secrets.test/operator";

/// One operator process.
pub struct OperatorProc {
    pub child: Option<tokio::process::Child>,
    /// The webhook's port (`/mutate` only).
    pub port: u16,
    /// The probes and metrics port (`--metrics-listen`).
    pub metrics_port: u16,
    pub identity: String,
    pub log: PathBuf,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
}

/// What a test's operator runs against.
pub struct OperatorSetup {
    pub store_uri: String,
    pub keystore_dir: PathBuf,
    pub passphrase: PathBuf,
    /// Namespace of the Lease and certificate Secret.
    pub op_namespace: String,
    /// Value of [`SELECTOR_KEY`] on the namespaces this operator serves.
    pub selector_value: String,
    pub webhook_config: String,
    pub lease_duration_secs: u64,
    pub log_dir: PathBuf,
    /// The URL registered in the webhook configuration, when not the
    /// replica's own address (a [`TcpProxy`] in front of several replicas).
    pub webhook_url: Option<String>,
    /// The Lease name, when not the operator's default.
    pub lease_name: Option<String>,
    /// A kubeconfig other than the test control plane's admin one (an
    /// impersonating one, to run under a ServiceAccount's RBAC).
    pub kubeconfig: Option<PathBuf>,
    /// More `operator` flags (e.g. `--watch-namespaces`).
    pub extra_args: Vec<String>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl OperatorSetup {
    pub fn new(
        store_uri: String,
        keystore_dir: &Path,
        passphrase: &Path,
        op_namespace: &str,
        log_dir: &Path,
    ) -> Self {
        Self {
            store_uri,
            keystore_dir: keystore_dir.to_path_buf(),
            passphrase: passphrase.to_path_buf(),
            op_namespace: op_namespace.to_string(),
            selector_value: unique_name("op"),
            webhook_config: unique_name("mlflow-secrets-e2e"),
            lease_duration_secs: 15,
            log_dir: log_dir.to_path_buf(),
            webhook_url: None,
            lease_name: None,
            kubeconfig: None,
            extra_args: Vec::new(),
        }
    }

    /// [`OperatorSetup::new`] for a test keystore and its passphrase
    /// directory.
    pub fn for_keystore(
        store_uri: String,
        ks: &TestKeystore,
        op_namespace: &str,
        log_dir: &Path,
    ) -> Self {
        Self::new(
            store_uri,
            &ks.config.dir,
            ks.config.passphrase.path(),
            op_namespace,
            log_dir,
        )
    }

    /// Start one replica named `identity`.
    pub async fn start(&self, env: &TestEnv, identity: &str) -> OperatorProc {
        let port = free_port();
        let metrics_port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args: Vec<String> = vec![
            "operator".into(),
            "--log-format".into(),
            "json".into(),
            "--store-uri".into(),
            self.store_uri.clone(),
            "--keystore".into(),
            self.keystore_dir.display().to_string(),
            "--webhook-listen".into(),
            listen.clone(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--webhook-url".into(),
            self.webhook_url
                .clone()
                .unwrap_or_else(|| format!("https://{listen}/mutate")),
            "--namespace".into(),
            self.op_namespace.clone(),
            "--webhook-config-name".into(),
            self.webhook_config.clone(),
            "--webhook-namespace-selector".into(),
            format!("{SELECTOR_KEY}={}", self.selector_value),
            "--selector".into(),
            format!("{SELECTOR_KEY}={}", self.selector_value),
            "--identity".into(),
            identity.into(),
            "--lease-duration".into(),
            self.lease_duration_secs.to_string(),
        ];
        if let Some(lease) = &self.lease_name {
            args.extend(["--lease-name".to_string(), lease.clone()]);
        }
        args.extend(self.extra_args.iter().cloned());
        let kubeconfig = self
            .kubeconfig
            .clone()
            .unwrap_or_else(|| env.kubeconfig_path().to_path_buf());
        let envs = vec![
            ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
            (
                "MLFLOW_SECRETS_KEK_PASSPHRASE_FILE".to_string(),
                self.passphrase.display().to_string(),
            ),
            ("RUST_BACKTRACE".to_string(), "0".to_string()),
        ];
        let mut p = OperatorProc {
            child: None,
            port,
            metrics_port,
            identity: identity.to_string(),
            log: self.log_dir.join(format!("operator-{identity}.log")),
            args,
            envs,
        };
        p.spawn();
        p
    }

    /// `metadata.labels` for the MlflowSecrets and bindings this operator
    /// reconciles.
    pub fn labels(&self) -> serde_json::Value {
        serde_json::json!({ SELECTOR_KEY: self.selector_value })
    }

    /// Put the selector label on a test namespace so this operator's
    /// webhook serves it.
    pub async fn select(&self, env: &TestEnv, ns: &TestNamespace) {
        let api: Api<Namespace> = Api::all(env.client().await);
        let patch = serde_json::json!({
            "metadata": { "labels": { SELECTOR_KEY: self.selector_value } }
        });
        api.patch(ns.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// Remove the cluster-scoped webhook configuration this test created.
    pub async fn cleanup(&self, env: &TestEnv) {
        let api: Api<MutatingWebhookConfiguration> = Api::all(env.client().await);
        let _ = api
            .delete(&self.webhook_config, &DeleteParams::default())
            .await;
    }
}

impl OperatorProc {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mlflow-secrets"));
        cmd.args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("MLFLOW_SECRETS_TEST_MODE")
            .env_remove("MLFLOW_SECRETS_STORE_URI")
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().expect("starting the operator"));
    }

    /// Kill with SIGKILL (no Lease release: the failover case).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// HTTP status of `path` on the operator's probes and metrics port (TLS,
    /// certificate not checked: this is the probe's view, like a kubelet's).
    pub async fn probe(&self, path: &str) -> Option<u16> {
        self.status_on(self.metrics_port, path).await
    }

    /// HTTP status of `GET path` on `port` of the operator (TLS, certificate
    /// not checked).
    pub async fn status_on(&self, port: u16, path: &str) -> Option<u16> {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "3",
                &format!("https://127.0.0.1:{port}{path}"),
            ])
            .output()
            .await
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    pub async fn body(&self, path: &str) -> String {
        let out = tokio::process::Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "3",
                &format!("https://127.0.0.1:{}{path}", self.metrics_port),
            ])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let what = format!("operator {} /ready", self.identity);
        let ok = tokio::time::timeout(timeout, async {
            loop {
                if self.probe("/ready").await == Some(200) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await;
        if ok.is_err() {
            panic!("timed out waiting for {what}; log:\n{}", self.logs());
        }
    }
}

/// The MlflowSecret / MlflowSecretBinding APIs, untyped: the tests check
/// the CRDs' wire shape, not the Rust types.
/// Server-side apply a Kubernetes Secret `<name>-src` holding `value` under
/// key `k`, and an MlflowSecret `name` (selected by `setup`) importing it.
pub async fn apply_secret_and_import(
    setup: &OperatorSetup,
    shared: bool,
    client: &kube::Client,
    ns: &str,
    name: &str,
    value: &str,
) {
    let src: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": format!("{name}-src"),
            "annotations": { "secrets.mlflow.org/importable": "true" }
        },
        "stringData": { "k": value }
    }))
    .unwrap();
    src.patch(
        &format!("{name}-src"),
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&s),
    )
    .await
    .unwrap();
    let o: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "secrets.mlflow.org/v1alpha1", "kind": "MlflowSecret",
        "metadata": { "name": name, "labels": setup.labels() },
        "spec": { "shared": shared, "valueFrom": { "secretKeyRef": { "name": format!("{name}-src"), "key": "k" } } }
    }))
    .unwrap();
    crd_api(client.clone(), ns, "MlflowSecret")
        .patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&o))
        .await
        .unwrap();
}

pub fn crd_api(client: kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("secrets.mlflow.org", "v1alpha1", kind);
    let plural = match kind {
        "MlflowSecret" => "mlflowsecrets",
        "MlflowSecretBinding" => "mlflowsecretbindings",
        other => panic!("unknown kind {other}"),
    };
    Api::namespaced_with(client, ns, &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// Apply crds/ (server-side, idempotent) and wait until they are served.
pub async fn install_crds(env: &TestEnv) {
    let out = env
        .command("kubectl")
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(repo_root().join("crds"))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl apply -f crds/: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .command("kubectl")
        .args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/mlflowsecrets.secrets.mlflow.org",
            "crd/mlflowsecretbindings.secrets.mlflow.org",
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "CRDs not established");
}

/// The status condition `type` of an object, as (status, reason, message).
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let conds = obj.data.get("status")?.get("conditions")?.as_array()?;
    let c = conds.iter().find(|c| c["type"] == type_)?;
    Some((
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Wait until object `name` has condition `type_` with `status`.
pub async fn wait_condition(
    api: &Api<DynamicObject>,
    name: &str,
    type_: &str,
    status: &str,
    timeout: Duration,
) -> DynamicObject {
    eventually(timeout, &format!("{name} {type_}={status}"), || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            let o = api.get_opt(&name).await.ok().flatten()?;
            let (s, _, _) = condition(&o, type_)?;
            (s == status).then_some(o)
        }
    })
    .await
}

/// A loopback TCP forwarder standing in for a Service (several backends,
/// dead ones skipped) or for a database that can be taken down: `set_down`
/// refuses new connections and cuts the open ones, as a crashed server
/// would.
pub struct TcpProxy {
    pub port: u16,
    state: std::sync::Arc<ProxyState>,
}

struct ProxyState {
    backends: std::sync::Mutex<Vec<std::net::SocketAddr>>,
    down: std::sync::atomic::AtomicBool,
    generation: tokio::sync::watch::Sender<u64>,
}

impl TcpProxy {
    pub async fn start(backends: Vec<std::net::SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let state = std::sync::Arc::new(ProxyState {
            backends: std::sync::Mutex::new(backends),
            down: std::sync::atomic::AtomicBool::new(false),
            generation,
        });
        let st = state.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if st.down.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let backends = st.backends.lock().unwrap().clone();
                let mut cut = st.generation.subscribe();
                let start = next;
                next = next.wrapping_add(1);
                tokio::spawn(async move {
                    for i in 0..backends.len() {
                        let addr = backends[(start + i) % backends.len()];
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(addr).await {
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                                _ = cut.changed() => {}
                            }
                            return;
                        }
                    }
                });
            }
        });
        Self { port, state }
    }

    pub fn set_backends(&self, backends: Vec<std::net::SocketAddr>) {
        *self.state.backends.lock().unwrap() = backends;
    }

    /// Take the "server" down (refuse and cut) or bring it back.
    pub fn set_down(&self, down: bool) {
        self.state
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.state.generation.send_modify(|g| *g += 1);
        }
    }
}

/// A Job whose pod template opts in to injection.
pub fn scorer_job(
    name: &str,
    resource_id: &str,
    labelled: bool,
    mode: Option<&str>,
) -> k8s_openapi::api::batch::v1::Job {
    let mut annotations = serde_json::json!({ "secrets.mlflow.org/resource-id": resource_id });
    if let Some(m) = mode {
        annotations["secrets.mlflow.org/inject-mode"] = m.into();
    }
    let labels = if labelled {
        serde_json::json!({ "secrets.mlflow.org/inject": "true", "app": "scorer" })
    } else {
        serde_json::json!({ "app": "scorer" })
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": labels, "annotations": annotations },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        { "name": "scorer", "image": "python:3.11-slim", "command": ["python", "-c", "print(1)"] },
                        { "name": "sidecar", "image": "busybox", "env": [{ "name": "EXISTING", "value": "kept" }] }
                    ]
                }
            }
        }
    }))
    .unwrap()
}
