//! The SQL implementation of [`SecretsStore`], on SQLite, PostgreSQL and
//! MySQL/MariaDB through sqlx's `Any` driver.
//!
//! Every statement is a literal with bind parameters (docs/design.md §10
//! rule 5); what differs between the databases is behind [`Dialect`].
//! Each operation is written once, in the file of its concern, with its
//! validation, its transaction and its audit record together:
//! `secrets.rs` (create, create-and-bind, update, revoke, delete,
//! metadata reads),
//! `bindings.rs` (bind, unbind, binding reads), `values.rs` (every
//! value read, the webhook's included), `maintenance.rs` (verify, rewrap,
//! KEK usage); the audit log itself is `store::audit`.

mod bindings;
mod dialect;
mod maintenance;
mod rows;
mod secrets;
mod sqlite;
mod values;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};

use super::audit::{AuditRecord, AuditWriter};
use super::limits::DecryptLimiter;
use super::{
    AuditFilter, ChooseBound, DecryptLimits, ResolvedResource, Result, SecretsStore, StoreError,
    incident,
};
use crate::crypto::{self, Aad};
use crate::keystore::KeystoreHandle;
use crate::model::{
    AuditEntry, BindingFilter, BindingSpec, NewBinding, NewSecret, Page, ResourceRef, Secret,
    SecretBinding, SecretFilter,
};
use crate::value::SecretValue;

pub use dialect::Dialect;
pub use maintenance::{MAX_REWRAP_BATCH, RewrapReport, RewrapTarget, VerifyFailure, VerifyReport};
pub(crate) use rows::{
    Arg, SealedRow, audit_cols, audit_entry_from_row, fetch_listing, push_workspaces_in,
    secret_from_row,
};
pub(crate) use sqlite::WriterPause;
pub use sqlite::sqlite_path;
pub use values::{BoundInfo, BoundMeta, BoundValue};

/// How long a caller waits for a pooled connection before the store is
/// reported unavailable. Short, so that the webhook can deny within its own
/// timeout when the database hangs.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle for longer than this is pinged before it is
/// handed out, so one the database server dropped (a restart, an idle
/// timeout) is replaced instead of failing a request. sqlx's default pings
/// on *every* acquire: a round trip to the database server, or a hop to the
/// SQLite worker thread, before each query, where the audited `get` and
/// the webhook's read have only one or two of their own to make.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

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

