//! Per-principal rate limit on the API (docs/design.md §7 "Limits").
//!
//! A token bucket per principal (`governor`, keyed): a burst may use the
//! whole minute's quota, then requests are refused with 429 and a
//! `Retry-After` until the bucket refills. The stricter limit on decrypts
//! lives in the store (`DecryptLimits`), because every front end's value
//! reads go through it.
//!
//! Keys are authenticated principal names, which come from the tokens file,
//! so the number of buckets is bounded by the number of tokens; and, for
//! requests without a valid token, peer addresses ([`peer_key`]), checked
//! before anything is audited. governor's keyed limiter keeps a bucket per
//! key until `retain_recent` drops the idle ones (the server calls it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::store::StoreError;
use crate::store::audit::{AuditAction, AuditRecord};

/// The API rate limiter. `None` inside means unlimited.
pub struct ApiLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for ApiLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiLimiter")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl ApiLimiter {
    /// `per_minute` requests per principal per minute; 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Forget keys whose buckets are full again (idle peers), so the
    /// peer limiter's memory stays bounded.
    pub fn retain_recent(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Take one request from `principal`'s bucket, or say how long to wait.
    pub fn check(&self, principal: &str) -> Result<(), Duration> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        match l.check_key(&principal.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }
}

/// Requests without a valid token that one peer may make per minute,
/// before they are refused with 429 and no longer audited one by one.
pub const UNAUTHENTICATED_PER_MINUTE: u32 = 300;

/// Most peers whose failures are counted apart in one minute; past it,
/// the rest share one `other` row, so memory and rows stay bounded even
/// against an IPv6 attacker with many addresses.
pub const MAX_DENIAL_PEERS: usize = 4096;

