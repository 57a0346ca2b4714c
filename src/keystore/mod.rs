//! The versioned KEK keystore (docs/design.md §5).
//!
//! A keystore is a directory of `kek-v<N>.json` files plus a passphrase
//! source. Loading derives every non-retired KEK (PBKDF2, cached per
//! process) and checks it against the file's check value, so a wrong
//! passphrase fails here, once, naming the version — not later on every
//! secret.
//!
//! [`KeystoreHandle`] is what long-running processes share: it can be
//! swapped for a freshly loaded keystore when the projected volume changes,
//! without a restart.

pub(crate) mod file;
pub(crate) mod passphrase;
mod versions;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, Kek, kdf};
pub use file::{KekFile, KekState};
pub use passphrase::{PASSPHRASE_FILE_ENV, PassphraseSource};
pub use versions::{
    NewKekOptions, generate, list_versions, next_version, retire, rotate, set_active,
};

/// Environment variable naming the keystore directory.
pub const KEYSTORE_PATH_ENV: &str = "MLFLOW_SECRETS_KEYSTORE_PATH";
/// Default keystore directory (where the Helm chart mounts it).
pub const DEFAULT_KEYSTORE_PATH: &str = "/etc/mlflow/keystore";
/// Set to `1` to use a fixed, insecure test KEK instead of a keystore.
pub const TEST_MODE_ENV: &str = "MLFLOW_SECRETS_TEST_MODE";

/// Errors of the keystore layer. They name files and versions, never a
/// passphrase or key.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error(
        "no keystore at {dir}: create one with `mlflow-secrets kek generate` (or point {KEYSTORE_PATH_ENV} / --keystore at an existing one)"
    )]
    Missing { dir: PathBuf },
    #[error("keystore already exists at {dir}: use `mlflow-secrets kek rotate` to add a version")]
    AlreadyExists { dir: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid keystore file {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("wrong passphrase for KEK version {version}")]
    WrongPassphrase { version: u32 },
    #[error(
        "no passphrase for KEK version {version}: {path} does not exist (set {PASSPHRASE_FILE_ENV} to a file, or to a directory of v<N> files)"
    )]
    PassphraseMissing { version: u32, path: PathBuf },
    #[error("passphrase file {path} is empty")]
    PassphraseEmpty { path: PathBuf },
    #[error("passphrase file {path} is not valid UTF-8")]
    PassphraseNotUtf8 { path: PathBuf },
    #[error(
        "keystore {dir} has no active KEK version: run `mlflow-secrets kek set-active --version N`"
    )]
    NoActive { dir: PathBuf },
    #[error(
        "keystore {dir} has more than one active KEK version ({versions:?}): run `mlflow-secrets kek set-active --version N`"
    )]
    MultipleActive { dir: PathBuf, versions: Vec<u32> },
    #[error("KEK version {0} does not exist in the keystore")]
    UnknownVersion(u32),
    #[error("KEK version {0} is retired")]
    Retired(u32),
    #[error(
        "KEK version {version} cannot be retired: {rows} secret(s) still use it (run `mlflow-secrets rewrap --kek-version {version}` first)"
    )]
    InUse { version: u32, rows: u64 },
    #[error("KEK version {0} is the active version and cannot be retired")]
    RetireActive(u32),
    #[error("no KEK is loaded: this operation needs the keystore")]
    NotLoaded,
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

/// Where to find the keystore and its passphrases.
#[derive(Debug, Clone)]
pub struct KeystoreConfig {
    pub dir: PathBuf,
    pub passphrase: PassphraseSource,
    pub test_mode: bool,
}

impl KeystoreConfig {
    /// From the environment, with an optional `--keystore` override.
    pub fn from_env(dir_override: Option<PathBuf>) -> Self {
        let dir = dir_override
            .or_else(|| std::env::var_os(KEYSTORE_PATH_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEYSTORE_PATH));
        Self {
            dir,
            passphrase: PassphraseSource::from_env(),
            test_mode: test_mode_from_env(),
        }
    }
}

/// True when `MLFLOW_SECRETS_TEST_MODE` is `1` or `true`.
pub fn test_mode_from_env() -> bool {
    matches!(
        std::env::var(TEST_MODE_ENV).as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE")
    )
}

/// One version as loaded.
#[derive(Debug, Clone)]
pub struct KekInfo {
    pub version: u32,
    pub state: KekState,
    pub iterations: u32,
    pub created_at: i64,
    /// True when the salt is the default MLflow-compatible scheme.
    pub default_salt: bool,
}

