//! Webhook admission load (docs/benchmarks.md): AdmissionReview requests
//! over TLS to the webhook served in-process, for a pod with 5 bindings,
//! dryRun=false, so every request decrypts 5 values, appends an audit row
//! and creates the per-Job Secret on the real control plane (every request is
//! a new Job's first pod).
//!
//! Every request names a real Job, created (suspended, so
//! kube-controller-manager starts no pods for it) before the clock starts:
//! a per-Job Secret whose owner does not exist would be deleted again by
//! the garbage collector during the run, a load no real cluster sees at
//! admission time. The load generator runs on a runtime and thread of its
//! own, as the API server calling the webhook is a process of its own.
//!
//!     scripts/bench_webhook.sh            # release build, SQLite and PostgreSQL
//!     cargo bench --bench webhook_load    # the same, with the environment below
//!
//! Needs `MLFLOW_SECRETS_TEST_KUBECONFIG` (the test control plane) and, for
//! PostgreSQL, `MLFLOW_SECRETS_TEST_POSTGRES_URL` (`scripts/db.sh env`).
//! Knobs: `WEBHOOK_BENCH_RATE` (200/s), `WEBHOOK_BENCH_SECS` (20),
//! `WEBHOOK_BENCH_GET_SECS` (10, the phase with the Job cache off),
//! `WEBHOOK_BENCH_MAX_SECS` (10; 0 skips the max-throughput phase),
//! `WEBHOOK_BENCH_CONCURRENCY` (16), `WEBHOOK_BENCH_BACKENDS`
//! (`sqlite,postgres`).
//!
//! The split target (docs/benchmarks.md), from one fixed-rate phase:
//! - **our half**: the p99 of the webhook's own `ours` stage histogram
//!   (`mlflow_secrets_operator_webhook_stage_seconds`, read in-process
//!   before and after the phase), which is each request's `total` less its
//!   `secret_write`: Job verification, store read and decrypt, audit row,
//!   patch, parse and serialization;
//! - **end-to-end**: the webhook call as its caller (the API server, here
//!   the load generator) sees it: from the request's due time to the
//!   response read, over TLS, open loop (exact, from every request);
//! - **Secret create**: the p99 of the `secret_write` stage of the same
//!   requests, the API server's create of the per-Job Secret as the
//!   webhook waits for it;
//! - the difference end-to-end p99 − Secret-create p99.
//!
//! Stage p99s come from the histogram buckets (25 µs wide to 0.5 ms, 50 µs
//! to 2 ms, 100 µs to 5 ms), interpolated as Prometheus does. The Job
//! verification's two paths are measured in two phases of the same run at
//! the same rate: the first with the watch cache (the default), then one
//! against a second webhook built `with_job_cache(false)`, which GETs
//! every Job.
//!
//! Latency at the fixed rate is measured from each request's *scheduled*
//! send time (open loop), so a stall is not hidden by requests that were
//! never sent. The breakdown times the two halves of an admission alone:
//! the store (decrypt 5 values + audit row) and the API server (Secret
//! apply), to show which dominates.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs for one
//! second at 20/s, so the program itself stays tested.
// Until Cargo.toml declares this bench with `harness = false`, cargo
// discovers it with the libtest harness, where `main` is not the entry.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use mlflow_secrets::model::ResourceRef;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use mlflow_secrets::k8s::metrics::{
    HistogramSnapshot, OperatorMetrics, STAGE_JOB_VERIFY_API, STAGE_JOB_VERIFY_CACHE, STAGE_OURS,
    STAGE_SECRET_WRITE, STAGE_TOTAL, WEBHOOK_STAGES,
};
use mlflow_secrets::k8s::webhook::certs::{self, CertConfig, WebhookCerts};
use mlflow_secrets::k8s::webhook::secret::{self, OwningJob};
use mlflow_secrets::k8s::webhook::{WebhookState, router, server};
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;
use serde_json::json;

use testkit::{Backend, TestDb};

