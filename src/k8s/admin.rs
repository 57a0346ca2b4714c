//! Probes and metrics of the operator: `/health` (liveness), `/ready`
//! (readiness) and `/metrics` (Prometheus), served on the webhook's TLS
//! port so that no listener outside loopback is plain HTTP (docs/design.md §10
//! rule 8). Kubelet probes and a ServiceMonitor use `scheme: HTTPS`.
//!
//! Readiness means "this replica can do its job":
//! - the keystore has loaded (a wrong passphrase keeps it false and says so
//!   in the log),
//! - the store is connected and its schema is current,
//! - the webhook serving certificate is loaded,
//! - and, while this replica leads, the controllers' watches have synced.
//!
//! A replica that does not lead is ready without controller watches: every
//! replica serves the webhook, and taking followers out of the Service
//! would leave one endpoint for every admission. Liveness never depends on
//! the database or the API server: restarting the process fixes neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::OperatorMetrics;

/// Readiness flags, set by the parts of the operator as they come up.
#[derive(Debug, Default)]
pub struct Health {
    pub keystore_loaded: AtomicBool,
    pub store_connected: AtomicBool,
    pub cert_loaded: AtomicBool,
    pub leader: AtomicBool,
    pub controllers_synced: Arc<AtomicBool>,
    /// The webhook's namespace watch has listed once: before that every
    /// labelled pod would be denied as an outage, so the replica must not
    /// receive admissions yet.
    pub webhook_synced: AtomicBool,
    pub test_mode: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.keystore_loaded.load(Ordering::SeqCst)
            && self.store_connected.load(Ordering::SeqCst)
            && self.cert_loaded.load(Ordering::SeqCst)
            && self.webhook_synced.load(Ordering::SeqCst)
            && (!self.leader.load(Ordering::SeqCst)
                || self.controllers_synced.load(Ordering::SeqCst))
    }

    fn report(&self) -> serde_json::Value {
        let flag = |b: &AtomicBool| b.load(Ordering::SeqCst);
        serde_json::json!({
            "ready": self.ready(),
            "keystore": if flag(&self.keystore_loaded) { "loaded" } else { "not loaded" },
            "store": if flag(&self.store_connected) { "connected" } else { "not connected" },
            "webhook_certificate": if flag(&self.cert_loaded) { "loaded" } else { "not loaded" },
            "leader": flag(&self.leader),
            "controllers_synced": flag(&self.controllers_synced),
            "webhook_synced": flag(&self.webhook_synced),
            "test_mode": flag(&self.test_mode),
        })
    }
}

#[derive(Clone)]
struct AdminState {
    health: Arc<Health>,
    metrics: Arc<OperatorMetrics>,
}

/// `/health`, `/ready` and `/metrics`.
pub fn router(health: Arc<Health>, metrics: Arc<OperatorMetrics>) -> Router {
    Router::new()
        .route("/health", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { health, metrics })
}

/// Liveness: the process answers. The body says what is and is not up.
async fn live(State(s): State<AdminState>) -> impl IntoResponse {
    let mut body = s.health.report();
    body["status"] = "ok".into();
    (StatusCode::OK, axum::Json(body))
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    let status = if s.health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(s.health.report()))
}

async fn render_metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_status(app: &Router, path: &str) -> StatusCode {
        app.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn ready_needs_every_part_and_synced_watches_while_leading() {
        let health = Arc::new(Health::default());
        let app = router(health.clone(), Arc::new(OperatorMetrics::new()));
        assert_eq!(get_status(&app, "/health").await, StatusCode::OK);
        assert_eq!(
            get_status(&app, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.keystore_loaded.store(true, Ordering::SeqCst);
        health.store_connected.store(true, Ordering::SeqCst);
        assert_eq!(
            get_status(&app, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "no certificate yet"
        );
        health.cert_loaded.store(true, Ordering::SeqCst);
        assert_eq!(
            get_status(&app, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "the webhook's namespace watch has not listed yet"
        );
        health.webhook_synced.store(true, Ordering::SeqCst);
        assert_eq!(get_status(&app, "/ready").await, StatusCode::OK);
        health.leader.store(true, Ordering::SeqCst);
        assert_eq!(
            get_status(&app, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "a leader whose watches have not synced is not ready"
        );
        health.controllers_synced.store(true, Ordering::SeqCst);
        assert_eq!(get_status(&app, "/ready").await, StatusCode::OK);
        health.keystore_loaded.store(false, Ordering::SeqCst);
        assert_eq!(
            get_status(&app, "/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get_status(&app, "/metrics").await, StatusCode::OK);
    }
}
