//! `kek generate | rotate | list | set-active | retire` (docs/design.md §5, §9).
//!
//! A passphrase comes from `--passphrase-file`, `--passphrase-stdin` or the
//! configured source (`MLFLOW_SECRETS_KEK_PASSPHRASE_FILE`), never from an
//! argument, and is never printed. When a flag supplied it, we check that
//! the configured source will give the same passphrase later: otherwise the
//! new version cannot be loaded, and the user should hear that now rather
//! than at the next deploy.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::keystore::passphrase::{read_passphrase_file, read_passphrase_stdin};
use crate::keystore::{
    self, KekFile, KekInfo, KekState, KeystoreConfig, KeystoreError, NewKekOptions,
    PASSPHRASE_FILE_ENV, file,
};

use super::Ctx;
use super::args::{KekNewArgs, PassphraseArgs, RetireArgs, STORE_URI_ENV};
use super::output::{emit, emit_json, emit_table, fmt_time, table};

fn read_passphrase(a: &PassphraseArgs, cfg: &KeystoreConfig, version: u32) -> Result<SecretString> {
    Ok(if let Some(p) = &a.passphrase_file {
        read_passphrase_file(p)?
    } else if a.passphrase_stdin {
        read_passphrase_stdin()?
    } else {
        cfg.passphrase.read(version)?
    })
}

fn from_flag(a: &PassphraseArgs) -> bool {
    a.passphrase_file.is_some() || a.passphrase_stdin
}

/// Warn when the configured passphrase source will not give `pass` for
/// `version`, saying where it must go.
fn warn_if_source_differs(cfg: &KeystoreConfig, version: u32, pass: &SecretString) {
    let src = cfg.passphrase.path();
    let problem = match cfg.passphrase.read(version) {
        Ok(p) if p.expose_secret() == pass.expose_secret() => return,
        Ok(_) => "holds a different passphrase",
        Err(KeystoreError::PassphraseMissing { .. }) => "does not exist",
        Err(_) => "cannot be read",
    };
    let target = cfg.passphrase.file_for(version);
    let alternative = if src.is_dir() {
        String::new()
    } else {
        format!(
            " (or make it a directory holding {}/v{version})",
            src.display()
        )
    };
    eprintln!(
        "warning: the keystore reads the passphrase of KEK version {version} from {} \
         ({PASSPHRASE_FILE_ENV}), which {problem}: store the passphrase there{alternative} \
         before the keystore is loaded",
        target.display()
    );
}

/// Report a newly written version.
fn report_new(ctx: &Ctx, cfg: &KeystoreConfig, f: &KekFile, what: &str) -> Result<()> {
    let path = file::path_for(&cfg.dir, f.version);
    if ctx.json() {
        return emit_json(&json!({
            "version": f.version,
            "path": path,
            "state": f.state.as_str(),
        }));
    }
    if ctx.chatty() {
        emit(&format!(
            "{what} KEK version {} ({}) at {}",
            f.version,
            f.state.as_str(),
            path.display()
        ))?;
    }
    Ok(())
}

