//! The append-only audit log and its SHA-256 hash chain (docs/design.md §2).
//!
//! Each row's `row_hash` covers its own fields and the previous row's hash.
//! Appends are serialized through the single row of `secrets_audit_head`
//! (its `UPDATE` takes a row lock on PostgreSQL/MySQL; SQLite write
//! transactions are `BEGIN IMMEDIATE`), so the chain never forks, and the
//! head remembers the tail so that truncation is detected too. Rows never
//! hold a value: only ids, names, binding names and KEK versions.

use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};

use super::sql::{Dialect, db_err};
use super::{Result, StoreError};
use crate::model::{AuditEntry, AuditOutcome, now_ms};

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest `detail` kept (the column is VARCHAR(2000)).
const MAX_DETAIL_CHARS: usize = 2000;

/// What an audited operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Update,
    Revoke,
    Delete,
    Bind,
    Unbind,
    ReadValue,
    ReadResourceValues,
    Verify,
    Rewrap,
    GetSecret,
    GetBinding,
    ListSecrets,
    ListBindings,
    ListAudit,
    /// A request refused before it reached an operation (401, 403, 429).
    AuthDenied,
    /// The operator removed a revoked, deleted or unbound secret's value
    /// from a per-Job Kubernetes Secret (docs/design.md §8, "Revocation reaches
    /// every copy").
    ScrubCopy,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Revoke => "REVOKE",
            Self::Delete => "DELETE",
            Self::Bind => "BIND",
            Self::Unbind => "UNBIND",
            Self::ReadValue => "READ_VALUE",
            Self::ReadResourceValues => "READ_RESOURCE_VALUES",
            Self::Verify => "VERIFY",
            Self::Rewrap => "REWRAP",
            Self::GetSecret => "GET_SECRET",
            Self::GetBinding => "GET_BINDING",
            Self::ListSecrets => "LIST_SECRETS",
            Self::ListBindings => "LIST_BINDINGS",
            Self::ListAudit => "LIST_AUDIT",
            Self::AuthDenied => "AUTH_DENIED",
            Self::ScrubCopy => "SCRUB_COPY",
        }
    }
}

/// An audit row before it is chained.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub principal: Option<String>,
    pub action: AuditAction,
    pub workspace: Option<String>,
    pub secret_id: Option<String>,
    pub secret_name: Option<String>,
    pub resource: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn new(action: AuditAction, principal: &str) -> Self {
        Self {
            principal: Some(principal.to_string()),
            action,
            workspace: None,
            secret_id: None,
            secret_name: None,
            resource: None,
            outcome: AuditOutcome::Success,
            detail: None,
        }
    }

    pub fn workspace(mut self, ws: &str) -> Self {
        self.workspace = Some(ws.to_string());
        self
    }

    pub fn secret(mut self, id: &str, name: &str) -> Self {
        self.secret_id = Some(id.to_string());
        self.secret_name = Some(name.to_string());
        self
    }

    pub fn secret_id(mut self, id: &str) -> Self {
        self.secret_id = Some(id.to_string());
        self
    }

    pub fn resource(mut self, resource_type: &str, resource_id: &str) -> Self {
        self.resource = Some(format!("{resource_type}/{resource_id}"));
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// The same record, marked as failed or denied by `err`. The error's
    /// message is safe to store: store errors never contain values.
    pub fn failed(mut self, err: &StoreError) -> Self {
        self.outcome = match err {
            StoreError::PermissionDenied(_)
            | StoreError::Unauthenticated(_)
            | StoreError::RateLimited { .. }
            | StoreError::Conflict(_) => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        };
        let msg = err.to_string();
        self.detail = Some(match self.detail.take() {
            Some(d) => format!("{d}; error: {msg}"),
            None => format!("error: {msg}"),
        });
        self
    }
}

