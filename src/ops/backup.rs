//! `mlflow-secrets backup`: one archive with the keystore's KEK files, a
//! manifest and, on SQLite, a consistent snapshot of the database.
//!
//! The SQLite snapshot is `VACUUM INTO` a new file: it runs as one read
//! transaction, which in WAL mode never blocks a writer (writers append to
//! the WAL while the snapshot reads the pages as of its start), and the
//! copy is exactly the database at that moment. The manifest's facts are
//! then read from the copy, not from the live file, so they describe the
//! snapshot even while writers go on. (The online backup API would do the
//! same page by page, but it is not reachable through sqlx without unsafe
//! code, and `VACUUM INTO` also compacts the copy.)
//!
//! PostgreSQL and MySQL are dumped with `pg_dump` / `mysqldump`, whose
//! snapshots are consistent without stopping writers; this command writes
//! the keystore part and prints the dump command to pair with it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::archive::{self, DB_MEMBER, KekEntry, Manifest, Member};
use super::facts::StoreFacts;
use super::{Cleanup, OpsError, Result, io_err};
use crate::keystore::{self, KeystoreError, file as kekfile};
use crate::store::sql::{Dialect, sqlite_path};
use crate::store::{SqlStore, StoreError};

/// What a backup wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub out: PathBuf,
    pub archive_bytes: u64,
    pub seconds: f64,
    /// For PostgreSQL and MySQL: the command that dumps the database to
    /// pair with the archive (the URI left as a variable, never echoed).
    pub native_dump: Option<String>,
    /// The matching restore command of the native tool.
    pub native_restore: Option<String>,
    pub manifest: Manifest,
}

/// Back up `store` (whose URI is `store_uri`) and the KEK files of
/// `keystore_dir` into the new file `out`. No passphrase is read: the KEK
/// files hold only public parameters and check values. `progress` gets
/// (bytes done, bytes total) while the archive is written.
pub async fn backup(
    store: &SqlStore,
    store_uri: &str,
    keystore_dir: &Path,
    out: &Path,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BackupReport> {
    let start = Instant::now();
    if out.exists() {
        return Err(OpsError::OutputExists(out.to_path_buf()));
    }
    let keks = keystore::list_versions(keystore_dir)?;
    if keks.is_empty() {
        return Err(KeystoreError::Missing {
            dir: keystore_dir.to_path_buf(),
        }
        .into());
    }
    let active = keks
        .iter()
        .find(|k| k.state == keystore::KekState::Active)
        .map(|k| k.version)
        .ok_or_else(|| KeystoreError::NoActive {
            dir: keystore_dir.to_path_buf(),
        })?;
    let mut cleanup = Cleanup::new();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let (facts, in_archive) = match store.dialect() {
        Dialect::Sqlite => {
            let snap = super::temp_beside(out, "snapshot");
            cleanup.add(&snap);
            let facts = snapshot_sqlite(store, store_uri, &snap).await?;
            files.push((DB_MEMBER.to_string(), snap));
            (facts, true)
        }
        _ => (StoreFacts::read(store).await?, false),
    };
    for k in &keks {
        files.push((
            archive::kek_member(k.version),
            kekfile::path_for(keystore_dir, k.version),
        ));
    }
    let mut members = Vec::with_capacity(files.len());
    for (name, path) in &files {
        let (size, sha256) = archive::hash_file(path)?;
        members.push(Member {
            name: name.clone(),
            size,
            sha256,
        });
    }
    let total: u64 = members.iter().map(|m| m.size).sum();
    let manifest = Manifest {
        format: archive::FORMAT.to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: crate::model::now_ms(),
        dialect: store.dialect().name().to_string(),
        database_in_archive: in_archive,
        kek_versions: keks
            .iter()
            .map(|k| KekEntry {
                version: k.version,
                state: k.state.as_str().to_string(),
                created_at: k.created_at,
            })
            .collect(),
        active_kek_version: active,
        facts,
        members,
    };
    let tmp = super::temp_beside(out, "partial");
    cleanup.add(&tmp);
    archive::write(&tmp, &manifest, &files, &|n| progress(n, total))?;
    if out.exists() {
        return Err(OpsError::OutputExists(out.to_path_buf()));
    }
    std::fs::rename(&tmp, out).map_err(io_err(out))?;
    if let Some(d) = out.parent() {
        super::sync_dir(if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        });
    }
    cleanup.keep();
    // The snapshot is inside the archive now.
    if in_archive {
        let _ = std::fs::remove_file(&files[0].1);
    }
    let archive_bytes = std::fs::metadata(out).map_err(io_err(out))?.len();
    let (native_dump, native_restore) = native_commands(store.dialect(), store_uri);
    Ok(BackupReport {
        out: out.to_path_buf(),
        archive_bytes,
        seconds: start.elapsed().as_secs_f64(),
        native_dump,
        native_restore,
        manifest,
    })
}

