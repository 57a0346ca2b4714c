//! What only a SQLite store needs: the database file (created owner-only,
//! never created by a command that only reads), the background WAL
//! checkpointer, and the pause it holds the audit writer with while it
//! restarts the WAL.

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

/// Whether a WAL past [`WAL_RESTART_PAGES`] may be restarted now, after
/// background passes the last of which took `pass` (it copied what was
/// committed during the one before) and reported `log` frames in the WAL,
/// `checkpointed` of them copied back. Readers still on old frames keep a
/// pass from copying everything; a RESTART would then wait for them with
/// the writer paused, and fail anyway.
///
/// The restart pauses the audit writer ([`WriterPause`]) while SQLite's
/// RESTART copies what was committed during that last pass, syncs the
/// database file and waits for the readers still on old frames; every
/// audited request waits with it. So `pass` predicts the stall: when the
/// disk is slow to sync (passes of 100-230 ms were seen on a shared disk,
/// and a RESTART behind one stalled commits for 176 ms) the restart waits
/// for a tick with a fast pass, unless the WAL is
/// [`WAL_FORCE_RESTART_FACTOR`] times past the bound.
///
/// It never truncates the file, which stays at its high-water mark (at
/// most this bound plus one tick of commits) until the store closes:
/// cutting a 100 MiB WAL file took 60-160 ms here under the write lock (the
/// kernel drops the file's cached and in-flight pages), and every audited
/// read waited behind it.
pub(super) fn should_restart(log: i64, checkpointed: i64, pass: Duration) -> bool {
    let copied_back = log >= WAL_RESTART_PAGES && checkpointed >= log;
    copied_back && (pass <= FAST_PASS || log >= WAL_RESTART_PAGES * WAL_FORCE_RESTART_FACTOR)
}

/// A checkpoint pass this quick says the disk syncs quickly right now.
const FAST_PASS: Duration = Duration::from_millis(10);

/// A pass this quick leaves so little for the restart (the commits of its
/// own duration) that another pass would not shorten the pause: each pass
/// also pays two syncs, about a millisecond here however little it copies.
const QUICK_PASS: Duration = Duration::from_millis(3);

/// Most PASSIVE passes one tick runs to bring the uncopied tail down to
/// [`QUICK_PASS`] before restarting. Each copies what was committed during
/// the one before, so the tail shrinks geometrically: under 6,000 audited
/// reads/s a 200 ms tick's pass took 23 ms, the next 3-5 ms, the one after
/// about the syncs alone.
const MAX_PASSES: usize = 4;

/// How far past [`WAL_RESTART_PAGES`] the WAL may grow while passes are
/// slow before it is restarted anyway.
const WAL_FORCE_RESTART_FACTOR: i64 = 4;

/// Lets the checkpointer hold the audit writer between its batches for the
/// few milliseconds of a WAL restart.
///
/// SQLite's RESTART holds the database's write lock while it runs. An
/// audit batch that meets that lock waits in SQLite's busy handler, which
/// sleeps 1, 2, 5, then 10 ms between tries whatever the lock's holder
/// does: a commit that meets a 4 ms RESTART tries at 0, 1, 3 and 8 ms, and
/// every request waiting on that commit waits with it. Held here instead,
/// the writer wakes the moment the restart ends (a Tokio mutex, uncontended
/// but for the restart), and its next batch carries everything queued
/// meanwhile.
#[derive(Clone, Default)]
pub(crate) struct WriterPause(Arc<tokio::sync::Mutex<()>>);

impl WriterPause {
    /// Wait until no restart is running, and keep the next one from
    /// starting while the guard lives.
    pub(crate) async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// Keeps the background checkpointer of one SQLite pool running: the task
/// stops once the last store holding this is dropped.
pub(crate) struct Checkpointer {
    pause: WriterPause,
}

impl Checkpointer {
    /// Checkpoint the SQLite WAL off the commit path. The connections run
    /// with `wal_autocheckpoint = 0` (`Dialect::on_connect`): SQLite's
    /// automatic checkpoint otherwise runs inside whichever commit crosses
    /// 1,000 WAL pages, and that commit (and every request queued on the
    /// audit writer behind it) waits several milliseconds for it. A PASSIVE
    /// checkpoint from this task never blocks writers or readers; the
    /// RESTART that bounds a WAL pauses the audit writer (`pause`) and
    /// waits for readers only briefly (`short_waiting`).
    pub(crate) fn spawn(pool: AnyPool) -> Arc<Self> {
        let me = Arc::new(Self {
            pause: WriterPause::default(),
        });
        tokio::spawn(run(pool, me.pause.clone(), Arc::downgrade(&me)));
        me
    }

