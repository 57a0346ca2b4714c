//! Rate limits on decryption (docs/design.md §10 rule 7).
//!
//! Every value read goes through the store, whichever front end asked (REST,
//! the webhook, the CLI), so the limit lives here: one token bucket per
//! principal and one per workspace. A burst may use the whole minute's
//! quota at once; after that, reads are refused with `RateLimited` and a
//! `retry_after` until the bucket refills.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::StoreError;

/// Limits on value reads, in decrypts per minute. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecryptLimits {
    pub per_principal_per_minute: Option<u32>,
    pub per_workspace_per_minute: Option<u32>,
}

/// The buckets behind [`DecryptLimits`].
pub(crate) struct DecryptLimiter {
    per_principal: Option<DefaultKeyedRateLimiter<String>>,
    per_workspace: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for DecryptLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptLimiter").finish_non_exhaustive()
    }
}

fn keyed(per_minute: Option<u32>) -> Option<DefaultKeyedRateLimiter<String>> {
    let n = NonZeroU32::new(per_minute?)?;
    Some(RateLimiter::keyed(Quota::per_minute(n)))
}

impl DecryptLimiter {
    pub fn new(limits: DecryptLimits) -> Self {
        Self {
            per_principal: keyed(limits.per_principal_per_minute),
            per_workspace: keyed(limits.per_workspace_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Take `n` decrypts for `principal` in `workspace` (a resource read
    /// decrypts several values at once). The principal's bucket is checked
    /// first; a refusal by the workspace's bucket still counts against the
    /// principal, which errs on the side of fewer decrypts.
    pub fn check(&self, principal: &str, workspace: &str, n: u32) -> Result<(), StoreError> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        let buckets = [
            (&self.per_principal, principal, "principal"),
            (&self.per_workspace, workspace, "workspace"),
        ];
        for (limiter, key, what) in buckets {
            let Some(l) = limiter else { continue };
            let key = key.to_string();
            match l.check_key_n(&key, n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    return Err(limited(what, &key, wait));
                }
                // More at once than the bucket ever holds.
                Err(_) => return Err(limited(what, &key, Duration::from_secs(60))),
            }
        }
        Ok(())
    }
}

fn limited(what: &str, key: &str, wait: Duration) -> StoreError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    StoreError::RateLimited {
        message: format!("decrypt rate limit exceeded for {what} '{key}': retry in {secs} s"),
        retry_after: Duration::from_secs(secs.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_principal_and_per_workspace() {
        let l = DecryptLimiter::new(DecryptLimits {
            per_principal_per_minute: Some(3),
            per_workspace_per_minute: Some(5),
        });
        for _ in 0..3 {
            l.check("alice", "ws", 1).unwrap();
        }
        let e = l.check("alice", "ws", 1).unwrap_err();
        assert_eq!(e.error_code(), "REQUEST_LIMIT_EXCEEDED");
        assert!(e.to_string().contains("principal 'alice'"), "{e}");
        // Another principal still has its own bucket, until the workspace's runs out.
        l.check("bob", "ws", 2).unwrap();
        let e = l.check("bob", "ws", 1).unwrap_err();
        assert!(e.to_string().contains("workspace 'ws'"), "{e}");
        l.check("dave", "other", 1).unwrap();
        match l.check("carol", "ws", 1).unwrap_err() {
            StoreError::RateLimited { retry_after, .. } => {
                assert!(retry_after >= Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        // Unlimited by default.
        let none = DecryptLimiter::new(DecryptLimits::default());
        for _ in 0..1000 {
            none.check("x", "y", 5).unwrap();
        }
    }
}
