//! Maintenance operations that only make sense with direct database access:
//! `verify`, `rewrap`, KEK usage counts and the audit log. They work in
//! batches with keyset pagination, so memory stays flat at any table size
//! and an interrupted run can simply be started again.

use std::collections::BTreeMap;

use sqlx::Row;

use super::audit::{self, AuditAction, AuditRecord, AuditVerifyReport, ChainChecker, ExportedHead};
use super::sql::{SqlStore, db_err};
use super::sql_ops::shredded_dek;
use super::sql_rows::{SealedRow, audit_entry_from_row, sealed_cols};
use super::{AuditFilter, Result, StoreError};
use crate::crypto;
use crate::keystore::KeystoreError;
use crate::model::AuditEntry;

/// Rows read per batch by `verify` and the audit check.
const SCAN_BATCH: i64 = 1000;
/// Upper bound of `rewrap --batch-size`: one transaction should stay short.
pub const MAX_REWRAP_BATCH: u32 = 10_000;

/// One row that failed `verify`. No value, only what identifies the row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyFailure {
    pub secret_id: String,
    pub workspace: String,
    pub secret_name: String,
    pub kek_version: u32,
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub total: u64,
    pub ok: u64,
    /// Revoked rows, counted apart: revocation shredded their DEK, so they
    /// are not decrypted and are not failures. `ok + revoked + failed` is
    /// `total`.
    pub revoked: u64,
    pub failed: Vec<VerifyFailure>,
    pub by_kek_version: BTreeMap<u32, u64>,
}

/// Which rows `rewrap` moves to the active KEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapTarget {
    Version(u32),
    All,
}

/// What `rewrap` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RewrapReport {
    pub to_version: u32,
    pub rewrapped: u64,
    pub batches: u64,
    /// Rows whose DEK did not unwrap: left untouched and listed by id.
    pub failed: Vec<VerifyFailure>,
}

impl SqlStore {
    /// Number of secrets wrapped under each KEK version.
    pub async fn kek_version_counts(&self) -> Result<BTreeMap<u32, u64>> {
        let rows = sqlx::query(
            self.dialect
                .q("SELECT kek_version, COUNT(*) AS n FROM secrets GROUP BY kek_version"),
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = BTreeMap::new();
        for r in rows {
            let v: i64 = r.try_get("kek_version").map_err(db_err)?;
            let n: i64 = r.try_get("n").map_err(db_err)?;
            out.insert(v as u32, n as u64);
        }
        Ok(out)
    }

    /// Total number of secrets (for progress bars).
    pub async fn count_secrets(&self) -> Result<u64> {
        let n: i64 = sqlx::query(self.dialect.q("SELECT COUNT(*) AS n FROM secrets"))
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?
            .try_get("n")
            .map_err(db_err)?;
        Ok(n as u64)
    }

    /// Decrypt every secret and report failures by id. Values are dropped
    /// (and wiped) as soon as they decrypt. `progress` gets the rows done.
    pub async fn verify(
        &self,
        actor: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut after = String::new();
        loop {
            let rows = sqlx::query(self.dialect.q(concat!(
                "SELECT ",
                sealed_cols!(),
                " FROM secrets WHERE secret_id > ? ORDER BY secret_id LIMIT ?"
            )))
            .bind(&after)
            .bind(SCAN_BATCH)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let row = SealedRow::from_row(r)?;
                report.total += 1;
                *report.by_kek_version.entry(row.kek_version).or_default() += 1;
                if row.is_revoked() {
                    report.revoked += 1;
                } else {
                    match self.open_row(&row) {
                        Ok(_value) => report.ok += 1,
                        Err(e) => report.failed.push(failure(&row, &e)),
                    }
                }
                after = row.secret_id;
            }
            progress(report.total);
        }
        let mut rec = AuditRecord::new(AuditAction::Verify, actor).detail(format!(
            "total={} ok={} revoked={} failed={}",
            report.total,
            report.ok,
            report.revoked,
            report.failed.len()
        ));
        if !report.failed.is_empty() {
            rec.outcome = crate::model::AuditOutcome::Failed;
        }
        self.append_audit(&rec).await?;
        Ok(report)
    }

