//! What a backup manifest records about a store, read from the store
//! itself: rows per table and per KEK version, the migration level and the
//! audit head. `restore` and `doctor` read the same facts to compare.
//!
//! The statements live here rather than in `src/store/` because only the
//! operations layer needs them; they are plain literals through
//! [`Dialect::q`] like every other statement.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::audit::ExportedHead;
use crate::store::sql::db_err;
use crate::store::{SqlStore, StoreError};

/// The tables a backup covers, in the order the manifest lists them.
pub const TABLES: [&str; 3] = ["secrets", "secrets_bindings", "secrets_audit_log"];

/// The migration level: every applied migration's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationLevel {
    /// Versions (`20261129000001`, ...) of the applied migrations, ascending.
    pub applied: Vec<i64>,
}

impl MigrationLevel {
    pub fn latest(&self) -> Option<i64> {
        self.applied.last().copied()
    }
}

/// The audit head as the manifest spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl From<ExportedHead> for Head {
    fn from(h: ExportedHead) -> Self {
        Self {
            seq: h.seq,
            hash: h.hash,
        }
    }
}

impl From<&Head> for ExportedHead {
    fn from(h: &Head) -> Self {
        Self {
            seq: h.seq,
            hash: h.hash.clone(),
        }
    }
}

/// Facts of one store at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFacts {
    pub migration: MigrationLevel,
    /// Rows per table of [`TABLES`].
    pub rows: BTreeMap<String, u64>,
    /// Secrets per KEK version.
    pub rows_by_kek_version: BTreeMap<u32, u64>,
    pub audit_head: Head,
}

impl StoreFacts {
    /// Read the facts. On a live store the reads are separate statements,
    /// so they are only a consistent set on a snapshot (the SQLite copy a
    /// backup makes) or a quiet store.
    pub async fn read(store: &SqlStore) -> Result<Self, StoreError> {
        let mut rows = BTreeMap::new();
        for t in TABLES {
            rows.insert(t.to_string(), count_rows(store, t).await?);
        }
        Ok(Self {
            migration: migration_level(store).await?,
            rows,
            rows_by_kek_version: store.kek_version_counts().await?,
            audit_head: store.audit_head().await?.into(),
        })
    }

    /// All rows of every table: zero means an empty store.
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }
}

/// Rows in one of [`TABLES`]; a table that does not exist yet counts 0.
pub async fn count_rows(store: &SqlStore, table: &str) -> Result<u64, StoreError> {
    let sql = match table {
        "secrets" => "SELECT COUNT(*) AS n FROM secrets",
        "secrets_bindings" => "SELECT COUNT(*) AS n FROM secrets_bindings",
        "secrets_audit_log" => "SELECT COUNT(*) AS n FROM secrets_audit_log",
        other => {
            return Err(StoreError::InvalidParameter(format!(
                "{other} is not a table of the store"
            )));
        }
    };
    match sqlx::query(store.dialect.q(sql))
        .fetch_one(&store.pool)
        .await
    {
        Ok(r) => Ok(r.try_get::<i64, _>("n").map_err(db_err)? as u64),
        Err(sqlx::Error::Database(_)) if !store_has_table(store, table).await? => Ok(0),
        Err(e) => Err(db_err(e)),
    }
}

/// The applied migrations, from sqlx's bookkeeping table (empty when the
/// database was never migrated).
pub async fn migration_level(store: &SqlStore) -> Result<MigrationLevel, StoreError> {
    let rows = match sqlx::query(
        store
            .dialect
            .q("SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version"),
    )
    .fetch_all(&store.pool)
    .await
    {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(_)) => Vec::new(),
        Err(e) => return Err(db_err(e)),
    };
    let applied = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    Ok(MigrationLevel { applied })
}

/// Whether `table` exists in the store's database (schema).
pub async fn store_has_table(store: &SqlStore, table: &str) -> Result<bool, StoreError> {
    use crate::store::sql::Dialect;
    let sql = match store.dialect {
        Dialect::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?"
        }
        Dialect::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_name = ? AND table_schema = current_schema()"
        }
        Dialect::Mysql => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_name = ? AND table_schema = DATABASE()"
        }
    };
    let n: i64 = sqlx::query(store.dialect.q(sql))
        .bind(table.to_string())
        .fetch_one(&store.pool)
        .await
        .map_err(db_err)?
        .try_get("n")
        .map_err(db_err)?;
    Ok(n > 0)
}
