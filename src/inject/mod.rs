//! What a resource's consumer gets injected, shared by the Kubernetes
//! webhook and `mlflow-secrets run` (docs/design.md §8 and §13).
//!
//! Both paths must inject exactly the same bindings for the same request,
//! so the rule lives here, once, outside `k8s`: [`select`] decides which
//! offered bindings a consumer receives, and
//! [`crate::store::ResolvedResource::from_bound`] turns the decrypted
//! values into the strings injected under each name. The webhook feeds
//! [`select`] the pod's `secrets.mlflow.org/bindings` annotation and its
//! ServiceAccount; `run` feeds it `--only`.

mod select;

#[cfg(test)]
pub(crate) use select::test_offered;
pub use select::{Offered, SelectError, Wanted, offered_from_meta, select};
