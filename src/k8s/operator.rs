//! The `operator` process: wires the keystore, the store, the webhook, the
//! Lease and the controllers together, and keeps each of them going on its
//! own when another fails.
//!
//! ```text
//!   every replica                         the Lease holder only
//!   ─────────────                         ─────────────────────
//!   keystore load + hot reload            controllers (MlflowSecret, Binding)
//!   store connect (+ migrate)             certificate renewal + caBundle
//!   webhook certificate from its Secret
//!   HTTPS: /mutate (webhook port)
//!   HTTPS: /health /ready /metrics (metrics port)
//!   Lease campaign (once keys are loaded)
//! ```
//!
//! Nothing here exits the process on a dependency failure: a wrong
//! passphrase, a database that is down at start or an API server that is
//! unreachable are retried and reported through `/ready` and the log, so
//! the fix (a corrected Secret, the database coming back) is picked up
//! without a restart.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use tokio::sync::watch;

use super::admin::{self, Health};
use super::controller;
use super::lease::{LeaderElector, LeaseTimings};
use super::metrics::OperatorMetrics;
use super::scope::WatchScope;
use super::webhook::{self, certs};
use crate::keystore::{Keystore, KeystoreConfig, KeystoreHandle};
use crate::store::sql::Dialect;
use crate::store::{DecryptLimits, SqlStore};

/// How often a keystore that failed to load, or a database that could not
/// be reached at start, is tried again. Short enough that a fixed Secret
/// is picked up within one probe period, long enough not to flood the log.
const RETRY_EVERY: Duration = Duration::from_secs(5);

/// How often readiness looks at the webhook's caches: a fraction of the
/// kubelet's default readiness period (10 s), and a load read each time.
const WEBHOOK_SYNC_POLL: Duration = Duration::from_millis(200);

/// How often the keystore is checked for a kubelet `..data` swap once it
/// has loaded. The kubelet itself syncs projected volumes every ~60 s, so
/// a few seconds adds nothing noticeable to a rotation.
const KEYSTORE_RELOAD_CHECK: Duration = Duration::from_secs(3);

/// Everything `operator` needs, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    pub store_uri: String,
    pub keystore: KeystoreConfig,
    pub webhook_listen: SocketAddr,
    /// /health, /ready and /metrics: a port apart from the webhook's.
    pub metrics_listen: SocketAddr,
    /// `--webhook-client-ca`: the webhook port requires a client
    /// certificate signed by this CA.
    pub webhook_client_ca: Option<std::path::PathBuf>,
    /// Decrypts per ServiceAccount per minute (0: none beyond the store's).
    pub service_account_decrypts_per_minute: u32,
    pub webhook_url: Option<String>,
    /// With `webhook_url`: restrict the registered configuration to
    /// namespaces with this label.
    pub webhook_namespace_selector: Option<(String, String)>,
    /// Reconcile only objects matching this label selector.
    pub selector: Option<String>,
    pub namespace: String,
    pub service_name: String,
    pub webhook_config_name: String,
    pub cert_secret: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub namespace_decrypts_per_minute: u32,
    pub webhook_deadline: Duration,
    pub migrate: bool,
    /// `--watch-namespaces`: the namespaces the controllers (and the
    /// revocation sweep) watch and write in; cluster-wide by default.
    pub watch_scope: WatchScope,
}

/// Errors that stop the operator before it serves.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot build a Kubernetes client: {0}")]
    KubeConfig(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "test mode (MLFLOW_SECRETS_TEST_MODE) uses a publicly known key: refusing to serve the webhook on non-loopback address {0}"
    )]
    TestModeNotLoopback(SocketAddr),
    #[error(
        "unsupported store URI for the operator: it must start with sqlite://, postgres:// or mysql://"
    )]
    StoreUri,
    #[error("webhook server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    ClientCa(std::io::Error),
}

