//! Group commit for standalone audit records.
//!
//! Every audit row is chained through the single `secrets_audit_head` row
//! (see [`super::audit`]), so two audit writes can never run in parallel:
//! each one is a write transaction that waits for the previous one. When
//! the REST server audits every metadata read, 32 concurrent `get`
//! requests became 32 serial transactions, and the server topped out at
//! ~1,500 requests/s on SQLite while `/health` did 11,000.
//!
//! The writer task here takes whatever records are queued when it becomes
//! free and appends all of them in one transaction, then answers every
//! waiter, with a fixed two to four statements per batch (by database; see
//! [`audit::append_many`]). A lone request is written at once (no timer, no added latency);
//! under load one commit carries many rows. Requests still fail closed: a
//! caller gets `Ok` only after its row is committed, and an error if it
//! was not. When a batch fails, its records are retried one by one so that
//! one bad record cannot fail its neighbours.

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::audit::{self, AuditRecord};
use super::sql::{Dialect, db_err};
use super::{Result, StoreError};

/// Most records in one transaction. Large enough that a burst from a busy
/// server is one commit, small enough that one transaction never holds the
/// write lock for long (each row is two short statements).
pub const MAX_AUDIT_BATCH: usize = 256;

/// Queue depth before callers wait for room. Bounded so that a stalled
/// database applies back-pressure instead of growing memory.
const AUDIT_QUEUE: usize = 4096;

type Waiter = oneshot::Sender<Result<()>>;

/// Handle to the writer task. Cloned with the store; the task ends when
/// the last handle is dropped.
#[derive(Clone)]
pub(crate) struct AuditWriter {
    tx: mpsc::Sender<(AuditRecord, Waiter)>,
}

impl AuditWriter {
    /// Start the writer task on the current Tokio runtime (and, on
    /// SQLite, the WAL checkpointer).
    pub(crate) fn spawn(pool: AnyPool, dialect: Dialect) -> Self {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        if dialect == Dialect::Sqlite {
            tokio::spawn(checkpointer(pool.clone(), tx.downgrade()));
        }
        tokio::spawn(run(pool, dialect, rx));
        Self { tx }
    }

    /// Queue `rec` and wait until it is committed (or failed).
    pub(crate) async fn append(&self, rec: &AuditRecord) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((rec.clone(), done))
            .await
            .map_err(|_| writer_gone())?;
        wait.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the audit writer has stopped".into())
}

async fn run(pool: AnyPool, dialect: Dialect, mut rx: mpsc::Receiver<(AuditRecord, Waiter)>) {
    let mut batch = Vec::with_capacity(MAX_AUDIT_BATCH);
    while rx.recv_many(&mut batch, MAX_AUDIT_BATCH).await > 0 {
        let outcome = if batch.len() == 1 {
            write(&pool, dialect, batch.iter().map(|(r, _)| r)).await
        } else {
            match write(&pool, dialect, batch.iter().map(|(r, _)| r)).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, rows = batch.len(), "audit batch failed; retrying its records one by one");
                    for (rec, done) in batch.drain(..) {
                        let _ = done.send(write(&pool, dialect, std::iter::once(&rec)).await);
                    }
                    continue;
                }
            }
        };
        match outcome {
            Ok(()) => {
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                // A batch of one: hand its error to its caller.
                if let Some((_, done)) = batch.pop() {
                    let _ = done.send(Err(e));
                }
                batch.clear();
            }
        }
    }
}

/// How often the SQLite WAL is checkpointed in the background.
pub(crate) const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Checkpoint the SQLite WAL off the commit path. The connections run with
/// `wal_autocheckpoint = 0` (see `SqlStore::connect`): SQLite's automatic
/// checkpoint otherwise runs inside whichever commit crosses 1,000 WAL
/// pages, and that commit (and every request queued on the audit writer
/// behind it) waits several milliseconds for it. A PASSIVE checkpoint from
/// this task never blocks writers or readers. It stops when the store is
/// dropped (its writer handle is gone).
async fn checkpointer(pool: AnyPool, alive: mpsc::WeakSender<(AuditRecord, Waiter)>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.upgrade().is_none() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_optional(&pool)
            .await
        {
            tracing::debug!(error = %e, "background WAL checkpoint failed");
        }
    }
}

/// Append `recs` in one write transaction.
async fn write<'a>(
    pool: &AnyPool,
    dialect: Dialect,
    recs: impl Iterator<Item = &'a AuditRecord>,
) -> Result<()> {
    let recs: Vec<&AuditRecord> = recs.collect();
    let mut tx = begin_write(pool, dialect).await?;
    audit::append_many(&mut tx, dialect, &recs).await?;
    tx.commit().await.map_err(db_err)
}

/// A write transaction; on SQLite `BEGIN IMMEDIATE`, so the write lock is
/// taken up front and a busy database waits in `busy_timeout` instead of
/// failing the upgrade half-way.
pub(crate) async fn begin_write(
    pool: &AnyPool,
    dialect: Dialect,
) -> Result<Transaction<'static, Any>> {
    match dialect {
        Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
        _ => pool.begin().await,
    }
    .map_err(db_err)
}
