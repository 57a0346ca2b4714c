//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` package does it.
//!
//! Every replica serves the webhook; only the Lease holder runs the
//! controllers and the certificate/caBundle writer. Two replicas must never
//! reconcile at the same time for long, so:
//!
//! - Expiry is judged by the *local* clock from when this replica last saw
//!   the Lease record change, never by comparing the holder's `renewTime`
//!   with our clock: clock skew between nodes cannot make two leaders.
//! - Writes carry the `resourceVersion` they read (optimistic concurrency):
//!   of two replicas racing for an expired Lease, exactly one wins.
//! - A leader that cannot renew within [`LeaseTimings::renew_deadline`]
//!   (shorter than the lease duration) steps down on its own, before anyone
//!   else may take over; a leader that finds another holder steps down at
//!   once.
//! - On graceful shutdown the holder releases the Lease, so a rolling update
//!   fails over in one retry period rather than one lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Lease timings. The defaults are client-go's (15 s / 10 s / 2 s): a dead
/// leader is replaced within about 17 s, and a live one renews five times
/// per lease duration.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimings {
    /// How long a holder's claim lasts without renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTimings {
    /// Timings scaled from one lease duration, keeping client-go's ratios
    /// (renew deadline 2/3, retry period 2/15 of it; at least 1 s apart).
    pub fn from_lease_duration(lease_duration: Duration) -> Self {
        let renew_deadline = lease_duration.mul_f64(2.0 / 3.0);
        let retry_period = lease_duration
            .mul_f64(2.0 / 15.0)
            .max(Duration::from_millis(500));
        Self {
            lease_duration,
            renew_deadline,
            retry_period,
        }
    }
}

/// One replica's view of a Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timings: LeaseTimings,
    /// The record (holder, renew time, resourceVersion) we last saw, and
    /// when we saw it change.
    observed: Option<(ObservedRecord, Instant)>,
    /// When we last renewed successfully while leading.
    last_renew: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ObservedRecord {
    holder: Option<String>,
    renew_time: Option<String>,
    transitions: i32,
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            observed: None,
            last_renew: None,
        }
    }

    fn now() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: acquire,
            renew_time: Some(Self::now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew. `Ok(true)` when this replica holds
    /// the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let current = match self.api.get_opt(&self.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(Some(Self::now()), 0)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => {
                        self.last_renew = Some(Instant::now());
                        Ok(true)
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let record = ObservedRecord {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            transitions: spec.lease_transitions.unwrap_or(0),
        };
        let now = Instant::now();
        let observed_at = match &self.observed {
            Some((prev, at)) if *prev == record => *at,
            _ => now,
        };
        self.observed = Some((record.clone(), observed_at));

        let ours = record.holder.as_deref() == Some(self.identity.as_str());
        let held_elsewhere = record.holder.is_some()
            && !ours
            && now.duration_since(observed_at) < self.timings.lease_duration;
        if held_elsewhere {
            self.last_renew = None;
            return Ok(false);
        }
        let (acquire, transitions) = if ours {
            (spec.acquire_time.clone(), record.transitions)
        } else {
            (Some(Self::now()), record.transitions + 1)
        };
        let mut next = current.clone();
        next.spec = Some(self.spec(acquire, transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                self.last_renew = Some(Instant::now());
                if !ours {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired the lease");
                }
                Ok(true)
            }
            // Someone else wrote first (a renewal or a rival takeover).
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a leader that failed to renew has passed its renew deadline.
    fn renew_deadline_passed(&self) -> bool {
        self.last_renew
            .is_none_or(|t| t.elapsed() >= self.timings.renew_deadline)
    }

    /// Give the Lease up if we hold it, so another replica takes over
    /// without waiting for it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(Self::now());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.name, "released the lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "could not release the lease"),
        }
        self.last_renew = None;
    }

    /// Acquire and renew forever, publishing leadership on `leading`.
    /// Leadership is dropped (false is sent) as soon as a renewal finds
    /// another holder or the renew deadline passes without a renewal; the
    /// caller stops its leader-only work on that edge. Returns when
    /// `stop` resolves, releasing the Lease if held.
    pub async fn run(
        mut self,
        leading: watch::Sender<bool>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let was_leading = *leading.borrow();
            let attempt = tokio::time::timeout(
                self.timings.retry_period.max(Duration::from_secs(1)) * 2,
                self.try_acquire_or_renew(),
            )
            .await;
            let now_leading = match attempt {
                Ok(Ok(held)) => held,
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "lease acquire/renew failed");
                    was_leading && !self.renew_deadline_passed()
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, "lease acquire/renew timed out");
                    was_leading && !self.renew_deadline_passed()
                }
            };
            if now_leading != was_leading {
                if !now_leading {
                    tracing::warn!(lease = %self.name, identity = %self.identity, "lost the lease: stopping leader work");
                }
                leading.send_replace(now_leading);
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
        }
        self.release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_timings_keep_client_go_ratios() {
        let t = LeaseTimings::from_lease_duration(Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
        assert!(t.renew_deadline < t.lease_duration);
        let short = LeaseTimings::from_lease_duration(Duration::from_secs(3));
        assert_eq!(short.retry_period, Duration::from_millis(500));
    }
}
