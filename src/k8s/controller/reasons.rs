//! Condition *reasons* (the `reason` of a [`super::conditions`] entry, and
//! of the Warning Event published when Ready turns False). Users, alerts
//! and tests match these strings: their values never change.

// Both CRDs.
/// Ready=False: the spec cannot be used (a namespace the store refuses as
/// a workspace, a binding field the store refuses).
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Ready=False on an `MlflowSecret`: a store row of its name exists that it
/// did not create. Ready=False on an `MlflowSecretBinding`: a store binding
/// with its key exists that differs from what it asks for. Also the reason
/// of the `Conflict` condition when True, and of its Warning Event.
pub const CONFLICT: &str = "Conflict";

// MlflowSecret.
/// Ready=True: the row exists, is active and (with `valueFrom`) in sync.
pub const ACTIVE: &str = "Active";
/// Ready=False: the row is revoked, or `spec.revoked` left none to make.
pub const REVOKED: &str = "Revoked";
/// Ready=False: the source Secret, or its key, does not exist.
pub const SOURCE_NOT_FOUND: &str = "SourceNotFound";
/// Ready=False: the source Secret lacks the importable annotation.
pub const SOURCE_NOT_IMPORTABLE: &str = "SourceNotImportable";
/// Ready=False: the source key is not a value the store accepts.
pub const INVALID_VALUE: &str = "InvalidValue";
/// Ready=False: no `valueFrom` and no row to mirror.
pub const VALUE_NOT_SET: &str = "ValueNotSet";
/// Ready=False: `spec.revoked` on a mirrored row this object did not create.
pub const REVOKE_NOT_ALLOWED: &str = "RevokeNotAllowed";
/// The `Conflict` condition when False.
pub const NO_CONFLICT: &str = "NoConflict";

// MlflowSecretBinding.
/// Ready=True: the store binding exists as asked.
pub const BOUND: &str = "Bound";
/// Ready=False: the referenced MlflowSecret does not exist.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Ready=False: the MlflowSecret, or its row, is being or was deleted.
pub const SECRET_DELETED: &str = "SecretDeleted";
/// Ready=False: the MlflowSecret has no row yet, or its row is revoked.
pub const SECRET_NOT_READY: &str = "SecretNotReady";
/// Ready=False: `secretRef.namespace` names another namespace.
pub const CROSS_NAMESPACE_REF: &str = "CrossNamespaceRef";
/// Ready=False: the secret is private and bound to another resource.
pub const ALREADY_BOUND: &str = "AlreadyBound";

// MlflowSecret, condition MlflowSynced (spec.mlflowGateway).
/// MlflowSynced=True: the gateway secret holds the current version.
pub const MLFLOW_PUSHED: &str = "Pushed";
/// MlflowSynced=False: there is no active value to push (no row yet, or revoked).
pub const MLFLOW_NO_VALUE: &str = "NoValue";
/// MlflowSynced=False: the MLflow server cannot be reached or timed out.
pub const MLFLOW_UNREACHABLE: &str = "MlflowUnreachable";
/// MlflowSynced=False: the MLflow server refused the credentials (401/403).
pub const MLFLOW_AUTH_FAILED: &str = "MlflowAuthFailed";
/// MlflowSynced=False: a gateway secret of that name exists that the
/// operator did not create; it is never overwritten.
pub const MLFLOW_CONFLICT: &str = "MlflowConflict";
/// MlflowSynced=False: the MLflow server answered with an error (its
/// error_code is in the message).
pub const MLFLOW_ERROR: &str = "MlflowError";
/// MlflowSynced=False: the credentials Secret or its keys do not exist.
pub const MLFLOW_CREDENTIALS_NOT_FOUND: &str = "CredentialsNotFound";
/// MlflowSynced=False: the credentials Secret lacks the importable annotation.
pub const MLFLOW_CREDENTIALS_NOT_IMPORTABLE: &str = "CredentialsNotImportable";
/// MlflowSynced=False: `trackingUri` is not https:// nor loopback http://.
pub const MLFLOW_INVALID_URI: &str = "InvalidTrackingUri";
