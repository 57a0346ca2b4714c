//! The `mlflow-secrets` command (docs/design.md §9).
//!
//! `main.rs` parses [`Cli`] and calls [`run`]; everything else happens here.
//! This is the only layer that uses `anyhow`: the library's typed errors
//! become one line on stderr and exit code 1. Usage errors are clap's, with
//! exit code 2.
//!
//! Layout: [`args`] (clap types), [`secrets`] (secret and binding commands),
//! [`kek`] (the keystore), [`admin`] (verify, rewrap, migrate, audit,
//! completion), [`token`] (`token create`), [`serve`] (the REST server's
//! flags and start-up), [`operator`] (the operator's flags), [`input`]
//! (reading values), [`output`] (tables and JSON), [`logging`], and
//! [`alloc`] (the operator's malloc arena cap).

mod admin;
mod alloc;
pub(crate) mod args;
mod home;
mod input;
mod kek;
mod logging;
mod mlflow;
mod operator;
mod ops;
pub(crate) mod output;
mod run;
mod secrets;
mod serve;
mod token;

use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::{Result, bail};

pub use args::Cli;
use args::{AuditCommand, Command, GlobalArgs, KekCommand};

use crate::keystore::{Keystore, KeystoreConfig, KeystoreHandle};
use crate::store::sql::Dialect;
use crate::store::{HttpStore, SecretsStore, SqlStore};
use output::OutputFormat;

/// Tokio workers of a short command (everything but `serve` and
/// `operator`) unless `--worker-threads` says otherwise.
const SHORT_COMMAND_WORKERS: usize = 2;

