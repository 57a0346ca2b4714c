//! One fresh, migrated database per test on each backend.
//!
//! SQLite always runs. PostgreSQL and MariaDB run when
//! `MLFLOW_SECRETS_TEST_POSTGRES_URL` / `MLFLOW_SECRETS_TEST_MYSQL_URL` are
//! set (`scripts/db.sh up` prints them); with
//! `MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS=1` (set by `scripts/test.sh`) a
//! missing one is a failure, not a skip.

use std::path::PathBuf;
use std::sync::OnceLock;

use mlflow_secrets::store::SqlStore;
use sqlx::Connection;

use crate::TestKeystore;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    fn env(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("MLFLOW_SECRETS_TEST_POSTGRES_URL"),
            Self::Mysql => Some("MLFLOW_SECRETS_TEST_MYSQL_URL"),
        }
    }
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub backend: Backend,
    pub uri: String,
    pub keystore: TestKeystore,
    pub store: SqlStore,
    _tmp: Option<tempfile::TempDir>,
}

pub(crate) fn require_all() -> bool {
    std::env::var("MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS").as_deref() == Ok("1")
}

/// A unique database name for this test.
fn db_name() -> String {
    format!("mst_{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

/// Replace the database path of a server URL.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// An empty database on `backend`, or `None` when that backend is not
/// configured (and not required).
pub async fn empty_database(backend: Backend) -> Option<(String, Option<tempfile::TempDir>)> {
    sqlx::any::install_default_drivers();
    match backend.env() {
        None => {
            let tmp = tempfile::tempdir().unwrap();
            let uri = format!(
                "sqlite://{}?mode=rwc",
                tmp.path().join("store.db").display()
            );
            Some((uri, Some(tmp)))
        }
        Some(var) => {
            let Ok(admin) = std::env::var(var) else {
                assert!(
                    !require_all(),
                    "{var} is not set but MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS=1: start the databases with scripts/db.sh up"
                );
                crate::notice::once(
                    var,
                    &format!("skipping {backend:?} tests: {var} is not set (run scripts/db.sh up)"),
                );
                return None;
            };
            let name = db_name();
            let mut conn = sqlx::AnyConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {backend:?} at {var}: {e}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.ok();
            Some((with_database(&admin, &name), None))
        }
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<Self> {
        let (uri, tmp) = empty_database(backend).await?;
        let keystore = TestKeystore::new();
        let store = SqlStore::connect(&uri, keystore.handle()).await.unwrap();
        store.migrate().await.unwrap();
        Some(Self {
            backend,
            uri,
            keystore,
            store,
            _tmp: tmp,
        })
    }

    /// A raw connection for tests that tamper with rows behind the store.
    pub async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::AnyConnection::connect(&self.uri).await.unwrap()
    }

    /// `?` placeholders for this backend (PostgreSQL numbers them).
    pub fn sql(&self, s: &str) -> String {
        if self.backend != Backend::Postgres {
            return s.to_string();
        }
        let mut n = 0;
        s.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    /// Run one statement with text arguments on a raw connection, as
    /// someone with write access to the database could, bypassing the
    /// store; returns the rows it affected.
    pub async fn exec(&self, conn: &mut sqlx::AnyConnection, sql: &str, args: &[&str]) -> u64 {
        let sql = self.sql(sql);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for a in args {
            q = q.bind(a.to_string());
        }
        q.execute(conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.uri
            .strip_prefix("sqlite://")
            .map(|p| PathBuf::from(p.split('?').next().unwrap_or(p)))
    }
}

static INIT: OnceLock<()> = OnceLock::new();

pub fn init() {
    INIT.get_or_init(sqlx::any::install_default_drivers);
}

/// Run one contract case on `backend`, when that backend is available.
pub async fn run_case<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if let Some(db) = TestDb::new(backend).await {
        case(db).await;
    }
}

/// Generates one `#[tokio::test]` per backend for each contract case (an
/// `async fn(TestDb)` at the test crate's root).
#[macro_export]
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { $crate::run_case($crate::Backend::Sqlite, super::$case).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { $crate::run_case($crate::Backend::Postgres, super::$case).await } )* }
        mod mysql { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { $crate::run_case($crate::Backend::Mysql, super::$case).await } )* }
    };
}

/// Drop the triggers that make `secrets_audit_log` append-only, as someone
/// with DDL rights could.
pub async fn drop_audit_triggers(db: &TestDb, conn: &mut sqlx::AnyConnection) {
    for t in [
        "trg_secrets_audit_log_no_update",
        "trg_secrets_audit_log_no_delete",
    ] {
        let sql = match db.backend {
            Backend::Postgres => format!("DROP TRIGGER {t} ON secrets_audit_log"),
            _ => format!("DROP TRIGGER {t}"),
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}
