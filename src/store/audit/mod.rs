//! The append-only audit log (docs/design.md §2): what a row records
//! ([`AuditRecord`]), its SHA-256 hash chain (`chain.rs`), the appends and
//! their group commit (`writer.rs`), the reads and the chain check
//! (`log.rs`), and the export of the head outside the database
//! (`export.rs`). Rows never hold a value: only ids, names, binding names
//! and KEK versions.

mod chain;
pub mod export;
mod log;
mod writer;

pub use chain::{
    AuditVerifyReport, ChainChecker, ExportedHead, GENESIS_HASH, entry_hash, row_hash,
};
pub use writer::MAX_AUDIT_BATCH;
pub(crate) use writer::{AuditWriter, append, append_many};

use super::StoreError;
use crate::model::AuditOutcome;

/// What an audited operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Update,
    Revoke,
    Delete,
    Bind,
    Unbind,
    ReadValue,
    ReadResourceValues,
    Verify,
    Rewrap,
    GetSecret,
    GetBinding,
    ListSecrets,
    ListBindings,
    ListAudit,
    /// A request refused before it reached an operation (401, 403, 429).
    AuthDenied,
    /// The operator removed a revoked, deleted or unbound secret's value
    /// from a per-Job Kubernetes Secret (docs/design.md §8, "Revocation reaches
    /// every copy").
    ScrubCopy,
}

impl AuditAction {
    /// Every action, in the order the UI's audit filter offers them.
    pub const ALL: [Self; 17] = [
        Self::Create,
        Self::Update,
        Self::Revoke,
        Self::Delete,
        Self::Bind,
        Self::Unbind,
        Self::ReadValue,
        Self::ReadResourceValues,
        Self::Verify,
        Self::Rewrap,
        Self::GetSecret,
        Self::GetBinding,
        Self::ListSecrets,
        Self::ListBindings,
        Self::ListAudit,
        Self::AuthDenied,
        Self::ScrubCopy,
    ];

    /// The names of [`Self::ALL`], as the `action` column holds them.
    pub const NAMES: [&'static str; 17] = {
        let mut names = [""; 17];
        let mut i = 0;
        while i < names.len() {
            names[i] = Self::ALL[i].as_str();
            i += 1;
        }
        names
    };

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Revoke => "REVOKE",
            Self::Delete => "DELETE",
            Self::Bind => "BIND",
            Self::Unbind => "UNBIND",
            Self::ReadValue => "READ_VALUE",
            Self::ReadResourceValues => "READ_RESOURCE_VALUES",
            Self::Verify => "VERIFY",
            Self::Rewrap => "REWRAP",
            Self::GetSecret => "GET_SECRET",
            Self::GetBinding => "GET_BINDING",
            Self::ListSecrets => "LIST_SECRETS",
            Self::ListBindings => "LIST_BINDINGS",
            Self::ListAudit => "LIST_AUDIT",
            Self::AuthDenied => "AUTH_DENIED",
            Self::ScrubCopy => "SCRUB_COPY",
        }
    }
}

/// An audit row before it is chained.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub principal: Option<String>,
    pub action: AuditAction,
    pub workspace: Option<String>,
    pub secret_id: Option<String>,
    pub secret_name: Option<String>,
    pub resource: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn new(action: AuditAction, principal: &str) -> Self {
        Self {
            principal: Some(principal.to_string()),
            action,
            workspace: None,
            secret_id: None,
            secret_name: None,
            resource: None,
            outcome: AuditOutcome::Success,
            detail: None,
        }
    }

    pub fn workspace(mut self, ws: &str) -> Self {
        self.set_workspace(ws);
        self
    }

    pub fn secret(mut self, id: &str, name: &str) -> Self {
        self.set_secret(id, name);
        self
    }

    pub fn secret_id(mut self, id: &str) -> Self {
        self.set_secret_id(id);
        self
    }

    pub fn resource(mut self, resource_type: &str, resource_id: &str) -> Self {
        self.set_resource(resource_type, resource_id);
        self
    }

    /// The workspace and `TYPE/ID` of a resource read.
    pub fn for_resource(self, r: crate::model::ResourceRef<'_>) -> Self {
        self.workspace(r.workspace)
            .resource(r.resource_type, r.resource_id)
    }

    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.set_detail(d);
        self
    }

    /// Set the secret (id and name) of a record being built in place, once
    /// an operation has read them.
    pub fn set_secret(&mut self, id: &str, name: &str) -> &mut Self {
        self.secret_id = Some(id.to_string());
        self.secret_name = Some(name.to_string());
        self
    }

    pub fn set_secret_id(&mut self, id: &str) -> &mut Self {
        self.secret_id = Some(id.to_string());
        self
    }

    pub fn set_workspace(&mut self, ws: &str) -> &mut Self {
        self.workspace = Some(ws.to_string());
        self
    }

    pub fn set_resource(&mut self, resource_type: &str, resource_id: &str) -> &mut Self {
        self.resource = Some(format!("{resource_type}/{resource_id}"));
        self
    }

    pub fn set_detail(&mut self, d: impl Into<String>) -> &mut Self {
        self.detail = Some(d.into());
        self
    }

    /// The same record, marked as failed or denied by `err`. The error's
    /// message is safe to store: store errors never contain values.
    pub fn failed(mut self, err: &StoreError) -> Self {
        self.outcome = match err {
            StoreError::PermissionDenied(_)
            | StoreError::Unauthenticated(_)
            | StoreError::RateLimited { .. }
            | StoreError::Conflict(_) => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        };
        let msg = err.to_string();
        self.detail = Some(match self.detail.take() {
            Some(d) => format!("{d}; error: {msg}"),
            None => format!("error: {msg}"),
        });
        self
    }
}
