//! The mutating admission webhook (DESIGN §8, injection contract): every
//! replica serves it; it decrypts the secrets bound to a scorer Job and
//! hands them to the Job's pods through a per-Job Kubernetes Secret.
//!
//! Layers:
//! - [`inject`]: the JSON patch (pure, unit-tested);
//! - [`admission`]: the decision for one request (store, deadline, deny);
//! - [`secret`]: the per-Job Secret `<job>-mlflow-secrets`;
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
//! let state = Arc::new(WebhookState::new(client, store, metrics, Duration::from_secs(5)));
//! server::serve(listener, router(state), certs, shutdown).await?;            // POST /mutate
//! ```
//!
//! The store should be built with `SqlStore::with_decrypt_limits` so that
//! decrypts are limited per namespace (the workspace); a refusal becomes a
//! deny with the store's reason. Audit: every value read is recorded by the
//! store under the principal `webhook:<ns>/<job>/<pod>` with the binding
//! names, secret ids and KEK versions; refusals the store did not see are
//! appended here.

pub mod admission;
pub mod certs;
pub mod inject;
pub mod secret;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::store::SqlStore;

/// Default time the webhook gives itself to answer: well under the
/// configuration's `timeoutSeconds` (10), so that a hung database becomes a
/// clear deny from us rather than a timeout error from the API server.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// The path the MutatingWebhookConfiguration calls.
pub const MUTATE_PATH: &str = "/mutate";
/// Largest AdmissionReview body accepted (a Pod is at most ~1.5 MiB in etcd).
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What the webhook needs: a Kubernetes client (per-Job Secrets), the store
/// (bindings and values), the shared metrics, and its deadline.
pub struct WebhookState {
    pub(crate) client: kube::Client,
    pub(crate) store: Arc<SqlStore>,
    pub(crate) metrics: Arc<OperatorMetrics>,
    pub(crate) deadline: Duration,
}

impl WebhookState {
    /// `deadline` bounds the store and API work of one admission; use
    /// [`DEFAULT_DEADLINE`] unless the configuration's timeout differs.
    pub fn new(
        client: kube::Client,
        store: Arc<SqlStore>,
        metrics: Arc<OperatorMetrics>,
        deadline: Duration,
    ) -> Self {
        Self {
            client,
            store,
            metrics,
            deadline,
        }
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
    let (verdict, subject) = admission::review(&state, &req).await;
    let resp = admission::response(&req, &verdict);
    let ns = subject
        .as_ref()
        .map(|s| s.namespace.clone())
        .or_else(|| req.namespace.clone())
        .unwrap_or_default();
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
    reply(StatusCode::OK, resp)
}

fn reply(status: StatusCode, resp: AdmissionResponse) -> Response {
    (status, axum::Json(resp.into_review())).into_response()
}
