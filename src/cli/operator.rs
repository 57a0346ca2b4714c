//! `mlflow-secrets operator`: flags, then [`crate::k8s::operator::run`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Ctx;
use crate::k8s::WEBHOOK_CONFIGURATION_NAME;
use crate::k8s::operator::{OperatorConfig, run as run_operator};
use crate::k8s::scope::WatchScope;
use crate::store::audit::export::{HeadCadence, log_head, spawn_head_export};

/// Arguments of `mlflow-secrets operator`. Every flag can also come from
/// the environment, which is how the Helm chart sets them.
#[derive(Debug, clap::Args)]
pub struct OperatorArgs {
    /// HTTPS address of the webhook (POST /mutate only)
    #[arg(
        long,
        env = "MLFLOW_SECRETS_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443",
        value_name = "ADDR"
    )]
    pub webhook_listen: SocketAddr,
    /// HTTPS address of /health, /ready and /metrics: a port of their own, so the
    /// webhook's port can be limited to the API server
    #[arg(
        long,
        env = "MLFLOW_SECRETS_METRICS_LISTEN",
        default_value = "0.0.0.0:9443",
        value_name = "ADDR"
    )]
    pub metrics_listen: SocketAddr,
    /// Require a client certificate signed by this CA (PEM) on the webhook port: the one
    /// the API server presents through its AdmissionConfiguration kubeConfigFile
    #[arg(long, env = "MLFLOW_SECRETS_WEBHOOK_CLIENT_CA", value_name = "FILE")]
    pub webhook_client_ca: Option<std::path::PathBuf>,
    /// Register the MutatingWebhookConfiguration with this URL and the operator's own CA
    /// (for running outside a cluster)
    #[arg(long, env = "MLFLOW_SECRETS_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// With --webhook-url: only namespaces carrying this label (KEY=VALUE) are sent to the
    /// webhook (the operator's own namespace never is)
    #[arg(long, env = "MLFLOW_SECRETS_WEBHOOK_NAMESPACE_SELECTOR", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub webhook_namespace_selector: Option<(String, String)>,
    /// Reconcile only MlflowSecrets and MlflowSecretBindings matching this label selector
    /// (sharding, or several operators on one control plane)
    #[arg(long, env = "MLFLOW_SECRETS_SELECTOR", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The operator's own namespace (its Lease and certificate Secret live here)
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "default",
        value_name = "NS"
    )]
    pub namespace: String,
    /// Service in front of the webhook (the serving certificate's DNS names)
    #[arg(
        long,
        env = "MLFLOW_SECRETS_SERVICE_NAME",
        default_value = "mlflow-secrets",
        value_name = "NAME"
    )]
    pub service_name: String,
    /// MutatingWebhookConfiguration whose caBundle the operator keeps current
    #[arg(long, env = "MLFLOW_SECRETS_WEBHOOK_CONFIG_NAME", default_value = WEBHOOK_CONFIGURATION_NAME, value_name = "NAME")]
    pub webhook_config_name: String,
    /// Secret holding the operator's CA and serving certificate (created if absent)
    #[arg(
        long,
        env = "MLFLOW_SECRETS_CERT_SECRET",
        default_value = "mlflow-secrets-webhook-tls",
        value_name = "NAME"
    )]
    pub cert_secret: String,
    /// Lease used for leader election
    #[arg(
        long,
        env = "MLFLOW_SECRETS_LEASE_NAME",
        default_value = "mlflow-secrets-operator",
        value_name = "NAME"
    )]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: the host name)
    #[arg(long, env = "POD_NAME", value_name = "ID")]
    pub identity: Option<String>,
    /// Seconds a Lease holder's claim lasts without renewal
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub lease_duration: u64,
    /// Value decrypts per namespace per minute (0: no limit)
    #[arg(
        long,
        env = "MLFLOW_SECRETS_NAMESPACE_DECRYPTS_PER_MINUTE",
        default_value_t = 600,
        value_name = "N"
    )]
    pub namespace_decrypts_per_minute: u32,
    /// Value decrypts per ServiceAccount (namespace/name) per minute (0: no limit)
    #[arg(
        long,
        env = "MLFLOW_SECRETS_SERVICE_ACCOUNT_DECRYPTS_PER_MINUTE",
        default_value_t = 300,
        value_name = "N"
    )]
    pub service_account_decrypts_per_minute: u32,
    /// Seconds the webhook may spend on one admission before it denies (below the
    /// configuration's timeoutSeconds of 10)
    #[arg(long, default_value_t = crate::k8s::webhook::DEFAULT_DEADLINE.as_secs(), value_name = "SECS")]
    pub webhook_deadline: u64,
    /// Apply database migrations at start (safe with several replicas: the
    /// migrator takes a database lock)
    #[arg(long, env = "MLFLOW_SECRETS_MIGRATE", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub migrate: bool,
    /// Watch and write only in these namespaces (comma-separated), with one watch per
    /// namespace: for clusters that grant the operator Roles (the chart's rbac.namespaces)
    /// rather than a ClusterRole. Default: every namespace
    #[arg(long, env = "MLFLOW_SECRETS_WATCH_NAMESPACES", value_name = "NS,...", value_parser = parse_scope)]
    pub watch_namespaces: Option<WatchScope>,
}

pub(super) async fn run(ctx: &Ctx, a: OperatorArgs) -> Result<ExitCode> {
    let identity = match a.identity {
        Some(id) => id,
        None => {
            hostname().context("cannot tell this replica's identity: set --identity or POD_NAME")?
        }
    };
    // The audit head export (docs/design.md §2) reads the head row through its own
    // small pool: it needs no key, and it retries until the operator has
    // migrated the schema.
    let head_export = match crate::store::SqlStore::connect(
        &ctx.store_uri,
        crate::keystore::KeystoreHandle::new(crate::keystore::Keystore::metadata_only()),
    )
    .await
    {
        Ok(store) => Some(spawn_head_export(store, HeadCadence::default(), log_head)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the store to export the audit head");
            None
        }
    };
    let cfg = OperatorConfig {
        store_uri: ctx.store_uri.clone(),
        keystore: ctx.keystore_config(),
        webhook_listen: a.webhook_listen,
        metrics_listen: a.metrics_listen,
        webhook_client_ca: a.webhook_client_ca,
        service_account_decrypts_per_minute: a.service_account_decrypts_per_minute,
        webhook_url: a.webhook_url,
        webhook_namespace_selector: a.webhook_namespace_selector,
        selector: a.selector,
        namespace: a.namespace,
        service_name: a.service_name,
        webhook_config_name: a.webhook_config_name,
        cert_secret: a.cert_secret,
        lease_name: a.lease_name,
        identity,
        lease_duration: Duration::from_secs(a.lease_duration.max(2)),
        namespace_decrypts_per_minute: a.namespace_decrypts_per_minute,
        webhook_deadline: Duration::from_secs(a.webhook_deadline.max(1)),
        migrate: a.migrate,
        watch_scope: a.watch_namespaces.unwrap_or_default(),
    };
    let result = run_operator(cfg, crate::net::shutdown_signal()).await;
    if let Some(h) = head_export {
        h.abort();
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `--watch-namespaces a,b`.
fn parse_scope(s: &str) -> Result<WatchScope, String> {
    WatchScope::parse(s).map_err(|e| e.to_string())
}

/// `KEY=VALUE` of a label selector term.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
