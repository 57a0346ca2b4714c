//! `mlflow-secrets serve`: the REST server of docs/design.md §7.
//!
//! Layout: [`config`] (settings and the start-up rules), [`auth`] (tokens
//! file, constant-time check, roles), [`guard`] (authn/rate-limit/authz
//! middleware and request metrics), [`api`] (handlers), [`requests`]
//! (request types), [`extract`] (JSON and query extractors with MLflow
//! errors), [`error`] (the error shape), [`limits`], [`metrics`],
//! [`openapi`], [`ops`] (health, metrics, spec) and [`state`]. TLS and the
//! shutdown signal are in `crate::net`, the keystore's hot reload in
//! [`crate::keystore::watch`]: the operator uses them too.
//!
//! [`router`] builds the whole application (tests drive it in-process);
//! [`Server`] binds it, plain or TLS, and runs it until a shutdown signal.

pub(crate) mod api;
pub mod auth;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod guard;
pub mod limits;
pub(crate) mod metrics;
pub mod openapi;
pub(crate) mod ops;
pub mod requests;
pub(crate) mod state;
pub mod tokens_file;

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
/// How long a client may take to send a request's headers (slowloris).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// How often aggregated `AUTH_DENIED` rows are written and idle peer
/// rate-limit buckets dropped.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(15);
use crate::net::tls;
use crate::wire::API_PREFIX;

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
        .route(&p("resolve"), guarded(s, Role::Runner, post(api::resolve)))
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
        .merge(crate::ui::router(&state))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), guard::host_check))
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
    state: AppState,
    header_read_timeout: std::time::Duration,
    max_connections: usize,
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
        let mut state = AppState::new(store, auth, cfg.rate_limit_per_minute);
        state.resolve_transport_ok = cfg.tls.is_some() || config::is_loopback(cfg.listen.ip());
        state.ui.tls = cfg.tls.is_some();
        state.ui.kek_max_age = cfg.ui_kek_max_age;
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
            app: router(state.clone()),
            state,
            header_read_timeout: cfg.header_read_timeout,
            max_connections: cfg.max_connections.max(1),
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
        let housekeeping = tokio::spawn({
            let state = self.state.clone();
            async move {
                let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
                loop {
                    tick.tick().await;
                    state.flush_denials(false).await;
                    state.peer_limiter.retain_recent();
                }
            }
        });
        let limits = (self.header_read_timeout, self.max_connections);
        let serve = async move {
            match self.listener {
                Listener::Plain(l) => serve_connections(l, self.app, limits, signal).await,
                Listener::Tls(l) => serve_connections(l, self.app, limits, signal).await,
            }
        };
        tokio::select! {
            () = serve => {},
            () = grace => tracing::warn!("shutdown grace period over; closing the remaining connections"),
        }
        housekeeping.abort();
        self.state.flush_denials(true).await;
        tracing::info!("server stopped");
        Ok(())
    }
}

/// Accept connections until `signal`, then let open ones finish.
///
/// Not `axum::serve`: it offers neither a header-read timeout nor a
/// connection cap (security review finding 12). Each connection is HTTP/1
/// with a header-read timeout ([`HEADER_READ_TIMEOUT`] by default) and
/// holds one of `max` permits ([`MAX_CONNECTIONS`]); past the cap a new
/// connection is closed at once. The peer address goes into each request
/// as `ConnectInfo`, for the limit on requests without a valid token.
async fn serve_connections<L>(
    mut listener: L,
    app: Router,
    (header_timeout, max): (std::time::Duration, usize),
    signal: impl Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let permits = Arc::new(tokio::sync::Semaphore::new(max));
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    tokio::pin!(signal);
    loop {
        let (io, peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut signal => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(max, "connection cap reached; closing a new connection");
            drop(io);
            continue;
        };
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let mut close = close_rx.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = close.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = close_tx.send(());
    // Every connection task holds a permit until it is done.
    let _ = permits.acquire_many(max as u32).await;
}
