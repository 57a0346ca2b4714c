//! Export of the audit chain's head outside the database (docs/design.md §2).
//!
//! The hash chain catches an edited or deleted row only as long as nobody
//! re-hashes it: the algorithm is public and unkeyed, so a database writer
//! can rewrite history and recompute every hash and the head row (security
//! review finding 14). A head that has left the database cannot be
//! recomputed that way. `serve` and the operator therefore log
//! `audit head seq=<N> hash=<H>` at INFO every [`HeadCadence::every_rows`]
//! rows and every [`HeadCadence::every`], and `audit verify --head N:H`
//! checks that the chain still reaches that head unchanged. Shipping the
//! log lines to a store the database's writers cannot change (a log
//! pipeline, object storage with retention) is what makes them worth
//! having; docs/keystore.md says how.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ExportedHead;
use crate::store::SqlStore;

/// When a head is exported.
#[derive(Debug, Clone, Copy)]
pub struct HeadCadence {
    /// Export when the chain has grown by this many rows since the last one.
    pub every_rows: i64,
    /// Export at least this often, grown or not.
    pub every: Duration,
    /// How often the head row is read (one single-row SELECT).
    pub poll: Duration,
}

impl Default for HeadCadence {
    fn default() -> Self {
        Self {
            every_rows: 1_000,
            every: Duration::from_secs(600),
            poll: Duration::from_secs(5),
        }
    }
}

/// Log one head at INFO, in the fixed form `audit verify --head` reads.
pub fn log_head(head: &ExportedHead) {
    tracing::info!(
        audit_head_seq = head.seq,
        audit_head_hash = %head.hash,
        "{head}"
    );
}

/// Start exporting `store`'s audit head to `sink` (in production
/// [`log_head`]) at `cadence`: once at start, then whenever the chain grew
/// by `every_rows`, and every `every`. The head row is read from the
/// database, so rows appended by other processes sharing it count too. A
/// failed read is retried at the next poll (the schema may not exist yet
/// when the operator starts). Abort the handle to stop.
pub fn spawn_head_export(
    store: SqlStore,
    cadence: HeadCadence,
    sink: impl Fn(&ExportedHead) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<(i64, Instant)> = None;
        let mut poll = tokio::time::interval(cadence.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            poll.tick().await;
            let head = match store.audit_head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the audit head to export it");
                    continue;
                }
            };
            let due = match last {
                None => true,
                Some((seq, at)) => {
                    head.seq >= seq + cadence.every_rows || at.elapsed() >= cadence.every
                }
            };
            if due {
                sink(&head);
                last = Some((head.seq, Instant::now()));
            }
        }
    })
}
