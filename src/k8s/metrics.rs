//! Prometheus metrics of the operator process. One registry, shared by the
//! controllers, the webhook and the admin server, so `/metrics` shows them
//! all.

use prometheus::core::Metric as _;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The `stage` label values of `webhook_stage_seconds`: a closed set, so
/// no request can add a series.
/// - `job_verify_cache`, `job_verify_api`: "the Job is real", answered by
///   the watch cache or by a GET to the API server;
/// - `store_read`: the store's read of the bindings and the decrypt (and
///   the consent check between the two);
/// - `audit`: the store's audit row for that read (written before any value
///   leaves the process);
/// - `patch`: building the JSON patch and the AdmissionResponse;
/// - `secret_write`: the API server's write of the per-Job Secret;
/// - `total`: the whole request, body parse to serialized response;
/// - `ours`: `total` minus `secret_write` of the same request.
pub const WEBHOOK_STAGES: [&str; 8] = [
    STAGE_JOB_VERIFY_CACHE,
    STAGE_JOB_VERIFY_API,
    STAGE_STORE_READ,
    STAGE_AUDIT,
    STAGE_PATCH,
    STAGE_SECRET_WRITE,
    STAGE_TOTAL,
    STAGE_OURS,
];
pub const STAGE_JOB_VERIFY_CACHE: &str = "job_verify_cache";
pub const STAGE_JOB_VERIFY_API: &str = "job_verify_api";
pub const STAGE_STORE_READ: &str = "store_read";
pub const STAGE_AUDIT: &str = "audit";
pub const STAGE_PATCH: &str = "patch";
pub const STAGE_SECRET_WRITE: &str = "secret_write";
pub const STAGE_TOTAL: &str = "total";
pub const STAGE_OURS: &str = "ours";

/// Bucket bounds (seconds) of the stage histograms: 25 µs steps to 0.5 ms,
/// 50 µs to 2 ms, 100 µs to 5 ms, then 10-50% wider each up to 5 s, so
/// that a p99 read from the buckets is within 50-100 µs where the targets
/// are.
pub fn stage_buckets() -> Vec<f64> {
    let mut b = Vec::new();
    let mut push_steps = |from_us: u32, to_us: u32, step_us: u32| {
        let mut us = from_us;
        while us <= to_us {
            b.push(f64::from(us) / 1e6);
            us += step_us;
        }
    };
    push_steps(25, 500, 25);
    push_steps(550, 2000, 50);
    push_steps(2100, 5000, 100);
    for ms in [
        6.0, 7.0, 8.0, 9.0, 10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0,
        200.0, 300.0, 500.0, 750.0, 1000.0, 2000.0, 5000.0,
    ] {
        b.push(ms / 1e3);
    }
    b
}

/// The cumulative bucket counts of one histogram at one moment, to take
/// the difference of two scrapes and a quantile of what happened between.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, cumulative count)`, ascending, without
    /// the implicit `+Inf` bucket.
    pub buckets: Vec<(f64, u64)>,
    /// All observations, the `+Inf` bucket's count.
    pub count: u64,
}

impl HistogramSnapshot {
    /// The current counts of `h`.
    pub fn of(h: &Histogram) -> Self {
        let m = h.metric();
        let h = m.get_histogram();
        Self {
            buckets: h
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .collect(),
            count: h.get_sample_count(),
        }
    }

    /// What was observed after `earlier` (a scrape of the same histogram).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|((le, now), (_, then))| (*le, now.saturating_sub(*then)))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// The `q` quantile in seconds, interpolated linearly within its bucket
    /// as Prometheus' `histogram_quantile` does; `None` without
    /// observations. A quantile in the `+Inf` bucket is the highest finite
    /// bound (a lower bound of the truth).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for &(le, cum) in &self.buckets {
            if cum as f64 >= rank && cum > below {
                let in_bucket = (cum - below) as f64;
                return Some(lower + (le - lower) * ((rank - below as f64) / in_bucket));
            }
            lower = le;
            below = cum;
        }
        Some(lower)
    }
}

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
    /// Where an injecting admission spends its time, by `stage` (one of
    /// [`WEBHOOK_STAGES`]), in buckets fine enough to read a p99 between
    /// 0.1 and 3 ms (docs/benchmarks.md, the webhook's split target).
    pub webhook_stage: HistogramVec,
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
        let webhook_stage = HistogramVec::new(
            HistogramOpts::new(
                "webhook_stage_seconds",
                "Time of each stage of an injecting admission",
            )
            .buckets(stage_buckets()),
            &["stage"],
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
            Box::new(webhook_stage.clone()),
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
            webhook_stage,
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

impl OperatorMetrics {
    /// The current counts of stage `stage` of `webhook_stage_seconds`.
    pub fn stage_snapshot(&self, stage: &str) -> HistogramSnapshot {
        HistogramSnapshot::of(&self.webhook_stage.with_label_values(&[stage]))
    }
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_buckets_are_fine_where_the_targets_are() {
        let b = stage_buckets();
        assert!(b.windows(2).all(|w| w[0] < w[1]), "ascending");
        assert_eq!(b[0], 25e-6);
        for w in b.windows(2).filter(|w| w[1] <= 3e-3) {
            assert!(w[1] - w[0] <= 100e-6 + 1e-12, "{w:?}");
        }
        assert_eq!(*b.last().unwrap(), 5.0);
    }

    #[test]
    fn quantile_of_the_difference_of_two_scrapes() {
        let m = OperatorMetrics::new();
        let h = m.webhook_stage.with_label_values(&[STAGE_OURS]);
        // Before: 10 slow observations that the difference must drop.
        for _ in 0..10 {
            h.observe(0.9);
        }
        let before = m.stage_snapshot(STAGE_OURS);
        // Then 99 at 0.2 ms and 1 at 2.5 ms: the p99 is in the
        // 175-200 µs bucket, the max in the 2.4-2.5 ms one.
        for _ in 0..99 {
            h.observe(0.000_19);
        }
        h.observe(0.002_45);
        let d = m.stage_snapshot(STAGE_OURS).since(&before);
        assert_eq!(d.count, 100);
        let p99 = d.quantile(0.99).unwrap();
        assert!((175e-6..=200e-6).contains(&p99), "{p99}");
        let p50 = d.quantile(0.50).unwrap();
        assert!((175e-6..=200e-6).contains(&p50), "{p50}");
        let max = d.quantile(1.0).unwrap();
        assert!((2.4e-3..=2.5e-3).contains(&max), "{max}");
        assert_eq!(d.since(&d).quantile(0.99), None);
    }

    #[test]
    fn quantile_past_the_last_bound_is_the_last_bound() {
        let s = HistogramSnapshot {
            buckets: vec![(0.001, 1), (0.002, 1)],
            count: 3,
        };
        assert_eq!(s.quantile(0.99), Some(0.002));
        // Rank 0.6 of 3, in the first bucket (0, 1 ms] holding one.
        let q = s.quantile(0.2).unwrap();
        assert!((q - 0.000_6).abs() < 1e-12, "{q}");
    }
}
