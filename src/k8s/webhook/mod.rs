//! The mutating admission webhook (docs/design.md §8, injection contract): every
//! replica serves it; it decrypts the secrets bound to a scorer Job and
//! hands them to the Job's pods through a per-Job Kubernetes Secret.
//!
//! Layers:
//! - [`inject`]: the JSON patch (pure, unit-tested);
//! - [`admission`]: the decision for one request (store, deadline, deny);
//! - [`secret`]: the per-Job Secret `<job>-mlflow-secrets`;
//! - [`cache`]: the opted-in namespaces and labelled Jobs (watch caches);
//! - [`certs`]: the webhook's own CA and serving certificate, their Secret,
//!   rotation, and the MutatingWebhookConfiguration's caBundle;
//! - [`server`]: HTTPS serving with the hot-swappable certificate.
//!
//! How the operator wires it (public API):
//! ```text
//! let certs = certs::bootstrap(client.clone(), &cert_cfg).await?;            // every replica
//! tokio::spawn(certs::refresh_loop(client.clone(), cert_cfg.clone(), certs.clone(), metrics.clone()));
//! // while leader only (drop the task when the Lease is lost):
//! tokio::spawn(certs::leader_loop(client.clone(), cert_cfg.clone(), metrics.clone()));
//! let state = Arc::new(WebhookState::new(client, store, metrics, Duration::from_secs(5))
//!     .with_service_account_limit(Some(120)));
//! let client_ca = Some(server::client_verifier(Path::new("/etc/webhook-client-ca.crt"))?);
//! server::serve(listener, router(state), certs, client_ca, shutdown).await?; // POST /mutate
//! ```
//!
//! The store should be built with `SqlStore::with_decrypt_limits` so that
//! decrypts are limited per namespace (the workspace); a refusal becomes a
//! deny with the store's reason. The webhook adds a limit per
//! ServiceAccount (`with_service_account_limit`), so one scorer identity
//! cannot spend its whole namespace's budget. Audit: every value read is recorded by the
//! store under the principal `webhook:<ns>/<job>/<pod>` with the binding
//! names, secret ids and KEK versions; refusals the store did not see are
//! appended here.

pub(crate) mod admission;
pub(crate) mod cache;
pub mod certs;
pub mod consent;
pub(crate) mod inject;
mod job;
pub mod secret;
pub mod server;
mod stages;

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use self::admission::{RESULT_DRY_RUN, RESULT_INJECTED, RESULT_SKIPPED, Verdict};
use crate::k8s::metrics::OperatorMetrics;
use crate::k8s::scope::WatchScope;
use crate::store::SecretsStore;

/// Default time the webhook gives itself to answer: well under the
/// configuration's `timeoutSeconds` (10), so that a hung database becomes a
/// clear deny from us rather than a timeout error from the API server.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(4);
/// The path the MutatingWebhookConfiguration calls.
pub const MUTATE_PATH: &str = "/mutate";
/// Largest AdmissionReview body accepted (a Pod is at most ~1.5 MiB in etcd).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Most distinct namespace label values the webhook's metrics take; later
/// namespaces share [`OTHER_NAMESPACES`]. Far above the opted-in namespaces
/// of one cluster, and it caps the series whatever the watch reports.
pub const MAX_NAMESPACE_SERIES: usize = 500;
/// The namespace label of requests for a namespace that has not opted in
/// (or does not exist), and of namespaces past [`MAX_NAMESPACE_SERIES`].
pub const OTHER_NAMESPACES: &str = "_other";

/// What the webhook needs: a Kubernetes client (per-Job Secrets, Job
/// reads), the store (bindings and values), the shared metrics, its
/// deadline, its view of the cluster and the per-ServiceAccount limit.
pub struct WebhookState {
    pub(crate) client: kube::Client,
    pub(crate) store: Arc<dyn SecretsStore>,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) deadline: Duration,
    pub(crate) view: cache::ClusterView,
    /// Whether "the Job is real" may be answered from the Job watch
    /// (default); off, every admission GETs its Job.
    pub(crate) job_cache: bool,
    per_service_account: Option<DefaultKeyedRateLimiter<String>>,
    /// Namespace label values handed out so far (bounded).
    series: Mutex<HashSet<String>>,
}

impl WebhookState {
    /// `deadline` bounds the store and API work of one admission; use
    /// [`DEFAULT_DEADLINE`] unless the configuration's timeout differs.
    /// Starts the namespace and Job watches (must run inside a Tokio
    /// runtime); they stop when the state is dropped.
    pub fn new(
        client: kube::Client,
        store: Arc<dyn SecretsStore>,
        metrics: Arc<OperatorMetrics>,
        deadline: Duration,
    ) -> Self {
        Self::new_scoped(client, store, metrics, deadline, &WatchScope::All)
    }

    /// [`WebhookState::new`] watching only `scope` (`--watch-namespaces`):
    /// with the chart's per-namespace Roles a cluster-wide Job watch is
    /// refused, and the caches would never fill.
    pub fn new_scoped(
        client: kube::Client,
        store: Arc<dyn SecretsStore>,
        metrics: Arc<OperatorMetrics>,
        deadline: Duration,
        scope: &WatchScope,
    ) -> Self {
        Self {
            view: cache::ClusterView::start(client.clone(), scope),
            client,
            store,
            metrics,
            deadline,
            job_cache: true,
            per_service_account: None,
            series: Mutex::new(HashSet::new()),
        }
    }

    /// Limit decrypts per ServiceAccount (`<namespace>/<name>`) to
    /// `per_minute`; `None` or 0: no limit beyond the store's.
    pub fn with_service_account_limit(mut self, per_minute: Option<u32>) -> Self {
        self.per_service_account = per_minute
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        self
    }

