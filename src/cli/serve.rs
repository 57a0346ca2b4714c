//! `mlflow-secrets serve`: resolve the configuration, open the store and
//! run the REST server (`crate::server`) until SIGTERM or SIGINT.
//!
//! On a fresh machine `serve` with nothing configured works: it listens on
//! 127.0.0.1:5005, and when neither a keystore nor a store was configured
//! it keeps both in a data directory (`--data-dir`, default
//! `$XDG_DATA_HOME/mlflow-secrets` or `./.mlflow-secrets`), creating the
//! keystore with a random passphrase file (mode 0600) on first start and
//! saying so on stderr. There is never a built-in passphrase.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use secrecy::SecretString;

use super::{Ctx, home};
use crate::keystore::watch::{self as keywatch, KEYSTORE_RELOAD_CHECK};
use crate::keystore::{
    self, Keystore, KeystoreConfig, KeystoreHandle, NewKekOptions, PASSPHRASE_FILE_ENV,
};
use crate::net::shutdown_signal;
use crate::net::tls::CERT_RELOAD_CHECK;
use crate::server::config::{DEFAULT_LISTEN, DEFAULT_RATE_LIMIT_PER_MINUTE};
use crate::server::{ServeConfig, Server, TlsFiles};
use crate::store::audit::export::{HeadCadence, log_head, spawn_head_export};
use crate::store::sql::Dialect;
use crate::store::{DecryptLimits, SqlStore};

pub use home::DATA_DIR_ENV;

const EXAMPLES: &str = "\
EXAMPLES:
  # A fresh machine: loopback, anonymous (principal 'local'), data in ./.mlflow-secrets
  mlflow-secrets serve
  # Production: tokens, TLS, any interface
  mlflow-secrets serve --listen 0.0.0.0:5005 --auth-tokens-file /etc/mlflow/tokens \\
      --tls-cert /etc/tls/tls.crt --tls-key /etc/tls/tls.key
  # Make a token (prints it once) and add the printed line to the tokens file
  mlflow-secrets token create --principal ci --role writer";

/// `serve` options.
#[derive(Args)]
#[command(after_help = EXAMPLES)]
pub struct ServeArgs {
    /// Address to listen on (an IP and port)
    #[arg(long, env = "MLFLOW_SECRETS_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Tokens file: one `<principal> <role> sha256:<hex> workspaces=<w,...>|*` line per token (reloaded on change; an invalid file admits no one)
    #[arg(long, env = "MLFLOW_SECRETS_AUTH_TOKENS_FILE", value_name = "FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// PEM certificate chain for TLS (reloaded on change)
    #[arg(
        long,
        env = "MLFLOW_SECRETS_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS
    #[arg(
        long,
        env = "MLFLOW_SECRETS_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only)
    #[arg(long)]
    pub insecure_http: bool,
    /// The web UI shows a "rotate the KEK" banner when the active KEK is older than this many days
    #[arg(
        long,
        env = "MLFLOW_SECRETS_UI_KEK_MAX_AGE_DAYS",
        value_name = "DAYS",
        default_value_t = 90
    )]
    pub ui_kek_max_age_days: u64,
    /// API requests per principal per minute (0: no limit)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE_LIMIT_PER_MINUTE)]
    pub rate_limit_per_minute: u32,
    /// Value decrypts per principal per minute (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub decrypt_limit_per_minute: u32,
    /// Value decrypts per workspace per minute (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 600)]
    pub decrypt_limit_per_workspace_per_minute: u32,
    /// Where the default keystore and SQLite database live when none is configured
    /// [default: $XDG_DATA_HOME/mlflow-secrets, else ./.mlflow-secrets]
    #[arg(long, env = DATA_DIR_ENV, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `serve` logs requests at info level unless told otherwise.
pub(super) fn default_log_level() -> Option<String> {
    match std::env::var("RUST_LOG") {
        Ok(s) if !s.is_empty() => None,
        _ => Some("info".into()),
    }
}

fn data_dir(a: &ServeArgs) -> PathBuf {
    home::dir(a.data_dir.as_deref())
}

/// Create the data directory, owner-only. An existing one must pass
/// [`home::check`]: another user may have planted it.
fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return home::check(dir);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

/// Write a new random passphrase (32 random bytes, base64url) to `path`,
/// mode 0600, refusing to overwrite anything.
fn write_random_passphrase(path: &Path) -> Result<SecretString> {
    use base64::Engine;
    use std::io::Write;
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut raw[..]).map_err(|e| anyhow::anyhow!("random passphrase: {e}"))?;
    let text =
        zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..]));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating passphrase file {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing passphrase file {}", path.display()))?;
    Ok(SecretString::from(text.to_string()))
}

