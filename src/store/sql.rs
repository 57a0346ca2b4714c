//! The SQL implementation of [`SecretsStore`], on SQLite, PostgreSQL and
//! MySQL/MariaDB through sqlx's `Any` driver.
//!
//! Every statement is a literal with bind parameters (docs/design.md §10 rule 5);
//! the only rewriting is `?` to `$n` for PostgreSQL. Write transactions on
//! SQLite are `BEGIN IMMEDIATE`, so two writers queue on the busy timeout
//! instead of failing with a lock upgrade error.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, SqlStr, Transaction};

use super::audit::AuditRecord;
use super::audit_writer::{self, AuditWriter};
use super::limits::DecryptLimiter;
use super::sql_rows::{SealedRow, secret_from_row};
use super::{DecryptLimits, Result, StoreError, incident};
use crate::crypto::{self, Aad};
use crate::keystore::KeystoreHandle;
use crate::model::Secret;
use crate::value::SecretValue;

/// How long a caller waits for a pooled connection before the store is
/// reported unavailable. Short, so that the webhook can deny within its own
/// timeout when the database hangs.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits for a competing writer.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// The SQL dialect behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

static PG_SQL: LazyLock<RwLock<HashMap<&'static str, Arc<str>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

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
        use sqlx::SqlSafeStr;
        if self != Self::Postgres {
            return sql.into_sql_str();
        }
        if let Some(s) = PG_SQL.read().expect("sql cache").get(sql) {
            return AssertSqlSafe(s.clone()).into_sql_str();
        }
        let s: Arc<str> = number_placeholders(sql).into();
        PG_SQL.write().expect("sql cache").insert(sql, s.clone());
        AssertSqlSafe(s).into_sql_str()
    }

    /// A statement assembled at run time from literal fragments only (the
    /// optional filters of a listing). Never pass user input here.
    pub(crate) fn q_composed(self, sql: String) -> SqlStr {
        use sqlx::SqlSafeStr;
        let sql = if self == Self::Postgres {
            number_placeholders(&sql)
        } else {
            sql
        };
        AssertSqlSafe(sql).into_sql_str()
    }
}

/// `?` to `$1, $2, ...`. Our statements have no `?` inside string literals.
fn number_placeholders(sql: &str) -> String {
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

/// Map a driver error. Connection-level failures mean the store is down.
/// The driver's text goes to the log under an incident id, never into the
/// error (docs/design.md §6): callers include REST clients and tenants reading a
/// webhook's deny reason.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        sqlx::Error::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        sqlx::Error::Io(e) => StoreError::Unavailable(incident::record("database I/O error", &e)),
        sqlx::Error::Tls(e) => StoreError::Unavailable(incident::record("database TLS error", &e)),
        sqlx::Error::Database(d) => {
            StoreError::Database(incident::record("database error", &d.message()))
        }
        other => StoreError::Database(incident::record("database error", &other)),
    }
}

/// The named constraint a failed statement violated, if it is one of ours.
/// PostgreSQL reports the name; MySQL puts it in the message; SQLite lists
/// the columns instead, which we map back to the names of docs/design.md §2.
pub(super) fn violated_constraint(e: &sqlx::Error) -> Option<&'static str> {
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

/// A page token: the sort key of the last row, base64url JSON. Opaque to
/// callers; a malformed one is a clean 400.
pub(super) fn encode_token(key: &[&str]) -> String {
    B64URL.encode(serde_json::to_vec(key).expect("token"))
}

pub(super) fn decode_token(token: &str, parts: usize) -> Result<Vec<String>> {
    let bad = || StoreError::InvalidParameter("page_token is invalid".into());
    let bytes = B64URL.decode(token).map_err(|_| bad())?;
    let v: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v.len() != parts {
        return Err(bad());
    }
    Ok(v)
}

