//! Entities returned by the store (docs/design.md §6). They carry metadata only:
//! no ciphertext, iv, wrapped DEK, KEK version or AAD hash. Those columns
//! stay inside `store::sql` (docs/design.md §10 rule 1).

use serde::{Deserialize, Serialize};

/// `ACTIVE` or `REVOKED`. Revocation is one-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecretState {
    Active,
    Revoked,
}

impl SecretState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Revoked => "REVOKED",
        }
    }
}

impl std::str::FromStr for SecretState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ACTIVE" => Ok(Self::Active),
            "REVOKED" => Ok(Self::Revoked),
            _ => Err(format!("state must be ACTIVE or REVOKED, not {s:?}")),
        }
    }
}

impl std::fmt::Display for SecretState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub secret_id: String,
    pub workspace: String,
    pub secret_name: String,
    pub masked_value: String,
    pub is_shared: bool,
    pub state: SecretState,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub last_updated_by: Option<String>,
    pub last_updated_at: i64,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<i64>,
    /// The LLM provider of a credential (`openai`, `anthropic`, `azure`,
    /// ...), as in MLflow's gateway secrets. Metadata only.
    #[serde(default)]
    pub provider: Option<String>,
}

/// A binding of a secret to a resource under an environment-variable name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretBinding {
    pub binding_id: String,
    pub secret_id: String,
    pub workspace: String,
    pub resource_type: String,
    pub resource_id: String,
    pub binding_name: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    /// For a secret whose value is an object: the one field this binding
    /// injects (docs/design.md §6). `None` injects the whole value.
    #[serde(default)]
    pub value_field: Option<String>,
    /// Kubernetes ServiceAccounts allowed to receive this binding (docs/design.md
    /// §8). Empty: any pod of the resource.
    #[serde(default)]
    pub service_accounts: Vec<String>,
}

/// What `create_secret_with` needs besides the value and the actor.
#[derive(Debug, Clone, Copy)]
pub struct NewSecret<'a> {
    pub workspace: &'a str,
    pub secret_name: &'a str,
    pub is_shared: bool,
    pub provider: Option<&'a str>,
}

/// What `bind_secret_with` needs besides the actor.
#[derive(Debug, Clone, Copy)]
pub struct NewBinding<'a> {
    pub secret_id: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub binding_name: &'a str,
    /// See [`SecretBinding::value_field`].
    pub value_field: Option<&'a str>,
    /// See [`SecretBinding::service_accounts`].
    pub service_accounts: &'a [String],
}

/// The binding a secret that does not exist yet is to get: what
/// `create_and_bind_secret` needs besides the secret, the value and the
/// actor. [`NewBinding`] without the `secret_id`, which the create makes.
#[derive(Debug, Clone, Copy)]
pub struct BindingSpec<'a> {
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub binding_name: &'a str,
    /// See [`SecretBinding::value_field`].
    pub value_field: Option<&'a str>,
    /// See [`SecretBinding::service_accounts`].
    pub service_accounts: &'a [String],
}

impl<'a> BindingSpec<'a> {
    /// This binding, of the secret `secret_id`.
    pub fn for_secret<'b>(&self, secret_id: &'b str) -> NewBinding<'b>
    where
        'a: 'b,
    {
        NewBinding {
            secret_id,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            binding_name: self.binding_name,
            value_field: self.value_field,
            service_accounts: self.service_accounts,
        }
    }
}

/// A resource secrets are bound to (a scorer job, say): the key of
/// `index_secrets_bindings_resource`. A binding never crosses workspaces
/// (docs/design.md §6), so the workspace is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    pub workspace: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
}

impl<'a> ResourceRef<'a> {
    pub fn new(workspace: &'a str, resource_type: &'a str, resource_id: &'a str) -> Self {
        Self {
            workspace,
            resource_type,
            resource_id,
        }
    }
}

/// `TYPE/ID in workspace 'W'`, as errors name a resource.
impl std::fmt::Display for ResourceRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} in workspace '{}'",
            self.resource_type, self.resource_id, self.workspace
        )
    }
}

/// One page of a listing. `next_page_token` is opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// Filters of `list_secrets`.
#[derive(Debug, Clone, Default)]
pub struct SecretFilter {
    pub workspace: Option<String>,
    /// Only these workspaces (a token's scope, docs/design.md §7); `None`: any.
    /// Applied in the query, so pages are full and page tokens stay valid.
    pub workspaces: Option<Vec<String>>,
    pub is_shared: Option<bool>,
    pub state: Option<SecretState>,
    pub page_token: Option<String>,
    pub max_results: Option<u32>,
}

/// Filters of `list_bindings`.
#[derive(Debug, Clone, Default)]
pub struct BindingFilter {
    pub workspace: Option<String>,
    /// Only these workspaces (a token's scope); `None`: any.
    pub workspaces: Option<Vec<String>>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub secret_id: Option<String>,
    pub page_token: Option<String>,
    pub max_results: Option<u32>,
}

/// What happened in an audited operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditOutcome {
    Success,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Denied => "DENIED",
            Self::Failed => "FAILED",
        }
    }
}

/// One row of `secrets_audit_log`. It never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub occurred_at: i64,
    pub principal: Option<String>,
    pub action: String,
    pub workspace: Option<String>,
    pub secret_id: Option<String>,
    pub secret_name: Option<String>,
    pub resource: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub prev_hash: String,
    pub row_hash: String,
}

/// The default resource type of bindings and injection.
pub const DEFAULT_RESOURCE_TYPE: &str = "SCORER_JOB";
/// The resource type of `mlflow push`'s link to an MLflow gateway secret
/// (resource id: MLflow's secret id). A record of where a value went, not
/// a consumer: it does not count toward the private-secret rule (§6).
pub const MLFLOW_GATEWAY_RESOURCE_TYPE: &str = "MLFLOW_GATEWAY";
/// The default workspace (namespace `default` in Kubernetes).
pub const DEFAULT_WORKSPACE: &str = "default";

/// Milliseconds since the Unix epoch, the unit of every timestamp column.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
