//! The per-stage timings of one admission (`webhook_stage_seconds`,
//! [`crate::k8s::metrics::WEBHOOK_STAGES`]): collected while the request
//! runs, observed once at the end, so `ours` is the difference of the same
//! request's `total` and `secret_write`, not of two distributions.

use std::time::{Duration, Instant};

use crate::k8s::metrics::{
    OperatorMetrics, STAGE_AUDIT, STAGE_JOB_VERIFY_API, STAGE_JOB_VERIFY_CACHE, STAGE_OURS,
    STAGE_PATCH, STAGE_SECRET_WRITE, STAGE_STORE_READ, STAGE_TOTAL,
};

/// Where "the Job is real" got its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobSource {
    /// The webhook's Job watch knew the Job with that uid.
    Cache,
    /// One GET to the API server (the cache did not know it, or is off).
    Api,
}

/// What one admission spent in each stage; `None` for a stage it did not
/// reach.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Stages {
    pub job_verify: Option<(JobSource, Duration)>,
    pub store_read: Option<Duration>,
    pub audit: Option<Duration>,
    pub patch: Option<Duration>,
    pub secret_write: Option<Duration>,
}

impl Stages {
    /// Add `d` to the patch stage (built in two places: the patch, then the
    /// response that carries it).
    pub fn add_patch(&mut self, d: Duration) {
        self.patch = Some(self.patch.unwrap_or_default() + d);
    }

    /// The store's call took `call`, of which `audit` writing its audit
    /// row: the rest is the read and decrypt.
    pub fn store(&mut self, call: Duration, audit: Option<Duration>) {
        self.store_read = Some(call.saturating_sub(audit.unwrap_or_default()));
        self.audit = audit;
    }

    /// `total` less the API server's Secret write: our half of the request.
    pub fn ours(&self, total: Duration) -> Duration {
        total.saturating_sub(self.secret_write.unwrap_or_default())
    }

    /// Observe every stage reached; `total` and `ours` only when
    /// `injected` (a non-dryRun allow, the path the target is about:
    /// denies and skips are in `admission_duration_seconds{result}`).
    pub fn observe(&self, m: &OperatorMetrics, started: Instant, injected: bool) {
        let total = started.elapsed();
        let obs = |stage: &str, d: Duration| {
            m.webhook_stage
                .with_label_values(&[stage])
                .observe(d.as_secs_f64())
        };
        if let Some((src, d)) = self.job_verify {
            let stage = match src {
                JobSource::Cache => STAGE_JOB_VERIFY_CACHE,
                JobSource::Api => STAGE_JOB_VERIFY_API,
            };
            obs(stage, d);
        }
        for (stage, d) in [
            (STAGE_STORE_READ, self.store_read),
            (STAGE_AUDIT, self.audit),
            (STAGE_PATCH, self.patch),
            (STAGE_SECRET_WRITE, self.secret_write),
        ] {
            if let Some(d) = d {
                obs(stage, d);
            }
        }
        if injected {
            obs(STAGE_TOTAL, total);
            obs(STAGE_OURS, self.ours(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_is_total_less_this_requests_secret_write() {
        let mut s = Stages::default();
        s.store(Duration::from_micros(700), Some(Duration::from_micros(300)));
        assert_eq!(s.store_read, Some(Duration::from_micros(400)));
        assert_eq!(s.audit, Some(Duration::from_micros(300)));
        s.store(Duration::from_micros(700), None);
        assert_eq!(s.store_read, Some(Duration::from_micros(700)));
        assert_eq!(s.audit, None);
        assert_eq!(s.ours(Duration::from_millis(3)), Duration::from_millis(3));
        s.secret_write = Some(Duration::from_micros(2200));
        assert_eq!(s.ours(Duration::from_millis(3)), Duration::from_micros(800));
        s.add_patch(Duration::from_micros(10));
        s.add_patch(Duration::from_micros(5));
        assert_eq!(s.patch, Some(Duration::from_micros(15)));
    }

    #[test]
    fn observes_reached_stages_and_total_only_when_injected() {
        let m = OperatorMetrics::new();
        let count = |st: &str| m.stage_snapshot(st).count;
        let s = Stages {
            job_verify: Some((JobSource::Api, Duration::from_micros(900))),
            ..Default::default()
        };
        s.observe(&m, Instant::now(), false);
        assert_eq!(count(STAGE_JOB_VERIFY_API), 1);
        assert_eq!(count(STAGE_JOB_VERIFY_CACHE), 0);
        assert_eq!(count(STAGE_TOTAL), 0);
        assert_eq!(count(STAGE_SECRET_WRITE), 0);
        let s = Stages {
            job_verify: Some((JobSource::Cache, Duration::from_micros(5))),
            secret_write: Some(Duration::from_millis(2)),
            ..Default::default()
        };
        s.observe(&m, Instant::now(), true);
        for st in [
            STAGE_JOB_VERIFY_CACHE,
            STAGE_SECRET_WRITE,
            STAGE_TOTAL,
            STAGE_OURS,
        ] {
            assert_eq!(count(st), 1, "{st}");
        }
    }
}
