//! TLS with a real rustls client against a server on 127.0.0.1: the
//! handshake and a request over it, the certificate reloading when its files
//! change, and the start-up refusals (non-loopback without TLS, tokens or
//! outside test mode).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::Fixture;
use mlflow_secrets::server::{ServeConfig, Server, ServerError, TlsFiles};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Cert {
    der: CertificateDer<'static>,
}

/// A self-signed certificate for localhost and 127.0.0.1, written as PEM.
fn make_cert(dir: &Path) -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    // Write to temporary names, then rename, as a certificate manager would.
    std::fs::write(dir.join("tls.crt.tmp"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key.tmp"), ck.signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("tls.key.tmp"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.tmp"), dir.join("tls.crt")).unwrap();
    Cert {
        der: ck.cert.der().clone(),
    }
}

fn connector(trusted: &[&Cert]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Full handshakes only: a resumed session would not show which
    // certificate the server serves now.
    let mut cfg = cfg;
    cfg.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(cfg))
}

/// GET `path` over TLS; returns the peer's certificate and the response.
async fn https_get(
    conn: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<(CertificateDer<'static>, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = conn.connect(name, tcp).await?;
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok((peer, out))
}

async fn start(
    cfg: ServeConfig,
    fx: &Fixture,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let server = Server::bind(&cfg, fx.store.clone()).await.unwrap();
    assert!(server.is_tls());
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_and_certificate_reload() {
    let fx = Fixture::new().await;
    let dir = fx.dir.path();
    let first = make_cert(dir);
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }),
        tokens_file: Some(fx.tokens.clone()),
        test_mode: true,
        cert_reload_check: Duration::from_millis(200),
        ..ServeConfig::default()
    };
    let (addr, stop, task) = start(cfg, &fx).await;

    // A client that trusts the certificate completes the handshake and
    // gets an answer; one that does not is refused.
    let (peer, resp) = https_get(&connector(&[&first]), addr, "/health")
        .await
        .unwrap();
    assert_eq!(peer, first.der);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"test_mode\":true"), "{resp}");
    let (_, resp) = https_get(&connector(&[&first]), addr, "/api/2.0/mlflow/secrets/list")
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = Cert {
        der: stranger.cert.der().clone(),
    };
    assert!(
        https_get(&connector(&[&other]), addr, "/health")
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Rotate the certificate on disk: new connections get the new one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = make_cert(dir);
    assert_ne!(first.der, second.der);
    let both = connector(&[&first, &second]);
    let mut served = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (peer, resp) = https_get(&both, addr, "/health").await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        if peer == second.der {
            served = Some(peer);
            break;
        }
    }
    assert!(served.is_some(), "the new certificate was never served");
    // A broken rotation (garbage in the files) keeps the current one.
    std::fs::write(dir.join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (peer, _) = https_get(&both, addr, "/health").await.unwrap();
    assert_eq!(peer, second.der);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn start_up_refusals() {
    let fx = Fixture::new().await;
    let refused = |e: Result<Server, ServerError>| match e {
        Err(ServerError::Refused { reason, .. }) => reason,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the server started"),
    };
    // Non-loopback, tokens, no TLS: refused unless --insecure-http.
    let cfg = ServeConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        tokens_file: Some(fx.tokens.clone()),
        ..ServeConfig::default()
    };
    let reason = refused(Server::bind(&cfg, fx.store.clone()).await);
    assert!(
        reason.contains("TLS") && reason.contains("--insecure-http"),
        "{reason}"
    );
    // Non-loopback without a tokens file: refused, TLS or not.
    let cfg = ServeConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        insecure_http: true,
        ..ServeConfig::default()
    };
    assert!(refused(Server::bind(&cfg, fx.store.clone()).await).contains("--auth-tokens-file"));
    // Test mode: loopback only, even with tokens and TLS.
    let dir = fx.dir.path();
    make_cert(dir);
    let cfg = ServeConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        tokens_file: Some(fx.tokens.clone()),
        tls: Some(TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }),
        test_mode: true,
        ..ServeConfig::default()
    };
    assert!(refused(Server::bind(&cfg, fx.store.clone()).await).contains("test mode"));
    // A key that does not fit the certificate is an error at start.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    std::fs::write(dir.join("tls.key"), other.signing_key.serialize_pem()).unwrap();
    let cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }),
        ..ServeConfig::default()
    };
    match Server::bind(&cfg, fx.store.clone()).await {
        Err(ServerError::Tls(e)) => assert!(e.to_string().contains("does not fit"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("started with a mismatched key"),
    }
}
