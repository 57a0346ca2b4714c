//! HTTPS for the webhook: the API server only calls webhooks over TLS.
//!
//! The accept loop and per-connection handshakes are the REST server's
//! [`TlsListener`]; only the certificate source differs: [`WebhookCerts`],
//! which the refresh loop swaps when the leader renews the certificate.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::certs::WebhookCerts;
use crate::server::tls::TlsListener;

/// A rustls configuration serving `certs`: HTTP/1.1, TLS 1.2 and 1.3 with
/// ring's default suites, no client certificates (the API server
/// authenticates us, not the reverse; the chart's NetworkPolicy limits who
/// may connect).
pub fn tls_config(certs: Arc<WebhookCerts>) -> std::io::Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serve `app` over HTTPS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    certs: Arc<WebhookCerts>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = TlsListener::new(listener, tls_config(certs)?)?;
    axum::serve(tls, app).with_graceful_shutdown(shutdown).await
}