/// `VACUUM INTO` a new owner-only file, then read the manifest's facts
/// from that copy.
async fn snapshot_sqlite(store: &SqlStore, store_uri: &str, snap: &Path) -> Result<StoreFacts> {
    if sqlite_path(store_uri).is_none() {
        return Err(OpsError::Unsupported(
            "an in-memory SQLite store cannot be backed up".into(),
        ));
    }
    // VACUUM INTO accepts an empty existing file: creating it first gives
    // it mode 0600 instead of the umask's.
    drop(super::create_private(snap)?);
    let target = snap.to_str().ok_or_else(|| {
        OpsError::Unsupported(format!(
            "{}: the backup path must be valid UTF-8",
            snap.display()
        ))
    })?;
    sqlx::query(store.dialect.q("VACUUM INTO ?"))
        .bind(target.to_string())
        .execute(&store.pool)
        .await
        .map_err(crate::store::sql::db_err)?;
    let copy = open_sqlite_copy(snap).await?;
    let facts = StoreFacts::read(&copy).await;
    close_sqlite_copy(copy, snap).await?;
    Ok(facts?)
}

/// Open a SQLite file that is not a live store (a snapshot, a restore
/// being staged) without a keystore.
pub(crate) async fn open_sqlite_copy(path: &Path) -> Result<SqlStore> {
    let uri = format!("sqlite://{}", path.display());
    Ok(SqlStore::connect_existing(&uri, keystore::Keystore::metadata_only().into()).await?)
}

/// Close a store opened with [`open_sqlite_copy`] and make sure the file
/// is whole on its own: the WAL is checkpointed into it and removed, so
/// that copying or renaming the one file moves everything.
pub(crate) async fn close_sqlite_copy(store: SqlStore, path: &Path) -> Result<()> {
    use sqlx::Connection;
    store.pool.close().await;
    // Leaving WAL mode needs the only connection: the pool is closed, so
    // one plain connection folds the WAL in and returns the file to a
    // rollback journal, which a single-file copy or rename keeps whole.
    let uri = format!("sqlite://{}?mode=rw", path.display());
    let mut conn = sqlx::sqlite::SqliteConnection::connect(&uri)
        .await
        .map_err(crate::store::sql::db_err)?;
    sqlx::query("PRAGMA journal_mode = DELETE")
        .execute(&mut conn)
        .await
        .map_err(crate::store::sql::db_err)?;
    conn.close().await.map_err(crate::store::sql::db_err)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    if wal.exists() {
        return Err(StoreError::Unavailable(format!(
            "{} is still open elsewhere: its write-ahead log {} was not folded in",
            path.display(),
            wal.display()
        ))
        .into());
    }
    Ok(())
}