const BINDINGS: usize = 5;
/// Jobs the "existing Secret" breakdown rotates over.
const JOBS: usize = 20;
/// Admissions per second the Job pool allows for the max-throughput phase
/// (above anything measured on 2 cores); the phase ends early if it runs out.
const MAX_PHASE_RATE: u64 = 1000;
/// Job creations in flight while the pool is filled.
const JOB_CREATE_CONCURRENCY: usize = 32;
const RID: &str = "bench-scorer";
/// Our half of an admission, p99 (issue 15's decision).
const TARGET_OURS_MS: f64 = 1.5;
/// End-to-end admission p99 less the Secret create's p99, same run.
const TARGET_ADDED_MS: f64 = 3.0;

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    lat_ms: Vec<f64>,
    ok: usize,
    denied: usize,
    failed: usize,
    secs: f64,
}

impl Stats {
    /// For an open-loop run at `rate`/s: how many requests took over
    /// `ms`, by the second they were due in. Stalls (a garbage collection,
    /// an etcd snapshot) show as a burst in one second; queueing spreads.
    fn slow_by_second(&self, rate: u64, ms: f64) -> String {
        let mut by_sec = std::collections::BTreeMap::<u64, usize>::new();
        for (i, l) in self.lat_ms.iter().enumerate() {
            if *l > ms {
                *by_sec.entry(i as u64 / rate.max(1)).or_default() += 1;
            }
        }
        let total: usize = by_sec.values().sum();
        let secs: Vec<String> = by_sec.iter().map(|(s, n)| format!("{s}s:{n}")).collect();
        format!("{total} over {ms} ms (by second due: {})", secs.join(" "))
    }

    fn pct(&self, p: f64) -> f64 {
        if self.lat_ms.is_empty() {
            return f64::NAN;
        }
        let mut v = self.lat_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what}: {} ok, {} denied, {} failed in {:.1}s = {:.0} req/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.ok,
            self.denied,
            self.failed,
            self.secs,
            (self.ok + self.denied) as f64 / self.secs,
            self.pct(0.50),
            self.pct(0.99),
            self.pct(1.0)
        )
    }
}

/// Real, suspended Jobs, handed out once each: every admission is the
/// first pod of a Job that exists.
struct JobPool {
    jobs: Vec<OwningJob>,
    next: std::sync::atomic::AtomicUsize,
}

impl JobPool {
    /// Create `n` suspended Jobs named `<prefix>-<i>` in `ns`, then wait
    /// until a job controller, if one runs, has processed the last of them,
    /// so its Job syncs are over before any clock starts.
    async fn create(client: &kube::Client, ns: &str, prefix: &str, n: usize) -> Self {
        use futures::StreamExt;
        let api: Api<Job> = Api::namespaced(client.clone(), ns);
        let jobs: Vec<OwningJob> = futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let name = format!("{prefix}-{i}");
                    let job: Job = serde_json::from_value(json!({
                        "metadata": {"name": name},
                        "spec": {"suspend": true, "template": {
                            "metadata": {"labels": {"secrets.mlflow.org/inject": "true"}, "annotations": {"secrets.mlflow.org/resource-id": RID}},
                            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
                    }))
                    .unwrap();
                    let created = api.create(&PostParams::default(), &job).await.unwrap();
                    OwningJob {
                        name,
                        uid: created.metadata.uid.unwrap(),
                        api_version: "batch/v1".into(),
                    }
                }
            })
            .buffered(JOB_CREATE_CONCURRENCY)
            .collect()
            .await;
        if let (Some(first), Some(last)) = (jobs.first(), jobs.last()) {
            // A job controller marks a suspended Job `Suspended`, in queue
            // order, so the last Job's mark is its last sync. Without one
            // (scripts/bench_webhook.sh's own control plane) the first Job
            // is never marked, and there is nothing to wait for.
            if wait_suspended(&api, &first.name, Duration::from_secs(5)).await {
                wait_suspended(&api, &last.name, Duration::from_secs(900)).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Self {
            jobs,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<&OwningJob> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.jobs.get(i)
    }
}

/// Whether Job `name` got its `Suspended` condition within `limit`.
async fn wait_suspended(api: &Api<Job>, name: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let j = api.get(name).await.unwrap();
        let done = j
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Suspended"));
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Target {
    client: Https,
    url: String,
    ns: String,
    jobs: Arc<JobPool>,
}

/// What `send` reports when the Job pool is used up (the max-throughput
/// phase stops there).
const POOL_EXHAUSTED: &str = "job pool exhausted";

impl Target {
    /// A new Job's first pod (the common case: scorer Jobs run one pod), so
    /// each admission creates its per-Job Secret, owned by a Job that
    /// exists.
    fn review(&self) -> Option<Bytes> {
        let j = self.jobs.take()?;
        let (job, uid) = (&j.name, &j.uid);
        let body = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uuid::Uuid::new_v4().to_string(),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": self.ns,
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:job-controller"},
                "dryRun": false,
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "generateName": format!("{job}-"),
                        "namespace": self.ns,
                        "labels": {"secrets.mlflow.org/inject": "true", "batch.kubernetes.io/job-name": job},
                        "annotations": {"secrets.mlflow.org/resource-id": RID},
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid, "controller": true, "blockOwnerDeletion": true}]
                    },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "python:3.12", "env": [{"name": "A", "value": "b"}]}]
                    }
                }
            }
        });
        Some(Bytes::from(serde_json::to_vec(&body).unwrap()))
    }

    /// One admission; `Ok(true)` allowed, `Ok(false)` denied.
    async fn send(&self) -> Result<bool, String> {
        let body = self.review().ok_or_else(|| POOL_EXHAUSTED.to_string())?;
        let req = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let allowed = v["response"]["allowed"].as_bool().unwrap_or(false);
        if !allowed {
            static ONCE: std::sync::Once = std::sync::Once::new();
            let msg = v["response"]["status"]["message"].to_string();
            ONCE.call_once(|| eprintln!("  first denial: {msg}"));
        }
        Ok(allowed)
    }
}

