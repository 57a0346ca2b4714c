//! The HTTPS client of the CLI's REST store ([`super::HttpStore`]) and of
//! the MLflow gateway client (`crate::mlflow::client`): hyper over rustls
//! (ring), trusting the system's roots plus an optional private CA.
//!
//! Loading the system roots (`rustls-native-certs`) reads and parses the
//! whole system bundle and certificate directory, several milliseconds that
//! a short command such as `run` (target: start to exec in 10 ms, resolve
//! included) pays on every start. With a private CA the server's chain is
//! checked against that CA first, and the system roots are loaded only when
//! that fails: the accepted chains are exactly those of one root store
//! holding both, since a chain ends at a single anchor.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{Result, StoreError};

pub(crate) type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A hyper client over rustls (ring) trusting the system's roots plus the
/// PEM CA in `ca_pem` (read and checked here, so a bad file fails before
/// any connection).
pub(crate) fn https_client(ca_pem: Option<&Path>) -> Result<HttpsClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match ca_pem {
        Some(path) => Arc::new(PrivateCaFirst {
            private: webpki_verifier(private_roots(path)?, &provider)?,
            system: OnceLock::new(),
            provider: provider.clone(),
        }),
        None => webpki_verifier(system_roots(), &provider)?,
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::InvalidParameter(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The system's trust anchors; unreadable or unparsable entries are
/// skipped, as every TLS client on the host does.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// The certificates of the PEM file `path`; at least one.
fn private_roots(path: &Path) -> Result<RootCertStore> {
    let bad = |e: &dyn std::fmt::Display| {
        StoreError::InvalidParameter(format!("CA certificate {}: {e}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| bad(&e))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(StoreError::InvalidParameter(format!(
            "CA certificate {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(roots)
}

fn webpki_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| StoreError::InvalidParameter(format!("TLS configuration: {e}")))
}

/// The private CA's verifier, then (loaded on first need) the system's.
#[derive(Debug)]
struct PrivateCaFirst {
    private: Arc<WebPkiServerVerifier>,
    system: OnceLock<std::result::Result<Arc<WebPkiServerVerifier>, String>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PrivateCaFirst {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let first =
            self.private
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let Err(private_err) = first else {
            return first;
        };
        // Only a failure pays for the system roots; whichever store the
        // chain reaches decides, as one store holding both would.
        let system = self
            .system
            .get_or_init(|| {
                webpki_verifier(system_roots(), &self.provider).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))?;
        system
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|system_err| match private_err {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => system_err,
                // The chain reached the private CA: its failure is the answer.
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.private.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.private.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.private.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(v: &dyn ServerCertVerifier, cert: &CertificateDer<'_>, name: &str) -> bool {
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    fn ca_file(dir: &Path, pem: &str) -> std::path::PathBuf {
        let p = dir.join("ca.pem");
        std::fs::write(&p, pem).unwrap();
        p
    }

    #[test]
    fn private_ca_is_trusted_and_only_for_its_names() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = ca_file(dir.path(), &ck.cert.pem());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = PrivateCaFirst {
            private: webpki_verifier(private_roots(&path).unwrap(), &provider).unwrap(),
            system: OnceLock::new(),
            provider,
        };
        assert!(verify(&v, ck.cert.der(), "localhost"));
        assert!(
            v.system.get().is_none(),
            "system roots loaded for a private-CA chain"
        );
        let name = ServerName::try_from("other.example").unwrap();
        let e = v
            .verify_server_cert(ck.cert.der(), &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{e:?}"
        );
        // A chain to neither: the system roots are consulted, and refuse it.
        let stranger = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        assert!(!verify(&v, stranger.cert.der(), "localhost"));
        assert!(v.system.get().is_some());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = ca_file(dir.path(), "not a certificate\n");
        let e = https_client(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = https_client(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