/// The sealed rows bound to one resource. The join requires the secret's
/// workspace to equal the binding's, so a binding can never reach across.
macro_rules! bound_select {
    () => {
        "SELECT b.binding_name AS binding_name, b.value_field AS value_field, \
         b.service_accounts AS service_accounts, s.secret_id AS secret_id, s.workspace AS workspace, \
         s.secret_name AS secret_name, s.state AS state, s.ciphertext AS ciphertext, s.iv AS iv, \
         s.wrapped_dek AS wrapped_dek, s.kek_version AS kek_version, s.aad_hash AS aad_hash, \
         s.last_updated_at AS last_updated_at \
         FROM secrets_bindings b JOIN secrets s ON s.secret_id = b.secret_id AND s.workspace = b.workspace \
         WHERE b.workspace = ? AND b.resource_type = ? AND b.resource_id = ?"
    };
}

pub(super) use bound_select;

/// The SQL store.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    pub(crate) keys: KeystoreHandle,
    pub(crate) decrypt_limiter: Option<Arc<DecryptLimiter>>,
    audit_writer: AuditWriter,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connect to `uri` (`sqlite://PATH`, `postgres://...`, `mysql://...`).
    /// Does not migrate: call [`SqlStore::migrate`] or
    /// [`SqlStore::ensure_schema`]. A missing SQLite file is created (mode
    /// 0600); commands that only read or maintain a store use
    /// [`SqlStore::connect_existing`] instead.
    pub async fn connect(uri: &str, keys: KeystoreHandle) -> Result<Self> {
        Self::connect_with(uri, keys, true).await
    }

    /// [`SqlStore::connect`], but a missing SQLite file is an error naming
    /// its path, never a new empty database (docs/design.md §9): a mistyped path
    /// must not make `verify` report "0 secrets, all fine", nor `kek retire`
    /// count zero rows.
    pub async fn connect_existing(uri: &str, keys: KeystoreHandle) -> Result<Self> {
        Self::connect_with(uri, keys, false).await
    }

    async fn connect_with(uri: &str, keys: KeystoreHandle, create: bool) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_uri(uri).ok_or_else(|| {
            StoreError::InvalidParameter(
                "store URI must start with sqlite://, postgres://, mysql:// (or http(s):// for a server)"
                    .into(),
            )
        })?;
        let (url, max_conns) = match dialect {
            Dialect::Sqlite => (prepare_sqlite(uri, create)?, 4),
            _ => (uri.to_string(), 10),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_conns)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // Checkpoints run in the background instead of inside
                        // a commit (audit_writer::checkpointer).
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                        conn.execute(AssertSqlSafe(format!(
                            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
                        )))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| {
                let what = format!("cannot connect to the {} database", dialect.name());
                StoreError::Unavailable(match e {
                    sqlx::Error::Database(d) => incident::record(&what, &d.message()),
                    other => incident::record(&what, &other),
                })
            })?;
        if dialect == Dialect::Sqlite {
            restrict_sqlite_files(uri)?;
        }
        Ok(Self {
            audit_writer: AuditWriter::spawn(pool.clone(), dialect),
            pool,
            dialect,
            keys,
            decrypt_limiter: None,
        })
    }

    /// Rate-limit value reads per principal and per workspace (docs/design.md §10
    /// rule 7). Servers and the webhook set this; the CLI's maintenance
    /// commands (`verify`, `rewrap`) are not value reads and are not limited.
    pub fn with_decrypt_limits(mut self, limits: DecryptLimits) -> Self {
        self.decrypt_limiter = Some(Arc::new(DecryptLimiter::new(limits)));
        self
    }

    /// Take `n` decrypts from the limits of `actor` and `workspace`.
    pub(crate) fn check_decrypt_limit(&self, actor: &str, workspace: &str, n: usize) -> Result<()> {
        match &self.decrypt_limiter {
            Some(l) => l.check(actor, workspace, u32::try_from(n).unwrap_or(u32::MAX)),
            None => Ok(()),
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn keys(&self) -> &KeystoreHandle {
        &self.keys
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        audit_writer::begin_write(&self.pool, self.dialect).await
    }

    /// Append a standalone audit record (failed operations, metadata reads,
    /// authentication denials: whatever a front end must record on its own).
    /// Returns once the row is committed; concurrent calls share one
    /// transaction (group commit, see [`audit_writer`]).
    pub async fn append_audit(&self, rec: &AuditRecord) -> Result<()> {
        self.audit_writer.append(rec).await
    }

    /// Record a failed operation, then return its result unchanged. A failure
    /// to write the audit row is logged, never swallowed silently.
    pub(super) async fn audit_failure<T>(&self, rec: AuditRecord, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            let action = rec.action.as_str();
            if let Err(ae) = self.append_audit(&rec.failed(e)).await {
                tracing::warn!(error = %ae, action, "could not write audit record for a failed operation");
            }
        }
        r
    }

    pub(super) async fn fetch_secret(
        &self,
        sql: &'static str,
        args: &[&str],
    ) -> Result<Option<Secret>> {
        let mut q = sqlx::query(self.dialect.q(sql));
        for a in args {
            q = q.bind(a.to_string());
        }
        let row = q.fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(secret_from_row).transpose()
    }

    /// Decrypt one sealed row with the keystore in force.
    pub(crate) fn open_row(&self, row: &SealedRow) -> Result<SecretValue> {
        let ks = self.keys.current();
        let kek = ks.kek(row.kek_version)?;
        let aad = Aad::new(&row.workspace, &row.secret_id, &row.secret_name);
        let plaintext = crypto::open(
            kek,
            &aad,
            &row.aad_hash,
            &row.ciphertext,
            &row.iv,
            &row.wrapped_dek,
        )
        .map_err(|source| StoreError::Crypto {
            secret_id: row.secret_id.clone(),
            source,
        })?;
        SecretValue::from_plaintext(&plaintext).map_err(|_| StoreError::Crypto {
            secret_id: row.secret_id.clone(),
            source: crypto::CryptoError::DecryptFailed,
        })
    }

    pub(super) fn seal(
        &self,
        workspace: &str,
        secret_id: &str,
        secret_name: &str,
        value: &SecretValue,
    ) -> Result<crypto::Sealed> {
        let ks = self.keys.current();
        let aad = Aad::new(workspace, secret_id, secret_name);
        crypto::seal(ks.active()?, &aad, &value.to_plaintext()).map_err(|source| {
            StoreError::Crypto {
                secret_id: secret_id.to_string(),
                source,
            }
        })
    }
}

