//! Prometheus metrics of the server, served at `/metrics`.
//!
//! Labels are bounded on purpose: the route *template* (never the raw path
//! or query, which could carry names), the method and the status. No label
//! carries a principal, a secret name or a workspace.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Every metric the server exports, in its own registry (so tests can run
/// many servers in one process).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub encrypts: IntCounter,
    pub decrypts: IntCounter,
    pub audit_writes: IntCounterVec,
    pub auth_denied: IntCounterVec,
    pub rate_limited: IntCounter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("mlflow_secrets".into()), None)
            .expect("metric prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method"],
        )
        .expect("metric");
        let encrypts = IntCounter::new(
            "encrypts_total",
            "Values encrypted (secrets created or updated)",
        )
        .expect("metric");
        let decrypts =
            IntCounter::new("decrypts_total", "Values decrypted by this server").expect("metric");
        let audit_writes = IntCounterVec::new(
            Opts::new(
                "audit_writes_total",
                "Audit records the server wrote itself (metadata reads, listings, denials), by result",
            ),
            &["result"],
        )
        .expect("metric");
        let auth_denied = IntCounterVec::new(
            Opts::new(
                "auth_denied_total",
                "Requests refused by authentication, authorization or rate limits, by status",
            ),
            &["status"],
        )
        .expect("metric");
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused by the per-principal rate limit",
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(encrypts.clone()),
            Box::new(decrypts.clone()),
            Box::new(audit_writes.clone()),
            Box::new(auth_denied.clone()),
            Box::new(rate_limited.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        // Start the labelled counters at zero, so they are exported (and
        // alerts on them work) before the first event.
        for r in ["ok", "error"] {
            audit_writes.with_label_values(&[r]);
        }
        for st in ["401", "403", "429"] {
            auth_denied.with_label_values(&[st]);
        }
        Self {
            registry,
            requests,
            latency,
            encrypts,
            decrypts,
            audit_writes,
            auth_denied,
            rate_limited,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_metrics() {
        let m = Metrics::new();
        m.requests.with_label_values(&["/x", "GET", "200"]).inc();
        m.latency.with_label_values(&["/x", "GET"]).observe(0.01);
        let text = m.render();
        assert!(
            text.contains(
                "mlflow_secrets_http_requests_total{method=\"GET\",route=\"/x\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("mlflow_secrets_http_request_duration_seconds_bucket"));
    }
}
