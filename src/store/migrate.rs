//! Schema migrations, embedded in the binary, one set per dialect
//! (`migrations/<dialect>/`). An applied migration is never edited.
//!
//! Before migrating we look for a `secrets` table that is not ours: MLflow
//! 3.8+ tracking stores have one (docs/design.md §11), and sharing a schema with it
//! would be a disaster, so `migrate` stops with a clear message instead.

use sqlx::Row;

use super::sql::{SqlStore, db_err};
use super::{Result, StoreError};

/// Columns that only MLflow's gateway-secrets table has. (`provider` is in
/// both since our migration 20261201000001, so it does not tell them apart.)
const MLFLOW_ONLY_COLUMNS: [&str; 2] = ["encrypted_value", "auth_config"];

impl SqlStore {
    /// Apply every pending migration.
    pub async fn migrate(&self) -> Result<usize> {
        self.refuse_foreign_secrets_table().await?;
        let before = self.applied_migrations().await?;
        self.dialect
            .migrator()
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Schema(super::incident::record("migration failed", &e)))?;
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    /// Number of migrations of this build not yet applied.
    pub async fn pending_migrations(&self) -> Result<usize> {
        let known = self
            .dialect
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        Ok(known.saturating_sub(self.applied_migrations().await?))
    }

    /// Make sure the schema is current. With `auto` (the embedded SQLite
    /// default) pending migrations are applied; otherwise they are an error
    /// that says to run `migrate`, because on a shared server database a
    /// schema change is an operator's decision.
    pub async fn ensure_schema(&self, auto: bool) -> Result<()> {
        let pending = self.pending_migrations().await?;
        if pending == 0 {
            return Ok(());
        }
        if auto {
            self.migrate().await?;
            return Ok(());
        }
        Err(StoreError::Schema(format!(
            "the {} database has {pending} pending migration(s): run `mlflow-secrets migrate` first",
            self.dialect.name()
        )))
    }

    async fn applied_migrations(&self) -> Result<usize> {
        match sqlx::query(
            self.dialect
                .q("SELECT COUNT(*) AS n FROM _sqlx_migrations WHERE success = TRUE"),
        )
        .fetch_one(&self.pool)
        .await
        {
            Ok(row) => Ok(row.try_get::<i64, _>("n").map_err(db_err)? as usize),
            // No migrations table yet: nothing applied.
            Err(sqlx::Error::Database(_)) => Ok(0),
            Err(e) => Err(db_err(e)),
        }
    }

    pub(crate) async fn refuse_foreign_secrets_table(&self) -> Result<()> {
        let sql = self.dialect.secrets_columns_sql();
        let rows = sqlx::query(self.dialect.q(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let cols: Vec<String> = rows
            .iter()
            .map(|r| {
                r.try_get::<String, _>("column_name")
                    .map(|c| c.to_lowercase())
            })
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        if cols.is_empty() {
            return Ok(());
        }
        let ours = cols.iter().any(|c| c == "aad_hash");
        let mlflow = MLFLOW_ONLY_COLUMNS
            .iter()
            .any(|m| cols.iter().any(|c| c == m));
        if ours && !mlflow {
            return Ok(());
        }
        Err(StoreError::Schema(if mlflow {
            "this database already has a `secrets` table that belongs to an MLflow tracking store \
             (MLflow 3.8+ gateway secrets); mlflow-secrets must use a separate database or schema"
                .to_string()
        } else {
            "this database already has a `secrets` table that is not mlflow-secrets'; \
             use a separate database or schema"
                .to_string()
        }))
    }
}