/// The file path of a `sqlite:` URI, or `None` for an in-memory database.
pub fn sqlite_path(uri: &str) -> Option<std::path::PathBuf> {
    let path = uri
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// The connect URL of a SQLite store. With `create`, a missing file is
/// created first, owner-only, so that SQLite (which gives its `-wal` and
/// `-shm` files the database file's mode) never makes a readable one;
/// without, a missing file is an error naming the path and the URL opens
/// read-write only (`mode=rw`).
fn prepare_sqlite(uri: &str, create: bool) -> Result<String> {
    let Some(path) = sqlite_path(uri) else {
        return Ok(uri.to_string());
    };
    if !path.exists() {
        if !create {
            return Err(StoreError::NotFound(format!(
                "SQLite database {} does not exist; this command never creates one: check --store-uri (or {}), or create it with `mlflow-secrets migrate`",
                path.display(),
                "MLFLOW_SECRETS_STORE_URI"
            )));
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot create SQLite database {}: {e}",
                    path.display()
                )));
            }
        }
    }
    if uri.contains('?') {
        Ok(uri.to_string())
    } else if create {
        Ok(format!("{uri}?mode=rwc"))
    } else {
        Ok(format!("{uri}?mode=rw"))
    }
}

/// The SQLite file holds only ciphertext, but its metadata (names, who,
/// when) is still nobody else's business: make it and its `-wal` and `-shm`
/// files owner-only. A file we cannot restrict is an error (it is not ours
/// to use), not a silent skip (security review finding 17).
fn restrict_sqlite_files(uri: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Some(db) = sqlite_path(uri) else {
            return Ok(());
        };
        let mut files = vec![db.clone()];
        for suffix in ["-wal", "-shm"] {
            let mut f = db.clone().into_os_string();
            f.push(suffix);
            files.push(f.into());
        }
        for f in files {
            match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "cannot make {} owner-only (mode 0600): {e}",
                        f.display()
                    )));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = uri;
    Ok(())
}
