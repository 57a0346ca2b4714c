//! Kubernetes integration (docs/design.md §8): the `MlflowSecret` and
//! `MlflowSecretBinding` CRDs, their controllers, the mutating webhook that
//! injects bound secrets into scorer Job pods, and the `operator` process
//! that runs them under a Lease.
//!
//! Layers, as in linkerd2's policy-controller: [`crd`] (API types),
//! [`controller`] (reconcilers, leader only), [`webhook`] (admission, every
//! replica), [`lease`] (leader election), [`admin`] (probes and metrics),
//! [`operator`] (the runtime that wires them).

pub(crate) mod admin;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub(crate) mod lease;
pub mod metrics;
pub(crate) mod operator;
pub mod scope;
pub mod webhook;

/// Field manager for every server-side apply the operator makes, so
/// `kubectl get -o yaml --show-managed-fields` names us.
pub const FIELD_MANAGER: &str = "mlflow-secrets-operator";

/// Pod label that opts a pod in to injection (the webhook's objectSelector).
pub const LABEL_INJECT: &str = "secrets.mlflow.org/inject";
/// Pod annotation: the MLflow resource id whose bindings are injected.
pub const ANNOTATION_RESOURCE_ID: &str = "secrets.mlflow.org/resource-id";
/// Pod annotation: the resource type (default [`DEFAULT_RESOURCE_TYPE`]).
pub const ANNOTATION_RESOURCE_TYPE: &str = "secrets.mlflow.org/resource-type";
/// Pod annotation: `secret-env` (default) or `secret-file`.
pub const ANNOTATION_INJECT_MODE: &str = "secrets.mlflow.org/inject-mode";
/// Pod annotation written by the webhook: binding names and versions.
pub const ANNOTATION_INJECTED: &str = "secrets.mlflow.org/injected";
/// Annotation by which a Kubernetes Secret consents to being imported by
/// an `MlflowSecret`'s `valueFrom` (docs/design.md §8). The operator can read every
/// Secret; without this consent a user who may create an MlflowSecret but
/// not read a Secret could have the operator read it for them.
pub const ANNOTATION_IMPORTABLE: &str = "secrets.mlflow.org/importable";
/// Resource type used when a pod or binding does not name one.
pub const DEFAULT_RESOURCE_TYPE: &str = "SCORER_JOB";
/// Where `secret-file` mode mounts the per-Job Secret.
pub const SECRET_FILE_MOUNT_PATH: &str = "/var/run/secrets/mlflow";
/// Name of the MutatingWebhookConfiguration (chart and `--webhook-url`).
pub const WEBHOOK_CONFIGURATION_NAME: &str = "mlflow-secrets";
/// Namespace label that opts a namespace in to injection (docs/design.md §8, "What
/// the webhook trusts"): the configurations' namespaceSelector requires it
/// and the handler checks it again. `default` is not special.
pub const LABEL_NAMESPACE_INJECTION: &str = "secrets.mlflow.org/injection";
/// The value of [`LABEL_NAMESPACE_INJECTION`] that opts in.
pub const NAMESPACE_INJECTION_ENABLED: &str = "enabled";
/// Pod annotation: the binding names the pod accepts (comma-separated).
/// When present, only those are injected, and a listed name with no
/// binding denies.
pub const ANNOTATION_BINDINGS: &str = "secrets.mlflow.org/bindings";
/// Pod annotation: the containers that get the bindings (comma-separated
/// names); without it every container and init container does.
pub const ANNOTATION_CONTAINERS: &str = "secrets.mlflow.org/containers";
