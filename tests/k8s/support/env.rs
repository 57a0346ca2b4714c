// SPDX-License-Identifier: Apache-2.0
//! A real Kubernetes control plane for integration tests.
//!
//! Every test of the k8s tree (tests/k8s/main.rs) that needs the control
//! plane starts with `support::skip_if_off!();` and then calls
//! [`TestEnv::get`] (directly or through a fixture of `support`).
//!
//! A plain `cargo test` must finish without Go and without starting
//! anything, so these tests are opt-in through `MLFLOW_SECRETS_K8S`:
//! - `off` (the default): each such test returns at once and passes; the
//!   binary prints one line saying it skipped them and how to turn them on
//!   (once, not once per test).
//! - `require` (what `scripts/test.sh` and CI set): `MLFLOW_SECRETS_TEST_KUBECONFIG`
//!   names the kubeconfig of a control plane that is already up (started
//!   with `scripts/testenv.sh up`). It must answer `/readyz`; without it
//!   every test fails loudly, so nothing is skipped in silence.
//! - `auto`: use `MLFLOW_SECRETS_TEST_KUBECONFIG` when set; otherwise run
//!   `scripts/testenv.sh build` (cached; the first, cold build takes long
//!   and needs Go) and `up` in a run directory of its own,
//!   `$TMPDIR/mlflow-secrets-testenv-auto-<pid>`. A detached watchdog waits
//!   for the test process to exit, however it exits, then runs
//!   `scripts/testenv.sh down` and removes that directory.
//!
//! When `MLFLOW_SECRETS_K8S` is unset, `MLFLOW_SECRETS_REQUIRE_K8S=1` (the
//! older switch) or a set `MLFLOW_SECRETS_TEST_KUBECONFIG` means `require`:
//! naming a control plane is asking for the tests.
//!
//! The control plane is shared by every test of one test binary; each test
//! takes its own namespace with [`TestEnv::namespace`]. A [`TestNamespace`]
//! dumps the events and objects of its namespace when the test panics (or when
//! `MLFLOW_SECRETS_TEST_DUMP=1`), then deletes the namespace.
//!
//! There is no kubelet and no scheduler: Pods are admitted and stored but stay
//! Pending. Tests assert on the admitted Pod objects, and set pod phases
//! through the status subresource when a Job must finish (see
//! [`TestNamespace::set_pod_phase`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{
    EnvVar, Event, Namespace, Pod, SecretKeySelector, ServiceAccount,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config};

/// Names a kubeconfig of a control plane that is already up.
pub const KUBECONFIG_ENV: &str = "MLFLOW_SECRETS_TEST_KUBECONFIG";
/// `require`, `auto` or `off` (default): whether the tests that need a
/// control plane run (see the module documentation).
pub const MODE_ENV: &str = "MLFLOW_SECRETS_K8S";
/// The older switch: `1` is `MLFLOW_SECRETS_K8S=require`.
pub const REQUIRE_ENV: &str = "MLFLOW_SECRETS_REQUIRE_K8S";
/// When `1`, namespaces are dumped on cleanup even when the test passed.
pub const DUMP_ENV: &str = "MLFLOW_SECRETS_TEST_DUMP";
/// Label put on every namespace the helper creates.
pub const NAMESPACE_LABEL: &str = "mlflow-secrets.test/testenv";
/// The namespace opt-in label of injection (docs/design.md §8); every test
/// namespace carries it unless made with [`TestEnv::namespace_opted_out`].
pub const INJECTION_LABEL: &str = "secrets.mlflow.org/injection";

/// The control plane shared by the tests of one test binary.
pub struct TestEnv {
    kubeconfig: PathBuf,
    kubeconfig_data: Kubeconfig,
    bin_dir: PathBuf,
}

/// Whether this binary's Kubernetes tests run, and where their control
/// plane comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Skip them (the default).
    Off,
    /// Use the control plane `MLFLOW_SECRETS_TEST_KUBECONFIG` names; fail
    /// without one.
    Require,
    /// Use that one, or build and start one on demand.
    Auto,
}

