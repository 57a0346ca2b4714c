//! Reading MLflow's gateway secrets table (docs/design.md §11), and only
//! reading it.
//!
//! `--from` takes MLflow's own tracking URI (SQLAlchemy's form): SQLite is
//! opened with `mode=ro`, and PostgreSQL and MySQL sessions are set to
//! read-only transactions before the one `SELECT`, so a bug here cannot
//! change an MLflow installation. The URI is never echoed: it may carry
//! a database password.

use std::collections::BTreeSet;

use sqlx::any::AnyPoolOptions;
use sqlx::{Executor, Row};

use super::{MlflowError, Result};
use crate::store::incident;

/// One row of MLflow's `secrets` table, still encrypted.
pub struct GatewaySecretRow {
    pub secret_id: String,
    pub secret_name: String,
    pub workspace: String,
    pub kek_version: u32,
    pub provider: Option<String>,
    pub encrypted_value: Vec<u8>,
    pub wrapped_dek: Vec<u8>,
}

impl std::fmt::Debug for GatewaySecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySecretRow")
            .field("secret_id", &self.secret_id)
            .field("secret_name", &self.secret_name)
            .field("workspace", &self.workspace)
            .field("kek_version", &self.kek_version)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// The database kinds MLflow's tracking store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Sqlite,
    Postgres,
    Mysql,
}

/// An MLflow tracking URI turned into what sqlx opens, read-only.
#[derive(Clone)]
pub struct SourceUri {
    kind: SourceKind,
    url: String,
}

impl std::fmt::Debug for SourceUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceUri")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl SourceUri {
    /// Parse MLflow's `--backend-store-uri` forms: `sqlite:///relative.db`,
    /// `sqlite:////absolute.db`, `postgresql[+driver]://...`,
    /// `mysql[+driver]://...`.
    pub fn parse(uri: &str) -> Result<Self> {
        let (scheme, rest) = uri.split_once("://").ok_or_else(bad_uri)?;
        let base = scheme.split('+').next().unwrap_or(scheme);
        match base {
            "sqlite" => {
                // SQLAlchemy: `sqlite:///x.db` is relative, `sqlite:////x.db`
                // absolute; the third slash separates the empty host.
                let path = rest.strip_prefix('/').ok_or_else(bad_uri)?;
                if path.is_empty() || path == ":memory:" {
                    return Err(MlflowError::InvalidUri(
                        "--from sqlite:/// needs the path of MLflow's database file".into(),
                    ));
                }
                if path.contains(['?', '#']) {
                    return Err(MlflowError::InvalidUri(
                        "--from: the SQLite path must not contain '?' or '#'".into(),
                    ));
                }
                if !std::path::Path::new(path).is_file() {
                    return Err(MlflowError::Source(format!(
                        "SQLite database {path} does not exist"
                    )));
                }
                Ok(Self {
                    kind: SourceKind::Sqlite,
                    url: format!("sqlite://{path}?mode=ro"),
                })
            }
            "postgresql" | "postgres" => Ok(Self {
                kind: SourceKind::Postgres,
                url: format!("postgres://{rest}"),
            }),
            "mysql" | "mariadb" => Ok(Self {
                kind: SourceKind::Mysql,
                url: format!("mysql://{rest}"),
            }),
            _ => Err(bad_uri()),
        }
    }

    #[cfg(test)]
    pub fn kind(&self) -> SourceKind {
        self.kind
    }
}

fn bad_uri() -> MlflowError {
    MlflowError::InvalidUri(
        "--from must be MLflow's tracking database URI: sqlite:///PATH, postgresql://... or mysql://..."
            .into(),
    )
}

/// What was read: the rows and the KEK versions they use.
pub struct SourceSnapshot {
    pub rows: Vec<GatewaySecretRow>,
    pub versions: BTreeSet<u32>,
}