/// Hash one row: a length-prefixed encoding of every field, so that no two
/// different rows encode the same bytes.
#[allow(clippy::too_many_arguments)]
pub fn row_hash(
    prev_hash: &str,
    seq: i64,
    occurred_at: i64,
    principal: Option<&str>,
    action: &str,
    workspace: Option<&str>,
    secret_id: Option<&str>,
    secret_name: Option<&str>,
    resource: Option<&str>,
    outcome: &str,
    detail: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"mlflow-secrets-audit-v1");
    let seq_s = seq.to_string();
    let at_s = occurred_at.to_string();
    for field in [
        Some(prev_hash),
        Some(seq_s.as_str()),
        Some(at_s.as_str()),
        principal,
        Some(action),
        workspace,
        secret_id,
        secret_name,
        resource,
        Some(outcome),
        detail,
    ] {
        match field {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// The hash a row's fields give ([`row_hash`] of an [`AuditEntry`]).
pub fn entry_hash(e: &AuditEntry) -> String {
    row_hash(
        &e.prev_hash,
        e.seq,
        e.occurred_at,
        e.principal.as_deref(),
        &e.action,
        e.workspace.as_deref(),
        e.secret_id.as_deref(),
        e.secret_name.as_deref(),
        e.resource.as_deref(),
        &e.outcome,
        e.detail.as_deref(),
    )
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
    let head = match dialect {
        Dialect::Sqlite | Dialect::Postgres => sqlx::query(dialect.q(
            "UPDATE secrets_audit_head SET seq = seq + ? WHERE id = 1 RETURNING seq, last_hash",
        ))
        .bind(n)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?,
        Dialect::Mysql => {
            sqlx::query(dialect.q("UPDATE secrets_audit_head SET seq = seq + ? WHERE id = 1"))
                .bind(n)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            sqlx::query(dialect.q("SELECT seq, last_hash FROM secrets_audit_head WHERE id = 1"))
                .fetch_one(&mut **tx)
                .await
                .map_err(db_err)?
        }
    };
    let last_seq: i64 = head.try_get("seq").map_err(db_err)?;
    let mut prev: String = head.try_get("last_hash").map_err(db_err)?;
    let at = now_ms();
    let mut rows = Vec::with_capacity(recs.len());
    for (i, rec) in recs.iter().enumerate() {
        let seq = last_seq - n + 1 + i as i64;
        let detail = rec.detail.as_deref().map(truncate_detail);
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
    let head_in_cte = dialect == Dialect::Postgres;
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

/// Details are capped at [`MAX_DETAIL_CHARS`] characters.
fn truncate_detail(d: &str) -> String {
    if d.chars().count() > MAX_DETAIL_CHARS {
        d.chars()
            .take(MAX_DETAIL_CHARS - 3)
            .chain("...".chars())
            .collect()
    } else {
        d.to_string()
    }
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditVerifyReport {
    pub rows: u64,
    pub ok: bool,
    /// The first row where the chain breaks, and why.
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
}

/// A head exported outside the database: `audit head seq=N hash=H`, as
/// logged by `serve` and the operator, and given to `audit verify --head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedHead {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for ExportedHead {
    type Err = String;
    /// `SEQ:HASH`, as `audit verify --head` takes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "--head must be SEQ:HASH (the numbers of an `audit head seq=N hash=H` log line), not {s:?}"
            )
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.trim().parse().map_err(|_| bad())?;
        let hash = hash.trim().to_ascii_lowercase();
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self { seq, hash })
    }
}

impl std::fmt::Display for ExportedHead {
    /// The log line's text (docs/design.md §2).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit head seq={} hash={}", self.seq, self.hash)
    }
}

/// Incremental chain checker; feed it rows in `seq` order.
#[derive(Debug)]
pub struct ChainChecker {
    expected_seq: i64,
    prev_hash: String,
    rows: u64,
    broken: Option<(i64, String)>,
    /// An exported head the chain must still reach unchanged, and whether
    /// it was seen.
    anchor: Option<(ExportedHead, bool)>,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            rows: 0,
            broken: None,
            anchor: None,
        }
    }
}

impl ChainChecker {
    /// Also require that row `head.seq` has hash `head.hash`. Each row's
    /// hash covers the one before it, so a chain that verifies and still
    /// has that row with that hash has not been rewritten up to it: a
    /// database writer who deleted or edited rows and re-hashed the chain
    /// with the public algorithm cannot reproduce an exported hash.
    pub fn anchored(head: ExportedHead) -> Self {
        Self {
            anchor: Some((head, false)),
            ..Self::default()
        }
    }

    /// Check one row. Returns false once the chain is broken.
    pub fn push(&mut self, e: &AuditEntry) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.rows += 1;
        let problem = if e.seq != self.expected_seq {
            Some(format!(
                "expected row {} but found row {}: row(s) deleted",
                self.expected_seq, e.seq
            ))
        } else if e.prev_hash != self.prev_hash {
            Some(
                "prev_hash does not match the previous row: a row before it was changed or deleted"
                    .into(),
            )
        } else if entry_hash(e) != e.row_hash {
            Some("row_hash does not match the row's contents: the row was edited".into())
        } else {
            None
        };
        if let Some(p) = problem {
            self.broken = Some((self.expected_seq.min(e.seq), p));
            return false;
        }
        if let Some((head, seen)) = &mut self.anchor
            && head.seq == e.seq
        {
            *seen = true;
            if head.hash != e.row_hash {
                self.broken = Some((
                    e.seq,
                    format!(
                        "row {} does not have the exported head hash {}: the chain was rewritten up to it",
                        e.seq, head.hash
                    ),
                ));
                return false;
            }
        }
        self.expected_seq += 1;
        self.prev_hash = e.row_hash.clone();
        true
    }

    /// Compare with the head row and finish.
    pub fn finish(mut self, head_seq: i64, head_hash: &str) -> AuditVerifyReport {
        if let (None, Some((head, false))) = (&self.broken, &self.anchor) {
            self.broken = Some((
                head.seq.min(self.expected_seq),
                format!(
                    "the log ends at row {} and never reaches the exported head row {}: rows were deleted",
                    self.expected_seq - 1,
                    head.seq
                ),
            ));
        }
        if self.broken.is_none()
            && (head_seq != self.expected_seq - 1 || head_hash != self.prev_hash)
        {
            self.broken = Some((
                self.expected_seq,
                format!(
                    "the log ends at row {} but the head records row {head_seq}: rows at the end were deleted or changed",
                    self.expected_seq - 1
                ),
            ));
        }
        AuditVerifyReport {
            rows: self.rows,
            ok: self.broken.is_none(),
            first_broken_seq: self.broken.as_ref().map(|b| b.0),
            reason: self.broken.map(|b| b.1),
        }
    }
}
