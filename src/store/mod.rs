//! The store: one trait over the SQL implementation (and, later, REST).
//!
//! Every operation of docs/design.md §6 is here. Entities are metadata only; values
//! come back as [`SecretValue`] and only from the value-reading operations,
//! each of which is audited.

pub mod audit;
pub(crate) mod http;
mod https_client;
pub(crate) mod incident;
mod limits;
pub(crate) mod migrate;
pub(crate) mod sql;
pub(crate) mod timing;
pub(crate) mod ui_queries;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;

use crate::crypto::CryptoError;
use crate::keystore::KeystoreError;
use crate::model::{
    AuditEntry, BindingFilter, BindingSpec, NewBinding, NewSecret, Page, ResourceRef, Secret,
    SecretBinding, SecretFilter,
};
use crate::value::SecretValue;
use audit::AuditRecord;

pub use http::HttpStore;
pub use limits::DecryptLimits;
pub use sql::{
    BoundInfo, BoundMeta, BoundValue, MAX_REWRAP_BATCH, RewrapReport, RewrapTarget, SqlStore,
    VerifyFailure, VerifyReport,
};

/// Errors of the store layer. Each message names the object and what is
/// wrong, and none contains a value, key or passphrase.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidParameter(String),
    /// An operation the object's state forbids (for example, a revoked
    /// secret, or a private secret already bound elsewhere).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    /// A row failed its integrity checks: tampering, a swapped column, or a
    /// KEK that does not match.
    #[error("secret {secret_id}: {source}")]
    Crypto {
        secret_id: String,
        #[source]
        source: CryptoError,
    },
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A database failure. The text is safe to show: a driver's message
    /// never gets here, only an incident id whose log line holds it
    /// ([`incident::record`]).
    #[error("{0}")]
    Database(String),
    #[error("database schema: {0}")]
    Schema(String),
    /// The backing service (database or server) cannot be reached. Safe to
    /// show, like [`StoreError::Database`].
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// MLflow's error code for this error (docs/design.md §7), from the
    /// one table in [`crate::wire::ERRORS`].
    pub fn error_code(&self) -> &'static str {
        self.kind().code()
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Filters of the audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub secret_id: Option<String>,
    pub workspace: Option<String>,
    /// Only rows of these workspaces (a scoped admin token); `None`: all
    /// rows, those without a workspace included.
    pub workspaces: Option<Vec<String>>,
    /// Return entries with `seq` greater than this.
    pub after_seq: Option<i64>,
    pub max_results: Option<u32>,
}

/// Where one injected value came from (the webhook's `injected`
/// annotation and `resolve`'s `injected` list, docs/design.md §7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectedRef {
    pub binding_name: String,
    pub secret_id: String,
    /// The secret's `last_updated_at` (epoch ms) when it was read.
    pub version: i64,
}

/// What a resource gets injected: each binding's string, and where it
/// came from. Built only by [`ResolvedResource::from_bound`], the one
/// conversion `resolve` and the webhook share.
pub struct ResolvedResource {
    pub values: BTreeMap<String, secrecy::SecretString>,
    pub injected: Vec<InjectedRef>,
}

impl ResolvedResource {
    /// The injected strings of the values read by
    /// `SqlStore::get_all_bound_values` (see `SecretValue::injected_text`).
    pub fn from_bound(bound: BTreeMap<String, BoundValue>) -> Self {
        let mut values = BTreeMap::new();
        let mut injected = Vec::with_capacity(bound.len());
        for (name, b) in bound {
            values.insert(name.clone(), b.value.injected_text());
            injected.push(InjectedRef {
                binding_name: name,
                secret_id: b.secret_id,
                version: b.last_updated_at,
            });
        }
        Self { values, injected }
    }
}

impl std::fmt::Debug for ResolvedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedResource")
            .field("values", &"[REDACTED]")
            .field("injected", &self.injected)
            .finish()
    }
}

