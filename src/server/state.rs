//! What every handler shares: the store, authentication, limits, metrics.

use std::sync::Arc;

use super::auth::{LOCAL_PRINCIPAL, Principal, Role, Scope, TokenStore};
use super::error::ApiError;
use super::limits::{ApiLimiter, DenialAggregator, UNAUTHENTICATED_PER_MINUTE};
use super::metrics::Metrics;
use crate::store::SqlStore;
use crate::store::audit::AuditRecord;

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Bearer tokens from a tokens file.
    Tokens(Arc<TokenStore>),
    /// No tokens file: every caller is `local` with the admin role. Only
    /// allowed on a loopback bind (checked at start).
    LocalAnonymous,
}

impl AuthMode {
    /// The principal of anonymous loopback access.
    pub fn local_principal() -> Principal {
        Principal {
            name: LOCAL_PRINCIPAL.to_string(),
            role: Role::Admin,
            scope: Scope::everything(),
        }
    }
}

/// Shared state of the router.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<SqlStore>,
    pub auth: AuthMode,
    pub limiter: Arc<ApiLimiter>,
    /// Requests without a valid token, per peer address (before any audit).
    pub peer_limiter: Arc<ApiLimiter>,
    /// `AUTH_DENIED` rows of failed authentication, one per peer and minute.
    pub denials: Arc<DenialAggregator>,
    pub metrics: Metrics,
    /// May `resolve` answer? False on plain HTTP outside loopback
    /// (`--insecure-http`): plaintext values need TLS (docs/design.md §7).
    pub resolve_transport_ok: bool,
    /// The web UI's sessions and settings (`crate::ui`).
    pub ui: crate::ui::UiSettings,
}

impl AppState {
    pub fn new(store: SqlStore, auth: AuthMode, api_limit_per_minute: u32) -> Self {
        Self {
            store: Arc::new(store),
            auth,
            limiter: Arc::new(ApiLimiter::per_minute(api_limit_per_minute)),
            peer_limiter: Arc::new(ApiLimiter::per_minute(UNAUTHENTICATED_PER_MINUTE)),
            denials: Arc::new(DenialAggregator::default()),
            metrics: Metrics::new(),
            resolve_transport_ok: true,
            ui: crate::ui::UiSettings::default(),
        }
    }

    /// Write the aggregated `AUTH_DENIED` rows of minutes that are over
    /// (all of them with `everything`, at shutdown and in tests).
    pub async fn flush_denials(&self, everything: bool) {
        for rec in self.denials.take_finished(everything) {
            self.audit_best_effort(rec).await;
        }
    }

    /// Append an audit record the store does not write itself (metadata
    /// reads, listings). Fails closed: a read whose audit row cannot be
    /// written is not served, so nothing is ever read unrecorded.
    pub async fn audit_required(&self, rec: AuditRecord) -> Result<(), ApiError> {
        match self.store.append_audit(&rec).await {
            Ok(()) => {
                self.metrics.audit_writes.with_label_values(&["ok"]).inc();
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .audit_writes
                    .with_label_values(&["error"])
                    .inc();
                Err(e.into())
            }
        }
    }

    /// Append the audit record of a request that is refused anyway (a
    /// denial, a failed read). A failure to write it is logged and counted;
    /// the caller still gets the refusal it was going to get.
    pub async fn audit_best_effort(&self, rec: AuditRecord) {
        match self.store.append_audit(&rec).await {
            Ok(()) => self.metrics.audit_writes.with_label_values(&["ok"]).inc(),
            Err(e) => {
                self.metrics
                    .audit_writes
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(error = %e, action = rec.action.as_str(), "could not write an audit record");
            }
        }
    }
}
