//! The local home `./.mlflow-secrets/` (docs/design.md §5, §9): where `serve` keeps
//! the keystore, the passphrase file and the SQLite database when nothing
//! else is configured, and where the CLI run in the same directory finds
//! them, so that `serve` and `mlflow-secrets list` see one store.
//!
//! Whatever is taken from a home is checked first, as ssh checks `~/.ssh`:
//! the home, its keystore directory, passphrase file and database must be
//! owned by the current user and not writable by group or others.
//! Otherwise another local user could plant a keystore and a passphrase
//! they know, and read every secret encrypted under it (security review
//! finding 17).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::keystore::{
    self, DEFAULT_KEYSTORE_PATH, KeystoreConfig, PASSPHRASE_FILE_ENV, PassphraseSource,
};

use super::args::DEFAULT_STORE_URI;

/// Environment variable naming the home (`serve --data-dir`).
pub const DATA_DIR_ENV: &str = "MLFLOW_SECRETS_DATA_DIR";
/// The SQLite file of the CLI's default store, in the working directory.
pub const CLI_DEFAULT_DB: &str = "mlflow-secrets.db";
/// The database file inside a home.
const HOME_DB: &str = "mlflow-secrets.db";

/// The home: `flag` (`serve --data-dir`), else `MLFLOW_SECRETS_DATA_DIR`,
/// else `$XDG_DATA_HOME/mlflow-secrets`, else `./.mlflow-secrets`.
pub fn dir(flag: Option<&Path>) -> PathBuf {
    if let Some(d) = flag {
        return d.to_path_buf();
    }
    if let Some(d) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("mlflow-secrets"),
        _ => PathBuf::from(".mlflow-secrets"),
    }
}

/// The keystore directory of a home.
pub fn keystore_dir(home: &Path) -> PathBuf {
    home.join("keystore")
}

/// The passphrase file of a home.
pub fn passphrase_file(home: &Path) -> PathBuf {
    home.join("kek-passphrase")
}

/// The store URI of a home's database.
pub fn db_uri(home: &Path) -> String {
    format!("sqlite://{}", home.join(HOME_DB).display())
}

/// True when `store_uri` is the database of `home`.
pub fn is_home_db(home: &Path, store_uri: &str) -> bool {
    store_uri == db_uri(home)
}

/// The store when none is configured: the CLI's default file if it exists
/// here (an older setup), else the home's database if there is a home, else
/// the default file.
pub fn default_store_uri(home: Option<&Path>) -> String {
    match home {
        Some(h) if !Path::new(CLI_DEFAULT_DB).exists() => db_uri(h),
        _ => DEFAULT_STORE_URI.to_string(),
    }
}

/// The keystore when none is configured (`--keystore`,
/// `MLFLOW_SECRETS_KEYSTORE_PATH`, test mode): the default
/// `/etc/mlflow/keystore` if it holds keys, else the home's keystore with
/// the home's passphrase file (unless `MLFLOW_SECRETS_KEK_PASSPHRASE_FILE`
/// names another). `None` when neither applies.
pub fn keystore_config(home: &Path) -> Option<KeystoreConfig> {
    let default_has_keys = keystore::list_versions(Path::new(DEFAULT_KEYSTORE_PATH))
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    if default_has_keys {
        return None;
    }
    let passphrase = if std::env::var_os(PASSPHRASE_FILE_ENV).is_some() {
        PassphraseSource::from_env()
    } else {
        PassphraseSource::new(passphrase_file(home))
    };
    Some(KeystoreConfig {
        dir: keystore_dir(home),
        passphrase,
        test_mode: false,
    })
}

/// Refuse a home whose directory, keystore, passphrase file or database is
/// not the current user's, or is writable by group or others. Paths that
/// do not exist yet are fine (`serve` creates them, owner-only).
pub fn check(home: &Path) -> Result<()> {
    check_private(home, "local home")?;
    check_private(&keystore_dir(home), "keystore directory")?;
    check_private(&passphrase_file(home), "passphrase file")?;
    check_private(&home.join(HOME_DB), "database")?;
    warn_if_readable(&passphrase_file(home));
    Ok(())
}

/// A passphrase file others can read is a leak, though not a plant: say so
/// (as ssh does for a private key), without refusing a working setup.
fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.mode() & 0o044 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the passphrase file is readable by group or others: run `chmod 600` on it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// One path of [`check`].
pub fn check_private(path: &Path, what: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => bail!("cannot check {what} {}: {e}", path.display()),
        };
        if meta.file_type().is_symlink() {
            bail!(
                "refusing the {what} {}: it is a symbolic link; a home must hold its own files",
                path.display()
            );
        }
        if let Some(me) = current_uid()
            && meta.uid() != me
        {
            bail!(
                "refusing the {what} {}: it is owned by uid {}, not by the current user (uid {me}); another user could have planted it",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "refusing the {what} {}: it is writable by group or others (mode {:o}); run `chmod go-w {}`",
                path.display(),
                meta.mode() & 0o7777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// The effective uid of this process: the owner of `/proc/self` (Linux).
/// Elsewhere `None`, and only the mode is checked.
#[cfg(unix)]
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_group_or_world_writable_home_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        check(&home).unwrap();
        std::fs::write(passphrase_file(&home), "p").unwrap();
        std::fs::set_permissions(
            passphrase_file(&home),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let e = check(&home).unwrap_err().to_string();
        assert!(
            e.contains("passphrase file") && e.contains("writable"),
            "{e}"
        );
        std::fs::set_permissions(
            passphrase_file(&home),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&home).unwrap_err().to_string();
        assert!(e.contains("local home") && e.contains("777"), "{e}");
    }

    #[test]
    fn a_symlinked_keystore_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/tmp", keystore_dir(&home)).unwrap();
        let e = check(&home).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
    }
}