    /// `false`: verify every admission's Job with a GET to the API server,
    /// never from the watch cache. Slower and never less safe (the GET is
    /// what a cache miss does anyway); for measuring what the cache saves
    /// (`benches/webhook_load.rs`).
    pub fn with_job_cache(mut self, on: bool) -> Self {
        self.job_cache = on;
        self
    }

    /// Whether the webhook's namespace watch has listed once.
    pub fn synced(&self) -> bool {
        self.view.namespaces_synced()
    }

    /// Whether the Job watch has listed once, so that Jobs that existed
    /// before the webhook started are answered from the cache.
    pub fn jobs_synced(&self) -> bool {
        self.view.jobs_synced()
    }

    /// Whether `ns` exists and opted in to injection, as the watch saw it.
    pub fn knows_namespace(&self, ns: &str) -> bool {
        self.view.opted_in(ns)
    }

    /// Take `n` decrypts from ServiceAccount `ns/sa`'s bucket. Called only
    /// for namespaces that opted in and pods whose Job was read, so the
    /// keys are ServiceAccounts of real Jobs, not request strings.
    pub(crate) fn check_service_account_limit(
        &self,
        ns: &str,
        sa: &str,
        n: u32,
    ) -> Result<(), crate::store::StoreError> {
        let (Some(l), Some(n)) = (&self.per_service_account, NonZeroU32::new(n)) else {
            return Ok(());
        };
        let key = format!("{ns}/{sa}");
        let wait = match l.check_key_n(&key, n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => {
                use governor::clock::{Clock, DefaultClock};
                not_until.wait_time_from(DefaultClock::default().now())
            }
            Err(_) => Duration::from_secs(60),
        };
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(crate::store::StoreError::RateLimited {
            message: format!(
                "decrypt rate limit exceeded for ServiceAccount '{key}': retry in {secs} s"
            ),
            retry_after: Duration::from_secs(secs.max(1)),
        })
    }

    /// The metric label for namespace `ns`: itself when it opted in (the
    /// watch knows it) and the series cap is not reached, otherwise
    /// [`OTHER_NAMESPACES`]. A forged request's made-up namespace never
    /// becomes a series.
    pub fn namespace_label(&self, ns: &str) -> String {
        if !self.view.opted_in(ns) {
            return OTHER_NAMESPACES.into();
        }
        let mut seen = self.series.lock().expect("series lock");
        if seen.contains(ns) {
            return ns.to_string();
        }
        if seen.len() >= MAX_NAMESPACE_SERIES {
            return OTHER_NAMESPACES.into();
        }
        seen.insert(ns.to_string());
        ns.to_string()
    }
}

/// The webhook's HTTP routes: `POST /mutate` (AdmissionReview v1 in and out).
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn mutate(State(state): State<Arc<WebhookState>>, body: Bytes) -> Response {
    let started = Instant::now();
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            // serde's message names a field or position, never the body.
            let msg = format!("invalid AdmissionReview: {e}");
            return reply(StatusCode::BAD_REQUEST, AdmissionResponse::invalid(msg));
        }
    };
    let req: AdmissionRequest<Pod> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                AdmissionResponse::invalid("AdmissionReview has no request"),
            );
        }
    };
    let mut stages = stages::Stages::default();
    let (verdict, subject) = admission::review(&state, &req, &mut stages).await;
    let patch_started = Instant::now();
    let resp = admission::response(&req, &verdict);
    if matches!(verdict, Verdict::Allow { .. }) {
        stages.add_patch(patch_started.elapsed());
    }
    let ns = state.namespace_label(
        &subject
            .as_ref()
            .map(|s| s.namespace.clone())
            .or_else(|| req.namespace.clone())
            .unwrap_or_default(),
    );
    let result = match &verdict {
        Verdict::Skip => RESULT_SKIPPED,
        Verdict::Allow { dry_run: true, .. } => RESULT_DRY_RUN,
        Verdict::Allow { .. } => RESULT_INJECTED,
        Verdict::Deny(d) => d.result,
    };
    state
        .metrics
        .injections
        .with_label_values(&[ns.as_str(), result])
        .inc();
    state
        .metrics
        .admission_duration
        .with_label_values(&[result])
        .observe(started.elapsed().as_secs_f64());
    if let Some(s) = &subject {
        let job = s.job.as_ref().map(|j| j.name.as_str()).unwrap_or("");
        let rid = s.resource_id.as_deref().unwrap_or("");
        match &verdict {
            Verdict::Allow { injection, .. } => tracing::info!(
                namespace = %s.namespace, pod = %s.pod, job, resource_type = %s.resource_type,
                resource_id = rid, mode = injection.mode.as_str(),
                bindings = %injection.bindings.keys().cloned().collect::<Vec<_>>().join(","),
                dry_run = req.dry_run, "injected"
            ),
            Verdict::Deny(d) => {
                tracing::warn!(
                    namespace = %s.namespace, pod = %s.pod, job, resource_type = %s.resource_type,
                    resource_id = rid, result = d.result, reason = %d.reason, "admission denied"
                );
                if !d.audited && !req.dry_run {
                    // Off the response path: a store that is down must not
                    // delay the deny, and the row is best effort then.
                    let rec = admission::deny_record(s, d);
                    let store = state.store.clone();
                    tokio::spawn(async move {
                        if let Err(e) = store.append_audit(&rec).await {
                            tracing::warn!(error = %e, "could not audit a denied injection");
                        }
                    });
                }
            }
            Verdict::Skip => {}
        }
    }
    let reply = reply(StatusCode::OK, resp);
    stages.observe(&state.metrics, started, result == RESULT_INJECTED);
    reply
}

fn reply(status: StatusCode, resp: AdmissionResponse) -> Response {
    (status, axum::Json(resp.into_review())).into_response()
}
