//! Where KEK passphrases come from (docs/design.md §5).
//!
//! A passphrase is read from a file, never from a command-line argument or
//! an environment variable value (both leak through `ps` and `/proc`). The
//! path may be a single file (one passphrase for every version) or a
//! directory of `v<N>` files, which is how a Kubernetes Secret projected as a
//! volume looks, and how a passphrase changes without downtime.

use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::KeystoreError;

/// Environment variable naming the passphrase file or directory.
pub const PASSPHRASE_FILE_ENV: &str = "MLFLOW_SECRETS_KEK_PASSPHRASE_FILE";
/// The seed default of [`PASSPHRASE_FILE_ENV`].
pub const DEFAULT_PASSPHRASE_FILE: &str = "/root/.mlflow_kek_pass";

/// A file or a directory of `v<N>` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseSource {
    path: PathBuf,
}

impl PassphraseSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// From `MLFLOW_SECRETS_KEK_PASSPHRASE_FILE`, or the seed default.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var_os(PASSPHRASE_FILE_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PASSPHRASE_FILE)),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file that holds the passphrase of `version`.
    pub fn file_for(&self, version: u32) -> PathBuf {
        if self.path.is_dir() {
            self.path.join(format!("v{version}"))
        } else {
            self.path.clone()
        }
    }

    /// Read the passphrase of `version`.
    pub fn read(&self, version: u32) -> Result<SecretString, KeystoreError> {
        let file = self.file_for(version);
        match std::fs::read(&file) {
            Ok(bytes) => parse_passphrase(Zeroizing::new(bytes), &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(KeystoreError::PassphraseMissing {
                    version,
                    path: file,
                })
            }
            Err(source) => Err(KeystoreError::Io { path: file, source }),
        }
    }
}

/// Read a passphrase from a named file (for `--passphrase-file`).
pub fn read_passphrase_file(path: &Path) -> Result<SecretString, KeystoreError> {
    let bytes = std::fs::read(path).map_err(|source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_passphrase(Zeroizing::new(bytes), path)
}

/// Read a passphrase from standard input (for `--passphrase-stdin`).
pub fn read_passphrase_stdin() -> Result<SecretString, KeystoreError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(256));
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|source| KeystoreError::Io {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    parse_passphrase(bytes, Path::new("<stdin>"))
}

/// Strip exactly one trailing newline (`\n` or `\r\n`) and refuse empty or
/// non-UTF-8 passphrases. The bytes stay in zeroizing storage throughout.
fn parse_passphrase(
    mut bytes: Zeroizing<Vec<u8>>,
    path: &Path,
) -> Result<SecretString, KeystoreError> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(KeystoreError::PassphraseEmpty {
            path: path.to_path_buf(),
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| KeystoreError::PassphraseNotUtf8 {
        path: path.to_path_buf(),
    })?;
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn strips_one_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "pass\n\n").unwrap();
        let p = read_passphrase_file(&f).unwrap();
        assert_eq!(p.expose_secret(), "pass\n");
        std::fs::write(&f, "pass\r\n").unwrap();
        assert_eq!(read_passphrase_file(&f).unwrap().expose_secret(), "pass");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            read_passphrase_file(&f),
            Err(KeystoreError::PassphraseEmpty { .. })
        ));
    }

    #[test]
    fn directory_form_reads_per_version_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("v1"), "one\n").unwrap();
        std::fs::write(dir.path().join("v2"), "two").unwrap();
        let src = PassphraseSource::new(dir.path());
        assert_eq!(src.read(1).unwrap().expose_secret(), "one");
        assert_eq!(src.read(2).unwrap().expose_secret(), "two");
        let err = src.read(3).unwrap_err().to_string();
        assert!(err.contains("KEK version 3") && err.contains("v3"), "{err}");
    }
}