/// Which keystore to use. An explicitly configured one (`--keystore`,
/// `MLFLOW_SECRETS_KEYSTORE_PATH`) is used as it is; otherwise an existing
/// keystore at the default path; otherwise the data directory's, created on
/// first start.
async fn resolve_keystore(ctx: &Ctx, dir: &Path) -> Result<KeystoreConfig> {
    if ctx.g.keystore.is_some() || keystore::test_mode_from_env() {
        return Ok(ctx.keystore_config());
    }
    // The same choice as the CLI's (`home::keystore_config`), so that the
    // CLI run here later opens this keystore.
    let Some(cfg) = home::keystore_config(dir) else {
        return Ok(KeystoreConfig::from_env(None));
    };
    let ks_dir = cfg.dir.clone();
    let pass_from_env = std::env::var_os(PASSPHRASE_FILE_ENV).is_some();
    ensure_private_dir(dir)?;
    if keystore::list_versions(&ks_dir)?.is_empty() {
        let pass_file = cfg.passphrase.file_for(1);
        let (pass, made) = if pass_file.exists() {
            (cfg.passphrase.read(1)?, false)
        } else if pass_from_env {
            bail!(
                "no keystore yet, and {PASSPHRASE_FILE_ENV} points at {}, which does not exist",
                pass_file.display()
            );
        } else {
            (write_random_passphrase(&pass_file)?, true)
        };
        let d = ks_dir.clone();
        tokio::task::spawn_blocking(move || {
            keystore::generate(&d, &pass, NewKekOptions::default())
        })
        .await
        .context("key derivation thread")??;
        eprintln!("Created a keystore (KEK version 1) at {}", ks_dir.display());
        if made {
            eprintln!(
                "with a new random passphrase in {} (mode 0600). Back up both: without the passphrase no secret can be decrypted.",
                pass_file.display()
            );
        }
    }
    Ok(cfg)
}

/// The store URI: as configured, or else the data directory's SQLite file
/// (unless the CLI's default file already exists here, which is then used
/// so that `serve` and the CLI see the same secrets: `home::default_store_uri`).
fn resolve_store_uri(ctx: &Ctx, dir: &Path) -> Result<String> {
    if ctx.store_explicit {
        return Ok(ctx.store_uri.clone());
    }
    let uri = home::default_store_uri(Some(dir));
    if home::is_home_db(dir, &uri) {
        ensure_private_dir(dir)?;
    }
    Ok(uri)
}

fn per_minute(n: u32) -> Option<u32> {
    (n > 0).then_some(n)
}

pub(super) async fn serve(ctx: &Ctx, a: ServeArgs) -> Result<ExitCode> {
    let test_mode = keystore::test_mode_from_env();
    let cfg = ServeConfig {
        listen: a.listen,
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        insecure_http: a.insecure_http,
        tokens_file: a.auth_tokens_file.clone(),
        rate_limit_per_minute: a.rate_limit_per_minute,
        test_mode,
        cert_reload_check: CERT_RELOAD_CHECK,
        ui_kek_max_age: Duration::from_secs(a.ui_kek_max_age_days.saturating_mul(86_400)),
        ..ServeConfig::default()
    };
    // Refuse a bad bind before creating anything on disk.
    cfg.check()?;
    let dir = data_dir(&a);
    let store_uri = resolve_store_uri(ctx, &dir)?;
    let Some(dialect) = Dialect::from_uri(&store_uri) else {
        bail!("serve needs a sqlite://, postgres:// or mysql:// store URI");
    };
    let ks_cfg = resolve_keystore(ctx, &dir).await?;
    let ks = Keystore::load_async(ks_cfg.clone()).await?;
    let handle = KeystoreHandle::new(ks);
    let store = SqlStore::connect(&store_uri, handle.clone()).await?;
    store.ensure_schema(dialect == Dialect::Sqlite).await?;
    let store = store.with_decrypt_limits(DecryptLimits {
        per_principal_per_minute: per_minute(a.decrypt_limit_per_minute),
        per_workspace_per_minute: per_minute(a.decrypt_limit_per_workspace_per_minute),
    });
    let head_export = spawn_head_export(store.clone(), HeadCadence::default(), log_head);
    let server = Server::bind(&cfg, store).await?;
    let _watch = keywatch::spawn(handle, ks_cfg, KEYSTORE_RELOAD_CHECK);
    let scheme = if server.is_tls() { "https" } else { "http" };
    eprintln!(
        "mlflow-secrets {} serving on {scheme}://{} ({} store)",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        dialect.name()
    );
    eprintln!("web UI: {scheme}://{}/secrets", server.local_addr());
    server.run(shutdown_signal()).await?;
    head_export.abort();
    // Give the log a moment to flush before the runtime goes away.
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(ExitCode::SUCCESS)
}
