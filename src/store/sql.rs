//! The SQL implementation of [`SecretsStore`], on SQLite, PostgreSQL and
//! MySQL/MariaDB through sqlx's `Any` driver.
//!
//! Every statement is a literal with bind parameters (DESIGN §10 rule 5);
//! the only rewriting is `?` to `$n` for PostgreSQL. Write transactions on
//! SQLite are `BEGIN IMMEDIATE`, so two writers queue on the busy timeout
//! instead of failing with a lock upgrade error.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Row, SqlStr, Transaction};

use super::audit::{self, AuditAction, AuditRecord};
use super::sql_rows::{
    SealedRow, binding_cols, binding_from_row, sealed_cols, secret_cols, secret_from_row,
};
use super::validate;
use super::{AuditFilter, Result, SecretsStore, StoreError};
use crate::crypto::{self, Aad};
use crate::keystore::KeystoreHandle;
use crate::model::{
    AuditEntry, BindingFilter, Page, Secret, SecretBinding, SecretFilter, SecretState, now_ms,
};
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
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        sqlx::Error::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("database I/O error: {e}")),
        sqlx::Error::Tls(e) => StoreError::Unavailable(format!("database TLS error: {e}")),
        sqlx::Error::Database(d) => StoreError::Database(d.message().to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

/// The named constraint a failed statement violated, if it is one of ours.
/// PostgreSQL reports the name; MySQL puts it in the message; SQLite lists
/// the columns instead, which we map back to the names of DESIGN §2.
fn violated_constraint(e: &sqlx::Error) -> Option<&'static str> {
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
fn encode_token(key: &[&str]) -> String {
    B64URL.encode(serde_json::to_vec(key).expect("token"))
}

fn decode_token(token: &str, parts: usize) -> Result<Vec<String>> {
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
        "SELECT b.binding_name AS binding_name, s.secret_id AS secret_id, s.workspace AS workspace, \
         s.secret_name AS secret_name, s.state AS state, s.ciphertext AS ciphertext, s.iv AS iv, \
         s.wrapped_dek AS wrapped_dek, s.kek_version AS kek_version, s.aad_hash AS aad_hash \
         FROM secrets_bindings b JOIN secrets s ON s.secret_id = b.secret_id AND s.workspace = b.workspace \
         WHERE b.workspace = ? AND b.resource_type = ? AND b.resource_id = ?"
    };
}

