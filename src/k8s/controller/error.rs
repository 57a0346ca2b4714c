//! The controller layer's one error type. Reconcilers return it;
//! `error_policy` is the one place it becomes a metric, a log line and a
//! requeue. None of its messages can hold a value: store errors never do
//! (docs/design.md §6), and the Kubernetes errors come from metadata reads, status
//! patches and finalizer patches, never from a Secret's data.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed (database down, keystore problem...). Transient
    /// from the controller's point of view: requeue with backoff.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Adding or removing the finalizer, or the reconcile inside it, failed.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// An object without a namespace: the CRDs are namespaced, so only a
    /// hand-made object could get here.
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