    /// Re-wrap DEKs under the active KEK, `batch_size` rows per transaction.
    /// Only `wrapped_dek` and `kek_version` change; a rerun after a crash
    /// picks up exactly the rows still on the old version.
    pub async fn rewrap(
        &self,
        target: RewrapTarget,
        batch_size: u32,
        actor: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<RewrapReport> {
        if batch_size == 0 || batch_size > MAX_REWRAP_BATCH {
            return Err(StoreError::InvalidParameter(format!(
                "batch size must be between 1 and {MAX_REWRAP_BATCH}"
            )));
        }
        let ks = self.keys.current();
        let new = ks.active()?.clone();
        let to = new.version();
        if target == RewrapTarget::Version(to) {
            return Err(StoreError::InvalidParameter(format!(
                "KEK version {to} is the active version: there is nothing to rewrap"
            )));
        }
        if let RewrapTarget::Version(v) = target {
            ks.kek(v)?;
        }
        let mut report = RewrapReport {
            to_version: to,
            ..Default::default()
        };
        let select = match (target, self.dialect) {
            (RewrapTarget::All, super::sql::Dialect::Sqlite) => {
                "SELECT secret_id, workspace, secret_name, state, wrapped_dek, kek_version FROM secrets WHERE kek_version <> ? AND secret_id > ? ORDER BY secret_id LIMIT ?"
            }
            (RewrapTarget::All, _) => {
                "SELECT secret_id, workspace, secret_name, state, wrapped_dek, kek_version FROM secrets WHERE kek_version <> ? AND secret_id > ? ORDER BY secret_id LIMIT ? FOR UPDATE"
            }
            (RewrapTarget::Version(_), super::sql::Dialect::Sqlite) => {
                "SELECT secret_id, workspace, secret_name, state, wrapped_dek, kek_version FROM secrets WHERE kek_version = ? AND secret_id > ? ORDER BY secret_id LIMIT ?"
            }
            (RewrapTarget::Version(_), _) => {
                "SELECT secret_id, workspace, secret_name, state, wrapped_dek, kek_version FROM secrets WHERE kek_version = ? AND secret_id > ? ORDER BY secret_id LIMIT ? FOR UPDATE"
            }
        };
        let version_arg = match target {
            RewrapTarget::All => i64::from(to),
            RewrapTarget::Version(v) => i64::from(v),
        };
        let mut after = String::new();
        loop {
            let mut tx = self.begin_write().await?;
            let rows = sqlx::query(self.dialect.q(select))
                .bind(version_arg)
                .bind(&after)
                .bind(i64::from(batch_size))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
            if rows.is_empty() {
                tx.rollback().await.map_err(db_err)?;
                break;
            }
            let mut done = 0u64;
            let mut from_versions = std::collections::BTreeSet::new();
            for r in &rows {
                let id: String = r.try_get("secret_id").map_err(db_err)?;
                let wrapped: Vec<u8> = r.try_get("wrapped_dek").map_err(db_err)?;
                let v: i64 = r.try_get("kek_version").map_err(db_err)?;
                let v = v as u32;
                let state: String = r.try_get("state").map_err(db_err)?;
                // A revoked row's DEK was shredded: there is nothing to
                // unwrap. It moves to the new version with fresh random
                // bytes, so that retiring the old KEK is not held up by it.
                let rewrapped = if state == crate::model::SecretState::Revoked.as_str() {
                    shredded_dek()
                } else {
                    ks.kek(v).map_err(StoreError::from).and_then(|old| {
                        crypto::rewrap_dek(old, &new, &wrapped).map_err(|source| {
                            StoreError::Crypto {
                                secret_id: id.clone(),
                                source,
                            }
                        })
                    })
                };
                match rewrapped {
                    Ok(w) => {
                        sqlx::query(self.dialect.q(
                            "UPDATE secrets SET wrapped_dek = ?, kek_version = ? WHERE secret_id = ? AND kek_version = ?",
                        ))
                        .bind(w)
                        .bind(i64::from(to))
                        .bind(&id)
                        .bind(i64::from(v))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                        done += 1;
                        from_versions.insert(v);
                    }
                    Err(e) => report.failed.push(VerifyFailure {
                        secret_id: id.clone(),
                        workspace: r.try_get("workspace").map_err(db_err)?,
                        secret_name: r.try_get("secret_name").map_err(db_err)?,
                        kek_version: v,
                        reason: e.to_string(),
                    }),
                }
                after = id;
            }
            let rec = AuditRecord::new(AuditAction::Rewrap, actor).detail(format!(
                "rewrapped={done} from_versions={from_versions:?} to_version={to}"
            ));
            audit::append(&mut tx, self.dialect, &rec).await?;
            tx.commit().await.map_err(db_err)?;
            report.rewrapped += done;
            report.batches += 1;
            progress(report.rewrapped);
        }
        Ok(report)
    }

    /// Audit entries in `seq` order.
    pub async fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = super::validate::page_size(f.max_results)?;
        let mut sql = String::from(
            "SELECT seq, occurred_at, principal, action, workspace, secret_id, secret_name, resource, \
             outcome, detail, prev_hash, row_hash FROM secrets_audit_log WHERE seq > ?",
        );
        let mut args = Vec::new();
        if let Some(id) = &f.secret_id {
            sql.push_str(" AND secret_id = ?");
            args.push(id.clone());
        }
        if let Some(ws) = &f.workspace {
            sql.push_str(" AND workspace = ?");
            args.push(ws.clone());
        }
        super::sql_trait::push_workspaces_in(&mut sql, &mut args, f.workspaces.as_deref())?;
        sql.push_str(" ORDER BY seq LIMIT ?");
        let mut q = sqlx::query(self.dialect.q_composed(sql)).bind(f.after_seq.unwrap_or(0));
        for a in args {
            q = q.bind(a);
        }
        let rows = q
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(audit_entry_from_row).collect()
    }

