//! KEK versions on disk: list them, and generate, rotate, activate and
//! retire them (the `kek` commands). Each change writes one file
//! atomically; a retired version's file stays, so rows still on it are
//! named by `verify` instead of failing silently.

use std::path::Path;

use secrecy::SecretString;

use super::file::{self, KekFile, KekState};
use super::{KekInfo, KeystoreConfig, KeystoreError, derive_checked, list_files};
use crate::crypto::{self, DEFAULT_ITERATIONS, kdf};

/// The versions in `dir` as their files describe them, without deriving any
/// key (so it works with a missing or wrong passphrase).
pub fn list_versions(dir: &Path) -> Result<Vec<KekInfo>, KeystoreError> {
    list_files(dir)?
        .into_iter()
        .map(|(version, f)| {
            let salt = f.salt_bytes(&file::path_for(dir, version))?;
            Ok(KekInfo {
                version,
                state: f.state,
                iterations: f.iterations,
                created_at: f.created_at,
                default_salt: salt == crypto::default_salt(version),
            })
        })
        .collect()
}

/// The version `rotate` will create: one more than the highest in `dir`.
pub fn next_version(dir: &Path) -> Result<u32, KeystoreError> {
    list_files(dir)?
        .keys()
        .max()
        .map(|v| v + 1)
        .ok_or_else(|| KeystoreError::Missing {
            dir: dir.to_path_buf(),
        })
}

/// Options for a new KEK version.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewKekOptions {
    /// A random 16-byte salt instead of the MLflow-compatible default.
    pub random_salt: bool,
}

fn new_kek_file(
    version: u32,
    passphrase: &SecretString,
    opts: NewKekOptions,
    state: KekState,
) -> Result<KekFile, KeystoreError> {
    let salt = if opts.random_salt {
        let mut s = vec![0u8; 16];
        crypto::random_bytes(&mut s)?;
        s
    } else {
        crypto::default_salt(version)
    };
    let kek = kdf::derive_kek_cached(version, passphrase, &salt, DEFAULT_ITERATIONS);
    let check = kek.seal_no_aad(file::CHECK_LABEL)?;
    Ok(KekFile {
        version,
        kdf: file::KDF_PBKDF2_SHA256.to_string(),
        iterations: DEFAULT_ITERATIONS,
        salt: KekFile::encode_b64(&salt),
        created_at: crate::model::now_ms(),
        state,
        check_value: KekFile::encode_b64(&check),
    })
}

/// Create a keystore with version 1 active. Refuses an existing keystore.
pub fn generate(
    dir: &Path,
    passphrase: &SecretString,
    opts: NewKekOptions,
) -> Result<KekFile, KeystoreError> {
    if !list_files(dir)?.is_empty() {
        return Err(KeystoreError::AlreadyExists {
            dir: dir.to_path_buf(),
        });
    }
    file::ensure_dir(dir)?;
    let f = new_kek_file(1, passphrase, opts, KekState::Active)?;
    file::write_atomic(dir, &f)?;
    Ok(f)
}

/// Add version max+1 and make it active; the previous active version
/// becomes `decrypt_only` so existing rows stay readable until rewrapped.
///
/// Order matters for crash safety: the new file is written (active) before
/// the old one is demoted, so a crash in between leaves two active versions,
/// which `load` reports with the command that fixes it, and never zero.
pub fn rotate(
    dir: &Path,
    passphrase: &SecretString,
    opts: NewKekOptions,
) -> Result<KekFile, KeystoreError> {
    let files = list_files(dir)?;
    let f = new_kek_file(next_version(dir)?, passphrase, opts, KekState::Active)?;
    file::write_atomic(dir, &f)?;
    for old in files.values().filter(|o| o.state == KekState::Active) {
        let mut old = old.clone();
        old.state = KekState::DecryptOnly;
        file::write_atomic(dir, &old)?;
    }
    Ok(f)
}

/// Make `version` the active version. Its passphrase must verify first, so
/// a typo cannot switch writes to a key nobody can reproduce.
pub fn set_active(config: &KeystoreConfig, version: u32) -> Result<(), KeystoreError> {
    let files = list_files(&config.dir)?;
    let target = files
        .get(&version)
        .ok_or(KeystoreError::UnknownVersion(version))?;
    if target.state == KekState::Retired {
        return Err(KeystoreError::Retired(version));
    }
    let path = file::path_for(&config.dir, version);
    let pass = config.passphrase.read(version)?;
    derive_checked(
        version,
        &pass,
        &target.salt_bytes(&path)?,
        target.iterations,
        target,
        &path,
    )?;
    let mut t = target.clone();
    t.state = KekState::Active;
    file::write_atomic(&config.dir, &t)?;
    for other in files
        .values()
        .filter(|o| o.version != version && o.state == KekState::Active)
    {
        let mut o = other.clone();
        o.state = KekState::DecryptOnly;
        file::write_atomic(&config.dir, &o)?;
    }
    Ok(())
}

/// Retire `version`. `rows_using` is the number of secrets still wrapped
/// under it (from the store); any at all refuses the retirement.
pub fn retire(dir: &Path, version: u32, rows_using: u64) -> Result<(), KeystoreError> {
    let files = list_files(dir)?;
    let f = files
        .get(&version)
        .ok_or(KeystoreError::UnknownVersion(version))?;
    if f.state == KekState::Active {
        return Err(KeystoreError::RetireActive(version));
    }
    if rows_using > 0 {
        return Err(KeystoreError::InUse {
            version,
            rows: rows_using,
        });
    }
    let mut f = f.clone();
    f.state = KekState::Retired;
    file::write_atomic(dir, &f)?;
    Ok(())
}
