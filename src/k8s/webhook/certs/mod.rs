//! Webhook TLS without cert-manager (docs/design.md §8): the
//! operator makes its own CA and serving certificate, keeps them in one
//! Secret shared by every replica, renews them before expiry, and keeps the
//! MutatingWebhookConfiguration's caBundle current.
//!
//! Division of labour:
//! - [`bootstrap`] (every replica, at start): read the Secret, or create it
//!   if absent. Create-if-absent: two replicas racing both end up serving
//!   the one that won.
//! - [`refresh_loop`] (every replica): watch the Secret and hot-swap the
//!   serving certificate when the leader renews it; export its expiry.
//! - [`leader_loop`] (leader only): renew before expiry, write the Secret,
//!   patch the caBundle (or, with `--webhook-url`, register the whole
//!   URL-based configuration).

mod leader;
pub(crate) mod material;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use leader::{WEBHOOK_NAME, leader_loop, webhook_configuration};
pub use material::Material;

use crate::k8s::WEBHOOK_CONFIGURATION_NAME;
use crate::k8s::metrics::OperatorMetrics;

/// Default name of the Secret holding the CA and serving certificate.
pub const DEFAULT_SECRET_NAME: &str = "mlflow-secrets-webhook-tls";
/// Serving certificates live a year and are renewed a month before expiry;
/// the CA lives five years. Short enough to exercise rotation in
/// production, long enough that an operator down for weeks still starts.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the leader checks expiry and the caBundle.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Attempts of [`bootstrap`] when other replicas keep winning races.
const BOOTSTRAP_ATTEMPTS: usize = 5;

/// Errors of the certificate layer. They name Secrets and fields, never key
/// bytes.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(String),
    #[error("webhook TLS Secret: {0}")]
    Invalid(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("webhook TLS Secret {0}: other replicas kept replacing it; giving up")]
    Contended(String),
}

/// Where the certificate lives and what it is for.
#[derive(Debug, Clone)]
pub struct CertConfig {
    /// The operator's namespace: the Secret lives here, and the URL-based
    /// configuration excludes it (the webhook never sees its own pods).
    pub namespace: String,
    pub secret_name: String,
    /// The Service in front of the webhook; its DNS names become SANs.
    /// Empty: no Service names (running outside a cluster).
    pub service_name: String,
    /// More SANs: IP addresses or DNS names (`127.0.0.1` for a
    /// `--webhook-url` on loopback).
    pub extra_sans: Vec<String>,
    /// The MutatingWebhookConfiguration whose caBundle the leader keeps
    /// current (or which it registers, with `webhook_url`).
    pub webhook_config_name: String,
    /// `--webhook-url`: register a URL-based configuration ourselves.
    pub webhook_url: Option<String>,
    /// Renew when the certificate (or the CA) expires within this.
    pub renew_before: Duration,
    pub validity: Duration,
    pub ca_validity: Duration,
    pub check_interval: Duration,
    /// The URL-based configuration's namespaceSelector. Default: every
    /// namespace but [`CertConfig::namespace`].
    pub namespace_selector: Option<LabelSelector>,
}

impl CertConfig {
    /// Defaults for a webhook behind `service_name` in `namespace`.
    pub fn new(namespace: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            secret_name: DEFAULT_SECRET_NAME.into(),
            service_name: service_name.into(),
            extra_sans: Vec::new(),
            webhook_config_name: WEBHOOK_CONFIGURATION_NAME.into(),
            webhook_url: None,
            renew_before: DEFAULT_RENEW_BEFORE,
            validity: DEFAULT_VALIDITY,
            ca_validity: DEFAULT_CA_VALIDITY,
            check_interval: DEFAULT_CHECK_INTERVAL,
            namespace_selector: None,
        }
    }

    /// The serving certificate's SANs: the Service's DNS names, then the
    /// extras.
    pub fn sans(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.service_name.is_empty() {
            let (svc, ns) = (&self.service_name, &self.namespace);
            out.extend([
                svc.clone(),
                format!("{svc}.{ns}"),
                format!("{svc}.{ns}.svc"),
                format!("{svc}.{ns}.svc.cluster.local"),
            ]);
        }
        out.extend(self.extra_sans.iter().cloned());
        if out.is_empty() {
            out.push("localhost".into());
        }
        out
    }

    fn api(&self, client: &kube::Client) -> Api<Secret> {
        Api::namespaced(client.clone(), &self.namespace)
    }
}

/// The serving certificate in force: a rustls resolver whose certificate
/// [`refresh_loop`] swaps without a restart.
pub struct WebhookCerts {
    current: RwLock<Arc<CertifiedKey>>,
    not_after: AtomicI64,
    ca_bundle: RwLock<String>,
    resource_version: RwLock<Option<String>>,
}