/// Picks, from the metadata of a resource's bound rows, the bindings to
/// decrypt (docs/design.md §8: the webhook decides a pod's consent before
/// anything is decrypted). `None` refuses the read: nothing is decrypted,
/// counted against a limit or audited, and the caller records its refusal.
pub type ChooseBound<'a> =
    Box<dyn FnOnce(&[BoundMeta<'_>]) -> Option<BTreeSet<String>> + Send + 'a>;

/// The store operations of docs/design.md §6.
///
/// `actor` is the authenticated principal recorded in `created_by`,
/// `last_updated_by`, `revoked_by` and the audit log.
#[async_trait]
pub trait SecretsStore: Send + Sync {
    /// Create a secret with every optional column (`provider`).
    async fn create_secret_with(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret>;

    /// Create several secrets, each with its audit row, in as few
    /// transactions as the store can (`mlflow import` of thousands): each
    /// secret is written whole or not at all, and one result per item
    /// comes back, in order. By default, one create after another.
    async fn create_secrets_with(
        &self,
        items: &[(NewSecret<'_>, &SecretValue)],
        actor: &str,
    ) -> Vec<Result<Secret>> {
        let mut out = Vec::with_capacity(items.len());
        for (new, value) in items {
            out.push(self.create_secret_with(new, value, actor).await);
        }
        out
    }

    /// [`SecretsStore::create_secret_with`] without a provider: the short
    /// form of docs/design.md §6.
    async fn create_secret(
        &self,
        workspace: &str,
        secret_name: &str,
        value: &SecretValue,
        is_shared: bool,
        actor: &str,
    ) -> Result<Secret> {
        let new = NewSecret {
            workspace,
            secret_name,
            is_shared,
            provider: None,
        };
        self.create_secret_with(&new, value, actor).await
    }

    async fn get_secret(&self, secret_id: &str) -> Result<Secret>;

    async fn get_secret_by_name(&self, workspace: &str, secret_name: &str) -> Result<Secret>;

    /// Decrypt a secret's value. Internal use; audited.
    async fn get_secret_value(&self, secret_id: &str, actor: &str) -> Result<SecretValue>;

    async fn list_secrets(&self, filter: &SecretFilter) -> Result<Page<Secret>>;

    async fn update_secret(
        &self,
        secret_id: &str,
        value: &SecretValue,
        actor: &str,
    ) -> Result<Secret>;

    async fn revoke_secret(&self, secret_id: &str, actor: &str) -> Result<Secret>;

    /// Delete a secret; its bindings go with it.
    async fn delete_secret(&self, secret_id: &str, actor: &str) -> Result<()>;

    /// Bind with every optional column (`value_field`, `service_accounts`).
    async fn bind_secret_with(&self, new: &NewBinding<'_>, actor: &str) -> Result<SecretBinding>;

    /// Create a secret and bind it to a resource as one operation: the
    /// secret, its binding and both audit rows (the `CREATE` and the `BIND`
    /// that [`SecretsStore::create_secret_with`] and
    /// [`SecretsStore::bind_secret_with`] write) commit together, or
    /// nothing does. A failure of either part (a name taken, a binding name
    /// the resource already has, a `value_field` the value lacks) leaves no
    /// secret, no binding and no success row; one `CREATE` row records the
    /// failed attempt. Every rule of the two operations applies unchanged.
    ///
    /// The web UI's "create and bind" uses it, so a crash between the two
    /// steps cannot leave a secret without the binding it was made for.
    async fn create_and_bind_secret(
        &self,
        new: &NewSecret<'_>,
        value: &SecretValue,
        binding: &BindingSpec<'_>,
        actor: &str,
    ) -> Result<(Secret, SecretBinding)>;

    /// [`SecretsStore::bind_secret_with`] of the whole value, to any pod of
    /// the resource: the short form of docs/design.md §6.
    async fn bind_secret(
        &self,
        secret_id: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretBinding> {
        let new = NewBinding {
            secret_id,
            resource_type,
            resource_id,
            binding_name,
            value_field: None,
            service_accounts: &[],
        };
        self.bind_secret_with(&new, actor).await
    }

    async fn get_binding(&self, binding_id: &str) -> Result<SecretBinding>;

    async fn list_bindings(&self, filter: &BindingFilter) -> Result<Page<SecretBinding>>;

    async fn unbind_secret(&self, binding_id: &str, actor: &str) -> Result<()>;

    /// The value bound to one resource under one name. Audited.
    async fn get_secret_for_resource(
        &self,
        resource: ResourceRef<'_>,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretValue>;

    /// Every value bound to a resource, by binding name. Audited. Fails as a
    /// whole if any bound secret is revoked or fails to decrypt.
    async fn get_all_secrets_for_resource(
        &self,
        resource: ResourceRef<'_>,
        actor: &str,
    ) -> Result<BTreeMap<String, SecretValue>>;

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;

    /// Append a record a front end writes on its own (a refusal, a
    /// metadata read): the webhook's denies and dryRuns, the operator's
    /// scrubs. Returns once the row is committed.
    async fn append_audit(&self, rec: &AuditRecord) -> Result<()>;

    /// The binding of `binding_name` on one resource, if any.
    async fn get_binding_by_key(
        &self,
        resource: ResourceRef<'_>,
        binding_name: &str,
    ) -> Result<Option<SecretBinding>>;

    /// The KEK version a secret's DEK is wrapped under (an
    /// `MlflowSecret`'s status reports it). Not a value read.
    async fn kek_version(&self, secret_id: &str) -> Result<u32>;

    /// Every binding of a resource with its secret's metadata, nothing
    /// decrypted: the webhook's dryRun. The same query as
    /// [`SecretsStore::choose_bound_values`].
    async fn bound_metadata(&self, resource: ResourceRef<'_>) -> Result<Vec<BoundInfo>>;

    /// The values bound to a resource that `choose` picks from the rows'
    /// metadata, read and decrypted in one query: the webhook's read.
    /// Audited (one `READ_RESOURCE_VALUES` row naming the chosen rows),
    /// rate limited, and refused as a whole if a chosen secret is revoked
    /// or undecryptable. `Ok(None)`: `choose` refused.
    async fn choose_bound_values(
        &self,
        resource: ResourceRef<'_>,
        actor: &str,
        choose: ChooseBound<'_>,
    ) -> Result<Option<BTreeMap<String, BoundValue>>>;

    /// Exactly what the webhook would inject for one resource: every
    /// binding's string and where it came from. Audited; fails as a whole
    /// on a revoked or undecryptable binding; a resource with no binding
    /// is `NotFound`, as the webhook denies it. Over REST this is
    /// `resolve`, open to a runner token of exactly that scope only.
    async fn resolve_resource(
        &self,
        resource: ResourceRef<'_>,
        actor: &str,
    ) -> Result<ResolvedResource>;
}
