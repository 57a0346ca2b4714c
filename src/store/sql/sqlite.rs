//! What only a SQLite store needs: the database file (created owner-only,
//! never created by a command that only reads) and the background WAL
//! checkpointer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};

use crate::store::{Result, StoreError};

/// How often the SQLite WAL is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// WAL pages (4 KiB each) past which the checkpointer also tries a
/// `TRUNCATE` checkpoint. Under steady load some connection is always
/// reading, so the WAL is never reset after a PASSIVE checkpoint and grows
/// without bound (471 MB after a minute of 6,000 audited `get`s/s): every
/// read then searches a larger WAL index and the file never shrinks.
/// 16,384 pages is 64 MiB.
pub(super) const WAL_TRUNCATE_PAGES: i64 = 16_384;

/// `journal_size_limit` of every connection: the WAL file is cut back to
/// this size after a checkpoint resets it, instead of keeping its peak.
pub(super) const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// The checkpoint the background task runs next, from the WAL pages the
/// last one reported: `log` counts the frames since the WAL was last reset,
/// so a large `log` means it has not been, however much was copied back.
pub(super) fn next_checkpoint(log: i64) -> &'static str {
    if log >= WAL_TRUNCATE_PAGES {
        "PRAGMA wal_checkpoint(TRUNCATE)"
    } else {
        "PRAGMA wal_checkpoint(PASSIVE)"
    }
}

/// Keeps the background checkpointer of one SQLite pool running: the task
/// stops once the last store holding this is dropped.
pub(crate) struct Checkpointer;

impl Checkpointer {
    /// Checkpoint the SQLite WAL off the commit path. The connections run
    /// with `wal_autocheckpoint = 0` (`Dialect::on_connect`): SQLite's
    /// automatic checkpoint otherwise runs inside whichever commit crosses
    /// 1,000 WAL pages, and that commit (and every request queued on the
    /// audit writer behind it) waits several milliseconds for it. A PASSIVE
    /// checkpoint from this task never blocks writers or readers; the
    /// TRUNCATE that bounds a WAL never waits for them (`never_waiting`).
    pub(crate) fn spawn(pool: AnyPool) -> Arc<Self> {
        let me = Arc::new(Self);
        tokio::spawn(run(pool, Arc::downgrade(&me)));
        me
    }
}

async fn run(pool: AnyPool, alive: Weak<Checkpointer>) {
    let mut conn: Option<AnyConnection> = None;
    // WAL pages the last checkpoint reported.
    let mut log = 0;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.upgrade().is_none() {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match never_waiting(&pool).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, "no connection for the WAL checkpoint");
                    continue;
                }
            },
        };
        let sql = next_checkpoint(log);
        // The row is (busy, log, checkpointed); -1s when not in WAL mode. A
        // busy TRUNCATE leaves the WAL as it was and is tried next time.
        match sqlx::query(sql).fetch_optional(&mut *c).await {
            Ok(Some(row)) => log = row.try_get::<i64, _>(1).unwrap_or(0),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "background WAL checkpoint failed");
                conn = None;
            }
        }
    }
}

/// A connection of the checkpointer's own, taken out of the pool, that
/// never waits for a lock. A `TRUNCATE` checkpoint holds the write lock
/// while it waits for readers; waiting (the pool's busy timeout is 10 s)
/// would stall every commit behind it, the audit rows every value read
/// waits for. Without a wait it answers "busy" at once while a reader or
/// a writer is active, and the next attempt finds a quiet moment.
async fn never_waiting(pool: &AnyPool) -> sqlx::Result<AnyConnection> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut conn)
        .await?;
    Ok(conn)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_that_was_never_reset_is_truncated_and_a_small_one_is_left_passive() {
        assert!(next_checkpoint(0).contains("PASSIVE"));
        assert!(next_checkpoint(WAL_TRUNCATE_PAGES - 1).contains("PASSIVE"));
        assert!(next_checkpoint(WAL_TRUNCATE_PAGES).contains("TRUNCATE"));
        assert!(next_checkpoint(WAL_TRUNCATE_PAGES * 8).contains("TRUNCATE"));
    }
}