/// The native dump and restore commands for a server database. The URI
/// stays `$MLFLOW_SECRETS_STORE_URI` (it may hold a password); for MySQL,
/// whose tools take no URI, host, port, user and database are spelled out
/// and the password comes from `MYSQL_PWD` (never the command line).
pub fn native_commands(dialect: Dialect, store_uri: &str) -> (Option<String>, Option<String>) {
    match dialect {
        Dialect::Sqlite => (None, None),
        Dialect::Postgres => (
            Some(
                "pg_dump --format=custom --no-owner --no-privileges --file=mlflow-secrets.pgdump \"$MLFLOW_SECRETS_STORE_URI\""
                    .into(),
            ),
            Some(
                "pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname=\"$NEW_STORE_URI\" mlflow-secrets.pgdump"
                    .into(),
            ),
        ),
        Dialect::Mysql => {
            let m = MysqlTarget::parse(store_uri);
            (
                Some(format!(
                    "mysqldump --single-transaction --hex-blob --triggers --no-tablespaces --default-character-set=utf8mb4 {} {} > mlflow-secrets.sql",
                    m.flags(),
                    m.database
                )),
                Some(format!(
                    "mysql {} NEW_DATABASE < mlflow-secrets.sql",
                    m.flags()
                )),
            )
        }
    }
}

/// The parts of a `mysql://user:pass@host:port/db` URI the MySQL tools
/// take as flags (the password is never kept).
pub struct MysqlTarget {
    pub host: String,
    pub port: String,
    pub user: String,
    pub database: String,
}

impl MysqlTarget {
    pub fn parse(uri: &str) -> Self {
        let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (a, h),
            None => ("", rest),
        };
        let user = auth.split(':').next().unwrap_or("").to_string();
        let (hostport, db) = hostpart.split_once('/').unwrap_or((hostpart, ""));
        let db = db.split('?').next().unwrap_or("").to_string();
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "3306"));
        Self {
            host: host.to_string(),
            port: port.to_string(),
            user,
            database: db,
        }
    }

    /// `--host=... --port=... --user=...`. The password comes from
    /// `MYSQL_PWD` or an option file; add `--password` to be asked.
    pub fn flags(&self) -> String {
        let user = if self.user.is_empty() {
            String::new()
        } else {
            format!(" --user={}", self.user)
        };
        format!("--host={} --port={}{user}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_commands_spell_out_the_target_and_never_the_password() {
        let m = MysqlTarget::parse(
            "mysql://secrets:hunter2-pw@db.internal:3307/mlflow_secrets?ssl-mode=required",
        );
        assert_eq!((m.host.as_str(), m.port.as_str()), ("db.internal", "3307"));
        assert_eq!(
            (m.user.as_str(), m.database.as_str()),
            ("secrets", "mlflow_secrets")
        );
        let (dump, restore) = native_commands(
            Dialect::Mysql,
            "mysql://secrets:hunter2-pw@db.internal:3307/mlflow_secrets",
        );
        let (dump, restore) = (dump.unwrap(), restore.unwrap());
        assert!(
            dump.contains("--single-transaction") && dump.contains("--hex-blob"),
            "{dump}"
        );
        assert!(!dump.contains("hunter2") && !restore.contains("hunter2"));
        let m = MysqlTarget::parse("mysql://db/x");
        assert_eq!(
            (m.host.as_str(), m.port.as_str(), m.user.as_str()),
            ("db", "3306", "")
        );
    }

    #[test]
    fn postgres_commands_leave_the_uri_in_the_environment() {
        let (dump, restore) = native_commands(Dialect::Postgres, "postgres://u:pw-secret@h/db");
        let (dump, restore) = (dump.unwrap(), restore.unwrap());
        assert!(dump.contains("\"$MLFLOW_SECRETS_STORE_URI\"") && !dump.contains("pw-secret"));
        assert!(restore.contains("--single-transaction"));
        assert_eq!(
            native_commands(Dialect::Sqlite, "sqlite://x.db"),
            (None, None)
        );
    }
}