/// Read every gateway secret of MLflow's database, in (workspace, name)
/// order, through a read-only session.
pub async fn read_gateway_secrets(src: &SourceUri) -> Result<SourceSnapshot> {
    sqlx::any::install_default_drivers();
    let kind = src.kind;
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                match kind {
                    SourceKind::Sqlite => {
                        conn.execute("PRAGMA query_only = ON").await?;
                    }
                    SourceKind::Postgres => {
                        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                            .await?;
                    }
                    SourceKind::Mysql => {
                        conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                    }
                }
                Ok(())
            })
        })
        .connect(&src.url)
        .await
        .map_err(|e| MlflowError::Source(incident::record("cannot open MLflow's database", &e)))?;
    let with_ws = "SELECT secret_id, secret_name, workspace, encrypted_value, wrapped_dek, \
                   kek_version, provider FROM secrets ORDER BY workspace, secret_name";
    // MLflow versions before workspaces (3.8 to 3.9) have no `workspace`
    // column: every secret is in the default workspace.
    let without_ws = "SELECT secret_id, secret_name, 'default' AS workspace, encrypted_value, \
                      wrapped_dek, kek_version, provider FROM secrets ORDER BY secret_name";
    let rows = match sqlx::query(with_ws).fetch_all(&pool).await {
        Ok(r) => r,
        Err(_) => sqlx::query(without_ws).fetch_all(&pool).await.map_err(|e| {
            MlflowError::Source(incident::record(
                "no readable MLflow gateway secrets table (MLflow 3.8 or later) in that database",
                &e,
            ))
        })?,
    };
    pool.close().await;
    let mut out = Vec::with_capacity(rows.len());
    let mut versions = BTreeSet::new();
    for r in rows {
        let get_err = |col: &str, e: sqlx::Error| {
            MlflowError::Source(incident::record(
                &format!("unexpected type in MLflow's secrets.{col}"),
                &e,
            ))
        };
        let kek_version: i64 = r
            .try_get("kek_version")
            .map_err(|e| get_err("kek_version", e))?;
        let secret_id: String = r
            .try_get("secret_id")
            .map_err(|e| get_err("secret_id", e))?;
        let kek_version = u32::try_from(kek_version).map_err(|_| {
            MlflowError::Source(format!(
                "gateway secret {secret_id}: kek_version {kek_version} is out of range"
            ))
        })?;
        versions.insert(kek_version);
        out.push(GatewaySecretRow {
            secret_name: r
                .try_get("secret_name")
                .map_err(|e| get_err("secret_name", e))?,
            workspace: r
                .try_get("workspace")
                .map_err(|e| get_err("workspace", e))?,
            provider: r.try_get("provider").map_err(|e| get_err("provider", e))?,
            encrypted_value: r
                .try_get("encrypted_value")
                .map_err(|e| get_err("encrypted_value", e))?,
            wrapped_dek: r
                .try_get("wrapped_dek")
                .map_err(|e| get_err("wrapped_dek", e))?,
            secret_id,
            kek_version,
        });
    }
    Ok(SourceSnapshot {
        rows: out,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_forms() {
        let pg = SourceUri::parse("postgresql+psycopg2://u:p@h:5432/db").unwrap();
        assert_eq!(pg.kind(), SourceKind::Postgres);
        assert_eq!(pg.url, "postgres://u:p@h:5432/db");
        let my = SourceUri::parse("mysql+pymysql://u:p@h/db").unwrap();
        assert_eq!(my.url, "mysql://u:p@h/db");
        assert!(SourceUri::parse("sqlite://").is_err());
        assert!(SourceUri::parse("sqlite:///").is_err());
        assert!(SourceUri::parse("file:///x").is_err());
        let err = SourceUri::parse("redis://u:hunter2@h")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mlflow.db");
        std::fs::write(&f, b"").unwrap();
        let s = SourceUri::parse(&format!("sqlite:///{}", f.display())).unwrap();
        assert_eq!(s.url, format!("sqlite://{}?mode=ro", f.display()));
        assert!(format!("{pg:?}").find("p@h").is_none());
    }
}
