//! Reading the audit log, and checking its chain against the head row (and,
//! optionally, against a head exported earlier).

use sqlx::Row;

use super::{AuditVerifyReport, ChainChecker, ExportedHead};
use crate::model::AuditEntry;
use crate::store::sql::{
    Arg, SqlStore, audit_cols, audit_entry_from_row, db_err, fetch_listing, push_workspaces_in,
};
use crate::store::{AuditFilter, Result, validate};

/// Rows read per batch by the chain check.
const SCAN_BATCH: u32 = 1000;

impl SqlStore {
    /// Audit entries in `seq` order.
    pub async fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        validate::audit_filter(f)?;
        let limit = validate::page_size(f.max_results)?;
        let mut sql = String::from(concat!(
            "SELECT ",
            audit_cols!(),
            " FROM secrets_audit_log WHERE seq > ?"
        ));
        let mut args = vec![Arg::Int(f.after_seq.unwrap_or(0))];
        if let Some(id) = &f.secret_id {
            sql.push_str(" AND secret_id = ?");
            args.push(Arg::Text(id.clone()));
        }
        if let Some(ws) = &f.workspace {
            sql.push_str(" AND workspace = ?");
            args.push(Arg::Text(ws.clone()));
        }
        push_workspaces_in(&mut sql, &mut args, f.workspaces.as_deref())?;
        sql.push_str(" ORDER BY seq LIMIT ?");
        args.push(Arg::Int(i64::from(limit)));
        fetch_listing(&self.pool, self.dialect, sql, args, audit_entry_from_row).await
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
                    max_results: Some(SCAN_BATCH),
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
