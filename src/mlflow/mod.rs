//! MLflow AI Gateway secrets (docs/design.md §11, §13): reading them out of
//! an MLflow tracking database (`mlflow import`) and keeping a running MLflow
//! server's copy equal to ours (`mlflow push`, and the operator's
//! `spec.mlflowGateway`).
//!
//! Layout: [`crypto`] (MLflow's passphrase and KEK derivation, decrypting
//! one row), [`source`] (reading MLflow's `secrets` table, read-only),
//! [`import`] (deciding and applying an import against our store),
//! [`client`] (MLflow's REST API for gateway secrets, with its client auth)
//! and [`push`] (creating or updating a gateway secret and recording the
//! link as an `MLFLOW_GATEWAY` binding).
//!
//! Nothing here ever puts a value in an error, a log line or an output row:
//! reports carry names, ids and versions only.

pub(crate) mod client;
pub(crate) mod crypto;
pub(crate) mod import;
pub(crate) mod push;
pub(crate) mod source;

use crate::store::StoreError;

/// The resource type of the binding that records where a value was pushed:
/// its resource id is MLflow's gateway secret id (`s-<uuid hex>`). It does
/// not count as a second resource for the private-secret rule (§6).
pub const MLFLOW_GATEWAY_RESOURCE_TYPE: &str = crate::model::MLFLOW_GATEWAY_RESOURCE_TYPE;

/// Errors of the MLflow gateway layer. None carries a value, a key, a
/// passphrase, a database password or an MLflow request body.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// The `--from` URI or a tracking URI is not one this build reads.
    #[error("{0}")]
    InvalidUri(String),
    /// MLflow's database could not be opened or read.
    #[error("MLflow database: {0}")]
    Source(String),
    /// MLflow's passphrase is missing, unreadable or empty.
    #[error("MLflow passphrase: {0}")]
    Passphrase(String),
    /// The wrapped DEKs do not open under the passphrase: nothing was written.
    #[error(
        "wrong MLflow passphrase: {failed} of {total} gateway secrets with KEK version {version} do not decrypt \
         (first: '{first}'); nothing was written"
    )]
    WrongPassphrase {
        version: u32,
        failed: usize,
        total: usize,
        first: String,
    },
    /// The MLflow server could not be reached or did not answer in time.
    #[error("MLflow server {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    /// The MLflow server refused our credentials (401/403).
    #[error("MLflow server {url} refused the credentials: HTTP {status} {error_code}")]
    Auth {
        url: String,
        status: u16,
        error_code: String,
    },
    /// The MLflow server answered with one of its errors.
    #[error("MLflow server {url} answered HTTP {status} {error_code}{detail}")]
    Api {
        url: String,
        status: u16,
        error_code: String,
        /// `": <message>"` when MLflow's message is safe to show, else empty.
        detail: String,
    },
    /// A gateway secret of that name exists that we did not create.
    #[error("{0}")]
    Conflict(String),
    /// The MLflow server's answer did not have the expected shape.
    #[error("MLflow server {url}: unexpected response to {endpoint}")]
    BadResponse { url: String, endpoint: String },
    /// Our own store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = MlflowError> = std::result::Result<T, E>;