    /// What the pool's audit writer waits on while a restart runs.
    pub(crate) fn pause(&self) -> WriterPause {
        self.pause.clone()
    }
}

async fn run(pool: AnyPool, pause: WriterPause, alive: Weak<Checkpointer>) {
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
        if let Err(e) = tick(c, &pause).await {
            tracing::debug!(error = %e, "background WAL checkpoint failed");
            conn = None;
        }
    }
}

/// One tick: a PASSIVE checkpoint; past [`WAL_RESTART_PAGES`], more PASSIVE
/// passes until one is [`QUICK_PASS`] (each copies only what was committed
/// during the one before), then, if [`should_restart`], a RESTART with the
/// audit writer paused. A busy RESTART leaves the WAL as it was; the next
/// tick tries again.
async fn tick(c: &mut AnyConnection, pause: &WriterPause) -> sqlx::Result<()> {
    let (_, mut log, mut checkpointed) = run_checkpoint(c, PASSIVE).await?;
    if log < WAL_RESTART_PAGES {
        return Ok(());
    }
    let mut pass = Duration::MAX;
    for _ in 0..MAX_PASSES {
        let started = std::time::Instant::now();
        (_, log, checkpointed) = run_checkpoint(c, PASSIVE).await?;
        pass = started.elapsed();
        if pass <= QUICK_PASS {
            break;
        }
    }
    if should_restart(log, checkpointed, pass) {
        restart_paused(c, pause).await?;
    }
    Ok(())
}

/// SQLite's RESTART with the audit writer paused: it copies what was
/// committed during the last pass, syncs, and waits (the connection's busy
/// timeout, [`RESTART_WAIT_MS`]) for the readers still on old frames; the
/// next commit then writes from the start of the WAL file again.
///
/// RESTART also takes SQLite's write lock, so operations' own write
/// transactions (creates, binds) wait for it too; only the audit writer,
/// which carries every audited read, is held here instead, where it wakes
/// the moment the restart ends. Copying back under this pause alone and
/// leaving the restart to SQLite's next writer took as long (the sync is
/// the cost, 1-33 ms here) and never restarted a WAL while creates ran.
async fn restart_paused(c: &mut AnyConnection, pause: &WriterPause) -> sqlx::Result<()> {
    let _held = pause.hold().await;
    run_checkpoint(c, RESTART).await?;
    Ok(())
}

/// Run one `PRAGMA wal_checkpoint`; its row is (busy, log, checkpointed),
/// -1s when the database is not in WAL mode.
async fn run_checkpoint(c: &mut AnyConnection, sql: &'static str) -> sqlx::Result<(i64, i64, i64)> {
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
    Ok((busy, log, checkpointed))
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
    use crate::keystore::{Keystore, KeystoreHandle};
    use crate::store::audit::{AuditAction, AuditRecord};
    use crate::store::sql::SqlStore;

    /// The restart's pause is real: while the checkpointer holds it, an
    /// audit row (what every audited read waits for) is not committed; the
    /// moment it is released, the row is. Without the writer taking the
    /// pause, the row commits during the hold and this fails.
    #[tokio::test]
    async fn an_audit_row_waits_while_a_wal_restart_holds_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("pause.db").display());
        let store = SqlStore::connect(&uri, KeystoreHandle::new(Keystore::test_mode()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let count = |store: SqlStore| async move {
            sqlx::query(
                "SELECT COUNT(*) AS n FROM secrets_audit_log WHERE principal = 'pause-test'",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .try_get::<i64, _>("n")
            .unwrap()
        };
        let held = store._checkpointer.as_ref().unwrap().pause.hold().await;
        let append = tokio::spawn({
            let store = store.clone();
            async move {
                let rec = AuditRecord::new(AuditAction::GetSecret, "pause-test");
                store.append_audit(&rec).await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !append.is_finished(),
            "the audit row was committed during the pause"
        );
        assert_eq!(count(store.clone()).await, 0);
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), append)
            .await
            .expect("the audit row is committed once the pause ends")
            .unwrap()
            .unwrap();
        assert_eq!(count(store.clone()).await, 1);
    }

    #[test]
    fn a_long_wal_is_restarted_only_once_it_is_copied_back() {
        let big = WAL_RESTART_PAGES;
        let fast = Duration::from_millis(2);
        assert!(!should_restart(0, 0, fast));
        assert!(!should_restart(big - 1, big - 1, fast));
        assert!(should_restart(big, big, fast));
        assert!(should_restart(big * 8, big * 8, fast));
        // Readers still on old frames: a RESTART would wait for them with
        // the audit writer paused, then fail on them anyway.
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
