//! Operations: `backup`, `restore` and `doctor` (docs/operations.md).
//!
//! A backup is one tar archive: a `manifest.json` that describes the store
//! (tool version, migration level, KEK versions, row counts, the audit
//! head) and lists the SHA-256 of every other member, the KEK files of the
//! keystore, and, for SQLite, a consistent snapshot of the database. It
//! never holds a passphrase: the archive alone cannot decrypt anything,
//! which is why it may sit where backups sit, and the passphrase must not.
//! PostgreSQL and MySQL databases are dumped with their own tools (a
//! consistent snapshot of a shared server database is their job, and they
//! do it without stopping writers); the archive then carries the keystore
//! and the facts the restored database is checked against.
//!
//! [`archive`] reads and writes the tar format and hashes members,
//! [`facts`] reads what the manifest records from a store, [`backup`] and
//! [`restore`] are the two halves of the drill, [`doctor`] (with
//! [`doctor_k8s`] for a cluster) checks an installation.

pub mod archive;
pub(crate) mod backup;
pub(crate) mod doctor;
pub(crate) mod doctor_k8s;
pub(crate) mod facts;
pub(crate) mod restore;

use std::path::{Path, PathBuf};

use crate::keystore::KeystoreError;
use crate::store::StoreError;

/// Errors of the operations layer. Each names the file, member or store it
/// is about and what is wrong; none carries a value or a passphrase.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The cause is part of the message (not a `source`), so the CLI's
    /// one-line error does not print it twice.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{0} already exists: choose another --out file or move the old one away")]
    OutputExists(PathBuf),
    #[error("backup archive {path}: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error("backup archive {path}: member {member}: {reason}")]
    BadMember {
        path: PathBuf,
        member: String,
        reason: String,
    },
    #[error("backup archive {path}: the manifest does not match the archive: {reason}")]
    ManifestMismatch { path: PathBuf, reason: String },
    #[error(
        "restore target {target} is not empty: it holds {rows} row(s); restore only into an empty store"
    )]
    TargetNotEmpty { target: String, rows: u64 },
    #[error("restore target keystore {dir} already holds {what}; restore into an empty directory")]
    KeystoreNotEmpty { dir: PathBuf, what: String },
    #[error("restored store does not match the backup manifest: {0}")]
    RestoredMismatch(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

/// An `io::Error` tagged with the path it is about.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpsError + '_ {
    move |cause| OpsError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Create `path` owner-only (mode 0600); it must not exist yet.
pub(crate) fn create_private(path: &Path) -> Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io_err(path))
}

/// A temporary name next to `path`, in the same directory, so that a
/// rename onto `path` is atomic (same file system).
pub(crate) fn temp_beside(path: &Path, what: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mlflow-secrets".into());
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = format!(
        ".{name}.{what}-{}-{}",
        std::process::id(),
        crate::model::now_ms()
    );
    match dir {
        Some(d) => d.join(tmp),
        None => PathBuf::from(tmp),
    }
}

/// Make the directory entry of a rename durable.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes a temporary file or directory unless [`Cleanup::keep`] was
/// called: every early return of a backup or restore leaves nothing behind.
pub(crate) struct Cleanup {
    paths: Vec<PathBuf>,
}

impl Cleanup {
    pub(crate) fn new() -> Self {
        Self { paths: Vec::new() }
    }

    pub(crate) fn add(&mut self, p: &Path) {
        self.paths.push(p.to_path_buf());
    }

    /// Forget every registered path (it was renamed into place).
    pub(crate) fn keep(&mut self) {
        self.paths.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.paths {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
                for suffix in ["-wal", "-shm", "-journal"] {
                    let mut s = p.clone().into_os_string();
                    s.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(s));
                }
            }
        }
    }
}