/// The rate-limit and aggregation key of a peer: its IPv4 address, or the
/// /64 of an IPv6 one (one host's usual allocation), `unknown` without one.
pub fn peer_key(peer: Option<IpAddr>) -> String {
    match peer.map(|ip| ip.to_canonical()) {
        None => "unknown".to_string(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Failed authentications of one peer in one minute.
struct DenialBucket {
    minute: i64,
    /// Failures not audited one by one (all but the first, which was).
    repeats: u64,
    route: String,
}

/// Aggregation of `AUTH_DENIED` audit rows (security review finding 12).
///
/// The first failed authentication of a peer in a minute is audited at
/// once (so an alert sees it); the rest of that minute only count, and one
/// row with the count is written when the minute is over. A flood from one
/// peer therefore adds at most two rows a minute.
#[derive(Default)]
pub struct DenialAggregator {
    buckets: Mutex<HashMap<String, DenialBucket>>,
}

impl std::fmt::Debug for DenialAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenialAggregator").finish_non_exhaustive()
    }
}

impl DenialAggregator {
    /// Count a failure of `peer` on `route` in minute `minute` (minutes
    /// since the epoch). Returns the audit record to write now: the first
    /// failure of the peer in the minute, at most one per peer and minute.
    pub fn record(&self, peer: &str, route: &str, minute: i64) -> Option<AuditRecord> {
        self.bump(peer, route, minute, false)
            .then(|| first_row(peer, route))
    }

    /// Count a failure that gets no row of its own (past the peer's rate
    /// limit): it only shows in the peer's count row for the minute.
    pub fn count_only(&self, peer: &str, route: &str, minute: i64) {
        self.bump(peer, route, minute, true);
    }

    /// Add one failure to the peer's bucket for `minute`; true when that
    /// opened the bucket. A bucket of an earlier minute is parked for the
    /// next flush. `counted`: the failure goes into the count row (it gets
    /// no row of its own).
    fn bump(&self, peer: &str, route: &str, minute: i64, counted: bool) -> bool {
        let mut b = self.buckets.lock().expect("denials lock");
        let key = if b.contains_key(peer) || b.len() < MAX_DENIAL_PEERS {
            peer
        } else {
            "other"
        };
        if let Some(bucket) = b.get_mut(key)
            && bucket.minute == minute
        {
            bucket.repeats += 1;
            return false;
        }
        if let Some(old) = b.remove(key)
            && old.repeats > 0
        {
            b.insert(format!("{key}@{}", old.minute), old);
        }
        b.insert(
            key.to_string(),
            DenialBucket {
                minute,
                repeats: u64::from(counted),
                route: route.to_string(),
            },
        );
        true
    }

    /// Take the counts of minutes before `now_minute` (or all, with
    /// `everything`) as audit rows; buckets without repeats go silently.
    pub fn take_finished(&self, everything: bool) -> Vec<AuditRecord> {
        self.take_finished_at(now_minute(), everything)
    }

    fn take_finished_at(&self, now: i64, everything: bool) -> Vec<AuditRecord> {
        let mut b = self.buckets.lock().expect("denials lock");
        let done: Vec<String> = b
            .iter()
            .filter(|(_, v)| everything || v.minute < now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in done {
            let v = b.remove(&k).expect("bucket");
            if v.repeats == 0 {
                continue;
            }
            let peer = k.split('@').next().unwrap_or("other");
            let err = StoreError::Unauthenticated(format!(
                "{} failed authentications from this peer in minute {} not audited one by one (aggregated)",
                v.repeats, v.minute
            ));
            out.push(
                anonymous(AuditRecord::new(AuditAction::AuthDenied, ""))
                    .detail(format!("peer={peer} route={} count={}", v.route, v.repeats))
                    .failed(&err),
            );
        }
        out
    }
}

/// A record with no principal (the caller is not known).
fn anonymous(mut rec: AuditRecord) -> AuditRecord {
    rec.principal = None;
    rec
}

fn first_row(peer: &str, route: &str) -> AuditRecord {
    let err = StoreError::Unauthenticated(
        "a valid bearer token is required; further failures from this peer this minute are counted in one row".into(),
    );
    anonymous(AuditRecord::new(AuditAction::AuthDenied, ""))
        .detail(format!("peer={peer} route={route} count=1"))
        .failed(&err)
}

/// Minutes since the Unix epoch.
pub fn now_minute() -> i64 {
    crate::model::now_ms() / 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_principal_separately() {
        let l = ApiLimiter::per_minute(2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        let wait = l.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(l.check("b").is_ok());
        let off = ApiLimiter::per_minute(0);
        for _ in 0..1000 {
            assert!(off.check("a").is_ok());
        }
    }

    #[test]
    fn denials_are_one_row_per_peer_and_minute() {
        let d = DenialAggregator::default();
        assert!(d.record("10.0.0.1", "GET /x", 5).is_some());
        for _ in 0..999 {
            assert!(d.record("10.0.0.1", "GET /x", 5).is_none());
        }
        assert!(d.record("10.0.0.2", "GET /x", 5).is_some());
        assert!(d.take_finished_at(5, false).is_empty());
        // Minute 6 starts a new first row; minute 5's count waits.
        assert!(d.record("10.0.0.1", "GET /x", 6).is_some());
        let rows = d.take_finished_at(6, false);
        assert_eq!(rows.len(), 1);
        let detail = rows[0].detail.clone().unwrap();
        assert!(
            detail.contains("peer=10.0.0.1") && detail.contains("count=999"),
            "{detail}"
        );
        assert!(rows[0].principal.is_none());
        assert!(d.take_finished_at(7, true).is_empty(), "no repeats left");
        // Failures past the rate limit only count, in a new minute too.
        d.count_only("10.0.0.1", "GET /x", 6);
        d.count_only("10.0.0.3", "GET /x", 6);
        let rows = d.take_finished_at(7, false);
        assert_eq!(rows.len(), 2);
        assert!(
            rows.iter()
                .all(|r| r.detail.as_deref().unwrap().contains("count=1"))
        );
    }

    #[test]
    fn denial_peers_are_bounded() {
        let d = DenialAggregator::default();
        for i in 0..(MAX_DENIAL_PEERS + 500) {
            d.record(&format!("p{i}"), "r", 1);
        }
        assert!(d.buckets.lock().unwrap().len() <= MAX_DENIAL_PEERS + 1);
        let v6a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(peer_key(Some(v6a)), peer_key(Some(v6b)));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(peer_key(Some(mapped)), "10.1.2.3");
    }
}