/// The KEK version of test mode. No real keystore has it (files are
/// `kek-v<N>.json` with N from 1), so a row sealed under the public test
/// key can never pass for a real one, and a real keystore never opens it
/// (security review finding 10).
pub const TEST_MODE_KEK_VERSION: u32 = 0;

/// Why test mode refuses a store, or `None` when the store may be used in
/// test mode: only SQLite. A PostgreSQL or MySQL database, or a server, is
/// where real secrets live; rows under the public test key must never get
/// there (docs/design.md §5). Every command checks this before opening a store.
pub fn test_mode_refuses_store(store_uri: &str) -> Option<String> {
    let kind = if store_uri.starts_with("postgres://") || store_uri.starts_with("postgresql://") {
        "a PostgreSQL"
    } else if store_uri.starts_with("mysql://") || store_uri.starts_with("mariadb://") {
        "a MySQL"
    } else if store_uri.starts_with("http://") || store_uri.starts_with("https://") {
        "an http(s)"
    } else {
        return None;
    };
    Some(format!(
        "test mode ({TEST_MODE_ENV}=1) is refused with {kind} store: it encrypts with a fixed, publicly known key, for local SQLite experiments only; unset {TEST_MODE_ENV}"
    ))
}

/// A loaded keystore: the derived KEKs of every non-retired version.
#[derive(Debug)]
pub struct Keystore {
    dir: Option<PathBuf>,
    keks: BTreeMap<u32, Arc<Kek>>,
    info: BTreeMap<u32, KekInfo>,
    active: u32,
    test_mode: bool,
}

impl Keystore {
    /// Load and verify. Blocking (PBKDF2): async code calls
    /// [`Keystore::load_async`].
    pub fn load(config: &KeystoreConfig) -> Result<Self, KeystoreError> {
        if config.test_mode {
            return Ok(Self::test_mode());
        }
        let files = list_files(&config.dir)?;
        if files.is_empty() {
            return Err(KeystoreError::Missing {
                dir: config.dir.clone(),
            });
        }
        let actives: Vec<u32> = files
            .values()
            .filter(|f| f.state == KekState::Active)
            .map(|f| f.version)
            .collect();
        let active = match actives.as_slice() {
            [one] => *one,
            [] => {
                return Err(KeystoreError::NoActive {
                    dir: config.dir.clone(),
                });
            }
            _ => {
                return Err(KeystoreError::MultipleActive {
                    dir: config.dir.clone(),
                    versions: actives,
                });
            }
        };
        let mut keks = BTreeMap::new();
        let mut info = BTreeMap::new();
        for (version, f) in &files {
            let path = file::path_for(&config.dir, *version);
            let salt = f.salt_bytes(&path)?;
            info.insert(
                *version,
                KekInfo {
                    version: *version,
                    state: f.state,
                    iterations: f.iterations,
                    created_at: f.created_at,
                    default_salt: salt == crypto::default_salt(*version),
                },
            );
            if f.state == KekState::Retired {
                continue;
            }
            let pass = config.passphrase.read(*version)?;
            let kek = derive_checked(*version, &pass, &salt, f.iterations, f, &path)?;
            keks.insert(*version, kek);
        }
        Ok(Self {
            dir: Some(config.dir.clone()),
            keks,
            info,
            active,
            test_mode: false,
        })
    }

    /// [`Keystore::load`] on a blocking thread, off the async runtime.
    pub async fn load_async(config: KeystoreConfig) -> Result<Self, KeystoreError> {
        tokio::task::spawn_blocking(move || Self::load(&config))
            .await
            .expect("keystore loader panicked")
    }

    /// A keystore with one fixed, publicly known KEK. Never for real data.
    pub fn test_mode() -> Self {
        const TEST_KEY: [u8; 32] = *b"mlflow-secrets-INSECURE-test-kek";
        tracing::warn!(
            "MLFLOW_SECRETS_TEST_MODE is on: secrets are encrypted with a fixed, publicly known test key. Never use test mode for real secrets."
        );
        let v = TEST_MODE_KEK_VERSION;
        let kek = Arc::new(Kek::from_bytes(v, &Zeroizing::new(TEST_KEY)));
        Self {
            dir: None,
            keks: BTreeMap::from([(v, kek)]),
            info: BTreeMap::from([(
                v,
                KekInfo {
                    version: v,
                    state: KekState::Active,
                    iterations: 0,
                    created_at: 0,
                    default_salt: false,
                },
            )]),
            active: v,
            test_mode: true,
        }
    }