/// Run the operator until `shutdown` resolves.
pub async fn run(
    cfg: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let dialect = Dialect::from_uri(&cfg.store_uri).ok_or(OperatorError::StoreUri)?;
    if cfg.keystore.test_mode && !cfg.webhook_listen.ip().is_loopback() {
        return Err(OperatorError::TestModeNotLoopback(cfg.webhook_listen));
    }
    let metrics = Arc::new(OperatorMetrics::new());
    let health = Arc::new(Health::default());
    health
        .test_mode
        .store(cfg.keystore.test_mode, Ordering::SeqCst);

    let client = kube::Client::try_default()
        .await
        .map_err(|e| OperatorError::KubeConfig(e.to_string()))?;
    let client_ca = cfg
        .webhook_client_ca
        .as_deref()
        .map(webhook::server::client_verifier)
        .transpose()
        .map_err(OperatorError::ClientCa)?;
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| OperatorError::Listen { addr, source })
    };
    let listener = bind(cfg.webhook_listen).await?;
    let metrics_listener = bind(cfg.metrics_listen).await?;

    // Stop signal shared by every task.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // Keys: start with none (every decrypt fails closed) and load in the
    // background until the passphrase is right.
    let keys = KeystoreHandle::new(Keystore::metadata_only());
    tokio::spawn(keystore_task(
        keys.clone(),
        cfg.keystore.clone(),
        health.clone(),
    ));

    // The store: connected (and migrated) in the background as well.
    let (store_tx, mut store_rx) = watch::channel::<Option<Arc<SqlStore>>>(None);
    tokio::spawn(store_task(
        cfg.clone(),
        dialect,
        keys.clone(),
        health.clone(),
        store_tx,
    ));

    // The webhook's serving certificate, from its Secret (created by the
    // first replica to start).
    let cert_cfg = cert_config(&cfg);
    let web_certs = loop {
        match certs::bootstrap(client.clone(), &cert_cfg).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(error = %e, secret = %cfg.cert_secret, "cannot load or create the webhook certificate; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_EVERY) => {}
                    _ = stopped() => return Ok(()),
                }
            }
        }
    };
    health.cert_loaded.store(true, Ordering::SeqCst);
    tokio::spawn(certs::refresh_loop(
        client.clone(),
        cert_cfg.clone(),
        web_certs.clone(),
        metrics.clone(),
    ));

    // The store is needed from here on (the webhook and the controllers).
    let store = loop {
        if let Some(s) = store_rx.borrow().clone() {
            break s;
        }
        tokio::select! {
            r = store_rx.changed() => if r.is_err() { return Ok(()) },
            _ = stopped() => return Ok(()),
        }
    };

    let webhook_state = Arc::new(
        webhook::WebhookState::new_scoped(
            client.clone(),
            store.clone(),
            metrics.clone(),
            cfg.webhook_deadline,
            &cfg.watch_scope,
        )
        .with_service_account_limit(Some(cfg.service_account_decrypts_per_minute)),
    );
    // Ready only once the webhook's namespace watch has listed (see
    // `Health::webhook_synced`).
    {
        let (state, health) = (webhook_state.clone(), health.clone());
        tokio::spawn(async move {
            loop {
                health
                    .webhook_synced
                    .store(state.synced(), Ordering::SeqCst);
                tokio::time::sleep(WEBHOOK_SYNC_POLL).await;
            }
        });
    }
    let server = tokio::spawn(webhook::server::serve(
        listener,
        webhook::router(webhook_state),
        web_certs.clone(),
        client_ca,
        stopped(),
    ));
    // Probes and metrics on their own port, without a client certificate
    // (kubelets and Prometheus have none).
    tokio::spawn(webhook::server::serve(
        metrics_listener,
        admin::router(health.clone(), metrics.clone()),
        web_certs.clone(),
        None,
        stopped(),
    ));
    tracing::info!(
        listen = %cfg.webhook_listen, metrics = %cfg.metrics_listen,
        client_ca = cfg.webhook_client_ca.is_some(), scope = %cfg.watch_scope,
        "webhook and probes serving over TLS"
    );

    // Campaign for the Lease only once the keys are loaded: a replica with
    // a wrong passphrase must not hold leadership it cannot use.
    let campaign = {
        let health = health.clone();
        let stopped = stopped.clone();
        async move {
            while !health.keystore_loaded.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stopped() => return,
                }
            }
            let (leading_tx, leading_rx) = watch::channel(false);
            let elector = LeaderElector::new(
                client.clone(),
                &cfg.namespace,
                &cfg.lease_name,
                &cfg.identity,
                LeaseTimings::from_lease_duration(cfg.lease_duration),
            );
            let leader_work = tokio::spawn(leader_work(
                leading_rx,
                LeaderParts {
                    client: client.clone(),
                    store: store.clone(),
                    metrics: metrics.clone(),
                    health: health.clone(),
                    cert_cfg: cert_cfg.clone(),
                    identity: cfg.identity.clone(),
                    selector: cfg.selector.clone(),
                    scope: cfg.watch_scope.clone(),
                },
            ));
            elector.run(leading_tx, stopped()).await;
            let _ = leader_work.await;
        }
    };
    let campaign = tokio::spawn(campaign);

    let served = server.await;
    let _ = campaign.await;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(OperatorError::Serve(e)),
        Err(_) => Ok(()),
    }
}

/// Where the webhook's certificate lives, its names, and the configuration
/// the leader keeps current.
fn cert_config(cfg: &OperatorConfig) -> certs::CertConfig {
    let mut c = certs::CertConfig::new(cfg.namespace.clone(), cfg.service_name.clone());
    c.secret_name = cfg.cert_secret.clone();
    c.webhook_config_name = cfg.webhook_config_name.clone();
    c.webhook_url = cfg.webhook_url.clone();
    if let Some(host) = cfg.webhook_url.as_deref().and_then(url_host) {
        c.extra_sans.push(host);
    }
    if let Some((key, value)) = &cfg.webhook_namespace_selector {
        c.namespace_selector = Some(LabelSelector {
            match_labels: Some([(key.clone(), value.clone())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".into(),
                operator: "NotIn".into(),
                values: Some(vec![cfg.namespace.clone()]),
            }]),
        });
    }
    c
}

