//! What only a SQLite store needs: the database file (created owner-only,
//! never created by a command that only reads) and the background WAL
//! checkpointer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AnyPool;

use crate::store::{Result, StoreError};

/// How often the SQLite WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Keeps the background checkpointer of one SQLite pool running: the task
/// stops once the last store holding this is dropped.
pub(crate) struct Checkpointer;

impl Checkpointer {
    /// Checkpoint the SQLite WAL off the commit path. The connections run
    /// with `wal_autocheckpoint = 0` (`Dialect::on_connect`): SQLite's
    /// automatic checkpoint otherwise runs inside whichever commit crosses
    /// 1,000 WAL pages, and that commit (and every request queued on the
    /// audit writer behind it) waits several milliseconds for it. A PASSIVE
    /// checkpoint from this task never blocks writers or readers.
    pub(crate) fn spawn(pool: AnyPool) -> Arc<Self> {
        let me = Arc::new(Self);
        tokio::spawn(run(pool, Arc::downgrade(&me)));
        me
    }
}

async fn run(pool: AnyPool, alive: Weak<Checkpointer>) {
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.upgrade().is_none() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_optional(&pool)
            .await
        {
            tracing::debug!(error = %e, "background WAL checkpoint failed");
        }
    }
}

/// The file path of a `sqlite:` URI, or `None` for an in-memory database.
pub fn sqlite_path(uri: &str) -> Option<std::path::PathBuf> {
    let path = uri
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// The connect URL of a SQLite store. With `create`, a missing file is
/// created first, owner-only, so that SQLite (which gives its `-wal` and
/// `-shm` files the database file's mode) never makes a readable one;
/// without, a missing file is an error naming the path and the URL opens
/// read-write only (`mode=rw`).
pub(super) fn prepare_sqlite(uri: &str, create: bool) -> Result<String> {
    let Some(path) = sqlite_path(uri) else {
        return Ok(uri.to_string());
    };
    if !path.exists() {
        if !create {
            return Err(StoreError::NotFound(format!(
                "SQLite database {} does not exist; this command never creates one: check --store-uri (or {}), or create it with `mlflow-secrets migrate`",
                path.display(),
                "MLFLOW_SECRETS_STORE_URI"
            )));
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot create SQLite database {}: {e}",
                    path.display()
                )));
            }
        }
    }
    if uri.contains('?') {
        Ok(uri.to_string())
    } else if create {
        Ok(format!("{uri}?mode=rwc"))
    } else {
        Ok(format!("{uri}?mode=rw"))
    }
}

/// The SQLite file holds only ciphertext, but its metadata (names, who,
/// when) is still nobody else's business: make it and its `-wal` and `-shm`
/// files owner-only. A file we cannot restrict is an error (it is not ours
/// to use), not a silent skip (security review finding 17).
pub(super) fn restrict_sqlite_files(uri: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Some(db) = sqlite_path(uri) else {
            return Ok(());
        };
        let mut files = vec![db.clone()];
        for suffix in ["-wal", "-shm"] {
            let mut f = db.clone().into_os_string();
            f.push(suffix);
            files.push(f.into());
        }
        for f in files {
            match std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "cannot make {} owner-only (mode 0600): {e}",
                        f.display()
                    )));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = uri;
    Ok(())
}