pub(super) async fn generate(ctx: &Ctx, a: KekNewArgs) -> Result<ExitCode> {
    let cfg = ctx.keystore_config();
    let pass = read_passphrase(&a.passphrase, &cfg, 1)?;
    if from_flag(&a.passphrase) {
        warn_if_source_differs(&cfg, 1, &pass);
    }
    let dir = cfg.dir.clone();
    let opts = NewKekOptions {
        random_salt: a.random_salt,
    };
    let f = tokio::task::spawn_blocking(move || keystore::generate(&dir, &pass, opts))
        .await
        .context("key derivation thread")??;
    report_new(ctx, &cfg, &f, "Created")?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn rotate(ctx: &Ctx, a: KekNewArgs) -> Result<ExitCode> {
    let cfg = ctx.keystore_config();
    let next = keystore::next_version(&cfg.dir)?;
    let pass = read_passphrase(&a.passphrase, &cfg, next)?;
    if from_flag(&a.passphrase) {
        warn_if_source_differs(&cfg, next, &pass);
    }
    let dir = cfg.dir.clone();
    let opts = NewKekOptions {
        random_salt: a.random_salt,
    };
    let f = tokio::task::spawn_blocking(move || keystore::rotate(&dir, &pass, opts))
        .await
        .context("key derivation thread")??;
    report_new(ctx, &cfg, &f, "Created")?;
    if ctx.chatty() {
        emit(
            "Existing secrets stay on their old version until you run `mlflow-secrets rewrap --all`.",
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list(ctx: &Ctx) -> Result<ExitCode> {
    // Reads the files only: no key is derived, so a missing or wrong
    // passphrase does not stop anyone from seeing their keystore.
    let cfg = ctx.keystore_config();
    let infos: Vec<KekInfo> = if cfg.test_mode {
        crate::keystore::Keystore::test_mode()
            .versions()
            .cloned()
            .collect()
    } else {
        keystore::list_versions(&cfg.dir)?
    };
    if infos.is_empty() && !cfg.test_mode {
        return Err(KeystoreError::Missing { dir: cfg.dir }.into());
    }
    let dir: Option<PathBuf> = (!cfg.test_mode).then(|| cfg.dir.clone());
    // Counts are a bonus: a store that cannot be opened still lets people
    // see their keystore.
    let counts = match ctx.open_store_metadata().await {
        Ok(store) => match store.kek_version_counts().await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warning: cannot count secrets per KEK version: {e}");
                None
            }
        },
        Err(e) => {
            eprintln!("warning: cannot open the store to count secrets per KEK version: {e:#}");
            None
        }
    };
    let count_of = |v: u32| counts.as_ref().map(|c| c.get(&v).copied().unwrap_or(0));
    if let Some(c) = &counts {
        for (v, n) in c {
            if !infos.iter().any(|i| i.version == *v) {
                eprintln!(
                    "warning: {n} secret(s) use KEK version {v}, which is not in this keystore"
                );
            }
        }
    }
    if ctx.json() {
        let rows: Vec<_> = infos
            .iter()
            .map(|i| {
                json!({
                    "version": i.version,
                    "state": i.state.as_str(),
                    "salt": salt_kind(i),
                    "iterations": i.iterations,
                    "created_at": i.created_at,
                    "secrets": count_of(i.version),
                })
            })
            .collect();
        emit_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "VERSION",
        "STATE",
        "SALT",
        "ITERATIONS",
        "CREATED",
        "SECRETS",
    ]);
    for i in &infos {
        t.add_row(vec![
            i.version.to_string(),
            i.state.as_str().to_string(),
            salt_kind(i).to_string(),
            i.iterations.to_string(),
            fmt_time(i.created_at),
            count_of(i.version).map_or_else(|| "?".to_string(), |n| n.to_string()),
        ]);
    }
    emit_table(&t)?;
    if let (Some(d), true) = (dir, ctx.chatty()) {
        emit(&format!("\nKeystore: {}", d.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn salt_kind(i: &KekInfo) -> &'static str {
    if i.default_salt { "default" } else { "random" }
}

pub(super) async fn set_active(ctx: &Ctx, version: u32) -> Result<ExitCode> {
    let cfg = ctx.keystore_config();
    tokio::task::spawn_blocking(move || keystore::set_active(&cfg, version))
        .await
        .context("key derivation thread")??;
    if ctx.json() {
        emit_json(&json!({ "version": version, "state": KekState::Active.as_str() }))?;
    } else if ctx.chatty() {
        emit(&format!(
            "KEK version {version} is now active. Run `mlflow-secrets rewrap --all` to move existing secrets to it."
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Retire a version. The row count that allows it must come from the real
/// store: one named explicitly, that exists and holds secrets (security
/// review finding 9: a default, freshly created database counted zero rows
/// and let a key still in use be retired).
pub(super) async fn retire(ctx: &Ctx, a: RetireArgs) -> Result<ExitCode> {
    let version = a.version;
    if !ctx.store_explicit {
        bail!(
            "kek retire needs the store named explicitly (--store-uri or {STORE_URI_ENV}): it counts the secrets still on KEK version {version} there, and a default store would count none"
        );
    }
    let cfg = ctx.keystore_config();
    let store = ctx.open_store_metadata().await?;
    if store.count_secrets().await? == 0 && !a.empty_store_ok {
        bail!(
            "the store holds no secret at all, so it is probably not the one that uses this keystore: refusing to retire KEK version {version} (pass --empty-store-ok if the store really is empty)"
        );
    }
    let rows = store
        .kek_version_counts()
        .await?
        .get(&version)
        .copied()
        .unwrap_or(0);
    keystore::retire(&cfg.dir, version, rows)?;
    if ctx.json() {
        emit_json(&json!({ "version": version, "state": KekState::Retired.as_str() }))?;
    } else if ctx.chatty() {
        emit(&format!("Retired KEK version {version}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