/// The host of `https://HOST[:PORT]/path` (brackets of an IPv6 literal
/// removed), for the serving certificate's SANs.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// What the leader-only work is built from.
struct LeaderParts {
    client: kube::Client,
    store: Arc<SqlStore>,
    metrics: Arc<OperatorMetrics>,
    health: Arc<Health>,
    cert_cfg: certs::CertConfig,
    identity: String,
    selector: Option<String>,
    scope: WatchScope,
}

/// Run the controllers and the certificate writer while `leading` is true;
/// abort them the moment it turns false (a lost Lease stops reconciling at
/// once, docs/design.md §8).
async fn leader_work(mut leading: watch::Receiver<bool>, parts: LeaderParts) {
    let LeaderParts {
        client,
        store,
        metrics,
        health,
        cert_cfg,
        identity,
        selector,
        scope,
    } = parts;
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        tracing::info!("leading: starting the controllers and the certificate writer");
        health.controllers_synced.store(false, Ordering::SeqCst);
        health.leader.store(true, Ordering::SeqCst);
        metrics.leader.set(1);
        let mut ctx = controller::Context::new(
            client.clone(),
            store.clone(),
            metrics.clone(),
            identity.clone(),
        );
        if let Some(sel) = &selector {
            ctx = ctx.with_label_selector(sel.clone());
        }
        ctx = ctx.with_scope(scope.clone());
        let ctx = Arc::new(ctx);
        let controllers = tokio::spawn(controller::run(ctx, health.controllers_synced.clone()));
        let certs = tokio::spawn(certs::leader_loop(
            client.clone(),
            cert_cfg.clone(),
            metrics.clone(),
        ));
        let lost = leading.wait_for(|l| !*l).await.is_err();
        controllers.abort();
        certs.abort();
        let _ = controllers.await;
        let _ = certs.await;
        health.leader.store(false, Ordering::SeqCst);
        health.controllers_synced.store(false, Ordering::SeqCst);
        metrics.leader.set(0);
        tracing::info!("no longer leading: controllers stopped");
        if lost {
            return;
        }
    }
}

/// Load the keystore until it loads, then hot-reload it on change (the
/// kubelet's `..data` swap of the projected volume).
async fn keystore_task(keys: KeystoreHandle, cfg: KeystoreConfig, health: Arc<Health>) {
    let mut last_error = String::new();
    loop {
        match Keystore::load_async(cfg.clone()).await {
            Ok(ks) => {
                tracing::info!(active_version = ks.active_version(), "keystore loaded");
                keys.replace(ks);
                health.keystore_loaded.store(true, Ordering::SeqCst);
                break;
            }
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    tracing::error!(error = %msg, keystore = %cfg.dir.display(), "cannot load the keystore: not ready; retrying every {}s", RETRY_EVERY.as_secs());
                    last_error = msg;
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }
    if let Some(task) = crate::keystore::watch::spawn(keys, cfg, KEYSTORE_RELOAD_CHECK) {
        let _ = task.await;
    }
}

/// Connect to the store (and migrate it when asked) until it works.
async fn store_task(
    cfg: OperatorConfig,
    dialect: Dialect,
    keys: KeystoreHandle,
    health: Arc<Health>,
    out: watch::Sender<Option<Arc<SqlStore>>>,
) {
    let mut last_error = String::new();
    loop {
        let attempt = async {
            let store = SqlStore::connect(&cfg.store_uri, keys.clone()).await?;
            if cfg.migrate {
                store.migrate().await?;
            } else {
                store.ensure_schema(dialect == Dialect::Sqlite).await?;
            }
            Ok::<_, crate::store::StoreError>(store)
        };
        match attempt.await {
            Ok(store) => {
                let store = store.with_decrypt_limits(DecryptLimits {
                    per_principal_per_minute: None,
                    per_workspace_per_minute: Some(cfg.namespace_decrypts_per_minute)
                        .filter(|n| *n > 0),
                });
                tracing::info!(database = dialect.name(), "store connected");
                health.store_connected.store(true, Ordering::SeqCst);
                let _ = out.send(Some(Arc::new(store)));
                return;
            }
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    tracing::error!(error = %msg, "cannot open the store; retrying every {}s", RETRY_EVERY.as_secs());
                    last_error = msg;
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn url_host_for_the_certificate() {
        assert_eq!(
            url_host("https://127.0.0.1:8443/mutate").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("https://[::1]:8443/mutate").as_deref(),
            Some("::1")
        );
        assert_eq!(
            url_host("https://webhook.example.com/mutate").as_deref(),
            Some("webhook.example.com")
        );
        assert_eq!(url_host("not a url"), None);
    }
}
