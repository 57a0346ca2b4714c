//! Maintenance operations that only make sense with direct database access:
//! `verify`, `rewrap` and KEK usage counts. They work in
//! batches with keyset pagination, so memory stays flat at any table size
//! and an interrupted run can simply be started again.

use std::collections::BTreeMap;

use sqlx::Row;

use super::rows::{SealedRow, sealed_cols};
use super::secrets::shredded_dek;
use super::{SqlStore, db_err};
use crate::crypto;
use crate::keystore::KeystoreError;
use crate::store::audit::{self, AuditAction, AuditRecord};
use crate::store::{Result, StoreError};

/// Rows read per batch by `verify`.
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
        let select = self.dialect.q_locking(match target {
            RewrapTarget::All => {
                "SELECT secret_id, workspace, secret_name, state, wrapped_dek, kek_version FROM secrets WHERE kek_version <> ? AND secret_id > ? ORDER BY secret_id LIMIT ?"
            }
            RewrapTarget::Version(_) => {
                "SELECT secret_id, workspace, secret_name, state, wrapped_dek, kek_version FROM secrets WHERE kek_version = ? AND secret_id > ? ORDER BY secret_id LIMIT ?"
            }
        });
        let version_arg = match target {
            RewrapTarget::All => i64::from(to),
            RewrapTarget::Version(v) => i64::from(v),
        };
        let mut after = String::new();
        loop {
            let mut tx = self.begin_write().await?;
            let rows = sqlx::query(select.clone())
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
