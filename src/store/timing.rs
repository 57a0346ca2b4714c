//! Where one store call spends its time, for a caller that measures its
//! own stages (the webhook's `webhook_stage_seconds`): the audit row of a
//! decrypting read is written inside the store, before any value is
//! returned, so only the store can tell it apart from the read.
//!
//! Opt-in and per task: [`measured`] runs a future with a fresh record;
//! the store adds to it with [`add`], which does nothing outside
//! [`measured`]. No global state, nothing shared between requests.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

tokio::task_local! {
    static AUDIT: Cell<Option<Duration>>;
}

/// What a store call measured about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTiming {
    /// Time spent writing audit rows, `None` when the store wrote none it
    /// could time (a remote store, or a call that audits nothing).
    pub audit: Option<Duration>,
}

/// Run `fut`, returning its output and what the store recorded meanwhile.
pub async fn measured<F: Future>(fut: F) -> (F::Output, StoreTiming) {
    AUDIT
        .scope(Cell::new(None), async {
            let out = fut.await;
            let audit = AUDIT.with(Cell::get);
            (out, StoreTiming { audit })
        })
        .await
}

/// Add `d` to the audit time of the enclosing [`measured`], if any.
pub(crate) fn add_audit(d: Duration) {
    let _ = AUDIT.try_with(|c| c.set(Some(c.get().unwrap_or_default() + d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_only_inside_measured() {
        add_audit(Duration::from_millis(1));
        let ((), t) = measured(async {
            add_audit(Duration::from_micros(300));
            add_audit(Duration::from_micros(200));
        })
        .await;
        assert_eq!(t.audit, Some(Duration::from_micros(500)));
        let ((), t) = measured(async {}).await;
        assert_eq!(t.audit, None);
    }
}