impl Mode {
    /// The mode the environment asks for, or a one-line reason why its
    /// value is not one.
    fn from_env() -> Result<Mode, String> {
        match std::env::var(MODE_ENV) {
            Ok(v) if !v.is_empty() => match v.to_ascii_lowercase().as_str() {
                "off" => Ok(Mode::Off),
                "require" => Ok(Mode::Require),
                "auto" => Ok(Mode::Auto),
                _ => Err(format!("{MODE_ENV}={v:?} is not one of require, auto, off")),
            },
            _ if env_flag(REQUIRE_ENV) => Ok(Mode::Require),
            _ if std::env::var_os(KUBECONFIG_ENV).is_some_and(|p| !p.is_empty()) => {
                Ok(Mode::Require)
            }
            _ => Ok(Mode::Off),
        }
    }
}

/// The mode of this test process, read once. A bad value fails every test
/// that asks, naming the variable.
pub fn mode() -> Mode {
    static MODE: OnceLock<Result<Mode, String>> = OnceLock::new();
    match MODE.get_or_init(Mode::from_env) {
        Ok(mode) => *mode,
        Err(e) => panic!("{e}"),
    }
}

/// True when the Kubernetes tests are off: the calling test returns at once
/// (and passes), through [`skip_if_off`]. The first call in a test binary prints one line saying so,
/// straight to stderr, past the test harness's output capture, so a plain
/// `cargo test` shows what it did not run.
pub fn off() -> bool {
    if mode() != Mode::Off {
        return false;
    }
    testkit::notice::once(
        MODE_ENV,
        &format!(
            "skipping Kubernetes tests: {MODE_ENV} is off (set require or auto; see docs/testing.md)"
        ),
    );
    true
}

/// Returns from the calling test (which then passes) when the Kubernetes
/// tests are off; see [`off`]. One line at the top of every test that needs
/// the control plane.
macro_rules! skip_if_off {
    () => {
        if $crate::support::off() {
            return;
        }
    };
}
pub(crate) use skip_if_off;

/// The shared control plane, or why there is none. A failure is kept, so
/// that every test reports it at once instead of trying to start again.
static ENV: OnceLock<Result<TestEnv, String>> = OnceLock::new();

/// The Secret reference of an injected environment variable (panics when
/// it has none).
pub fn secret_key_ref(e: &EnvVar) -> &SecretKeySelector {
    e.value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap_or_else(|| panic!("{} is not a secretKeyRef", e.name))
}

