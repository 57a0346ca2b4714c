//! TLS with rustls (ring provider), and a certificate that reloads itself.
//!
//! [`ReloadingCert`] is the server's `ResolvesServerCert`: on a handshake it
//! checks, at most every `check_every`, whether the certificate or key file
//! changed (modification time and size), and if so loads the new pair. A
//! pair that fails to load (a half-written file during a rotation) keeps
//! the previous certificate in force, so a renewal by cert-manager or a
//! kubelet volume swap never takes the server down.
//!
//! [`TlsListener`] plugs TLS into `axum::serve`: a background task accepts
//! TCP connections and runs each handshake in its own task (with a
//! timeout), so a slow or silent client never blocks other connections.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

/// Default interval between checks of the certificate files.
pub const CERT_RELOAD_CHECK: Duration = Duration::from_secs(5);
/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors loading TLS material. They name files, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("TLS key {key} does not fit certificate {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Result<Stamp, TlsError> {
    let md = std::fs::metadata(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((md.modified().ok(), md.len()))
}

/// Read a PEM certificate chain and private key into a `CertifiedKey`.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    let cert_pem = std::fs::read(cert).map_err(io(cert))?;
    let key_pem = Zeroizing::new(std::fs::read(key).map_err(io(key))?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.to_path_buf(),
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })
}

struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

/// A certificate resolver that re-reads its files when they change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    check_every: Duration,
    current: RwLock<Arc<CertifiedKey>>,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Load the pair now; a failure here stops the server from starting.
    pub fn new(cert: &Path, key: &Path, check_every: Duration) -> Result<Self, TlsError> {
        let stamps = (stamp(cert)?, stamp(key)?);
        let ck = Arc::new(load_certified_key(cert, key)?);
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            check_every,
            current: RwLock::new(ck.clone()),
            state: Mutex::new(Loaded {
                key: ck,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// Reload if the files changed and the check interval has passed.
    fn refresh(&self) {
        let Ok(mut st) = self.state.try_lock() else {
            // Another handshake is checking right now; use what we have.
            return;
        };
        if st.checked.elapsed() < self.check_every {
            return;
        }
        st.checked = Instant::now();
        let stamps = match (stamp(&self.cert), stamp(&self.key)) {
            (Ok(c), Ok(k)) => (c, k),
            _ => return,
        };
        if stamps == st.stamps {
            return;
        }
        match load_certified_key(&self.cert, &self.key) {
            Ok(ck) => {
                let ck = Arc::new(ck);
                st.key = ck.clone();
                st.stamps = stamps;
                *self.current.write().expect("cert lock") = ck;
                tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed TLS certificate does not load; keeping the previous one");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.read().expect("cert lock").clone())
    }
}

/// A rustls server configuration around a reloading certificate. HTTP/1.1
/// only (ALPN), TLS 1.2 and 1.3 with ring's default suites.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// An `axum::serve` listener that hands out finished TLS connections.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accept: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: rustls::ServerConfig) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::channel(64);
        let accept = tokio::spawn(async move {
            loop {
                let (sock, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Request/response traffic: without TCP_NODELAY, the second
                // TLS record of a response waits for the peer's delayed ACK.
                if let Err(e) = sock.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "could not set TCP_NODELAY");
                }
                let acceptor = acceptor.clone();
                let conn_tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let _ = conn_tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Self {
            rx,
            local,
            _accept: accept,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._accept.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends when we are dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
