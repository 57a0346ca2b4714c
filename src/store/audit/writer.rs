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
//! waiter. A lone request is written at once (no timer, no added latency);
//! under load one commit carries many rows. The task remembers the head
//! its last batch left, so a batch is one round trip to the database
//! (`append_if_head`) while nobody else appends; when someone did, the
//! head is read and locked first (`append_chained`: a fixed two to four
//! statements by database). Requests still fail closed: a
//! caller gets `Ok` only after its row is committed, and an error if it
//! was not. When a batch fails, its records are retried one by one so that
//! one bad record cannot fail its neighbours.

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::AuditRecord;
use super::chain::row_hash;
use crate::model::now_ms;
use crate::store::sql::{Dialect, WriterPause, db_err};
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
    /// Start the writer task on the current Tokio runtime. With `pause`
    /// (SQLite), each batch first waits out a WAL restart in progress.
    pub(crate) fn spawn(pool: AnyPool, dialect: Dialect, pause: Option<WriterPause>) -> Self {
        let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
        tokio::spawn(run(pool, dialect, pause, rx));
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

async fn run(
    pool: AnyPool,
    dialect: Dialect,
    pause: Option<WriterPause>,
    mut rx: mpsc::Receiver<(AuditRecord, Waiter)>,
) {
    let mut batch = Vec::with_capacity(MAX_AUDIT_BATCH);
    // The chain's head as this task last moved it: the fast path's guess.
    let mut head = None;
    while rx.recv_many(&mut batch, MAX_AUDIT_BATCH).await > 0 {
        let _held = match &pause {
            Some(p) => Some(p.hold().await),
            None => None,
        };
        // What came in while a WAL restart held the writer joins this batch.
        drain(&mut rx, &mut batch);
        if batch.len() > 1 {
            gather(&mut rx, &mut batch).await;
        }
        let outcome = if batch.len() == 1 {
            write(&pool, dialect, &mut head, batch.iter().map(|(r, _)| r)).await
        } else {
            match write(&pool, dialect, &mut head, batch.iter().map(|(r, _)| r)).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, rows = batch.len(), "audit batch failed; retrying its records one by one");
                    for (rec, done) in batch.drain(..) {
                        let _ = done
                            .send(write(&pool, dialect, &mut head, std::iter::once(&rec)).await);
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

/// Most times the writer yields to gather more records into a batch.
const GATHER_YIELDS: usize = 4;

/// Under load (more than one record was already waiting), let the tasks
/// that are ready to run go first, as long as they add records: requests
/// whose reads just finished join this commit instead of starting the
/// next one. Every commit writes the same few fixed pages (the head, the
/// log's last leaf, its indexes' last leaves) to the WAL whatever its
/// size, so fewer, larger commits write less and sync less. A lone record
/// never waits: this runs only when the queue already held several.
async fn gather(
    rx: &mut mpsc::Receiver<(AuditRecord, Waiter)>,
    batch: &mut Vec<(AuditRecord, Waiter)>,
) {
    for _ in 0..GATHER_YIELDS {
        tokio::task::yield_now().await;
        let before = batch.len();
        drain(rx, batch);
        if batch.len() == before {
            return;
        }
    }
}

/// Move what is queued now into `batch`, up to [`MAX_AUDIT_BATCH`].
fn drain(rx: &mut mpsc::Receiver<(AuditRecord, Waiter)>, batch: &mut Vec<(AuditRecord, Waiter)>) {
    while batch.len() < MAX_AUDIT_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
}

/// Append `recs` in one write transaction, and remember the head it left.
/// With a remembered head, first in one round trip that applies only if
/// the head is still that one (`append_if_head`); when another appender
/// moved it (an operation's own transaction, another process), the head
/// is read and locked as usual (`append_chained`).
async fn write<'a>(
    pool: &AnyPool,
    dialect: Dialect,
    head: &mut Option<Head>,
    recs: impl Iterator<Item = &'a AuditRecord>,
) -> Result<()> {
    let recs: Vec<&AuditRecord> = recs.collect();
    // Forget the head first: after an error nobody knows where it is.
    if let Some(h) = head.take()
        && let Some(moved) = append_if_head(pool, dialect, &h, &recs).await?
    {
        *head = Some(moved);
        return Ok(());
    }
    let mut tx = dialect.begin_write(pool).await?;
    let moved = append_chained(&mut tx, dialect, &recs).await?;
    tx.commit().await.map_err(db_err)?;
    *head = Some(moved);
    Ok(())
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

/// Append `recs`, in order, inside `tx` (see [`append_chained`]). Returns
/// the sequence number of the last row (0 when `recs` is empty).
pub(crate) async fn append_many(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    recs: &[&AuditRecord],
) -> Result<i64> {
    if recs.is_empty() {
        return Ok(0);
    }
    Ok(append_chained(tx, dialect, recs).await?.seq)
}

/// Columns of one audit row, in INSERT order.
const AUDIT_COLUMNS: &str = "seq, occurred_at, principal, action, workspace, secret_id, \
                             secret_name, resource, outcome, detail, prev_hash, row_hash";
const AUDIT_COLUMN_COUNT: usize = 12;

/// The chain's head: the last row's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    seq: i64,
    hash: String,
}

/// One audit row, chained: its sequence number, its (truncated) detail,
/// the hash before it and its own.
struct Chained {
    seq: i64,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

/// Chain `recs` after `head`, all at the time `at`: the rows and the head
/// they leave. The one place a row's hash is computed for the log.
fn chain(head: &Head, recs: &[&AuditRecord], at: i64) -> (Vec<Chained>, Head) {
    let mut prev = head.hash.clone();
    let mut rows = Vec::with_capacity(recs.len());
    for (i, rec) in recs.iter().enumerate() {
        let seq = head.seq + 1 + i as i64;
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
        rows.push(Chained {
            seq,
            detail,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    let moved = Head {
        seq: head.seq + rows.len() as i64,
        hash: prev,
    };
    (rows, moved)
}

/// `(?, ?, ...)` for `n` rows of the log, comma-separated.
fn value_tuples(n: usize) -> String {
    let tuple = format!("({})", ["?"; AUDIT_COLUMN_COUNT].join(", "));
    vec![tuple; n].join(", ")
}

/// Bind the rows' columns, in [`AUDIT_COLUMNS`] order.
fn bind_rows<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    recs: &[&AuditRecord],
    rows: &[Chained],
    at: i64,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for (rec, row) in recs.iter().zip(rows) {
        q = q
            .bind(row.seq)
            .bind(at)
            .bind(rec.principal.clone())
            .bind(rec.action.as_str())
            .bind(rec.workspace.clone())
            .bind(rec.secret_id.clone())
            .bind(rec.secret_name.clone())
            .bind(rec.resource.clone())
            .bind(rec.outcome.as_str())
            .bind(row.detail.clone())
            .bind(row.prev_hash.clone())
            .bind(row.hash.clone());
    }
    q
}

/// Append `recs` inside `tx` with a fixed number of statements whatever
/// their number (two on PostgreSQL, three on SQLite, four on MySQL): take
/// `len` sequence numbers from the head at once and read it back (one
/// `UPDATE .. RETURNING` on SQLite and PostgreSQL; MySQL/MariaDB have no
/// `RETURNING` on UPDATE, so a SELECT follows there), chain the hashes in
/// memory, insert every row with one multi-row INSERT, move the head (in
/// the INSERT's statement on PostgreSQL). Returns the head it leaves.
async fn append_chained(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    recs: &[&AuditRecord],
) -> Result<Head> {
    let n = i64::try_from(recs.len())
        .map_err(|_| StoreError::InvalidParameter("too many audit records".into()))?;
    // The UPDATE comes first: it takes the head's row lock (the write lock
    // on SQLite), so no other appender reads the same head.
    let row =
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
    let taken: i64 = row.try_get("seq").map_err(db_err)?;
    let before = Head {
        seq: taken - n,
        hash: row.try_get("last_hash").map_err(db_err)?,
    };
    let at = now_ms();
    let (rows, moved) = chain(&before, recs, at);
    // PostgreSQL moves the head in the same statement (a data-modifying
    // CTE): one round trip to another process fewer per batch. SQLite and
    // MySQL allow only SELECTs in a WITH, so they send the UPDATE after.
    let head_in_cte = dialect.data_modifying_cte();
    let mut sql = String::from(if head_in_cte {
        "WITH appended AS ("
    } else {
        ""
    });
    sql.push_str(&format!(
        "INSERT INTO secrets_audit_log ({AUDIT_COLUMNS}) VALUES {}",
        value_tuples(rows.len())
    ));
    if head_in_cte {
        sql.push_str(") UPDATE secrets_audit_head SET last_hash = ? WHERE id = 1");
    }
    let q = bind_rows(sqlx::query(dialect.q_composed(sql)), recs, &rows, at);
    if head_in_cte {
        q.bind(moved.hash.clone())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    } else {
        q.execute(&mut **tx).await.map_err(db_err)?;
        sqlx::query(dialect.q("UPDATE secrets_audit_head SET last_hash = ? WHERE id = 1"))
            .bind(moved.hash.clone())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
    }
    Ok(moved)
}

/// Append `recs` after `head` in one round trip to the database, if the
/// head is still `head`: `Some(the head left)`, or `None` (nothing written)
/// when another appender moved it. The head's row is the guard: the
/// UPDATE matches only the remembered `seq` and `last_hash`, and the rows
/// go in only if it matched, in the same transaction, so the chain cannot
/// fork whatever runs beside it.
/// - PostgreSQL: one statement (the UPDATE in a data-modifying CTE, the
///   INSERT from a VALUES list on the condition that it moved a row), in
///   its own implicit transaction;
/// - SQLite: `BEGIN IMMEDIATE`, the UPDATE, the INSERT on the condition
///   that the head now is the one this batch leaves, a read of the head,
///   `COMMIT`, sent as one multi-statement command, which is one hop to
///   the connection's worker thread where the usual path takes five;
/// - MySQL/MariaDB: always `None` (no `RETURNING`, no data-modifying CTE;
///   the usual path serves it).
async fn append_if_head(
    pool: &AnyPool,
    dialect: Dialect,
    head: &Head,
    recs: &[&AuditRecord],
) -> Result<Option<Head>> {
    // Move the head from the remembered one to the one this batch leaves;
    // it matches no row once anybody else has moved it.
    const MOVE_HEAD_IF_UNMOVED: &str = "UPDATE secrets_audit_head SET seq = ?, last_hash = ? \
                                        WHERE id = 1 AND seq = ? AND last_hash = ?";
    let tuples = value_tuples(recs.len());
    let sql = match dialect {
        Dialect::Mysql => return Ok(None),
        Dialect::Postgres => format!(
            "WITH moved AS ({MOVE_HEAD_IF_UNMOVED} RETURNING id) \
             INSERT INTO secrets_audit_log ({AUDIT_COLUMNS}) \
             SELECT v.* FROM (VALUES {tuples}) AS v ({AUDIT_COLUMNS}) \
             WHERE EXISTS (SELECT 1 FROM moved)"
        ),
        Dialect::Sqlite => format!(
            "BEGIN IMMEDIATE; \
             {MOVE_HEAD_IF_UNMOVED}; \
             INSERT INTO secrets_audit_log ({AUDIT_COLUMNS}) \
             SELECT * FROM (VALUES {tuples}) \
             WHERE (SELECT seq FROM secrets_audit_head WHERE id = 1) = ? \
             AND (SELECT last_hash FROM secrets_audit_head WHERE id = 1) = ?; \
             SELECT seq, last_hash FROM secrets_audit_head WHERE id = 1; \
             COMMIT"
        ),
    };
    let at = now_ms();
    let (rows, moved) = chain(head, recs, at);
    let q = sqlx::query(dialect.q_composed(sql))
        .bind(moved.seq)
        .bind(moved.hash.clone())
        .bind(head.seq)
        .bind(head.hash.clone());
    let q = bind_rows(q, recs, &rows, at);
    if dialect == Dialect::Postgres {
        let done = q.execute(pool).await.map_err(db_err)?;
        return Ok((done.rows_affected() == rows.len() as u64).then_some(moved));
    }
    // SQLite: the rows went in only if the head is now the one they leave.
    let q = q.bind(moved.seq).bind(moved.hash.clone());
    let mut conn = pool.acquire().await.map_err(db_err)?;
    match q.fetch_all(&mut *conn).await {
        Ok(found) => {
            let Some(r) = found.first() else {
                return Ok(None);
            };
            let now = Head {
                seq: r.try_get("seq").map_err(db_err)?,
                hash: r.try_get("last_hash").map_err(db_err)?,
            };
            Ok((now == moved).then_some(moved))
        }
        Err(e) => {
            // The command stopped part-way, perhaps inside its transaction:
            // end it before the connection goes back to the pool (an error
            // here means there was none).
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(db_err(e))
        }
    }
}
