//! Webhook admission load (issue 5, "Performance"): AdmissionReview requests
//! over TLS to the webhook served in-process, for a pod with 5 bindings,
//! dryRun=false, so every request decrypts 5 values, appends an audit row
//! and creates the per-Job Secret on the real control plane (every request is
//! a new Job's first pod).
//!
//!     scripts/bench_webhook.sh            # release build, SQLite and PostgreSQL
//!     cargo bench --bench webhook_load    # the same, with the environment below
//!
//! Needs `MLFLOW_SECRETS_TEST_KUBECONFIG` (the test control plane) and, for
//! PostgreSQL, `MLFLOW_SECRETS_TEST_POSTGRES_URL` (`scripts/db.sh env`).
//! Knobs: `WEBHOOK_BENCH_RATE` (200/s), `WEBHOOK_BENCH_SECS` (20),
//! `WEBHOOK_BENCH_MAX_SECS` (10), `WEBHOOK_BENCH_CONCURRENCY` (16),
//! `WEBHOOK_BENCH_BACKENDS` (`sqlite,postgres`).
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

#[path = "../tests/common/mod.rs"]
mod common;

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
use mlflow_secrets::k8s::metrics::OperatorMetrics;
use mlflow_secrets::k8s::webhook::certs::{self, CertConfig};
use mlflow_secrets::k8s::webhook::secret::{self, OwningJob};
use mlflow_secrets::k8s::webhook::{WebhookState, router, server};
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;
use serde_json::json;

use common::{Backend, TestDb};

const BINDINGS: usize = 5;
/// Jobs the requests rotate over (each has its own per-Job Secret).
const JOBS: usize = 20;
const RID: &str = "bench-scorer";

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

struct Target {
    client: Https,
    url: String,
    ns: String,
    /// Serial for Job names: every request is a new Job's first pod.
    next: std::sync::atomic::AtomicUsize,
}

impl Target {
    /// A new Job's first pod (the common case: scorer Jobs run one pod), so
    /// each admission creates its per-Job Secret. The owner is not a real
    /// Job; the garbage collector removes those Secrets later, as it would
    /// for finished Jobs.
    fn review(&self, _i: usize) -> Bytes {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (job, uid) = (&format!("first-pod-{n}"), &uuid::Uuid::new_v4().to_string());
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
        Bytes::from(serde_json::to_vec(&body).unwrap())
    }

    /// One admission; `Ok(true)` allowed, `Ok(false)` denied.
    async fn send(&self, i: usize) -> Result<bool, String> {
        let req = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .body(Full::new(self.review(i)))
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

/// Open loop: request `i` is due at `start + i/rate`.
async fn fixed_rate(t: Arc<Target>, rate: u64, secs: u64) -> Stats {
    let n = (rate * secs) as usize;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let r = t.send(i).await;
            (r, due.elapsed())
        }));
    }
    collect(handles, start).await
}