    /// A keystore with no keys, for commands that only read metadata
    /// (`list`, `get`, `migrate`, ...): they then work without a passphrase,
    /// and any attempt to encrypt or decrypt fails with `NotLoaded`.
    pub fn metadata_only() -> Self {
        Self {
            dir: None,
            keks: BTreeMap::new(),
            info: BTreeMap::new(),
            active: 0,
            test_mode: false,
        }
    }

    /// The KEK new writes use.
    pub fn active(&self) -> Result<&Arc<Kek>, KeystoreError> {
        self.keks.get(&self.active).ok_or(KeystoreError::NotLoaded)
    }

    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// The KEK of `version`, for reading rows written under it.
    pub fn kek(&self, version: u32) -> Result<&Arc<Kek>, KeystoreError> {
        self.keks.get(&version).ok_or_else(|| {
            if self.keks.is_empty() && !self.test_mode {
                KeystoreError::NotLoaded
            } else if self.info.contains_key(&version) {
                KeystoreError::Retired(version)
            } else {
                KeystoreError::UnknownVersion(version)
            }
        })
    }

    pub fn versions(&self) -> impl Iterator<Item = &KekInfo> {
        self.info.values()
    }

    pub fn is_test_mode(&self) -> bool {
        self.test_mode
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

pub(crate) fn derive_checked(
    version: u32,
    pass: &SecretString,
    salt: &[u8],
    iterations: u32,
    f: &KekFile,
    path: &Path,
) -> Result<Arc<Kek>, KeystoreError> {
    let kek = kdf::derive_kek_cached(version, pass, salt, iterations);
    let check = f.check_value_bytes(path)?;
    match kek.open_no_aad(&check) {
        Some(label) if label.as_slice() == file::CHECK_LABEL => Ok(kek),
        _ => Err(KeystoreError::WrongPassphrase { version }),
    }
}

/// Check the passphrase of one version against its file's check value,
/// without loading the rest of the keystore (`doctor` checks each version
/// on its own, so one wrong passphrase does not hide the others).
pub fn check_passphrase(config: &KeystoreConfig, version: u32) -> Result<(), KeystoreError> {
    let path = file::path_for(&config.dir, version);
    let f = file::read(&path)?;
    let pass = config.passphrase.read(version)?;
    derive_checked(
        version,
        &pass,
        &f.salt_bytes(&path)?,
        f.iterations,
        &f,
        &path,
    )
    .map(|_| ())
}

/// Every `kek-v<N>.json` in `dir`, by version. A missing directory is an
/// empty keystore. Other files (the kubelet's `..data` links) are ignored.
pub(crate) fn list_files(dir: &Path) -> Result<BTreeMap<u32, KekFile>, KeystoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(KeystoreError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|source| KeystoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        let Some(version) = name.to_str().and_then(file::version_of) else {
            continue;
        };
        let path = entry.path();
        let f = file::read(&path)?;
        if f.version != version {
            return Err(KeystoreError::BadFile {
                path,
                reason: format!("file says version {}", f.version),
            });
        }
        out.insert(version, f);
    }
    Ok(out)
}

/// A shared, swappable keystore for servers and the operator.
#[derive(Debug, Clone)]
pub struct KeystoreHandle {
    inner: Arc<RwLock<Arc<Keystore>>>,
}

impl KeystoreHandle {
    pub fn new(ks: Keystore) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(ks))),
        }
    }

    /// The keystore in force now. Cheap: a read lock and an `Arc` clone.
    pub fn current(&self) -> Arc<Keystore> {
        self.inner.read().expect("keystore lock").clone()
    }

    /// Swap in a newly loaded keystore (hot reload).
    pub fn replace(&self, ks: Keystore) {
        *self.inner.write().expect("keystore lock") = Arc::new(ks);
    }
}

