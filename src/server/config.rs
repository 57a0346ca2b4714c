//! Server configuration and the start-up rules of docs/design.md §7 and §10 rule 8.
//!
//! The rules, checked before anything listens:
//! - test mode (a fixed, public KEK) serves on loopback only;
//! - without a tokens file, only loopback (anonymous, as `local`);
//! - outside loopback, TLS, unless `--insecure-http` says otherwise (for a
//!   TLS-terminating proxy or service mesh in front).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::auth::AuthError;
use crate::net::tls::{CERT_RELOAD_CHECK, TlsError};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5005";
/// Default API requests per principal per minute.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 1200;

/// Errors starting the server. They name the setting to change.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("refusing to serve on {addr}: {reason}")]
    Refused { addr: SocketAddr, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// PEM files of the server certificate.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `serve` needs besides the store.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// Allow plain HTTP outside loopback.
    pub insecure_http: bool,
    pub tokens_file: Option<PathBuf>,
    /// API requests per principal per minute; 0 disables the limit.
    pub rate_limit_per_minute: u32,
    /// The keystore is the fixed test KEK.
    pub test_mode: bool,
    /// How often, at most, the certificate files are checked for changes.
    pub cert_reload_check: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
    /// The web UI warns when the active KEK is older than this.
    pub ui_kek_max_age: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default listen address"),
            tls: None,
            insecure_http: false,
            tokens_file: None,
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            test_mode: false,
            cert_reload_check: CERT_RELOAD_CHECK,
            header_read_timeout: super::HEADER_READ_TIMEOUT,
            max_connections: super::MAX_CONNECTIONS,
            ui_kek_max_age: crate::ui::DEFAULT_KEK_MAX_AGE,
        }
    }
}

/// True for 127.0.0.0/8, ::1 and ::ffff:127.x.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

impl ServeConfig {
    /// Apply the start-up rules; returns the warnings to log.
    pub fn check(&self) -> Result<Vec<String>, ServerError> {
        let addr = self.listen;
        let refuse = |reason: &str| ServerError::Refused {
            addr,
            reason: reason.to_string(),
        };
        let loopback = is_loopback(addr.ip());
        let mut warnings = Vec::new();
        if self.test_mode && !loopback {
            return Err(refuse(
                "test mode (MLFLOW_SECRETS_TEST_MODE) encrypts with a fixed, public key and serves on loopback only",
            ));
        }
        if self.tokens_file.is_none() {
            if !loopback {
                return Err(refuse(
                    "a non-loopback address needs --auth-tokens-file (anonymous access is for loopback only)",
                ));
            }
            warnings.push(format!(
                "no --auth-tokens-file: every caller on {addr} is the principal 'local' with the admin role"
            ));
        }
        if self.tls.is_none() && !loopback {
            if !self.insecure_http {
                return Err(refuse(
                    "a non-loopback address needs TLS (--tls-cert and --tls-key), or --insecure-http behind a TLS-terminating proxy",
                ));
            }
            warnings.push(format!(
                "--insecure-http: serving plain HTTP on {addr}; tokens and values cross the network in clear unless a proxy adds TLS"
            ));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> ServeConfig {
        ServeConfig {
            listen: listen.parse().unwrap(),
            ..ServeConfig::default()
        }
    }

    #[test]
    fn bind_rules() {
        assert_eq!(cfg("127.0.0.1:1").check().unwrap().len(), 1);
        assert!(cfg("[::1]:1").check().is_ok());
        let e = cfg("0.0.0.0:1").check().unwrap_err().to_string();
        assert!(e.contains("--auth-tokens-file"), "{e}");
        let mut c = cfg("0.0.0.0:1");
        c.tokens_file = Some("/t".into());
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("TLS"), "{e}");
        c.insecure_http = true;
        assert_eq!(c.check().unwrap().len(), 1);
        c.test_mode = true;
        assert!(c.check().unwrap_err().to_string().contains("test mode"));
        let mut t = cfg("127.0.0.1:1");
        t.test_mode = true;
        assert!(t.check().is_ok());
    }
}
