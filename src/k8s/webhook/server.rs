//! HTTPS for the webhook: the API server only calls webhooks over TLS.
//!
//! The accept loop and per-connection handshakes are the REST server's
//! [`TlsListener`]; only the certificate source differs: [`WebhookCerts`],
//! which the refresh loop swaps when the leader renews the certificate.
//!
//! The caller (docs/design.md §8, "The caller"): with `--webhook-client-ca FILE`
//! the handshake requires a client certificate signed by that CA — the one
//! the API server presents through its AdmissionConfiguration
//! `kubeConfigFile`. A connection without one never reaches `/mutate`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::net::TcpListener;

use super::certs::WebhookCerts;
use crate::net::tls::TlsListener;

/// The verifier for `--webhook-client-ca FILE`: client certificates must
/// chain to one of the PEM certificates in `path`. The error names the file
/// and what is wrong with it.
pub fn client_verifier(path: &Path) -> std::io::Result<Arc<dyn ClientCertVerifier>> {
    let what = |why: String| {
        std::io::Error::other(format!("--webhook-client-ca {}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| what(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        let c = c.map_err(|e| what(format!("not PEM: {e}")))?;
        roots
            .add(c)
            .map_err(|e| what(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(what("holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| what(e.to_string()))
}

/// A rustls configuration serving `certs`: HTTP/1.1, TLS 1.2 and 1.3 with
/// ring's default suites. `client_ca`: require a client certificate it
/// verifies (the webhook port); `None`: no client certificates (the probes
/// and metrics port, and a webhook whose caller is limited by the
/// NetworkPolicy only).
pub fn tls_config(
    certs: Arc<WebhookCerts>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
) -> std::io::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?;
    let builder = match client_ca {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serve `app` over HTTPS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    certs: Arc<WebhookCerts>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = TlsListener::new(listener, tls_config(certs, client_ca)?)?;
    axum::serve(tls, app).with_graceful_shutdown(shutdown).await
}
