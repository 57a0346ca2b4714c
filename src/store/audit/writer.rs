//! Appending to the audit log, and the group commit of standalone records.
//!
//! Appends are serialized through the single row of `secrets_audit_head`
//! (its `UPDATE` takes a row lock on PostgreSQL/MySQL; SQLite write
//! transactions are `BEGIN IMMEDIATE`), so the chain never forks. An
//! operation's own record is appended in its transaction ([`append`]).
//!
//! Every audit row is chained through that single row, so two audit writes can never run in parallel:
//! each one is a write transaction that waits for the previous one. When
//! the REST server audits every metadata read, 32 concurrent `get`
//! requests became 32 serial transactions, and the server topped out at
//! ~1,500 requests/s on SQLite while `/health` did 11,000.
//!
//! The writer task here takes whatever records are queued when it becomes
//! free and appends all of them in one transaction, then answers every
//! waiter, with a fixed two to four statements per batch (by database; see
//! [`append_many`]). A lone request is written at once (no timer, no added latency);
//! under load one commit carries many rows. Requests still fail closed: a
//! caller gets `Ok` only after its row is committed, and an error if it
//! was not. When a batch fails, its records are retried one by one so that
//! one bad record cannot fail its neighbours.

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::AuditRecord;
use super::chain::row_hash;
use crate::model::now_ms;
use crate::store::sql::{Dialect, db_err};
use crate::store::{Result, StoreError};
use crate::value::truncate_chars;

/// Longest `detail` kept (the column is VARCHAR(2000)); longer ones end
/// in `...`.
const MAX_DETAIL_CHARS: usize = 2000;

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
    /// Start the writer task on the current Tokio runtime.
    pub(crate) fn spawn(pool: AnyPool, dialect: Dialect) -> Self {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
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

/// Append `recs` in one write transaction.
async fn write<'a>(
    pool: &AnyPool,
    dialect: Dialect,
    recs: impl Iterator<Item = &'a AuditRecord>,
) -> Result<()> {
    let recs: Vec<&AuditRecord> = recs.collect();
    let mut tx = dialect.begin_write(pool).await?;
    append_many(&mut tx, dialect, &recs).await?;
    tx.commit().await.map_err(db_err)
}

/// Append `rec` inside `tx`. Call it as the last statement of a write
/// transaction: the head row lock is then held for the shortest time, and
/// lock order (data rows, then head) is the same everywhere. Returns the
/// row's sequence number.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    rec: &AuditRecord,
) -> Result<i64> {
    append_many(tx, dialect, &[rec]).await
}

/// Columns of one audit row, in INSERT order.
const AUDIT_COLUMNS: usize = 12;

/// Append `recs`, in order, inside `tx` with a fixed number of statements
/// whatever their number (two on PostgreSQL, three on SQLite, four on
/// MySQL): take `len` sequence numbers from the head at once and read it
/// back (one `UPDATE .. RETURNING` on SQLite and PostgreSQL; MySQL/MariaDB
/// have no `RETURNING` on UPDATE, so a SELECT follows there), chain the
/// hashes in memory, insert every row with one multi-row INSERT, move the
/// head (in the INSERT's statement on PostgreSQL). The group-commit writer appends its batches with it. Returns the
/// sequence number of the last row (0 when `recs` is empty).
pub(crate) async fn append_many(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    recs: &[&AuditRecord],
) -> Result<i64> {
    if recs.is_empty() {
        return Ok(0);
    }
    let n = i64::try_from(recs.len())
        .map_err(|_| StoreError::InvalidParameter("too many audit records".into()))?;
    // The UPDATE comes first: it takes the head's row lock (the write lock
    // on SQLite), so no other appender reads the same head.
    let head =
        if dialect.update_returning() {
            sqlx::query(dialect.q(
                "UPDATE secrets_audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, last_hash",
            ))
            .bind(n)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?
        } else {
            sqlx::query(dialect.q("UPDATE secrets_audit_head SET seq = seq + ? WHERE id = 1"))
                .bind(n)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            sqlx::query(dialect.q("SELECT seq, last_hash FROM secrets_audit_head WHERE id = 1"))
                .fetch_one(&mut **tx)
                .await
                .map_err(db_err)?
        };
    let last_seq: i64 = head.try_get("seq").map_err(db_err)?;
    let mut prev: String = head.try_get("last_hash").map_err(db_err)?;
    let at = now_ms();
    let mut rows = Vec::with_capacity(recs.len());
    for (i, rec) in recs.iter().enumerate() {
        let seq = last_seq - n + 1 + i as i64;
        let detail = rec
            .detail
            .as_deref()
            .map(|d| truncate_chars(d.to_string(), MAX_DETAIL_CHARS));
        let hash = row_hash(
            &prev,
            seq,
            at,
            rec.principal.as_deref(),
            rec.action.as_str(),
            rec.workspace.as_deref(),
            rec.secret_id.as_deref(),
            rec.secret_name.as_deref(),
            rec.resource.as_deref(),
            rec.outcome.as_str(),
            detail.as_deref(),
        );
        rows.push((
            seq,
            detail,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    // PostgreSQL moves the head in the same statement (a data-modifying
    // CTE): one round trip to another process fewer per batch. SQLite and
    // MySQL allow only SELECTs in a WITH, so they send the UPDATE after.
    let head_in_cte = dialect.data_modifying_cte();
    let mut sql = String::from(if head_in_cte {
        "WITH appended AS ("
    } else {
        ""
    });
    sql.push_str(
        "INSERT INTO secrets_audit_log (seq, occurred_at, principal, action, workspace, secret_id, \
         secret_name, resource, outcome, detail, prev_hash, row_hash) VALUES ",
    );
    let tuple = format!("({})", ["?"; AUDIT_COLUMNS].join(", "));
    sql.push_str(&vec![tuple; rows.len()].join(", "));
    if head_in_cte {
        sql.push_str(") UPDATE secrets_audit_head SET last_hash = ? WHERE id = 1");
    }
    let mut q = sqlx::query(dialect.q_composed(sql));
    for (rec, (seq, detail, prev_hash, hash)) in recs.iter().zip(&rows) {
        q = q
            .bind(*seq)
            .bind(at)
            .bind(rec.principal.clone())
            .bind(rec.action.as_str())
            .bind(rec.workspace.clone())
            .bind(rec.secret_id.clone())
            .bind(rec.secret_name.clone())
            .bind(rec.resource.clone())
            .bind(rec.outcome.as_str())
            .bind(detail.clone())
            .bind(prev_hash.clone())
            .bind(hash.clone());
    }
    if head_in_cte {
        q.bind(prev).execute(&mut **tx).await.map_err(db_err)?;
    } else {
        q.execute(&mut **tx).await.map_err(db_err)?;
        sqlx::query(dialect.q("UPDATE secrets_audit_head SET last_hash = ? WHERE id = 1"))
            .bind(prev)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(last_seq)
}
