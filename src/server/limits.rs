//! Per-principal rate limit on the API (DESIGN §7 "Limits").
//!
//! A token bucket per principal (`governor`, keyed): a burst may use the
//! whole minute's quota, then requests are refused with 429 and a
//! `Retry-After` until the bucket refills. The stricter limit on decrypts
//! lives in the store (`DecryptLimits`), because every front end's value
//! reads go through it.
//!
//! Keys are authenticated principal names, which come from the tokens file,
//! so the number of buckets is bounded by the number of tokens.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

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
}