/// Open loop: request `i` is due at `start + i/rate`, and its latency is
/// measured from then, so a stall is not hidden by requests that were never
/// sent. A pacer thread releases each request at its due time with the
/// kernel's timer (tokio's rounds every sleep up to the next millisecond,
/// which would add up to 1 ms to every latency); how late the requests
/// still went out is reported as `lateness`.
async fn fixed_rate(t: Arc<Target>, rate: u64, secs: u64) -> (Stats, Stats) {
    let n = (rate * secs) as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let pacer = std::thread::spawn(move || {
        for i in 0..n {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(due).is_err() {
                return;
            }
        }
    });
    let mut handles = Vec::with_capacity(n);
    let mut late = Vec::with_capacity(n);
    while let Some(due) = rx.recv().await {
        late.push((Ok(true), due.elapsed()));
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let r = t.send().await;
            (r, due.elapsed())
        }));
    }
    pacer.join().unwrap();
    let mut all = Vec::with_capacity(handles.len());
    for h in handles {
        all.push(h.await.unwrap());
    }
    let took = start.elapsed();
    (summarize(all, took), summarize(late, took))
}

/// Closed loop: `conc` workers back to back for `secs`.
async fn max_throughput(t: Arc<Target>, conc: usize, secs: u64) -> Stats {
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for _ in 0..conc {
        let t = t.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut last = tokio::time::Instant::now();
            while tokio::time::Instant::now() < end {
                let t0 = tokio::time::Instant::now();
                let r = t.send().await;
                if matches!(&r, Err(e) if e == POOL_EXHAUSTED) {
                    break;
                }
                last = tokio::time::Instant::now();
                out.push((r, t0.elapsed()));
            }
            (out, last)
        }));
    }
    let mut all = Vec::new();
    let mut last = start;
    for w in workers {
        let (out, l) = w.await.unwrap();
        all.extend(out);
        last = last.max(l);
    }
    summarize(all, last - start)
}

fn summarize(all: Vec<(Result<bool, String>, Duration)>, took: Duration) -> Stats {
    let mut s = Stats {
        lat_ms: Vec::with_capacity(all.len()),
        ok: 0,
        denied: 0,
        failed: 0,
        secs: took.as_secs_f64(),
    };
    for (r, d) in all {
        match r {
            Ok(true) => s.ok += 1,
            Ok(false) => s.denied += 1,
            Err(e) => {
                if s.failed == 0 {
                    eprintln!("  first failure: {e}");
                }
                s.failed += 1;
                continue;
            }
        }
        s.lat_ms.push(d.as_secs_f64() * 1000.0);
    }
    s
}

/// Time `n` sequential calls of `f`.
async fn sequential<F, Fut>(n: usize, mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut all = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let ok = f(i).await;
        all.push((Ok(ok), t0.elapsed()));
    }
    summarize(all, start.elapsed())
}

