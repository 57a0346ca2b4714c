//! What only a SQLite store needs: the database file (created owner-only,
//! never created by a command that only reads) and the background WAL
//! checkpointer.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};

use crate::store::{Result, StoreError};

/// How often the SQLite WAL is checkpointed in the background. Often, so
/// that each pass has little to copy: under 6,000 audited reads/s the WAL
/// grows by about 25,000 pages (100 MiB) a second.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL pages (4 KiB each) past which the checkpointer restarts the WAL.
/// Under steady load some connection is always reading, so the WAL is
/// never reset after a PASSIVE checkpoint and grows without bound (471 MB
/// after a minute of 6,000 audited `get`s/s): every read then searches a
/// larger WAL index and the file never shrinks. 32,768 pages is 128 MiB; the
/// file stays within this plus what one tick adds.
pub(super) const WAL_RESTART_PAGES: i64 = 32_768;

const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
const RESTART: &str = "PRAGMA wal_checkpoint(RESTART)";

/// Whether to restart the WAL after a PASSIVE pass that reported `log`
/// frames since the WAL was last reset, `checkpointed` of them copied back:
/// the next commit then writes from the start of the WAL file again. A
/// RESTART holds the write lock (every commit waits) for what it still has
/// to copy and sync and while it waits for readers, so it runs only right
/// after a pass that copied everything, when what is left is a few
/// milliseconds of commits (readers still on old frames would only make it
/// fail). It never truncates the file, which stays at its high-water mark
/// (at most this bound plus one tick of commits) until the store closes:
/// cutting a 100 MiB WAL file took 60-160 ms here under the write lock (the
/// kernel drops the file's cached and in-flight pages), and every audited
/// read waited behind it.
///
/// The pass just before did the same work as the RESTART will under the
/// lock (copy a few milliseconds of commits, sync the database file), so
/// its duration `pass` predicts the stall: when the disk is slow to sync
/// (passes of 100-230 ms were seen on a shared disk, and a RESTART behind
/// one stalled commits for 176 ms) the RESTART waits for a tick with a fast
/// pass, unless the WAL is [`WAL_FORCE_RESTART_FACTOR`] times past the
/// bound.
pub(super) fn should_restart(log: i64, checkpointed: i64, pass: Duration) -> bool {
    let copied_back = log >= WAL_RESTART_PAGES && checkpointed >= log;
    copied_back && (pass <= FAST_PASS || log >= WAL_RESTART_PAGES * WAL_FORCE_RESTART_FACTOR)
}

/// A checkpoint pass this quick says the disk syncs quickly right now.
const FAST_PASS: Duration = Duration::from_millis(10);

/// How far past [`WAL_RESTART_PAGES`] the WAL may grow while passes are
/// slow before it is restarted anyway.
const WAL_FORCE_RESTART_FACTOR: i64 = 4;

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
    /// RESTART that bounds a WAL waits for them only briefly (`short_waiting`).
    pub(crate) fn spawn(pool: AnyPool) -> Arc<Self> {
        let me = Arc::new(Self);
        tokio::spawn(run(pool, Arc::downgrade(&me)));
        me
    }
}

async fn run(pool: AnyPool, alive: Weak<Checkpointer>) {
    let mut conn: Option<AnyConnection> = None;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.upgrade().is_none() {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match short_waiting(&pool).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::debug!(error = %e, "no connection for the WAL checkpoint");
                    continue;
                }
            },
        };
        if let Err(e) = tick(c).await {
            tracing::debug!(error = %e, "background WAL checkpoint failed");
            conn = None;
        }
    }
}

/// One tick: a PASSIVE checkpoint; past [`WAL_RESTART_PAGES`], a second
/// PASSIVE pass (it copies only what was committed during the first) and,
/// if that copied everything, a RESTART ([`should_restart`]). A busy
/// RESTART leaves the WAL as it was; the next tick tries again.
async fn tick(c: &mut AnyConnection) -> sqlx::Result<()> {
    let (log, _) = run_checkpoint(c, PASSIVE).await?;
    if log < WAL_RESTART_PAGES {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let (log, checkpointed) = run_checkpoint(c, PASSIVE).await?;
    if should_restart(log, checkpointed, started.elapsed()) {
        run_checkpoint(c, RESTART).await?;
    }
    Ok(())
}

/// Run one `PRAGMA wal_checkpoint`; its row is (busy, log, checkpointed),
/// -1s when the database is not in WAL mode. Returns `log` and
/// `checkpointed`.
async fn run_checkpoint(c: &mut AnyConnection, sql: &'static str) -> sqlx::Result<(i64, i64)> {
    let started = std::time::Instant::now();
    let row = sqlx::query(sql).fetch_optional(&mut *c).await?;
    let get = |i| {
        row.as_ref()
            .and_then(|r| r.try_get::<i64, _>(i).ok())
            .unwrap_or(-1)
    };
    let (busy, log, checkpointed) = (get(0), get(1), get(2));
    tracing::debug!(
        sql,
        busy,
        log,
        checkpointed,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "WAL checkpoint"
    );
    Ok((log, checkpointed))
}

/// How long the checkpointer's RESTART waits for the readers still on WAL
/// frames, holding the write lock meanwhile (every commit waits with it).
/// Reads take well under a millisecond and readers that start during the
/// wait read the database file only, so a few milliseconds nearly always
/// suffice. With no wait at all the RESTART failed on some reader at most
/// ticks under load and the WAL grew to 200 MiB; with the pool's 10 s
/// busy timeout one RESTART stalled every commit for 577 ms.
const RESTART_WAIT_MS: u32 = 5;

/// A connection of the checkpointer's own, taken out of the pool, whose
/// busy timeout is [`RESTART_WAIT_MS`] instead of the pool's 10 s.
async fn short_waiting(pool: &AnyPool) -> sqlx::Result<AnyConnection> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query(AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {RESTART_WAIT_MS}"
    )))
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
    fn a_long_wal_is_restarted_only_once_it_is_copied_back() {
        let big = WAL_RESTART_PAGES;
        let fast = Duration::from_millis(2);
        assert!(!should_restart(0, 0, fast));
        assert!(!should_restart(big - 1, big - 1, fast));
        assert!(should_restart(big, big, fast));
        assert!(should_restart(big * 8, big * 8, fast));
        // Readers still on old frames: a RESTART would copy the rest under
        // the write lock, then fail on them anyway.
        assert!(!should_restart(big * 8, big, fast));
        // Not in WAL mode.
        assert!(!should_restart(-1, -1, fast));
    }

    #[test]
    fn a_slow_disk_defers_the_restart_until_the_wal_is_far_past_its_bound() {
        let big = WAL_RESTART_PAGES;
        let slow = FAST_PASS * 10;
        assert!(should_restart(big, big, FAST_PASS));
        assert!(!should_restart(big, big, slow));
        let far = big * WAL_FORCE_RESTART_FACTOR;
        assert!(!should_restart(far - 1, far - 1, slow));
        assert!(should_restart(far, far, slow));
    }
}
