//! Everything that differs between SQLite, PostgreSQL and MySQL/MariaDB, in
//! one place. The rest of the SQL store writes one statement for all three
//! and asks [`Dialect`] for the few things that cannot be written once: the
//! placeholder style, row locks, `BEGIN IMMEDIATE`, `UPDATE .. RETURNING`,
//! the connection settings, constraint names in driver errors, the schema
//! catalogue and the embedded migrations.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Executor, SqlSafeStr, SqlStr, Transaction};

use super::db_err;
use crate::store::Result;

/// How long SQLite waits for a competing writer.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("migrations/mysql");

/// The SQL dialect behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

/// Statements rewritten for a dialect, by (dialect, literal, locking): each
/// literal is rewritten once per process and dialect.
type Rewritten = HashMap<(Dialect, &'static str, bool), Arc<str>>;
static REWRITTEN: LazyLock<RwLock<Rewritten>> = LazyLock::new(|| RwLock::new(HashMap::new()));

impl Dialect {
    pub fn from_uri(uri: &str) -> Option<Self> {
        if uri.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if uri.starts_with("postgres://") || uri.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if uri.starts_with("mysql://") || uri.starts_with("mariadb://") {
            Some(Self::Mysql)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    /// A statement in this dialect. PostgreSQL numbers its placeholders;
    /// the rewritten text is cached so each statement is rewritten once.
    pub fn q(self, sql: &'static str) -> SqlStr {
        self.rewrite(sql, false)
    }

    /// A `SELECT` that locks the rows it reads until the transaction ends
    /// (`FOR UPDATE`). SQLite has no row locks and needs none: its write
    /// transactions hold the database lock from `BEGIN IMMEDIATE` on
    /// ([`Dialect::begin_write`]).
    pub(crate) fn q_locking(self, sql: &'static str) -> SqlStr {
        self.rewrite(sql, self != Self::Sqlite)
    }

    fn rewrite(self, sql: &'static str, lock: bool) -> SqlStr {
        if self != Self::Postgres && !lock {
            return sql.into_sql_str();
        }
        if let Some(s) = REWRITTEN.read().expect("sql cache").get(&(self, sql, lock)) {
            return AssertSqlSafe(s.clone()).into_sql_str();
        }
        let mut text = self.placeholders(sql.to_string());
        if lock {
            text.push_str(" FOR UPDATE");
        }
        let s: Arc<str> = text.into();
        REWRITTEN
            .write()
            .expect("sql cache")
            .insert((self, sql, lock), s.clone());
        AssertSqlSafe(s).into_sql_str()
    }

    /// A statement assembled at run time from literal fragments only (the
    /// optional filters of a listing). Never pass user input here.
    pub(crate) fn q_composed(self, sql: String) -> SqlStr {
        AssertSqlSafe(self.placeholders(sql)).into_sql_str()
    }

    /// `?` to `$1, $2, ...` on PostgreSQL. Our statements have no `?`
    /// inside string literals.
    fn placeholders(self, sql: String) -> String {
        if self != Self::Postgres {
            return sql;
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// A write transaction; on SQLite `BEGIN IMMEDIATE`, so the write lock is
    /// taken up front and a busy database waits in `busy_timeout` instead of
    /// failing the upgrade half-way.
    pub(crate) async fn begin_write(self, pool: &AnyPool) -> Result<Transaction<'static, Any>> {
        match self {
            Self::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
            _ => pool.begin().await,
        }
        .map_err(db_err)
    }

    /// Pool size: SQLite has one writer at a time, so a few connections
    /// serve it; a database server gets more.
    pub(crate) fn max_connections(self) -> u32 {
        match self {
            Self::Sqlite => 4,
            _ => 10,
        }
    }

    /// Settings of every new connection. SQLite: foreign keys on, WAL with
    /// `synchronous = NORMAL`, the busy timeout, and no automatic
    /// checkpoint (the store checkpoints in the background instead, see
    /// `sqlite::Checkpointer`). No `journal_size_limit`: it cuts the WAL
    /// file back in the first commit after a reset, under the write lock;
    /// the checkpointer bounds the file instead (`sqlite::should_restart`).
    pub(crate) async fn on_connect(self, conn: &mut AnyConnection) -> sqlx::Result<()> {
        if self == Self::Sqlite {
            conn.execute("PRAGMA foreign_keys = ON").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
            conn.execute(AssertSqlSafe(format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
            )))
            .await?;
        }
        Ok(())
    }

    /// Whether `UPDATE .. RETURNING` exists (not on MySQL/MariaDB).
    pub(crate) fn update_returning(self) -> bool {
        self != Self::Mysql
    }

    /// Whether a `WITH` may hold a data-modifying statement (PostgreSQL
    /// only), so that an INSERT and an UPDATE go in one round trip.
    pub(crate) fn data_modifying_cte(self) -> bool {
        self == Self::Postgres
    }

    /// A query listing the columns of table `secrets` in the current
    /// schema, as `column_name`.
    pub(crate) fn secrets_columns_sql(self) -> &'static str {
        match self {
            Self::Sqlite => "SELECT name AS column_name FROM pragma_table_info('secrets')",
            Self::Postgres => {
                "SELECT column_name::text AS column_name FROM information_schema.columns \
                 WHERE table_name = 'secrets' AND table_schema = current_schema()"
            }
            Self::Mysql => {
                "SELECT CAST(column_name AS CHAR) AS column_name FROM information_schema.columns \
                 WHERE table_name = 'secrets' AND table_schema = DATABASE()"
            }
        }
    }

    /// The embedded migrations of this dialect (`migrations/<dialect>/`).
    pub(crate) fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
            Self::Mysql => &MYSQL_MIGRATIONS,
        }
    }

    /// The named constraint a failed statement violated, if it is one of
    /// ours. PostgreSQL reports the name; MySQL puts it in the message;
    /// SQLite lists the columns instead, which we map back to the names of
    /// docs/design.md §2.
    pub(crate) fn violated_constraint(e: &sqlx::Error) -> Option<&'static str> {
        let sqlx::Error::Database(d) = e else {
            return None;
        };
        let text = format!("{} {}", d.constraint().unwrap_or(""), d.message());
        const NAMED: [&str; 5] = [
            "uq_secrets_workspace_secret_name",
            "unique_binding_per_resource",
            "fk_secrets_bindings_secret_id",
            "secrets_bindings_pk",
            "secrets_pk",
        ];
        if let Some(n) = NAMED.iter().find(|n| text.contains(*n)) {
            return Some(n);
        }
        if text.contains("secrets.workspace, secrets.secret_name") {
            Some("uq_secrets_workspace_secret_name")
        } else if text.contains("secrets_bindings.workspace, secrets_bindings.resource_type") {
            Some("unique_binding_per_resource")
        } else if text.contains("FOREIGN KEY constraint failed") {
            Some("fk_secrets_bindings_secret_id")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_placeholders_and_locks() {
        let sql = "SELECT a FROM t WHERE b = ? AND c = ?";
        assert_eq!(
            Dialect::Postgres.q_locking(sql).as_str(),
            "SELECT a FROM t WHERE b = $1 AND c = $2 FOR UPDATE"
        );
        assert_eq!(
            Dialect::Postgres.q(sql).as_str(),
            "SELECT a FROM t WHERE b = $1 AND c = $2"
        );
        assert_eq!(Dialect::Sqlite.q_locking(sql).as_str(), sql);
        assert_eq!(
            Dialect::Mysql.q_locking(sql).as_str(),
            "SELECT a FROM t WHERE b = ? AND c = ? FOR UPDATE"
        );
    }
}