fn tls_client(ca_pem: &str) -> Https {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    use rustls_pki_types::pem::PemObject as _;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // The API server's client (Go's net/http) sets TCP_NODELAY; so do we.
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(https)
}

async fn kube_client() -> kube::Client {
    let path =
        std::env::var("MLFLOW_SECRETS_TEST_KUBECONFIG").expect("MLFLOW_SECRETS_TEST_KUBECONFIG");
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Run `phase` against the webhook at `url` from a thread and runtime of
/// its own, so the load generator's tasks never queue behind the webhook's
/// (the API server calling a webhook is another process).
async fn generate_load<F, Fut, T>(ca: &str, url: &str, ns: &str, jobs: Arc<JobPool>, phase: F) -> T
where
    F: FnOnce(Arc<Target>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let target = (ca.to_string(), url.to_string(), ns.to_string());
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (ca, url, ns) = target;
            phase(Arc::new(Target {
                client: tls_client(&ca),
                url,
                ns,
                jobs,
            }))
            .await
        })
    })
    .await
    .unwrap()
}

/// Run one backend; returns the namespace it used, deleted once every
/// backend is done: deleting thousands of Jobs and Secrets keeps the control
/// plane (and its garbage collector, at 20 requests/s) busy for minutes,
/// which would be measured as the next backend's latency.
/// `scripts/bench_webhook.sh` gives each backend a fresh control plane.
#[derive(Clone, Copy)]
struct Knobs {
    rate: u64,
    secs: u64,
    get_secs: u64,
    max_secs: u64,
    conc: usize,
    breakdown_n: usize,
    max_phase_jobs: usize,
}

/// One webhook served in-process over TLS on a port of its own, with
/// metrics of its own (so two of them in one run keep their stages apart).
struct Served {
    url: String,
    metrics: Arc<OperatorMetrics>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve_webhook(
    client: &kube::Client,
    store: Arc<dyn SecretsStore>,
    certs: Arc<WebhookCerts>,
    job_cache: bool,
) -> Served {
    let metrics = Arc::new(OperatorMetrics::new());
    let state = Arc::new(
        WebhookState::new(
            client.clone(),
            store,
            metrics.clone(),
            Duration::from_secs(5),
        )
        .with_job_cache(job_cache),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Measure the cache, not its first list: wait until the Job watch has
    // listed the fixture Jobs (they all exist by now).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(state.synced() && state.jobs_synced()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let task = tokio::spawn(server::serve(
        listener,
        router(state),
        certs,
        None,
        std::future::pending(),
    ));
    Served {
        url: format!("https://127.0.0.1:{port}/mutate"),
        metrics,
        task,
    }
}

/// Every stage histogram of `m`, to take the difference over a phase.
fn stage_snapshots(m: &OperatorMetrics) -> Vec<(&'static str, HistogramSnapshot)> {
    WEBHOOK_STAGES
        .iter()
        .map(|st| (*st, m.stage_snapshot(st)))
        .collect()
}

