//! The store: one trait over the SQL implementation (and, later, REST).
//!
//! Every operation of DESIGN §6 is here. Entities are metadata only; values
//! come back as [`SecretValue`] and only from the value-reading operations,
//! each of which is audited.

pub mod audit;
pub mod audit_export;
mod audit_writer;
pub mod http;
pub mod incident;
mod limits;
pub mod migrate;
pub mod sql;
mod sql_admin;
mod sql_ops;
mod sql_rows;
mod sql_trait;
pub mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::crypto::CryptoError;
use crate::keystore::KeystoreError;
use crate::model::{
    AuditEntry, BindingFilter, NewBinding, NewSecret, Page, Secret, SecretBinding, SecretFilter,
};
use crate::value::SecretValue;

pub use http::HttpStore;
pub use limits::DecryptLimits;
pub use sql::SqlStore;
pub use sql_admin::{MAX_REWRAP_BATCH, RewrapReport, RewrapTarget, VerifyFailure, VerifyReport};
pub use sql_ops::BoundValue;

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
    /// MLflow's error code for this error (DESIGN §7).
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "RESOURCE_DOES_NOT_EXIST",
            Self::AlreadyExists(_) => "RESOURCE_ALREADY_EXISTS",
            Self::InvalidParameter(_) => "INVALID_PARAMETER_VALUE",
            Self::Conflict(_) => "RESOURCE_CONFLICT",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::RateLimited { .. } => "REQUEST_LIMIT_EXCEEDED",
            Self::Crypto { .. }
            | Self::Keystore(_)
            | Self::Database(_)
            | Self::Schema(_)
            | Self::Unavailable(_) => "INTERNAL_ERROR",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Filters of the audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub secret_id: Option<String>,
    pub workspace: Option<String>,
    /// Return entries with `seq` greater than this.
    pub after_seq: Option<i64>,
    pub max_results: Option<u32>,
}

/// The store operations of DESIGN §6.
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

    /// [`SecretsStore::create_secret_with`] without a provider: the short
    /// form of DESIGN §6.
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

    /// [`SecretsStore::bind_secret_with`] of the whole value, to any pod of
    /// the resource: the short form of DESIGN §6.
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
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        binding_name: &str,
        actor: &str,
    ) -> Result<SecretValue>;

    /// Every value bound to a resource, by binding name. Audited. Fails as a
    /// whole if any bound secret is revoked or fails to decrypt.
    async fn get_all_secrets_for_resource(
        &self,
        workspace: &str,
        resource_type: &str,
        resource_id: &str,
        actor: &str,
    ) -> Result<BTreeMap<String, SecretValue>>;

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}
