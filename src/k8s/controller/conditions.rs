//! Condition *types* of the two CRDs' `status.conditions` (docs/operator.md).
//! Kept apart from [`super::reasons`]: `Conflict` is both a condition type
//! (here) and a Ready reason (there), with the same spelling, and which one
//! a line means must be readable from the code.

/// Both CRDs: whether the object is in its desired state.
pub const READY: &str = "Ready";
/// `MlflowSecret` only: `True` while a store row of its name exists that it
/// did not create (its reason is then [`super::reasons::CONFLICT`]).
pub const CONFLICT: &str = "Conflict";
/// `MlflowSecret` with `spec.mlflowGateway` only: whether the MLflow
/// server's gateway secret holds this value (src/k8s/controller/mlflow_sync.rs).
pub const MLFLOW_SYNCED: &str = "MlflowSynced";