/// The stages observed between two [`stage_snapshots`].
fn stages_since(
    after: &[(&'static str, HistogramSnapshot)],
    before: &[(&'static str, HistogramSnapshot)],
) -> std::collections::BTreeMap<&'static str, HistogramSnapshot> {
    after
        .iter()
        .zip(before)
        .map(|((st, a), (_, b))| (*st, a.since(b)))
        .collect()
}

/// A stage's quantile in ms, NaN when it saw nothing.
fn stage_ms(
    stages: &std::collections::BTreeMap<&'static str, HistogramSnapshot>,
    stage: &str,
    q: f64,
) -> f64 {
    stages
        .get(stage)
        .and_then(|h| h.quantile(q))
        .map_or(f64::NAN, |s| s * 1000.0)
}

/// `/proc/loadavg`'s three averages: how busy the shared machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// The fixed-rate phase against `served`, after a 1 s warm-up at 50/s,
/// with the webhook's stage histograms over exactly the measured requests.
async fn measured_phase(
    ca: &str,
    ns: &str,
    served: &Served,
    pool: Arc<JobPool>,
    rate: u64,
    secs: u64,
) -> (
    Stats,
    Stats,
    std::collections::BTreeMap<&'static str, HistogramSnapshot>,
) {
    let metrics = served.metrics.clone();
    generate_load(ca, &served.url, ns, pool, move |t| async move {
        // Warm up: connections, statement caches.
        let _ = fixed_rate(t.clone(), 50, 1).await;
        let before = stage_snapshots(&metrics);
        let (fixed, late) = fixed_rate(t, rate, secs).await;
        let stages = stages_since(&stage_snapshots(&metrics), &before);
        (fixed, late, stages)
    })
    .await
}

async fn run_backend(backend: Backend, k: &Knobs) -> Option<String> {
    let Knobs {
        rate,
        secs,
        get_secs,
        max_secs,
        conc,
        breakdown_n,
        max_phase_jobs,
    } = *k;
    let Some(db) = TestDb::new(backend).await else {
        println!("webhook_load: {backend:?} not configured, skipped");
        return None;
    };
    let client = kube_client().await;
    let ns = format!(
        "wh-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": ns, "labels": {"secrets.mlflow.org/injection": "enabled"}}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let store = Arc::new(db.store.clone());
    for b in 0..BINDINGS {
        let v = SecretValue::from_string(format!("sk-bench-value-{b}-{}", uuid::Uuid::new_v4()))
            .unwrap();
        let s = store
            .create_secret(&ns, &format!("bench-{b}"), &v, false, "bench")
            .await
            .unwrap();
        store
            .bind_secret(
                &s.secret_id,
                "SCORER_JOB",
                RID,
                &format!("KEY_{b}"),
                "bench",
            )
            .await
            .unwrap();
    }

    // The Jobs the breakdown and the fixed-rate phase name, created before
    // the first clock starts. The max-throughput phase's are created after
    // the fixed-rate phase, so they do not sit in the API server's heap
    // (and its garbage collector's work) while the latency is measured.
    let load_at_start = load_average();
    let load_jobs = 50 + (rate * secs) as usize;
    let get_jobs = 50 + (rate * get_secs) as usize;
    let t0 = Instant::now();
    let scorers = JobPool::create(&client, &ns, "scorer", JOBS).await.jobs;
    let new_jobs = JobPool::create(&client, &ns, "apply-new", breakdown_n).await;
    let load_pool = Arc::new(JobPool::create(&client, &ns, "first-pod", load_jobs).await);
    let get_pool = Arc::new(JobPool::create(&client, &ns, "get-pod", get_jobs).await);
    let setup_secs = t0.elapsed().as_secs_f64();

    // The two halves alone.
    let st = store.clone();
    let ns2 = ns.clone();
    let store_half = sequential(breakdown_n, |_| {
        let (st, ns) = (st.clone(), ns2.clone());
        async move {
            st.get_all_bound_values(ResourceRef::new(&ns, "SCORER_JOB", RID), "webhook:bench")
                .await
                .map(|m| m.len() == BINDINGS)
                .unwrap_or(false)
        }
    })
    .await;
    let values = store
        .get_all_secrets_for_resource(ResourceRef::new(&ns, "SCORER_JOB", RID), "webhook:bench")
        .await
        .unwrap();
    // What the webhook annotates the Secret with (key -> secret id); the
    // ids' content does not change the cost.
    let ids: Arc<std::collections::BTreeMap<String, String>> = Arc::new(
        values
            .keys()
            .map(|k| (k.clone(), format!("id-{k}")))
            .collect(),
    );
    let values = Arc::new(values);
    let (c2, ns3, v2) = (client.clone(), ns.clone(), values.clone());
    let api_half = sequential(breakdown_n, |i| {
        let (c, ns, v, ids) = (c2.clone(), ns3.clone(), v2.clone(), ids.clone());
        let job = scorers[i % scorers.len()].clone();
        async move {
            secret::apply(&c, &ns, &job, "SCORER_JOB", RID, &v, &ids)
                .await
                .is_ok()
        }
    })
    .await;
    // The write when the Secret is new (a Job's first pod), and a
    // server-side apply of the same Secret for comparison.
    let (c3, ns4, v3) = (client.clone(), ns.clone(), values.clone());
    let api_new = sequential(breakdown_n, |_| {
        let (c, ns, v, ids) = (c3.clone(), ns4.clone(), v3.clone(), ids.clone());
        let job = new_jobs.take().expect("a Job per request").clone();
        async move {
            secret::apply(&c, &ns, &job, "SCORER_JOB", RID, &v, &ids)
                .await
                .is_ok()
        }
    })
    .await;
    let (c4, ns5) = (client.clone(), ns.clone());
    let api_ssa = sequential(breakdown_n, |i| {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c4.clone(), &ns5);
        let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("ssa-new-{i}")},
            "data": (0..BINDINGS).map(|b| (format!("KEY_{b}"), json!("c2stYmVuY2gtdmFsdWUtMC0xMjM0NTY3ODkw"))).collect::<serde_json::Map<_, _>>()
        }))
        .unwrap();
        async move {
            let pp = kube::api::PatchParams::apply("webhook-bench").force();
            secrets.patch(&format!("ssa-new-{i}"), &pp, &kube::api::Patch::Apply(&s)).await.is_ok()
        }
    })
    .await;

    // The webhook, over TLS.
    let mut cfg = CertConfig::new(&ns, "");
    cfg.extra_sans = vec!["127.0.0.1".into()];
    let certs = certs::bootstrap(client.clone(), &cfg).await.unwrap();
    let ca = certs.ca_bundle();
    // One webhook at a time: the second one's watches would otherwise
    // list every fixture Job during the first one's phase.
    let cached = serve_webhook(&client, store.clone(), certs.clone(), true).await;
    let (fixed, lateness, stages) = measured_phase(&ca, &ns, &cached, load_pool, rate, secs).await;
    let uncached = serve_webhook(&client, store.clone(), certs.clone(), false).await;
    let (get_fixed, _, get_stages) =
        measured_phase(&ca, &ns, &uncached, get_pool, rate, get_secs).await;
    let max = if max_secs > 0 {
        let max_pool = Arc::new(JobPool::create(&client, &ns, "max-pod", max_phase_jobs).await);
        Some(
            generate_load(&ca, &cached.url, &ns, max_pool, move |t| async move {
                max_throughput(t, conc, max_secs).await
            })
            .await,
        )
    } else {
        None
    };

    println!(
        "webhook_load [{backend:?}] pod with {BINDINGS} bindings, dryRun=false, each request the first pod of a real (suspended) Job, its per-Job Secret created on the test control plane"
    );
    println!(
        "  setup: {} Jobs created (and synced, if a job controller runs) in {setup_secs:.1}s, not timed; {max_phase_jobs} more before the max-throughput phase",
        JOBS + breakdown_n + load_jobs + get_jobs
    );
    println!(
        "  {}",
        store_half.line(&format!(
            "store alone (decrypt {BINDINGS} + audit row, {breakdown_n} sequential)"
        ))
    );
    println!(
        "  {}",
        api_new.line(&format!(
            "API alone, per-Job Secret write, new Secret: create ({breakdown_n} sequential)"
        ))
    );
    println!(
        "  {}",
        api_ssa.line(&format!(
            "API alone, server-side apply of a new Secret, for comparison ({breakdown_n} sequential)"
        ))
    );
    println!(
        "  {}",
        api_half.line(&format!(
            "API alone, per-Job Secret write, existing Secret: create 409 + replace ({breakdown_n} sequential)"
        ))
    );
    println!(
        "  {}",
        fixed.line(&format!("fixed {rate}/s for {secs}s, Job cache on"))
    );
    println!("    {}", fixed.slow_by_second(rate, 10.0));
    println!(
        "    requests sent after their due time by: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (the load generator keeping its schedule)",
        lateness.pct(0.50),
        lateness.pct(0.99),
        lateness.pct(1.0)
    );
    println!("    webhook stages over these requests (histogram, ms):");
    for st in WEBHOOK_STAGES {
        let n = stages.get(st).map_or(0, |h| h.count);
        if n > 0 {
            println!(
                "      {st:<17} n={n:<6} p50 {:.3}  p99 {:.3}",
                stage_ms(&stages, st, 0.50),
                stage_ms(&stages, st, 0.99)
            );
        }
    }
    println!(
        "  {}",
        get_fixed.line(&format!(
            "fixed {rate}/s for {get_secs}s, Job cache off (every Job a GET)"
        ))
    );
    if let Some(max) = &max {
        println!(
            "  {}",
            max.line(&format!(
                "max throughput, {conc} concurrent, up to {max_secs}s"
            ))
        );
    }
    let b = format!("{backend:?}");
    println!(
        "  RESULT [{b}] machine: {} CPUs, load average (1/5/15 min) at the start of the setup {load_at_start}, at the end {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let ours = stage_ms(&stages, STAGE_OURS, 0.99);
    let e2e = fixed.pct(0.99);
    let create = stage_ms(&stages, STAGE_SECRET_WRITE, 0.99);
    let added = e2e - create;
    let clean = fixed.failed == 0 && fixed.denied == 0 && rate == 200;
    println!(
        "  RESULT [{b}] our half p99 (per request: total {:.3} ms p99 less its secret_write): {ours:.3} ms; target <= {TARGET_OURS_MS} ms at 200/s: {}",
        stage_ms(&stages, STAGE_TOTAL, 0.99),
        verdict(clean && ours <= TARGET_OURS_MS)
    );
    println!(
        "  RESULT [{b}] end-to-end admission p99 (webhook call as its caller sees it, due time to response): {e2e:.3} ms"
    );
    println!(
        "  RESULT [{b}] API server Secret-create p99 (secret_write stage, same requests): {create:.3} ms"
    );
    println!(
        "  RESULT [{b}] end-to-end p99 - Secret-create p99: {added:.3} ms; target <= {TARGET_ADDED_MS} ms at 200/s: {}",
        // Only where the buckets are fine (≤ 5 ms) is the create's p99
        // exact enough to subtract; past them, or when the difference is
        // negative (interpolation in a wide bucket), it is no PASS.
        verdict(clean && create <= 5.0 && (0.0..=TARGET_ADDED_MS).contains(&added))
    );
    println!(
        "  RESULT [{b}] Job verification p99: watch cache {:.3} ms (n={}), API GET {:.3} ms (n={}, cache-off phase)",
        stage_ms(&stages, STAGE_JOB_VERIFY_CACHE, 0.99),
        stages.get(STAGE_JOB_VERIFY_CACHE).map_or(0, |h| h.count),
        stage_ms(&get_stages, STAGE_JOB_VERIFY_API, 0.99),
        get_stages.get(STAGE_JOB_VERIFY_API).map_or(0, |h| h.count),
    );
    println!(
        "  RESULT [{b}] with the cache off: our half p99 {:.3} ms, end-to-end p99 {:.3} ms, Secret-create p99 {:.3} ms",
        stage_ms(&get_stages, STAGE_OURS, 0.99),
        get_fixed.pct(0.99),
        stage_ms(&get_stages, STAGE_SECRET_WRITE, 0.99)
    );

    cached.task.abort();
    uncached.task.abort();
    Some(ns)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    if std::env::var_os("MLFLOW_SECRETS_TEST_KUBECONFIG").is_none() {
        println!(
            "webhook_load: MLFLOW_SECRETS_TEST_KUBECONFIG is not set; start the control plane (scripts/testenv.sh up). Not run."
        );
        if bench {
            std::process::exit(1);
        }
        return;
    }
    let (rate, secs, get_secs, max_secs, conc, n) = if bench {
        (
            env_num("WEBHOOK_BENCH_RATE", 200),
            env_num("WEBHOOK_BENCH_SECS", 20),
            env_num("WEBHOOK_BENCH_GET_SECS", 10),
            env_num("WEBHOOK_BENCH_MAX_SECS", 10),
            env_num("WEBHOOK_BENCH_CONCURRENCY", 16) as usize,
            500,
        )
    } else {
        (20, 1, 1, 1, 2, 20)
    };
    // The test run's max phase is a smoke test: it may run out of Jobs.
    let max_phase_jobs = if bench {
        (max_secs * MAX_PHASE_RATE) as usize
    } else {
        40
    };
    let backends =
        std::env::var("WEBHOOK_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        testkit::init();
        let mut used = Vec::new();
        for b in backends.split(',') {
            let backend = match b.trim() {
                "sqlite" => Backend::Sqlite,
                "postgres" => Backend::Postgres,
                "mysql" => Backend::Mysql,
                other => panic!("unknown backend {other}"),
            };
            let knobs = Knobs {
                rate,
                secs,
                get_secs,
                max_secs,
                conc,
                breakdown_n: n,
                max_phase_jobs,
            };
            if let Some(ns) = run_backend(backend, &knobs).await {
                used.push(ns);
            }
        }
        let nss: Api<Namespace> = Api::all(kube_client().await);
        for ns in used {
            let _ = nss.delete(&ns, &DeleteParams::background()).await;
        }
    });
}
