//! Prometheus metrics of the operator process. One registry, shared by the
//! controllers, the webhook and the admin server, so `/metrics` shows them
//! all.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric the operator exports.
pub struct OperatorMetrics {
    pub registry: Registry,
    /// Reconciles by controller (`mlflowsecret`/`mlflowsecretbinding`) and
    /// result (`ok`/`error`).
    pub reconciles: IntCounterVec,
    /// Reconcile duration by controller.
    pub reconcile_duration: HistogramVec,
    /// Admission requests by namespace and result (`injected`, `denied`,
    /// `skipped`, `error`).
    pub injections: IntCounterVec,
    /// Admission latency by result.
    pub admission_duration: HistogramVec,
    /// Values decrypted for injection or import, by namespace.
    pub decrypts: IntCounterVec,
    /// Unix time at which the webhook serving certificate expires.
    pub cert_expiry: Gauge,
    /// 1 while this replica holds the Lease.
    pub leader: IntGauge,
}

impl OperatorMetrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("mlflow_secrets_operator".into()), None)
            .expect("static registry prefix is valid");
        let reconciles = IntCounterVec::new(
            Opts::new("reconciles_total", "Reconciles by controller and result"),
            &["controller", "result"],
        )
        .expect("static metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Reconcile duration")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["controller"],
        )
        .expect("static metric");
        let injections = IntCounterVec::new(
            Opts::new(
                "injections_total",
                "Admission requests by namespace and result",
            ),
            &["namespace", "result"],
        )
        .expect("static metric");
        let admission_duration = HistogramVec::new(
            HistogramOpts::new("admission_duration_seconds", "Admission latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
            ]),
            &["result"],
        )
        .expect("static metric");
        let decrypts = IntCounterVec::new(
            Opts::new("decrypts_total", "Secret values decrypted, by namespace"),
            &["namespace"],
        )
        .expect("static metric");
        let cert_expiry = Gauge::new(
            "webhook_cert_expiry_timestamp_seconds",
            "Unix time at which the webhook serving certificate expires",
        )
        .expect("static metric");
        let leader =
            IntGauge::new("leader", "1 while this replica holds the Lease").expect("static metric");
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(injections.clone()),
            Box::new(admission_duration.clone()),
            Box::new(decrypts.clone()),
            Box::new(cert_expiry.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            reconciles,
            reconcile_duration,
            injections,
            admission_duration,
            decrypts,
            cert_expiry,
            leader,
        }
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}