/// The SQL store.
#[derive(Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    pub(crate) keys: KeystoreHandle,
    decrypt_limiter: Option<Arc<DecryptLimiter>>,
    audit_writer: AuditWriter,
    /// SQLite only: keeps the background WAL checkpointer running.
    _checkpointer: Option<Arc<sqlite::Checkpointer>>,
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
        let url = match dialect {
            Dialect::Sqlite => sqlite::prepare_sqlite(uri, create)?,
            _ => uri.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(dialect.max_connections())
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| Box::pin(dialect.on_connect(conn)))
            .connect(&url)
            .await
            .map_err(|e| {
                let what = format!("cannot connect to the {} database", dialect.name());
                StoreError::Unavailable(match e {
                    sqlx::Error::Database(d) => incident::record(&what, &d.message()),
                    other => incident::record(&what, &other),
                })
            })?;
        let checkpointer = if dialect == Dialect::Sqlite {
            sqlite::restrict_sqlite_files(uri)?;
            Some(sqlite::Checkpointer::spawn(pool.clone()))
        } else {
            None
        };
        let pause = checkpointer.as_ref().map(|c| c.pause());
        Ok(Self {
            audit_writer: AuditWriter::spawn(pool.clone(), dialect, pause),
            pool,
            dialect,
            keys,
            decrypt_limiter: None,
            _checkpointer: checkpointer,
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
    fn check_decrypt_limit(&self, actor: &str, workspace: &str, n: usize) -> Result<()> {
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
        self.dialect.begin_write(&self.pool).await
    }

    /// Append a standalone audit record (failed operations, metadata reads,
    /// authentication denials: whatever a front end must record on its own).
    /// Returns once the row is committed; concurrent calls share one
    /// transaction (group commit, see `store::audit::writer`).
    pub async fn append_audit(&self, rec: &AuditRecord) -> Result<()> {
        self.audit_writer.append(rec).await
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

    /// Decrypt one sealed row with the keystore in force.
    fn open_row(&self, row: &SealedRow) -> Result<SecretValue> {
        let ks = self.keys.current();
        let kek = ks.kek(row.kek_version)?;
        let aad = Aad::new(&row.workspace, &row.secret_id, &row.secret_name);
        let parsed = crypto::open_with(
            kek,
            &aad,
            crypto::Columns {
                aad_hash: &row.aad_hash,
                ciphertext: &row.ciphertext,
                iv: &row.iv,
                wrapped_dek: &row.wrapped_dek,
            },
            SecretValue::from_plaintext,
        )
        .map_err(|source| StoreError::Crypto {
            secret_id: row.secret_id.clone(),
            source,
        })?;
        parsed.map_err(|_| StoreError::Crypto {
            secret_id: row.secret_id.clone(),
            source: crypto::CryptoError::DecryptFailed,
        })
    }

    /// Seal a value under the active KEK, with a fresh DEK and IV.
    fn seal(
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

/// Each method is written in full (validation, transaction, audit record)
/// in the file of its concern; this block only routes to it.
#[async_trait]
impl SecretsStore for SqlStore {
    async fn create_secret_with(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        self.create(new, value, actor).await
    }

    async fn create_secrets_with(
        &self,
        items: &[(NewSecret<'_>, &SecretValue)],
        actor: &str,
    ) -> Vec<Result<Secret>> {
        self.create_many(items, actor).await
    }

    async fn get_secret(&self, secret_id: &str) -> Result<Secret> {
        self.secret_by_id(secret_id).await
    }

    async fn get_secret_by_name(&self, workspace: &str, secret_name: &str) -> Result<Secret> {
        self.secret_by_name(workspace, secret_name).await
    }

    async fn get_secret_value(&self, secret_id: &str, actor: &str) -> Result<SecretValue> {
        self.value(secret_id, actor).await
    }

    async fn list_secrets(&self, f: &SecretFilter) -> Result<Page<Secret>> {
        self.secrets_page(f).await
    }

    async fn update_secret(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret> {
        self.update(secret_id, value, actor).await
    }

    async fn revoke_secret(&self, secret_id: &str, actor: &str) -> Result<Secret> {
        self.revoke(secret_id, actor).await
    }

    async fn delete_secret(&self, secret_id: &str, actor: &str) -> Result<()> {
        self.delete(secret_id, actor).await
    }

    async fn bind_secret_with(&self, new: &NewBinding<'_>, actor: &str) -> Result<SecretBinding> {
        self.bind(new, actor).await
    }

    async fn create_and_bind_secret(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        binding: &BindingSpec<'_>,
        actor: &str,
    ) -> Result<(Secret, SecretBinding)> {
        self.create_and_bind(new, value, binding, actor).await
    }

    async fn get_binding(&self, binding_id: &str) -> Result<SecretBinding> {
        self.binding_by_id(binding_id).await
    }

    async fn list_bindings(&self, f: &BindingFilter) -> Result<Page<SecretBinding>> {
        self.bindings_page(f).await
    }

    async fn unbind_secret(&self, binding_id: &str, actor: &str) -> Result<()> {
        self.unbind(binding_id, actor).await
    }

    async fn get_secret_for_resource(
        &self,
        res: ResourceRef<'_>,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretValue> {
        self.resource_value(res, binding_name, actor).await
    }

    async fn get_all_secrets_for_resource(
        &self,
        res: ResourceRef<'_>,
        actor: &str,
    ) -> Result<BTreeMap<String, SecretValue>> {
        let all = self.get_all_bound_values(res, actor).await?;
        Ok(all.into_iter().map(|(k, b)| (k, b.value)).collect())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.audit_entries(f).await
    }

    async fn append_audit(&self, rec: &AuditRecord) -> Result<()> {
        SqlStore::append_audit(self, rec).await
    }

    async fn get_binding_by_key(
        &self,
        res: ResourceRef<'_>,
        binding_name: &str,
    ) -> Result<Option<SecretBinding>> {
        self.binding_by_key(res, binding_name).await
    }

    async fn kek_version(&self, secret_id: &str) -> Result<u32> {
        self.kek_version_of(secret_id).await
    }

    async fn bound_metadata(&self, res: ResourceRef<'_>) -> Result<Vec<BoundInfo>> {
        self.bound_info(res).await
    }

    async fn choose_bound_values(
        &self,
        res: ResourceRef<'_>,
        actor: &str,
        choose: ChooseBound<'_>,
    ) -> Result<Option<BTreeMap<String, BoundValue>>> {
        let pick = |meta: &[BoundMeta<'_>]| choose(meta).ok_or(());
        Ok(self.get_chosen_bound_values(res, actor, pick).await?.ok())
    }

    async fn resolve_resource(
        &self,
        res: ResourceRef<'_>,
        actor: &str,
    ) -> Result<ResolvedResource> {
        let bound = self.get_all_bound_values(res, actor).await?;
        if bound.is_empty() {
            return Err(StoreError::NotFound(format!("no binding for {res}")));
        }
        Ok(ResolvedResource::from_bound(bound))
    }
}