/// The SQL store.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    pub(crate) keys: KeystoreHandle,
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
    /// [`SqlStore::ensure_schema`].
    pub async fn connect(uri: &str, keys: KeystoreHandle) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_uri(uri).ok_or_else(|| {
            StoreError::InvalidParameter(
                "store URI must start with sqlite://, postgres://, mysql:// (or http(s):// for a server)"
                    .into(),
            )
        })?;
        let (url, max_conns) = match dialect {
            Dialect::Sqlite => (sqlite_url(uri), 4),
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
            .map_err(|e| match e {
                sqlx::Error::Database(d) => StoreError::Unavailable(format!(
                    "cannot connect to the {} database: {}",
                    dialect.name(),
                    d.message()
                )),
                other => StoreError::Unavailable(format!(
                    "cannot connect to the {} database: {other}",
                    dialect.name()
                )),
            })?;
        if dialect == Dialect::Sqlite {
            restrict_sqlite_file(uri);
        }
        Ok(Self {
            pool,
            dialect,
            keys,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn keys(&self) -> &KeystoreHandle {
        &self.keys
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            _ => self.pool.begin().await,
        }
        .map_err(db_err)
    }

    /// Append a standalone audit record (for failed or read-only events).
    pub(crate) async fn append_audit(&self, rec: &AuditRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)
    }

    /// Record a failed operation, then return its result unchanged. A failure
    /// to write the audit row is logged, never swallowed silently.
    async fn audit_failure<T>(&self, rec: AuditRecord, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            let action = rec.action.as_str();
            if let Err(ae) = self.append_audit(&rec.failed(e)).await {
                tracing::warn!(error = %ae, action, "could not write audit record for a failed operation");
            }
        }
        r
    }

    async fn fetch_secret(&self, sql: &'static str, args: &[&str]) -> Result<Option<Secret>> {
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

    fn seal(
        &self,
        workspace: &str,
        secret_id: &str,
        secret_name: &str,
        value: &SecretValue,
    ) -> Result<crypto::Sealed> {
        let ks = self.keys.current();
        let aad = Aad::new(workspace, secret_id, secret_name);
        crypto::seal(ks.active(), &aad, &value.to_plaintext()).map_err(|source| {
            StoreError::Crypto {
                secret_id: secret_id.to_string(),
                source,
            }
        })
    }

    async fn create_inner(
        &self,
        workspace: &str,
        secret_name: &str,
        value: &SecretValue,
        is_shared: bool,
        actor: &str,
        rec: &AuditRecord,
    ) -> Result<Secret> {
        validate::workspace(workspace)?;
        validate::secret_name(secret_name)?;
        let secret_id = uuid::Uuid::new_v4().to_string();
        let sealed = self.seal(workspace, &secret_id, secret_name, value)?;
        let now = now_ms();
        let secret = Secret {
            secret_id: secret_id.clone(),
            workspace: workspace.to_string(),
            secret_name: secret_name.to_string(),
            masked_value: value.mask(),
            is_shared,
            state: SecretState::Active,
            created_by: Some(actor.to_string()),
            created_at: now,
            last_updated_by: Some(actor.to_string()),
            last_updated_at: now,
            revoked_by: None,
            revoked_at: None,
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(self.dialect.q(
            "INSERT INTO secrets (secret_id, workspace, secret_name, ciphertext, iv, wrapped_dek, \
             kek_version, aad_hash, masked_value, is_shared, state, created_by, last_updated_by, \
             created_at, last_updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ACTIVE', ?, ?, ?, ?)",
        ))
        .bind(&secret.secret_id)
        .bind(&secret.workspace)
        .bind(&secret.secret_name)
        .bind(sealed.ciphertext)
        .bind(sealed.iv.to_vec())
        .bind(sealed.wrapped_dek)
        .bind(i64::from(sealed.kek_version))
        .bind(sealed.aad_hash)
        .bind(&secret.masked_value)
        .bind(is_shared)
        .bind(actor)
        .bind(actor)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(match violated_constraint(&e) {
                Some("uq_secrets_workspace_secret_name") => StoreError::AlreadyExists(format!(
                    "secret '{secret_name}' already exists in workspace '{workspace}'"
                )),
                _ => db_err(e),
            });
        }
        let rec = rec.clone().secret_id(&secret_id);
        audit::append(&mut tx, self.dialect, &rec).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(secret)
    }

    /// Read the sealed row of a secret.
    pub(crate) async fn sealed_row(&self, secret_id: &str) -> Result<Option<SealedRow>> {
        let row = sqlx::query(self.dialect.q(concat!(
            "SELECT ",
            sealed_cols!(),
            " FROM secrets WHERE secret_id = ?"
        )))
        .bind(secret_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(SealedRow::from_row).transpose()
    }

    async fn value_inner(&self, secret_id: &str, rec: &mut AuditRecord) -> Result<SecretValue> {
        validate::uuid("secret_id", secret_id)?;
        let row = self
            .sealed_row(secret_id)
            .await?
            .ok_or_else(|| not_found_secret(secret_id))?;
        *rec = rec
            .clone()
            .secret(&row.secret_id, &row.secret_name)
            .workspace(&row.workspace);
        if row.is_revoked() {
            return Err(revoked(&row.secret_name, &row.workspace));
        }
        let value = self.open_row(&row)?;
        rec.detail = Some(format!("kek_version={}", row.kek_version));
        self.append_audit(rec).await?;
        Ok(value)
    }

    async fn update_inner(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
        rec: &mut AuditRecord,
    ) -> Result<Secret> {
        validate::uuid("secret_id", secret_id)?;
        let mut tx = self.begin_write().await?;
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT workspace, secret_name, state FROM secrets WHERE secret_id = ?"
            }
            _ => "SELECT workspace, secret_name, state FROM secrets WHERE secret_id = ? FOR UPDATE",
        };
        let row = sqlx::query(self.dialect.q(sql))
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found_secret(secret_id))?;
        let (ws, name, state) = name_state(&row)?;
        *rec = rec.clone().secret(secret_id, &name).workspace(&ws);
        if state == SecretState::Revoked {
            return Err(revoked(&name, &ws));
        }
        // A new DEK and IV for every value written, including updates.
        let sealed = self.seal(&ws, secret_id, &name, value)?;
        let now = now_ms();
        sqlx::query(self.dialect.q(
            "UPDATE secrets SET ciphertext = ?, iv = ?, wrapped_dek = ?, kek_version = ?, \
             aad_hash = ?, masked_value = ?, last_updated_by = ?, last_updated_at = ? \
             WHERE secret_id = ? AND state = 'ACTIVE'",
        ))
        .bind(sealed.ciphertext)
        .bind(sealed.iv.to_vec())
        .bind(sealed.wrapped_dek)
        .bind(i64::from(sealed.kek_version))
        .bind(sealed.aad_hash)
        .bind(value.mask())
        .bind(actor)
        .bind(now)
        .bind(secret_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)?;
        self.get_secret(secret_id).await
    }

    async fn revoke_inner(
        &self,
        secret_id: &str,
        actor: &str,
        rec: &mut AuditRecord,
    ) -> Result<Secret> {
        validate::uuid("secret_id", secret_id)?;
        let current = self.get_secret(secret_id).await?;
        *rec = rec
            .clone()
            .secret(secret_id, &current.secret_name)
            .workspace(&current.workspace);
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let done = sqlx::query(self.dialect.q(
            "UPDATE secrets SET state = 'REVOKED', revoked_by = ?, revoked_at = ?, \
             last_updated_by = ?, last_updated_at = ? WHERE secret_id = ? AND state = 'ACTIVE'",
        ))
        .bind(actor)
        .bind(now)
        .bind(actor)
        .bind(now)
        .bind(secret_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "secret '{}' in workspace '{}' is already revoked",
                current.secret_name, current.workspace
            )));
        }
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)?;
        self.get_secret(secret_id).await
    }

    async fn delete_inner(&self, secret_id: &str, rec: &mut AuditRecord) -> Result<()> {
        validate::uuid("secret_id", secret_id)?;
        let current = self.get_secret(secret_id).await?;
        *rec = rec
            .clone()
            .secret(secret_id, &current.secret_name)
            .workspace(&current.workspace);
        let mut tx = self.begin_write().await?;
        let bindings: i64 = sqlx::query(
            self.dialect
                .q("SELECT COUNT(*) AS n FROM secrets_bindings WHERE secret_id = ?"),
        )
        .bind(secret_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .try_get("n")
        .map_err(db_err)?;
        let done = sqlx::query(self.dialect.q("DELETE FROM secrets WHERE secret_id = ?"))
            .bind(secret_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found_secret(secret_id));
        }
        rec.detail = Some(format!("bindings_removed={bindings}"));
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn bind_inner(
        &self,
        secret_id: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: &str,
        actor: &str,
        rec: &mut AuditRecord,
    ) -> Result<SecretBinding> {
        validate::uuid("secret_id", secret_id)?;
        validate::resource_type(resource_type)?;
        validate::resource_id(resource_id)?;
        validate::binding_name(binding_name)?;
        let mut tx = self.begin_write().await?;
        // Lock the secret row: the private-secret rule below reads other
        // bindings, and two concurrent binds must not both pass it.
        let sql = match self.dialect {
            Dialect::Sqlite => {
                "SELECT workspace, secret_name, state, CASE WHEN is_shared THEN 1 ELSE 0 END AS is_shared FROM secrets WHERE secret_id = ?"
            }
            _ => {
                "SELECT workspace, secret_name, state, CASE WHEN is_shared THEN 1 ELSE 0 END AS is_shared FROM secrets WHERE secret_id = ? FOR UPDATE"
            }
        };
        let row = sqlx::query(self.dialect.q(sql))
            .bind(secret_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| not_found_secret(secret_id))?;
        let (ws, name, state) = name_state(&row)?;
        let shared: i64 = row.try_get("is_shared").map_err(db_err)?;
        *rec = rec.clone().secret(secret_id, &name).workspace(&ws);
        if state == SecretState::Revoked {
            return Err(StoreError::Conflict(format!(
                "secret '{name}' in workspace '{ws}' is revoked and cannot be bound"
            )));
        }
        if shared == 0 {
            let other = sqlx::query(
                self.dialect
                    .q("SELECT resource_type, resource_id FROM secrets_bindings \
                 WHERE secret_id = ? AND NOT (resource_type = ? AND resource_id = ?)"),
            )
            .bind(secret_id)
            .bind(resource_type)
            .bind(resource_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(o) = other {
                let t: String = o.try_get("resource_type").map_err(db_err)?;
                let i: String = o.try_get("resource_id").map_err(db_err)?;
                return Err(StoreError::Conflict(format!(
                    "secret '{name}' in workspace '{ws}' is private and already bound to {t}/{i}; \
                     make it shared to bind it to more than one resource"
                )));
            }
        }
        let binding = SecretBinding {
            binding_id: uuid::Uuid::new_v4().to_string(),
            secret_id: secret_id.to_string(),
            workspace: ws.clone(),
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            binding_name: binding_name.to_string(),
            created_by: Some(actor.to_string()),
            created_at: now_ms(),
        };
        let inserted = sqlx::query(self.dialect.q(
            "INSERT INTO secrets_bindings (binding_id, secret_id, workspace, resource_type, \
             resource_id, binding_name, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(&binding.binding_id)
        .bind(&binding.secret_id)
        .bind(&binding.workspace)
        .bind(&binding.resource_type)
        .bind(&binding.resource_id)
        .bind(&binding.binding_name)
        .bind(actor)
        .bind(binding.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(match violated_constraint(&e) {
                Some("unique_binding_per_resource") => StoreError::AlreadyExists(format!(
                    "binding '{binding_name}' already exists for {resource_type}/{resource_id} in workspace '{ws}'"
                )),
                Some("fk_secrets_bindings_secret_id") => not_found_secret(secret_id),
                _ => db_err(e),
            });
        }
        *rec = rec
            .clone()
            .resource(resource_type, resource_id)
            .detail(format!(
                "binding_id={} binding_name={binding_name}",
                binding.binding_id
            ));
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(binding)
    }

    async fn unbind_inner(&self, binding_id: &str, rec: &mut AuditRecord) -> Result<()> {
        validate::uuid("binding_id", binding_id)?;
        let b = self.get_binding(binding_id).await?;
        *rec = rec
            .clone()
            .secret_id(&b.secret_id)
            .workspace(&b.workspace)
            .resource(&b.resource_type, &b.resource_id)
            .detail(format!(
                "binding_id={binding_id} binding_name={}",
                b.binding_name
            ));
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            self.dialect
                .q("DELETE FROM secrets_bindings WHERE binding_id = ?"),
        )
        .bind(binding_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(not_found_binding(binding_id));
        }
        audit::append(&mut tx, self.dialect, rec).await?;
        tx.commit().await.map_err(db_err)
    }

    /// Bound rows of a resource (see `bound_select!`).
    async fn resource_rows(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: Option<&str>,
    ) -> Result<Vec<(String, SealedRow)>> {
        validate::workspace(workspace)?;
        validate::resource_type(resource_type)?;
        validate::resource_id(resource_id)?;
        let rows: Vec<AnyRow> = match binding_name {
            Some(n) => {
                validate::binding_name(n)?;
                sqlx::query(
                    self.dialect
                        .q(concat!(bound_select!(), " AND b.binding_name = ?")),
                )
                .bind(workspace)
                .bind(resource_type)
                .bind(resource_id)
                .bind(n)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(self.dialect.q(bound_select!()))
                    .bind(workspace)
                    .bind(resource_type)
                    .bind(resource_id)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("binding_name").map_err(db_err)?;
                Ok((name, SealedRow::from_row(r)?))
            })
            .collect()
    }

    /// Decrypt bound rows, refusing revoked ones by name.
    fn open_bound(
        &self,
        rows: Vec<(String, SealedRow)>,
        rec: &mut AuditRecord,
    ) -> Result<BTreeMap<String, SecretValue>> {
        let mut out = BTreeMap::new();
        let mut detail = Vec::with_capacity(rows.len());
        for (binding, row) in rows {
            if row.is_revoked() {
                return Err(StoreError::Conflict(format!(
                    "secret '{}' (bound as {binding}) in workspace '{}' is revoked",
                    row.secret_name, row.workspace
                )));
            }
            out.insert(binding.clone(), self.open_row(&row)?);
            detail.push(format!(
                "{binding}={}@kek_v{}",
                row.secret_id, row.kek_version
            ));
        }
        rec.detail = Some(detail.join(","));
        Ok(out)
    }
}

fn name_state(row: &AnyRow) -> Result<(String, String, SecretState)> {
    let ws: String = row.try_get("workspace").map_err(db_err)?;
    let name: String = row.try_get("secret_name").map_err(db_err)?;
    let state: String = row.try_get("state").map_err(db_err)?;
    let state = state
        .parse::<SecretState>()
        .map_err(|e| StoreError::Database(format!("secrets.state: {e}")))?;
    Ok((ws, name, state))
}

pub(crate) fn not_found_secret(secret_id: &str) -> StoreError {
    StoreError::NotFound(format!("secret with id '{secret_id}' does not exist"))
}

fn not_found_binding(binding_id: &str) -> StoreError {
    StoreError::NotFound(format!("binding with id '{binding_id}' does not exist"))
}

fn revoked(name: &str, ws: &str) -> StoreError {
    StoreError::Conflict(format!(
        "secret '{name}' in workspace '{ws}' is revoked; its value can no longer be read or changed"
    ))
}

/// `sqlite://PATH` with `mode=rwc`, so a missing database file is created.
fn sqlite_url(uri: &str) -> String {
    if uri.contains('?') {
        uri.to_string()
    } else {
        format!("{uri}?mode=rwc")
    }
}

/// The SQLite file holds only ciphertext, but its metadata (names, who,
/// when) is still nobody else's business: make it owner-only.
fn restrict_sqlite_file(uri: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = uri
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:")
            .split('?')
            .next()
            .unwrap_or("");
        if !path.is_empty() && path != ":memory:" {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

#[async_trait]
impl SecretsStore for SqlStore {
    async fn create_secret(
        &self,
        workspace: &str,
        secret_name: &str,
        value: &SecretValue,
        is_shared: bool,
        actor: &str,
    ) -> Result<Secret> {
        let rec = AuditRecord::new(AuditAction::Create, actor)
            .workspace(workspace)
            .detail(format!("secret_name={secret_name} is_shared={is_shared}"));
        let mut rec_named = rec.clone();
        rec_named.secret_name = Some(secret_name.to_string());
        let r = self
            .create_inner(workspace, secret_name, value, is_shared, actor, &rec_named)
            .await;
        self.audit_failure(rec_named, r).await
    }

    async fn get_secret(&self, secret_id: &str) -> Result<Secret> {
        validate::uuid("secret_id", secret_id)?;
        self.fetch_secret(
            concat!(
                "SELECT ",
                secret_cols!(),
                " FROM secrets WHERE secret_id = ?"
            ),
            &[secret_id],
        )
        .await?
        .ok_or_else(|| not_found_secret(secret_id))
    }

    async fn get_secret_by_name(&self, workspace: &str, secret_name: &str) -> Result<Secret> {
        validate::workspace(workspace)?;
        validate::secret_name(secret_name)?;
        self.fetch_secret(
            concat!(
                "SELECT ",
                secret_cols!(),
                " FROM secrets WHERE workspace = ? AND secret_name = ?"
            ),
            &[workspace, secret_name],
        )
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "secret '{secret_name}' does not exist in workspace '{workspace}'"
            ))
        })
    }

    async fn get_secret_value(&self, secret_id: &str, actor: &str) -> Result<SecretValue> {
        let mut rec = AuditRecord::new(AuditAction::ReadValue, actor).secret_id(secret_id);
        let r = self.value_inner(secret_id, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn list_secrets(&self, f: &SecretFilter) -> Result<Page<Secret>> {
        let limit = validate::page_size(f.max_results)?;
        let mut sql = String::from(concat!(
            "SELECT ",
            secret_cols!(),
            " FROM secrets WHERE 1 = 1"
        ));
        let mut args: Vec<String> = Vec::new();
        if let Some(ws) = &f.workspace {
            validate::workspace(ws)?;
            sql.push_str(" AND workspace = ?");
            args.push(ws.clone());
        }
        if let Some(state) = f.state {
            sql.push_str(" AND state = ?");
            args.push(state.as_str().to_string());
        }
        if let Some(token) = &f.page_token {
            let key = decode_token(token, 2)?;
            sql.push_str(" AND (workspace > ? OR (workspace = ? AND secret_name > ?))");
            args.extend([key[0].clone(), key[0].clone(), key[1].clone()]);
        }
        if f.is_shared.is_some() {
            sql.push_str(" AND is_shared = ?");
        }
        sql.push_str(" ORDER BY workspace, secret_name LIMIT ?");
        let mut q = sqlx::query(self.dialect.q_composed(sql));
        for a in args {
            q = q.bind(a);
        }
        if let Some(shared) = f.is_shared {
            q = q.bind(shared);
        }
        let rows = q
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut items = rows
            .iter()
            .map(secret_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|s| encode_token(&[&s.workspace, &s.secret_name]))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn update_secret(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        let mut rec = AuditRecord::new(AuditAction::Update, actor).secret_id(secret_id);
        let r = self.update_inner(secret_id, value, actor, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn revoke_secret(&self, secret_id: &str, actor: &str) -> Result<Secret> {
        let mut rec = AuditRecord::new(AuditAction::Revoke, actor).secret_id(secret_id);
        let r = self.revoke_inner(secret_id, actor, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn delete_secret(&self, secret_id: &str, actor: &str) -> Result<()> {
        let mut rec = AuditRecord::new(AuditAction::Delete, actor).secret_id(secret_id);
        let r = self.delete_inner(secret_id, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn bind_secret(
        &self,
        secret_id: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretBinding> {
        let mut rec = AuditRecord::new(AuditAction::Bind, actor).secret_id(secret_id);
        let r = self
            .bind_inner(
                secret_id,
                resource_type,
                resource_id,
                binding_name,
                actor,
                &mut rec,
            )
            .await;
        self.audit_failure(rec, r).await
    }

    async fn get_binding(&self, binding_id: &str) -> Result<SecretBinding> {
        validate::uuid("binding_id", binding_id)?;
        let row = sqlx::query(self.dialect.q(concat!(
            "SELECT ",
            binding_cols!(),
            " FROM secrets_bindings WHERE binding_id = ?"
        )))
        .bind(binding_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| not_found_binding(binding_id))?;
        binding_from_row(&row)
    }

    async fn list_bindings(&self, f: &BindingFilter) -> Result<Page<SecretBinding>> {
        let limit = validate::page_size(f.max_results)?;
        let mut sql = String::from(concat!(
            "SELECT ",
            binding_cols!(),
            " FROM secrets_bindings WHERE 1 = 1"
        ));
        let mut args: Vec<String> = Vec::new();
        let filters: [(&str, &Option<String>); 4] = [
            (" AND workspace = ?", &f.workspace),
            (" AND resource_type = ?", &f.resource_type),
            (" AND resource_id = ?", &f.resource_id),
            (" AND secret_id = ?", &f.secret_id),
        ];
        for (clause, value) in filters {
            if let Some(v) = value {
                sql.push_str(clause);
                args.push(v.clone());
            }
        }
        if let Some(token) = &f.page_token {
            let k = decode_token(token, 4)?;
            sql.push_str(
                " AND (workspace, resource_type, resource_id, binding_name) > (?, ?, ?, ?)",
            );
            args.extend(k);
        }
        sql.push_str(" ORDER BY workspace, resource_type, resource_id, binding_name LIMIT ?");
        let mut q = sqlx::query(self.dialect.q_composed(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut items = rows
            .iter()
            .map(binding_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|b| {
                encode_token(&[
                    &b.workspace,
                    &b.resource_type,
                    &b.resource_id,
                    &b.binding_name,
                ])
            })
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn unbind_secret(&self, binding_id: &str, actor: &str) -> Result<()> {
        let mut rec = AuditRecord::new(AuditAction::Unbind, actor);
        let r = self.unbind_inner(binding_id, &mut rec).await;
        self.audit_failure(rec, r).await
    }

    async fn get_secret_for_resource(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretValue> {
        let mut rec = AuditRecord::new(AuditAction::ReadValue, actor)
            .workspace(workspace)
            .resource(resource_type, resource_id);
        let r = async {
            let rows = self
                .resource_rows(workspace, resource_type, resource_id, Some(binding_name))
                .await?;
            if rows.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "no binding '{binding_name}' for {resource_type}/{resource_id} in workspace '{workspace}'"
                )));
            }
            let (id, name) = (rows[0].1.secret_id.clone(), rows[0].1.secret_name.clone());
            rec = rec.clone().secret(&id, &name);
            let mut map = self.open_bound(rows, &mut rec)?;
            self.append_audit(&rec).await?;
            Ok(map.remove(binding_name).expect("bound row"))
        }
        .await;
        self.audit_failure(rec, r).await
    }

    async fn get_all_secrets_for_resource(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        actor: &str,
    ) -> Result<BTreeMap<String, SecretValue>> {
        let mut rec = AuditRecord::new(AuditAction::ReadResourceValues, actor)
            .workspace(workspace)
            .resource(resource_type, resource_id);
        let r = async {
            let rows = self
                .resource_rows(workspace, resource_type, resource_id, None)
                .await?;
            let map = self.open_bound(rows, &mut rec)?;
            self.append_audit(&rec).await?;
            Ok(map)
        }
        .await;
        self.audit_failure(rec, r).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.audit_entries(f).await
    }
}
