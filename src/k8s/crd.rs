//! The custom resources of docs/design.md §8: `MlflowSecret` and
//! `MlflowSecretBinding` (group `secrets.mlflow.org`, `v1alpha1`,
//! namespaced).
//!
//! The Rust types are the source of truth: `mlflow-secrets crdgen` renders
//! them to `crds/`, and a test fails when the committed files drift. The
//! schema repeats the store's own validation (src/store/validate.rs) so a bad
//! object is refused by the apiserver at `kubectl apply` time instead of
//! becoming a `Ready=False` the user has to go looking for. The store still
//! validates everything again: the schema is a convenience, not the guard.
//!
//! CEL rules (`x-kubernetes-validations`) carry the rules a pattern cannot:
//! immutability of the fields that name the store row, and the one-way
//! `revoked` flag (docs/design.md §6: revocation is one-way).

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DEFAULT_RESOURCE_TYPE;

/// The identifier rules, written once next to their validators
/// (`store::validate`), as regular expressions the apiserver understands.
pub use crate::store::validate::{
    BINDING_NAME_PATTERN, PROVIDER_PATTERN, RESOURCE_ID_PATTERN, RESOURCE_TYPE_PATTERN,
    SECRET_NAME_PATTERN, SERVICE_ACCOUNT_PATTERN, VALUE_FIELD_PATTERN,
};
/// Keys of a Kubernetes Secret's `data` (the apiserver's own rule).
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// A secret in the store, named in the object's namespace (the workspace).
///
/// With `valueFrom`, the operator imports the value from a Kubernetes
/// Secret in the same namespace and keeps it in sync. Without it, the object
/// only mirrors a row managed with the CLI or the REST API.
// Each `printcolumn(...)` repeats `type_ = ...`; clippy mistakes the
// repetition inside the derive's attribute for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secrets.mlflow.org",
    version = "v1alpha1",
    kind = "MlflowSecret",
    doc = "A secret of the MLflow secrets store in this namespace's workspace (docs/design.md §8).",
    plural = "mlflowsecrets",
    shortname = "mlsec",
    namespaced,
    status = "MlflowSecretStatus",
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
    printcolumn(name = "Shared", type_ = "boolean", json_path = ".status.shared"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "KEK", type_ = "integer", json_path = ".status.kekVersion"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)").message("spec.secretName is immutable: it names the store row"),
    validation = kube::core::Rule::new("!has(oldSelf.shared) || !has(self.shared) || self.shared == oldSelf.shared").message("spec.shared is immutable: the store cannot change it on an existing row"),
    validation = kube::core::Rule::new("!has(oldSelf.revoked) || !oldSelf.revoked || (has(self.revoked) && self.revoked)").message("spec.revoked cannot be reset: revocation is one-way"),
)]
#[serde(rename_all = "camelCase")]
pub struct MlflowSecretSpec {
    /// Name of the secret in the store. Defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = SECRET_NAME_PATTERN))]
    pub secret_name: Option<String>,
    /// A shared secret may be bound by any resource of the namespace; a
    /// private one (the default) by one resource only.
    #[serde(default)]
    pub shared: bool,
    /// Import the value from a Kubernetes Secret in the same namespace, and
    /// re-import it whenever that Secret changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
    /// The LLM provider of the credential (`openai`, `anthropic`, `azure`,
    /// ...), copied to the store row when the operator creates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = PROVIDER_PATTERN))]
    pub provider: Option<String>,
    /// Keep a gateway secret of a running MLflow server equal to this value
    /// (docs/mlflow.md); reported by the condition `MlflowSynced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow_gateway: Option<MlflowGateway>,
    /// Revoke the secret: values can no longer be read. One-way.
    #[serde(default)]
    pub revoked: bool,
    /// What deleting this object does to the store row it created.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Where an imported value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    pub secret_key_ref: SecretKeyRef,
}

/// One key of a Kubernetes Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Kubernetes Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's `data`.
    #[schemars(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: String,
}

/// Where the operator pushes the value: an MLflow server's gateway secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowGateway {
    /// The MLflow server: `https://...`, or `http://` to a loopback host.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^@/\s]+(/\S*)?$")
    )]
    pub tracking_uri: String,
    /// Name of the gateway secret in MLflow. Defaults to the store name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub secret_name: Option<String>,
    /// A Kubernetes Secret of this namespace with MLflow's credentials: key
    /// `token`, or keys `username` and `password`. It must carry the
    /// annotation `secrets.mlflow.org/importable: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<LocalSecretRef>,
}

/// A Kubernetes Secret of the object's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// `Delete` removes the store row (and its bindings) with the object;
/// `Retain` leaves it. Rows this object did not create are never deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// The source Secret as it was when its value was last imported: the
/// operator re-imports when this differs from the Secret's metadata. Never a
/// hash of the value, which would let anyone who can read the status test
/// guesses against it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportedSource {
    pub name: String,
    pub key: String,
    pub uid: String,
    pub resource_version: String,
}

/// Observed state of an `MlflowSecret`. It never holds a value, only the
/// store's mask of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowSecretStatus {
    /// The store name this object resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    /// Whether the store row is shared (the row decides, not the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// `ACTIVE` or `REVOKED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// KEK version the row's DEK is wrapped with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_value: Option<String>,
    /// The imported source Secret (only with `valueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImportedSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `Conflict` when a row of that name exists that this
    /// object did not create.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Binds an `MlflowSecret` of the same namespace to an MLflow resource under
