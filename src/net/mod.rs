//! Network infrastructure shared across front ends: the TLS listener with
//! its reloading certificate and the shutdown signal (`serve` and the
//! webhook), and the server-URL rule of the two HTTPS clients (the REST
//! store and the MLflow gateway client).

pub(crate) mod tls;

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

/// True for `localhost`, `127.0.0.0/8` and `[::1]`: the host as
/// `http::Uri` parses it (the one hyper connects to), brackets dropped.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.to_canonical().is_loopback())
            .unwrap_or(false)
}

/// What is wrong with a server URL; each client words it for its own flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlProblem {
    Unparsable,
    NoHost,
    /// `user:password@host`: credentials belong in headers, never a URL.
    Userinfo,
    /// `http://` to a host that is not loopback, without `allow_http`.
    PlainHttp,
    Scheme,
}

/// Check a server URL as hyper parses it, so the host checked is the host
/// connected to (`http://localhost:1@attacker.example/` names
/// `attacker.example`, and is refused for its userinfo anyway):
/// `https://`, or `http://` to a loopback host or when `allow_http`.
pub(crate) fn check_server_url(base: &str, allow_http: bool) -> Result<(), UrlProblem> {
    let uri: hyper::Uri = base.parse().map_err(|_| UrlProblem::Unparsable)?;
    let authority = uri.authority().ok_or(UrlProblem::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(UrlProblem::Userinfo);
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http || is_loopback_host(authority.host()) => Ok(()),
        Some("http") => Err(UrlProblem::PlainHttp),
        _ => Err(UrlProblem::Scheme),
    }
}