impl std::fmt::Debug for WebhookCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookCerts")
            .field("not_after", &self.not_after())
            .finish_non_exhaustive()
    }
}

impl WebhookCerts {
    /// Certificates from material already read.
    pub fn new(m: &Material, resource_version: Option<String>) -> Result<Self, CertError> {
        Ok(Self {
            current: RwLock::new(Arc::new(m.certified_key()?)),
            not_after: AtomicI64::new(m.serving_not_after),
            ca_bundle: RwLock::new(m.ca_crt.clone()),
            resource_version: RwLock::new(resource_version),
        })
    }

    /// Unix time at which the serving certificate expires.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }

    /// The CA bundle (PEM) clients should trust.
    pub fn ca_bundle(&self) -> String {
        self.ca_bundle.read().expect("ca lock").clone()
    }

    /// Swap in new material; on an error the certificate in force stays.
    pub fn swap(&self, m: &Material, resource_version: Option<String>) -> Result<(), CertError> {
        let key = Arc::new(m.certified_key()?);
        *self.current.write().expect("cert lock") = key;
        *self.ca_bundle.write().expect("ca lock") = m.ca_crt.clone();
        self.not_after.store(m.serving_not_after, Ordering::Relaxed);
        *self.resource_version.write().expect("rv lock") = resource_version;
        Ok(())
    }

    fn resource_version(&self) -> Option<String> {
        self.resource_version.read().expect("rv lock").clone()
    }
}

impl ResolvesServerCert for WebhookCerts {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock").clone())
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Read the certificates from their Secret, or create it. Run by every
/// replica before serving.
///
/// A Secret that exists but does not load (a chart placeholder, a
/// half-edited object) is replaced, guarded by its resourceVersion; losing
/// any race means re-reading what the winner wrote.
pub async fn bootstrap(
    client: kube::Client,
    cfg: &CertConfig,
) -> Result<Arc<WebhookCerts>, CertError> {
    let api = cfg.api(&client);
    for _ in 0..BOOTSTRAP_ATTEMPTS {
        let existing = api.get_opt(&cfg.secret_name).await?;
        if let Some(s) = &existing {
            match Material::from_secret(s) {
                Ok(m) => {
                    return Ok(Arc::new(WebhookCerts::new(
                        &m,
                        s.metadata.resource_version.clone(),
                    )?));
                }
                Err(e) => tracing::warn!(
                    secret = %cfg.secret_name, error = %e,
                    "the webhook TLS Secret does not load; replacing it"
                ),
            }
        }
        let m = Material::generate(&cfg.sans(), cfg.validity, cfg.ca_validity, None)?;
        let mut secret = m.to_secret(&cfg.namespace, &cfg.secret_name);
        let written = match existing {
            None => api.create(&PostParams::default(), &secret).await,
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version;
                api.replace(&cfg.secret_name, &PostParams::default(), &secret)
                    .await
            }
        };
        match written {
            Ok(s) => {
                tracing::info!(secret = %cfg.secret_name, not_after = m.serving_not_after, "created the webhook CA and serving certificate");
                return Ok(Arc::new(WebhookCerts::new(
                    &m,
                    s.metadata.resource_version,
                )?));
            }
            // Another replica won: read what it wrote.
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CertError::Contended(cfg.secret_name.clone()))
}

/// Keep `certs` in step with the Secret, for as long as the task runs:
/// every replica runs this, so a renewal by the leader reaches all of them.
/// Sets the `cert_expiry` metric.
pub async fn refresh_loop(
    client: kube::Client,
    cfg: CertConfig,
    certs: Arc<WebhookCerts>,
    metrics: Arc<OperatorMetrics>,
) {
    metrics.cert_expiry.set(certs.not_after() as f64);
    let wc = watcher::Config::default().fields(&format!("metadata.name={}", cfg.secret_name));
    let mut events = watcher(cfg.api(&client), wc)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = events.next().await {
        let s = match ev {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(secret = %cfg.secret_name, error = %e, "watching the webhook TLS Secret");
                continue;
            }
        };
        let rv = s.metadata.resource_version.clone();
        if rv.is_some() && rv == certs.resource_version() {
            continue;
        }
        match Material::from_secret(&s).and_then(|m| certs.swap(&m, rv).map(|()| m)) {
            Ok(m) => {
                metrics.cert_expiry.set(m.serving_not_after as f64);
                tracing::info!(secret = %cfg.secret_name, not_after = m.serving_not_after, "loaded the webhook serving certificate");
            }
            Err(e) => tracing::warn!(
                secret = %cfg.secret_name, error = %e,
                "the changed webhook TLS Secret does not load; keeping the current certificate"
            ),
        }
    }
}