/// Wait until the CustomResourceDefinition `name` is served
/// (`Established`).
pub async fn wait_crd_established(client: &Client, name: &str, timeout: Duration) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    tokio::time::timeout(
        timeout,
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .unwrap_or_else(|_| panic!("CRD {name} not established within {timeout:?}"))
    .unwrap();
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/testenv.sh`.
pub fn script() -> PathBuf {
    repo_root().join("scripts").join("testenv.sh")
}

fn run_script(args: &[&str], run_dir: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args).stdin(Stdio::null());
    if let Some(dir) = run_dir {
        cmd.env("MLFLOW_SECRETS_TESTENV_DIR", dir);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running {} {args:?}: {e}", script().display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`scripts/testenv.sh {}` failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

impl TestEnv {
    /// The shared control plane, found or started on first use.
    ///
    /// Panics, with what went wrong, when there is none and none can be
    /// started: a test that needs Kubernetes never passes without it. A test
    /// asks [`off`] first; one that does not is told so here.
    pub async fn get() -> &'static TestEnv {
        assert!(
            mode() != Mode::Off,
            "{MODE_ENV} is off but this test asks for a control plane: start it with \
             `support::skip_if_off!();`"
        );
        let first = ENV.get().is_none();
        // Starting runs blocking commands for a while; keep them off the
        // test's runtime. OnceLock makes concurrent tests wait for one start.
        let env = tokio::task::spawn_blocking(|| ENV.get_or_init(TestEnv::init))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let env = match env {
            Ok(env) => env,
            Err(e) => panic!("no Kubernetes control plane for this test: {e}"),
        };
        if first {
            env.check_ready().await;
        }
        env
    }

    fn init() -> Result<TestEnv, String> {
        let bin_dir = PathBuf::from(run_script(&["bin-dir"], None)?.trim());
        if let Some(path) = std::env::var_os(KUBECONFIG_ENV).filter(|p| !p.is_empty()) {
            return TestEnv::from_kubeconfig(PathBuf::from(path), bin_dir);
        }
        if mode() == Mode::Require {
            return Err(format!(
                "{MODE_ENV}=require (or {REQUIRE_ENV}=1) but {KUBECONFIG_ENV} is not set: start a control plane with \
                 `scripts/testenv.sh build && scripts/testenv.sh up` and export \
                 {KUBECONFIG_ENV}=<the path it prints>, or set {MODE_ENV}=auto"
            ));
        }
        TestEnv::start_own(bin_dir)
    }

    fn start_own(bin_dir: PathBuf) -> Result<TestEnv, String> {
        let run_dir = std::env::temp_dir().join(format!(
            "mlflow-secrets-testenv-auto-{}",
            std::process::id()
        ));
        eprintln!(
            "testenv: no {KUBECONFIG_ENV}; building (cached) and starting a control plane in {}",
            run_dir.display()
        );
        run_script(&["build"], None)?;
        // The watchdog is started before `up`, so that whatever `up` leaves
        // is stopped even if this process dies during it.
        spawn_watchdog(&run_dir)?;
        let out = run_script(&["up"], Some(&run_dir))?;
        let kubeconfig = out
            .lines()
            .last()
            .map(PathBuf::from)
            .ok_or("`scripts/testenv.sh up` printed no kubeconfig path")?;
        TestEnv::from_kubeconfig(kubeconfig, bin_dir)
    }

    fn from_kubeconfig(path: PathBuf, bin_dir: PathBuf) -> Result<TestEnv, String> {
        let kubeconfig_data = Kubeconfig::read_from(&path)
            .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
        Ok(TestEnv {
            kubeconfig: path,
            kubeconfig_data,
            bin_dir,
        })
    }

    async fn check_ready(&self) {
        let client = self.client().await;
        let req = http_get("/readyz");
        match tokio::time::timeout(Duration::from_secs(20), client.request_text(req)).await {
            Ok(Ok(body)) if body.trim() == "ok" => {}
            Ok(Ok(body)) => panic!(
                "control plane at {} is not ready: /readyz said {body:?}",
                self.kubeconfig.display()
            ),
            Ok(Err(e)) => panic!(
                "control plane at {} is unreachable: {e}",
                self.kubeconfig.display()
            ),
            Err(_) => panic!(
                "control plane at {} did not answer /readyz within 20s",
                self.kubeconfig.display()
            ),
        }
    }

    /// A new client, bound to the calling test's runtime (a client must not
    /// outlive the runtime it was made on, so none is shared).
    pub async fn client(&self) -> Client {
        let config = Config::from_custom_kubeconfig(
            self.kubeconfig_data.clone(),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig of the control plane is usable");
        Client::try_from(config).expect("client for the control plane")
    }

    /// Path of the admin kubeconfig (for kubectl, helm, or a child process).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the client certificate the API server presents to
    /// webhooks (scripts/testenv.sh's AdmissionConfiguration), for
    /// `--webhook-client-ca`; `None` on a control plane started without it.
    pub fn webhook_client_ca(&self) -> Option<PathBuf> {
        let p = self.kubeconfig.parent()?.join("pki/webhook-client-ca.crt");
        p.exists().then_some(p)
    }

    /// A client certificate and key signed by [`TestEnv::webhook_client_ca`]
    /// (the API server's), to play the caller in tests.
    pub fn webhook_client_cert(&self) -> Option<(PathBuf, PathBuf)> {
        let pki = self.kubeconfig.parent()?.join("pki");
        let (c, k) = (
            pki.join("webhook-client.crt"),
            pki.join("webhook-client.key"),
        );
        (c.exists() && k.exists()).then_some((c, k))
    }

    /// Directory holding kubectl, helm and the control-plane binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A command for one of the binaries in [`TestEnv::bin_dir`] (`kubectl`,
    /// `helm`), with `KUBECONFIG` set to this control plane.
    pub fn command(&self, binary: &str) -> tokio::process::Command {
        let path = self.bin_dir.join(binary);
        assert!(
            path.is_file(),
            "{} is missing: run `scripts/testenv.sh build`",
            path.display()
        );
        let mut cmd = tokio::process::Command::new(path);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// A fresh namespace `<prefix>-<random>` for one test, created and ready
    /// for Pods (its `default` ServiceAccount exists), opted in to injection
    /// (`secrets.mlflow.org/injection: enabled`, docs/design.md §8).
    pub async fn namespace(&'static self, prefix: &str) -> TestNamespace {
        self.namespace_with(prefix, true).await
    }

    /// Like [`TestEnv::namespace`], but without the injection opt-in label:
    /// the webhook must never act in it.
    pub async fn namespace_opted_out(&'static self, prefix: &str) -> TestNamespace {
        self.namespace_with(prefix, false).await
    }

    async fn namespace_with(&'static self, prefix: &str, opted_in: bool) -> TestNamespace {
        let client = self.client().await;
        let name = unique_name(prefix);
        let mut labels = serde_json::json!({ NAMESPACE_LABEL: "true" });
        if opted_in {
            labels[INJECTION_LABEL] = serde_json::json!("enabled");
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": labels }
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let guard = TestNamespace {
            env: self,
            name: name.clone(),
            done: false,
        };
        // The ServiceAccount admission plugin rejects Pods until
        // kube-controller-manager has created the namespace's `default` account.
        let sas: Api<ServiceAccount> = Api::namespaced(client, &name);
        eventually(
            Duration::from_secs(30),
            "the default ServiceAccount",
            || {
                let sas = sas.clone();
                async move { sas.get_opt("default").await.ok().flatten() }
            },
        )
        .await;
        guard
    }
}

fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).expect("request")
}

/// `<prefix>-<8 random hex>`, a valid DNS-1123 label.
pub fn unique_name(prefix: &str) -> String {
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(50)
        .collect();
    let prefix = prefix.trim_matches('-');
    let prefix = if prefix.is_empty() { "test" } else { prefix };
    // Unique among concurrent tests (counter), test processes (pid) and runs
    // against one long-lived cluster (time). Not a secret.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{prefix}-{:08x}", (mixed ^ (mixed >> 32)) as u32)
}

/// Poll `probe` every 200 ms until it yields `Some`, or panic after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a detached process that waits for this test process to exit, then
/// stops the control plane in `run_dir` and removes the directory. Detached
/// (own session), it also runs when the tests are interrupted or killed.
fn spawn_watchdog(run_dir: &Path) -> Result<(), String> {
    let script = script();
    let watchdog = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
        MLFLOW_SECRETS_TESTENV_DIR="$3" bash "$2" down >/dev/null 2>&1
        if [ "${MLFLOW_SECRETS_TESTENV_KEEP:-0}" != 1 ]; then rm -rf -- "$3"; fi
    "#;
    Command::new("setsid")
        .args(["bash", "-c", watchdog, "testenv-watchdog"])
        .arg(std::process::id().to_string())
        .arg(&script)
        .arg(run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the testenv watchdog with setsid: {e}"))
}

/// A namespace owned by one test. Deleted on [`TestNamespace::cleanup`] or on
/// drop; its events and objects are printed first when the test is failing.
pub struct TestNamespace {
    env: &'static TestEnv,
    name: String,
    done: bool,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Set a Pod's phase through the status subresource: with no kubelet,
    /// this is how a test makes a Job's Pod finish.
    pub async fn set_pod_phase(&self, pod: &str, phase: &str) {
        let pods: Api<Pod> = Api::namespaced(self.env.client().await, &self.name);
        let patch = serde_json::json!({ "status": { "phase": phase } });
        pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("setting phase {phase} on pod {}/{pod}: {e}", self.name));
    }

    /// Dump (when asked with `MLFLOW_SECRETS_TEST_DUMP=1`) and delete the
    /// namespace. Call at the end of a passing test; on panic, drop does it.
    pub async fn cleanup(mut self) {
        self.done = true;
        let client = self.env.client().await;
        if env_flag(DUMP_ENV) {
            eprintln!("{}", dump_namespace(&client, &self.name).await);
        }
        delete_namespace(&client, &self.name).await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let failing = std::thread::panicking();
        let dump = failing || env_flag(DUMP_ENV);
        let env = self.env;
        let name = self.name.clone();
        // Drop cannot await, and may run on a runtime that is shutting down:
        // do the work on a thread with a runtime of its own.
        let report = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for namespace cleanup");
            rt.block_on(async {
                let client = env.client().await;
                let text = if dump {
                    Some(dump_namespace(&client, &name).await)
                } else {
                    None
                };
                delete_namespace(&client, &name).await;
                text
            })
        })
        .join();
        match report {
            Ok(Some(text)) => eprintln!("{text}"),
            Ok(None) => {}
            Err(_) => eprintln!("testenv: cleaning up namespace {} failed", self.name),
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) {
    // Background: the namespace controller deletes the contents; a test does
    // not wait for that. Unscheduled Pods go at once (no kubelet to wait for).
    let api = Api::<Namespace>::all(client.clone());
    if let Err(e) = api.delete(name, &DeleteParams::background()).await {
        eprintln!("testenv: deleting namespace {name}: {e}");
    }
}

/// Events (oldest first) and every listable namespaced object of `ns`, with
/// managedFields dropped and Secret values redacted.
pub async fn dump_namespace(client: &Client, ns: &str) -> String {
    use std::fmt::Write as _;
    let mut out = format!("===== testenv dump of namespace {ns} =====\n");

    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            let mut items = list.items;
            items.sort_by_key(|e| {
                e.last_timestamp
                    .as_ref()
                    .or(e.first_timestamp.as_ref())
                    .map(|t| t.0)
            });
            let _ = writeln!(out, "--- events ({}) ---", items.len());
            for e in items {
                let when = e
                    .last_timestamp
                    .as_ref()
                    .or(e.first_timestamp.as_ref())
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{when} {} {} {}/{}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.message.unwrap_or_default().trim_end()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "--- events: listing failed: {e} ---");
        }
    }

    let discovery = match Discovery::new(client.clone()).run().await {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "--- objects: API discovery failed: {e} ---");
            return out;
        }
    };
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || ((ar.group.is_empty() || ar.group == "events.k8s.io") && ar.kind == "Event")
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                Err(e) => {
                    let _ = writeln!(out, "--- {}: listing failed: {e} ---", ar.plural);
                    continue;
                }
            };
            for mut obj in list.items {
                obj.metadata.managed_fields = None;
                if ar.group.is_empty() && ar.kind == "Secret" {
                    redact_secret(&mut obj);
                }
                let _ = writeln!(
                    out,
                    "--- {} {}/{} ---",
                    ar.api_version,
                    ar.kind,
                    obj.metadata.name.as_deref().unwrap_or("?")
                );
                let mut value = serde_json::to_value(&obj).unwrap_or_default();
                if let Some(map) = value.as_object_mut() {
                    map.insert("apiVersion".into(), ar.api_version.clone().into());
                    map.insert("kind".into(), ar.kind.clone().into());
                }
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            }
        }
    }
    let _ = writeln!(out, "===== end of dump of namespace {ns} =====");
    out
}

fn redact_secret(obj: &mut DynamicObject) {
    for field in ["data", "stringData"] {
        if let Some(map) = obj.data.get_mut(field).and_then(|v| v.as_object_mut()) {
            for v in map.values_mut() {
                let len = v.as_str().map(str::len).unwrap_or(0);
                *v = serde_json::Value::String(format!("<redacted, {len} chars>"));
            }
        }
    }
}