/// Run a parsed command line. `Ok` carries the exit code: a command can
/// succeed in running and still report a failure (`verify` found a bad
/// row), which is exit 1 without an `error:` line of its own.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { global, command } = cli;
    let log_level = match &command {
        Command::Serve(_) | Command::Operator(_) => {
            global.log_level.clone().or_else(serve::default_log_level)
        }
        _ => global.log_level.clone(),
    };
    logging::init(global.log_format, log_level.as_deref(), global.quiet);
    if let Command::Completion(a) = &command {
        return admin::completion(a.shell);
    }
    if let Command::Crdgen(a) = &command {
        crate::k8s::crdgen::run(a)?;
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(command, Command::Operator(_)) {
        alloc::limit_malloc_arenas();
    }
    let long_running = matches!(command, Command::Serve(_) | Command::Operator(_));
    // `run` makes one request, then execs or supervises on threads of its
    // own: a runtime on the main thread starts fastest (docs/benchmarks.md).
    let mut rt = if matches!(command, Command::Run(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    match (global.worker_threads, long_running) {
        (Some(n), _) => {
            rt.worker_threads(n.get());
        }
        // The servers take tokio's default, one worker per CPU, so they
        // use the machine they are given.
        (None, true) => {}
        // A one-shot command waits on one request at a time: two workers
        // are plenty and start faster than one per CPU on a large host.
        (None, false) => {
            rt.worker_threads(SHORT_COMMAND_WORKERS);
        }
    }
    let rt = rt.enable_all().build()?;
    let creates_db = matches!(
        command,
        Command::Create(_)
            | Command::Migrate
            | Command::Serve(_)
            | Command::Operator(_)
            | Command::Mlflow(mlflow::MlflowCommand::Import(_))
    );
    let ctx = match Ctx::new(global, creates_db) {
        Ok(c) => c,
        // `run` fails with 125, so its command's own codes stay readable.
        Err(e) if matches!(command, Command::Run(_)) => return Ok(run::failed(&e)),
        Err(e) => return Err(e),
    };
    rt.block_on(dispatch(&ctx, command))
}

/// Print an error the way docs/design.md §9 asks: one line, `error: ` first. The
/// chain of causes is joined with `: `; line breaks inside a message (a
/// database driver's, say) are folded so a script sees a single line.
pub fn print_error(err: &anyhow::Error) {
    let msg = format!("{err:#}");
    let one_line: Vec<&str> = msg.split_whitespace().collect();
    eprintln!("error: {}", one_line.join(" "));
}

async fn dispatch(ctx: &Ctx, command: Command) -> Result<ExitCode> {
    match command {
        Command::Create(a) => secrets::create(ctx, a).await,
        Command::List(a) => secrets::list(ctx, a).await,
        Command::Get(a) => secrets::get(ctx, a).await,
        Command::Update(a) => secrets::update(ctx, a).await,
        Command::Revoke(a) => secrets::revoke(ctx, a).await,
        Command::Delete(a) => secrets::delete(ctx, a).await,
        Command::Bind(a) => secrets::bind(ctx, a).await,
        Command::Unbind(a) => secrets::unbind(ctx, a).await,
        Command::ListBindings(a) => secrets::list_bindings(ctx, a).await,
        Command::Verify => admin::verify(ctx).await,
        Command::Rewrap(a) => admin::rewrap(ctx, a).await,
        Command::Migrate => admin::migrate(ctx).await,
        Command::Audit(AuditCommand::Verify(a)) => admin::audit_verify(ctx, a.head).await,
        Command::Kek(k) => match k {
            KekCommand::Generate(a) => kek::generate(ctx, a).await,
            KekCommand::Rotate(a) => kek::rotate(ctx, a).await,
            KekCommand::List => kek::list(ctx).await,
            KekCommand::SetActive(a) => kek::set_active(ctx, a.version).await,
            KekCommand::Retire(a) => kek::retire(ctx, a).await,
        },
        Command::Completion(a) => admin::completion(a.shell),
        Command::Serve(a) => serve::serve(ctx, a).await,
        Command::Backup(a) => ops::backup(ctx, a).await,
        Command::Restore(a) => ops::restore(ctx, a).await,
        Command::Doctor(a) => ops::doctor(ctx, a).await,
        Command::Token(t) => token::run(ctx, t),
        Command::Mlflow(c) => mlflow::run(ctx, c).await,
        Command::Operator(a) => operator::run(ctx, *a).await,
        Command::Run(a) => run::run(ctx, a).await,
        Command::Crdgen(_) => unreachable!("crdgen runs before the runtime starts"),
    }
}

/// What every command needs: the global options, and the ways to reach the
/// keystore and the store built from them.
pub(crate) struct Ctx {
    g: GlobalArgs,
    /// The store in force: `--store-uri` / `MLFLOW_SECRETS_STORE_URI`, else
    /// the local home's database or the default file (docs/design.md §9).
    store_uri: String,
    /// True when the store was named (flag or environment), not defaulted.
    store_explicit: bool,
    /// The local home, when one exists (docs/design.md §5).
    home: Option<PathBuf>,
    /// Whether this command may create a missing SQLite database: only
    /// `create`, `migrate`, `serve` and `operator` (docs/design.md §9).
    creates_db: bool,
}

impl Ctx {
    /// Resolve the store and the home, and refuse what no command may do:
    /// test mode against a shared store, or a home another user could have
    /// planted.
    fn new(g: GlobalArgs, creates_db: bool) -> Result<Self> {
        let home_dir = home::dir(None);
        let home = home_dir.is_dir().then_some(home_dir);
        let (store_uri, store_explicit) = match &g.store_uri {
            Some(u) => (u.clone(), true),
            None => (home::default_store_uri(home.as_deref()), false),
        };
        let ctx = Self {
            g,
            store_uri,
            store_explicit,
            home,
            creates_db,
        };
        if let Some(h) = &ctx.home
            && (home::is_home_db(h, &ctx.store_uri)
                || ctx.keystore_config().dir == home::keystore_dir(h))
        {
            home::check(h)?;
        }
        if crate::keystore::test_mode_from_env()
            && let Some(why) = crate::keystore::test_mode_refuses_store(&ctx.store_uri)
        {
            bail!("{why}");
        }
        Ok(ctx)
    }

    fn json(&self) -> bool {
        self.g.output == OutputFormat::Json
    }

    /// Confirmations are for people: not with `-o json`, not with `-q`.
    fn chatty(&self) -> bool {
        !self.json() && !self.g.quiet
    }

    fn workspace(&self) -> &str {
        self.g
            .workspace
            .last()
            .map(String::as_str)
            .unwrap_or(crate::model::DEFAULT_WORKSPACE)
    }

    /// The keystore: `--keystore` / `MLFLOW_SECRETS_KEYSTORE_PATH` (or
    /// test mode) as configured; otherwise the default path if it holds
    /// keys, else the local home's (as `serve` chooses).
    fn keystore_config(&self) -> KeystoreConfig {
        if self.g.keystore.is_some() || crate::keystore::test_mode_from_env() {
            return KeystoreConfig::from_env(self.g.keystore.clone());
        }
        if let Some(cfg) = self.home.as_deref().and_then(home::keystore_config) {
            return cfg;
        }
        KeystoreConfig::from_env(None)
    }

    /// Load and verify the keystore (PBKDF2 runs on a blocking thread).
    async fn load_keystore(&self) -> Result<Keystore> {
        let cfg = self.keystore_config();
        // The keystore logs its own test-mode warning; say it here only when
        // the log filter would hide that one, so it is printed exactly once.
        let warn_logged = tracing::level_filters::LevelFilter::current()
            >= tracing::level_filters::LevelFilter::WARN;
        if cfg.test_mode && !warn_logged {
            eprintln!(
                "WARNING: {} is on: secrets are encrypted with a fixed, publicly known test key. \
                 Never use test mode for real secrets.",
                crate::keystore::TEST_MODE_ENV
            );
        }
        Ok(Keystore::load_async(cfg).await?)
    }

    /// Connect to the store with an already loaded keystore, without
    /// touching the schema (for `migrate`).
    async fn connect(&self, ks: Keystore) -> Result<SqlStore> {
        let keys = KeystoreHandle::new(ks);
        let store = if self.creates_db {
            SqlStore::connect(&self.store_uri, keys).await?
        } else {
            SqlStore::connect_existing(&self.store_uri, keys).await?
        };
        Ok(store)
    }

    /// Load the keystore and open the store with a current schema. SQLite
    /// (the embedded default) migrates itself; a shared PostgreSQL or MySQL
    /// database is only migrated by `migrate`, so this errors instead.
    async fn open_store(&self) -> Result<SqlStore> {
        self.check_store_uri()?;
        let ks = self.load_keystore().await?;
        self.open_store_with(ks).await
    }

    /// Open the store behind the secret and binding commands: a server for
    /// `http(s)://` (which encrypts on its side, so no keystore is loaded
    /// here), otherwise the database, with the keystore only when
    /// `needs_keys`.
    async fn open_api(&self, needs_keys: bool) -> Result<Box<dyn SecretsStore>> {
        let uri = self.store_uri.as_str();
        if is_server_uri(uri) {
            let token = read_token(self.g.token_file.as_deref())?;
            return Ok(Box::new(HttpStore::new(
                uri,
                token,
                self.g.ca_cert.as_deref(),
            )?));
        }
        Ok(if needs_keys {
            Box::new(self.open_store().await?)
        } else {
            Box::new(self.open_store_metadata().await?)
        })
    }

    /// Open the store for a command that never encrypts or decrypts
    /// (`list`, `get`, `bind`, `revoke`, `delete`, `audit verify`, ...): no
    /// keystore or passphrase is needed, and no key is derived.
    async fn open_store_metadata(&self) -> Result<SqlStore> {
        self.check_store_uri()?;
        self.open_store_with(Keystore::metadata_only()).await
    }

    /// [`Ctx::open_store`] with a keystore the caller already loaded.
    async fn open_store_with(&self, ks: Keystore) -> Result<SqlStore> {
        let dialect = self.check_store_uri()?;
        let store = self.connect(ks).await?;
        store.ensure_schema(dialect == Dialect::Sqlite).await?;
        Ok(store)
    }

    /// Refuse store URIs this build cannot open before doing any work. The
    /// URI itself is never echoed: it may carry a database password.
    fn check_store_uri(&self) -> Result<Dialect> {
        let uri = self.store_uri.as_str();
        if is_server_uri(uri) {
            bail!(
                "this command needs direct database access: use a sqlite://, postgres:// or mysql:// store URI, not a server"
            );
        }
        match Dialect::from_uri(uri) {
            Some(d) => Ok(d),
            None => bail!(
                "unsupported store URI: it must start with sqlite://, postgres://, mysql:// or http(s)://"
            ),
        }
    }
}

fn is_server_uri(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The bearer token for a server store: `--token-file`, else
/// `MLFLOW_SECRETS_TOKEN`. One trailing newline is stripped. Anonymous
/// access (no token) is left for the server to accept or refuse.
fn read_token(file: Option<&std::path::Path>) -> Result<Option<secrecy::SecretString>> {
    use anyhow::Context;
    let raw = match file {
        Some(f) => zeroize::Zeroizing::new(
            std::fs::read_to_string(f).with_context(|| format!("token file {}", f.display()))?,
        ),
        None => match std::env::var(crate::store::http::TOKEN_ENV) {
            Ok(t) => zeroize::Zeroizing::new(t),
            Err(_) => return Ok(None),
        },
    };
    let t = raw.strip_suffix('\n').unwrap_or(&raw);
    let t = t.strip_suffix('\r').unwrap_or(t);
    if t.is_empty() {
        bail!("the bearer token is empty");
    }
    Ok(Some(secrecy::SecretString::from(t)))
}

/// The principal recorded for direct database use: `cli:<OS user>`.
fn actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.trim().is_empty());
    format!("cli:{}", user.as_deref().unwrap_or("unknown"))
}
