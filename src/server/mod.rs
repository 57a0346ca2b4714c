//! `mlflow-secrets serve`: the REST server of DESIGN §7.
//!
//! Layout: [`config`] (settings and the start-up rules), [`auth`] (tokens
//! file, constant-time check, roles), [`guard`] (authn/rate-limit/authz
//! middleware and request metrics), [`api`] (handlers), [`requests`]
//! (request types), [`extract`] (JSON and query extractors with MLflow
//! errors), [`error`] (the error shape), [`limits`], [`metrics`], [`tls`],
//! [`openapi`], [`ops`] (health, metrics, spec), [`state`], and
//! [`keywatch`] (keystore hot reload).
//!
//! [`router`] builds the whole application (tests drive it in-process);
//! [`Server`] binds it, plain or TLS, and runs it until a shutdown signal.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod guard;
pub mod keywatch;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod requests;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, delete, get, patch, post};
use tokio::net::TcpListener;

pub use auth::{Principal, Role, TokenStore};
pub use config::{ServeConfig, ServerError, TlsFiles};
pub use state::{AppState, AuthMode};

use guard::Guard;

/// How long in-flight requests may run after a shutdown signal.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);
use openapi::API_PREFIX;

/// Put `route` behind authentication, the rate limit and `role`.
fn guarded(state: &AppState, role: Role, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    let g = Guard {
        state: state.clone(),
        role,
    };
    route.route_layer(from_fn_with_state(g, guard::guard))
}

/// The application: every API route with its role, the operational
/// endpoints, the body limit and request metrics.
pub fn router(state: AppState) -> Router {
    let p = |op: &str| format!("{API_PREFIX}/{op}");
    let s = &state;
    Router::new()
        .route(&p("create"), guarded(s, Role::Writer, post(api::create)))
        .route(&p("update"), guarded(s, Role::Writer, patch(api::update)))
        .route(&p("revoke"), guarded(s, Role::Writer, post(api::revoke)))
        .route(&p("delete"), guarded(s, Role::Writer, delete(api::delete)))
        .route(&p("bind"), guarded(s, Role::Writer, post(api::bind)))
        .route(&p("unbind"), guarded(s, Role::Writer, delete(api::unbind)))
        .route(&p("get"), guarded(s, Role::Reader, get(api::get)))
        .route(&p("list"), guarded(s, Role::Reader, get(api::list)))
        .route(
            &p("get-binding"),
            guarded(s, Role::Reader, get(api::get_binding)),
        )
        .route(
            &p("list-bindings"),
            guarded(s, Role::Reader, get(api::list_bindings)),
        )
        .route(
            &p("list-audit"),
            guarded(s, Role::Admin, get(api::list_audit)),
        )
        .route(&p("openapi.json"), get(ops::openapi_json))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), guard::track))
        .with_state(state)
}

enum Listener {
    Plain(TcpListener),
    Tls(tls::TlsListener),
}

/// A bound server, ready to run.
pub struct Server {
    listener: Listener,
    addr: SocketAddr,
    app: Router,
}

impl Server {
    /// Check the start-up rules, load the tokens file and the certificate,
    /// and bind. Nothing is served until [`Server::run`].
    pub async fn bind(
        cfg: &ServeConfig,
        store: crate::store::SqlStore,
    ) -> Result<Self, ServerError> {
        for w in cfg.check()? {
            tracing::warn!("{w}");
        }
        if cfg.test_mode {
            tracing::warn!(
                "test mode: this server encrypts with a fixed, publicly known key; never store real secrets in it"
            );
        }
        let auth = match &cfg.tokens_file {
            Some(path) => AuthMode::Tokens(Arc::new(TokenStore::load(path)?)),
            None => AuthMode::LocalAnonymous,
        };
        let state = AppState::new(store, auth, cfg.rate_limit_per_minute);
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = tcp.local_addr()?;
        let listener = match &cfg.tls {
            Some(files) => {
                let resolver = Arc::new(tls::ReloadingCert::new(
                    &files.cert,
                    &files.key,
                    cfg.cert_reload_check,
                )?);
                let tls_cfg = tls::server_config(resolver)?;
                Listener::Tls(tls::TlsListener::new(tcp, tls_cfg)?)
            }
            None => Listener::Plain(tcp),
        };
        Ok(Self {
            listener,
            addr,
            app: router(state),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.listener, Listener::Tls(_))
    }

    /// Serve until `shutdown` completes, then let in-flight requests finish
    /// for at most [`SHUTDOWN_GRACE`] before closing what is left.
    pub async fn run<F>(self, shutdown: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let scheme = if self.is_tls() { "https" } else { "http" };
        tracing::info!("serving on {scheme}://{}", self.addr);
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let grace = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let serve = async move {
            match self.listener {
                Listener::Plain(l) => {
                    axum::serve(l, self.app)
                        .with_graceful_shutdown(signal)
                        .await
                }
                Listener::Tls(l) => {
                    axum::serve(l, self.app)
                        .with_graceful_shutdown(signal)
                        .await
                }
            }
        };
        tokio::select! {
            r = serve => r?,
            () = grace => tracing::warn!("shutdown grace period over; closing the remaining connections"),
        }
        tracing::info!("server stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