impl From<Keystore> for KeystoreHandle {
    fn from(ks: Keystore) -> Self {
        Self::new(ks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, pass: &Path) -> KeystoreConfig {
        KeystoreConfig {
            dir: dir.to_path_buf(),
            passphrase: PassphraseSource::new(pass),
            test_mode: false,
        }
    }

    /// Security review finding 18: after a reload, a retired version's KEK
    /// is gone from memory (nothing holds it: not the handle, not the KDF
    /// cache), while a version that stays is shared, not derived again.
    #[test]
    fn reload_drops_retired_keks_from_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = tmp.path().join("ks");
        let pass = tmp.path().join("pass");
        std::fs::write(&pass, "reload passphrase").unwrap();
        let p = SecretString::from("reload passphrase");
        generate(&ks, &p, NewKekOptions::default()).unwrap();
        rotate(&ks, &p, NewKekOptions::default()).unwrap();
        let handle = KeystoreHandle::new(Keystore::load(&config(&ks, &pass)).unwrap());
        let v1 = Arc::downgrade(handle.current().kek(1).unwrap());
        let v2 = Arc::downgrade(handle.current().kek(2).unwrap());

        retire(&ks, 1, 0).unwrap();
        handle.replace(Keystore::load(&config(&ks, &pass)).unwrap());
        assert!(v1.upgrade().is_none(), "retired KEK v1 is still in memory");
        assert!(
            Arc::ptr_eq(&v2.upgrade().unwrap(), handle.current().kek(2).unwrap()),
            "the kept version is reused from the cache"
        );
        assert!(matches!(
            handle.current().kek(1),
            Err(KeystoreError::Retired(1))
        ));
    }

    #[test]
    fn generate_load_and_wrong_passphrase() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = tmp.path().join("ks");
        let pass = tmp.path().join("pass");
        std::fs::write(&pass, "correct horse\n").unwrap();
        let err = Keystore::load(&config(&ks, &pass)).unwrap_err();
        assert!(err.to_string().contains("kek generate"), "{err}");

        generate(
            &ks,
            &SecretString::from("correct horse"),
            NewKekOptions::default(),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ks.join("kek-v1.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = Keystore::load(&config(&ks, &pass)).unwrap();
        assert_eq!(loaded.active_version(), 1);

        std::fs::write(&pass, "wrong horse").unwrap();
        let err = Keystore::load(&config(&ks, &pass)).unwrap_err();
        assert_eq!(err.to_string(), "wrong passphrase for KEK version 1");

        let again = generate(&ks, &SecretString::from("x"), NewKekOptions::default());
        assert!(matches!(again, Err(KeystoreError::AlreadyExists { .. })));
    }

    #[test]
    fn rotate_set_active_retire() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = tmp.path().join("ks");
        let pass = tmp.path().join("pass");
        std::fs::create_dir(&pass).unwrap();
        std::fs::write(pass.join("v1"), "one").unwrap();
        std::fs::write(pass.join("v2"), "two").unwrap();
        generate(&ks, &SecretString::from("one"), NewKekOptions::default()).unwrap();
        rotate(
            &ks,
            &SecretString::from("two"),
            NewKekOptions { random_salt: true },
        )
        .unwrap();
        let cfg = config(&ks, &pass);
        let loaded = Keystore::load(&cfg).unwrap();
        assert_eq!(loaded.active_version(), 2);
        assert!(loaded.kek(1).is_ok());
        let states: Vec<_> = loaded
            .versions()
            .map(|i| (i.version, i.state, i.default_salt))
            .collect();
        assert_eq!(
            states,
            vec![
                (1, KekState::DecryptOnly, true),
                (2, KekState::Active, false)
            ]
        );

        assert!(matches!(
            retire(&ks, 2, 0),
            Err(KeystoreError::RetireActive(2))
        ));
        assert!(matches!(
            retire(&ks, 1, 3),
            Err(KeystoreError::InUse {
                version: 1,
                rows: 3
            })
        ));
        retire(&ks, 1, 0).unwrap();
        let loaded = Keystore::load(&cfg).unwrap();
        assert!(matches!(loaded.kek(1), Err(KeystoreError::Retired(1))));
        assert!(matches!(
            set_active(&cfg, 1),
            Err(KeystoreError::Retired(1))
        ));

        // set-active verifies the passphrase before switching.
        std::fs::write(pass.join("v2"), "not two").unwrap();
        assert!(matches!(
            set_active(&cfg, 2),
            Err(KeystoreError::WrongPassphrase { version: 2 })
        ));
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let ks = Keystore::test_mode();
        let dbg = format!("{ks:?}");
        let none = Keystore::metadata_only();
        assert!(matches!(none.active(), Err(KeystoreError::NotLoaded)));
        assert!(matches!(none.kek(1), Err(KeystoreError::NotLoaded)));
        assert!(dbg.contains("REDACTED"));
        assert!(!dbg.contains("INSECURE"));
    }
}
