//! The on-disk form of one KEK version: `kek-v<N>.json` (docs/design.md §5).
//!
//! The file holds only public parameters (KDF, salt, iterations) and a check
//! value, never the key or the passphrase. Files are written with mode 0600
//! through a temporary file and a rename, so a crash never leaves a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::KeystoreError;

/// The only KDF this version of the format knows.
pub const KDF_PBKDF2_SHA256: &str = "pbkdf2-hmac-sha256";

/// Fewer PBKDF2 iterations than this is refused: a keystore file must not be
/// able to silently weaken the KDF. (Ours and MLflow's use 600000.)
pub const MIN_ITERATIONS: u32 = 100_000;
/// More than this would stall every process start for many seconds.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// The plaintext sealed into every check value.
pub const CHECK_LABEL: &[u8] = b"mlflow-secrets-kek-check-v1";

/// The lifecycle of a KEK version.
///
/// docs/design.md §5 names `active` and `retired`. Between the two we need a state
/// for a version that no longer encrypts new values but still unwraps the
/// DEKs of rows not yet rewrapped: `decrypt_only` (docs/keystore.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KekState {
    /// New writes use it. Exactly one version is active.
    Active,
    /// Loaded to read existing rows; never used for new writes.
    DecryptOnly,
    /// Not loaded. Only allowed once no row uses it.
    Retired,
}

impl KekState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::DecryptOnly => "decrypt_only",
            Self::Retired => "retired",
        }
    }
}

/// Contents of `kek-v<N>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekFile {
    pub version: u32,
    pub kdf: String,
    pub iterations: u32,
    /// Base64 of the PBKDF2 salt.
    pub salt: String,
    /// Epoch milliseconds.
    pub created_at: i64,
    pub state: KekState,
    /// Base64 of `nonce(12) || AES-GCM(KEK, CHECK_LABEL)`.
    pub check_value: String,
}

impl KekFile {
    pub fn salt_bytes(&self, path: &Path) -> Result<Vec<u8>, KeystoreError> {
        B64.decode(&self.salt).map_err(|_| KeystoreError::BadFile {
            path: path.to_path_buf(),
            reason: "salt is not valid base64".into(),
        })
    }

    pub fn check_value_bytes(&self, path: &Path) -> Result<Vec<u8>, KeystoreError> {
        B64.decode(&self.check_value)
            .map_err(|_| KeystoreError::BadFile {
                path: path.to_path_buf(),
                reason: "check_value is not valid base64".into(),
            })
    }

    pub fn encode_b64(bytes: &[u8]) -> String {
        B64.encode(bytes)
    }
}

/// `<dir>/kek-v<N>.json`.
pub fn path_for(dir: &Path, version: u32) -> PathBuf {
    dir.join(format!("kek-v{version}.json"))
}

/// Parse the version out of a file name like `kek-v12.json`.
pub fn version_of(file_name: &str) -> Option<u32> {
    let n = file_name.strip_prefix("kek-v")?.strip_suffix(".json")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return None;
    }
    n.parse().ok()
}

/// Read and validate one file.
pub fn read(path: &Path) -> Result<KekFile, KeystoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: KekFile = serde_json::from_str(&text).map_err(|e| KeystoreError::BadFile {
        path: path.to_path_buf(),
        reason: format!("not a KEK file: {e}"),
    })?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&file.iterations) {
        return Err(KeystoreError::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "iterations {} is outside the accepted range {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                file.iterations
            ),
        });
    }
    if file.kdf != KDF_PBKDF2_SHA256 {
        return Err(KeystoreError::BadFile {
            path: path.to_path_buf(),
            reason: format!("unsupported kdf {:?}", file.kdf),
        });
    }
    Ok(file)
}

/// Write `file` to `<dir>/kek-v<N>.json` atomically with mode 0600.
pub fn write_atomic(dir: &Path, file: &KekFile) -> Result<PathBuf, KeystoreError> {
    let path = path_for(dir, file.version);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| KeystoreError::Io { path: p, source }
    };
    let mut json = serde_json::to_vec_pretty(file).expect("serialize KEK file");
    json.push(b'\n');
    let tmp = dir.join(format!(
        ".kek-v{}.json.tmp-{}-{}",
        file.version,
        std::process::id(),
        crate::model::now_ms()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(path.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Create the keystore directory (mode 0700) if it does not exist.
pub fn ensure_dir(dir: &Path) -> Result<(), KeystoreError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|source| KeystoreError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(version_of("kek-v1.json"), Some(1));
        assert_eq!(version_of("kek-v42.json"), Some(42));
        assert_eq!(version_of("kek-v01.json"), None);
        assert_eq!(version_of("kek-v.json"), None);
        assert_eq!(version_of("..data"), None);
        assert_eq!(version_of("kek-v1.json.tmp-1"), None);
    }
}