/// Closed loop: `conc` workers back to back for `secs`.
async fn max_throughput(t: Arc<Target>, conc: usize, secs: u64) -> Stats {
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut workers = Vec::new();
    for w in 0..conc {
        let t = t.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = w;
            while tokio::time::Instant::now() < end {
                let t0 = tokio::time::Instant::now();
                let r = t.send(i).await;
                out.push((r, t0.elapsed()));
                i += conc;
            }
            out
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    summarize(all, start.elapsed())
}

async fn collect(
    handles: Vec<tokio::task::JoinHandle<(Result<bool, String>, Duration)>>,
    start: tokio::time::Instant,
) -> Stats {
    let mut all = Vec::with_capacity(handles.len());
    for h in handles {
        all.push(h.await.unwrap());
    }
    summarize(all, start.elapsed())
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

async fn run_backend(
    backend: Backend,
    rate: u64,
    secs: u64,
    max_secs: u64,
    conc: usize,
    breakdown_n: usize,
) {
    let Some(db) = TestDb::new(backend).await else {
        println!("webhook_load: {backend:?} not configured, skipped");
        return;
    };
    let client = kube_client().await;
    let ns = format!(
        "wh-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
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
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let mut jobs = Vec::new();
    for j in 0..JOBS {
        let name = format!("scorer-{j}");
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .unwrap();
        let created = jobs_api.create(&PostParams::default(), &job).await.unwrap();
        jobs.push((name, created.metadata.uid.unwrap()));
    }

    // The two halves alone.
    let st = store.clone();
    let ns2 = ns.clone();
    let store_half = sequential(breakdown_n, |_| {
        let (st, ns) = (st.clone(), ns2.clone());
        async move {
            st.get_all_secrets_for_resource(&ns, "SCORER_JOB", RID, "webhook:bench")
                .await
                .map(|m| m.len() == BINDINGS)
                .unwrap_or(false)
        }
    })
    .await;
    let values = store
        .get_all_secrets_for_resource(&ns, "SCORER_JOB", RID, "webhook:bench")
        .await
        .unwrap();
    let values = Arc::new(values);
    let (c2, ns3, jobs2) = (client.clone(), ns.clone(), jobs.clone());
    let api_half = sequential(breakdown_n, |i| {
        let (c, ns, v) = (c2.clone(), ns3.clone(), values.clone());
        let (name, uid) = jobs2[i % jobs2.len()].clone();
        async move {
            let job = OwningJob {
                name,
                uid,
                api_version: "batch/v1".into(),
            };
            secret::apply(&c, &ns, &job, "SCORER_JOB", RID, &v)
                .await
                .is_ok()
        }
    })
    .await;
    // The write when the Secret is new (a Job's first pod), and a
    // server-side apply of the same Secret for comparison.
    let (c3, ns4, uid0, v3) = (
        client.clone(),
        ns.clone(),
        jobs[0].1.clone(),
        values.clone(),
    );
    let api_new = sequential(breakdown_n, |i| {
        let (c, ns, v) = (c3.clone(), ns4.clone(), v3.clone());
        let job = OwningJob {
            name: format!("apply-new-{i}"),
            uid: uid0.clone(),
            api_version: "batch/v1".into(),
        };
        async move {
            secret::apply(&c, &ns, &job, "SCORER_JOB", RID, &v)
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
    let metrics = Arc::new(OperatorMetrics::new());
    let state = Arc::new(WebhookState::new(
        client.clone(),
        store.clone(),
        metrics,
        Duration::from_secs(5),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_task = tokio::spawn(server::serve(
        listener,
        router(state),
        certs.clone(),
        std::future::pending(),
    ));
    let target = Arc::new(Target {
        client: tls_client(&certs.ca_bundle()),
        url: format!("https://127.0.0.1:{port}/mutate"),
        ns: ns.clone(),
        next: std::sync::atomic::AtomicUsize::new(0),
    });
    // Warm up: connections, statement caches.
    let _ = fixed_rate(target.clone(), 50, 1).await;
    let fixed = fixed_rate(target.clone(), rate, secs).await;
    let max = max_throughput(target.clone(), conc, max_secs).await;

    println!(
        "webhook_load [{backend:?}] pod with {BINDINGS} bindings, dryRun=false, each request a new Job's first pod (its per-Job Secret created on the test control plane)"
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
    println!("  {}", fixed.line(&format!("fixed {rate}/s for {secs}s")));
    println!(
        "  {}",
        max.line(&format!("max throughput, {conc} concurrent, {max_secs}s"))
    );
    println!(
        "  target p99 <= 10 ms at 200/s: {}",
        if rate == 200 && fixed.pct(0.99) <= 10.0 && fixed.failed == 0 {
            "met"
        } else {
            "NOT met (or not measured at 200/s)"
        }
    );

    server_task.abort();
    let _ = nss.delete(&ns, &DeleteParams::background()).await;
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
    let (rate, secs, max_secs, conc, n) = if bench {
        (
            env_num("WEBHOOK_BENCH_RATE", 200),
            env_num("WEBHOOK_BENCH_SECS", 20),
            env_num("WEBHOOK_BENCH_MAX_SECS", 10),
            env_num("WEBHOOK_BENCH_CONCURRENCY", 16) as usize,
            500,
        )
    } else {
        (20, 1, 1, 2, 20)
    };
    let backends =
        std::env::var("WEBHOOK_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        common::init();
        for b in backends.split(',') {
            let backend = match b.trim() {
                "sqlite" => Backend::Sqlite,
                "postgres" => Backend::Postgres,
                "mysql" => Backend::Mysql,
                other => panic!("unknown backend {other}"),
            };
            run_backend(backend, rate, secs, max_secs, conc, n).await;
        }
    });
}