    /// Check the whole hash chain and the head row.
    pub async fn audit_verify(&self) -> Result<AuditVerifyReport> {
        self.audit_verify_from(ChainChecker::default()).await
    }

    /// [`SqlStore::audit_verify`], and the chain must still reach `head`
    /// (exported earlier, outside the database) unchanged.
    pub async fn audit_verify_head(&self, head: ExportedHead) -> Result<AuditVerifyReport> {
        self.audit_verify_from(ChainChecker::anchored(head)).await
    }

    /// The head row: the last sequence number and its hash, for export.
    pub async fn audit_head(&self) -> Result<ExportedHead> {
        let head = sqlx::query(
            self.dialect
                .q("SELECT seq, last_hash FROM secrets_audit_head WHERE id = 1"),
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(ExportedHead {
            seq: head.try_get("seq").map_err(db_err)?,
            hash: head.try_get("last_hash").map_err(db_err)?,
        })
    }

    async fn audit_verify_from(&self, mut checker: ChainChecker) -> Result<AuditVerifyReport> {
        // Read the head first: rows appended while we scan are then beyond
        // it, and the check stops at the head's sequence number.
        let ExportedHead {
            seq: head_seq,
            hash: head_hash,
        } = self.audit_head().await?;
        let mut after = 0i64;
        'scan: loop {
            let batch = self
                .audit_entries(&AuditFilter {
                    after_seq: Some(after),
                    max_results: Some(SCAN_BATCH as u32),
                    ..Default::default()
                })
                .await?;
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                if e.seq > head_seq {
                    break 'scan;
                }
                if !checker.push(e) {
                    break 'scan;
                }
                after = e.seq;
            }
        }
        Ok(checker.finish(head_seq, &head_hash))
    }
}

fn failure(row: &SealedRow, e: &StoreError) -> VerifyFailure {
    let reason = match e {
        StoreError::Crypto { source, .. } => source.to_string(),
        StoreError::Keystore(KeystoreError::Retired(v)) => format!("KEK version {v} is retired"),
        other => other.to_string(),
    };
    VerifyFailure {
        secret_id: row.secret_id.clone(),
        workspace: row.workspace.clone(),
        secret_name: row.secret_name.clone(),
        kek_version: row.kek_version,
        reason,
    }
}