/// an environment-variable name; the webhook injects it into that
/// resource's Job pods. The spec is immutable: recreate the object to bind
/// differently.
// Each `printcolumn(...)` repeats `type_ = ...`; clippy mistakes the
// repetition inside the derive's attribute for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "secrets.mlflow.org",
    version = "v1alpha1",
    kind = "MlflowSecretBinding",
    doc = "Binds an MlflowSecret to an MLflow resource under an environment variable name.",
    plural = "mlflowsecretbindings",
    shortname = "mlsecbind",
    namespaced,
    status = "MlflowSecretBindingStatus",
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretRef.name"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.resourceType"),
    printcolumn(name = "Resource", type_ = "string", json_path = ".spec.resourceId"),
    printcolumn(name = "Env", type_ = "string", json_path = ".spec.bindingName"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = kube::core::Rule::new("self == oldSelf").message("spec is immutable: delete the binding and create a new one"),
)]
#[serde(rename_all = "camelCase")]
pub struct MlflowSecretBindingSpec {
    pub secret_ref: SecretRef,
    /// MLflow resource type, e.g. `SCORER_JOB`.
    #[serde(default = "default_resource_type")]
    #[schemars(length(min = 1, max = 50), regex(pattern = RESOURCE_TYPE_PATTERN))]
    pub resource_type: String,
    /// MLflow resource id; the pod annotation `secrets.mlflow.org/resource-id`.
    #[x_kube(validation = kube::core::Rule::new("self.size() > 0").message("resourceId must not be empty"))]
    #[schemars(length(max = 255), regex(pattern = RESOURCE_ID_PATTERN))]
    pub resource_id: String,
    /// Environment variable name the value is injected under.
    #[x_kube(
        validation = kube::core::Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("bindingName must be an environment variable name: [A-Za-z_][A-Za-z0-9_]*"),
        validation = kube::core::Rule::new(reserved_rule()).message(RESERVED_MESSAGE),
    )]
    #[schemars(length(min = 1, max = 255), regex(pattern = BINDING_NAME_PATTERN))]
    pub binding_name: String,
    /// For a secret whose value is an object: the one field injected under
    /// `bindingName` (the store's `value_field`), e.g. `api_key` of an
    /// Azure credential. Without it a string value is injected as it is and
    /// an object as its compact JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = VALUE_FIELD_PATTERN))]
    pub field: Option<String>,
    /// Only pods running as one of these ServiceAccounts receive this
    /// binding (the store's `service_accounts`); a pod of another
    /// ServiceAccount that would receive it is denied. Empty or absent: any
    /// pod of the resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 253), regex(pattern = SERVICE_ACCOUNT_PATTERN)),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub service_account_names: Vec<String>,
}

/// Message of the CEL rule refusing reserved binding names (docs/design.md §6).
pub const RESERVED_MESSAGE: &str = "bindingName is reserved (docs/design.md §6: PATH, HOME, SHELL, USER, LD_*, DYLD_*, PYTHON*, PERL5*, RUBYOPT, NODE_OPTIONS, JAVA_TOOL_OPTIONS, BROWSER, KUBERNETES_*, *_PROXY in any case, MLFLOW_SECRETS_*): a bound value must not change how a process starts or where it sends data";

/// The CEL rule refusing reserved binding names: the store's own regular
/// expression, so the two cannot disagree (a test checks it on names).
pub fn reserved_rule() -> String {
    format!(
        "!self.matches('{}')",
        crate::store::validate::RESERVED_BINDING_NAME_REGEX
    )
}

fn default_resource_type() -> String {
    DEFAULT_RESOURCE_TYPE.to_string()
}

/// The `MlflowSecret` a binding uses.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the `MlflowSecret`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Must be empty or the binding's own namespace: a binding never crosses
    /// workspaces (docs/design.md §6). Accepted by the schema so that the mistake is
    /// reported in the status (`CrossNamespaceRef`) rather than as a schema
    /// error about an unknown field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Observed state of an `MlflowSecretBinding`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowSecretBindingStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_id: Option<String>,
    /// The store secret id bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A status condition with the fields of `metav1.Condition`. Our own type
/// because k8s-openapi's carries no JSON schema.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready` or `Conflict`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason, e.g. `SourceNotFound`.
    pub reason: String,
    /// For people. Never holds a value.
    pub message: String,
    /// RFC 3339, set when `status` last changed.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn crd_names_and_columns() {
        let crd = MlflowSecret::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("mlflowsecrets.secrets.mlflow.org")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["mlsec".to_string()]));
        let cols: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Secret", "Shared", "State", "KEK", "Ready", "Age"]);
        let b = MlflowSecretBinding::crd();
        assert_eq!(
            b.metadata.name.as_deref(),
            Some("mlflowsecretbindings.secrets.mlflow.org")
        );
        assert_eq!(
            b.spec.names.short_names,
            Some(vec!["mlsecbind".to_string()])
        );
    }

    #[test]
    fn schema_carries_the_store_rules() {
        let text = serde_json::to_string(&MlflowSecretBinding::crd()).unwrap();
        assert!(text.contains("x-kubernetes-validations"), "{text}");
        assert!(text.contains("resourceId must not be empty"));
        assert!(text.contains(&serde_json::to_string(BINDING_NAME_PATTERN).unwrap()));
        assert!(text.contains("\"default\":\"SCORER_JOB\""));
        let text = serde_json::to_string(&MlflowSecret::crd()).unwrap();
        assert!(text.contains("revocation is one-way"));
        assert!(text.contains("\"default\":\"Delete\""));
    }
}
