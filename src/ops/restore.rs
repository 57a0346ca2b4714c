//! `mlflow-secrets restore`: put a backup back, into an empty store only.
//!
//! The order is what makes an interrupted restore harmless:
//! 1. every member's hash and the manifest are checked ([`archive::verify`])
//!    and the targets are checked to be empty, before anything is written;
//! 2. the members are written to temporary names beside their targets
//!    (a directory beside the keystore, a file in the database's
//!    directory) and checked again: the staged KEK files must load with
//!    the passphrases given, the staged database must hold exactly the
//!    manifest's rows and audit head;
//! 3. each is renamed into place (a rename is atomic), the keystore first
//!    and the database last, so a store that exists is a complete one;
//! 4. the restored store is checked as `verify` and `audit verify --head`
//!    would, against the manifest's head.
//!
//! For a PostgreSQL or MySQL backup the database comes back with the native
//! tool (`pg_restore`, `mysql`) first; restore then checks that database
//! against the manifest and writes only the keystore part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::archive::{self, DB_MEMBER, KEYSTORE_PREFIX, Manifest};
use super::backup::{close_sqlite_copy, open_sqlite_copy};
use super::facts::StoreFacts;
use super::{Cleanup, OpsError, Result, io_err};
use crate::keystore::{self, Keystore, KeystoreConfig, KeystoreHandle, PassphraseSource};
use crate::store::audit::AuditVerifyReport;
use crate::store::sql::{Dialect, sqlite_path};
use crate::store::{SqlStore, VerifyReport};

/// Where a backup goes.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    pub store_uri: String,
    pub keystore_dir: PathBuf,
    /// The passphrases of the archive's KEK versions (kept apart from it).
    pub passphrase: PassphraseSource,
}

/// What a restore did and found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub dialect: String,
    /// True when this command wrote the database (SQLite); false when the
    /// native tool did and this command checked it.
    pub database_written: bool,
    /// `written`, or `already in place` when the target keystore held the
    /// very same KEK files.
    pub keystore: String,
    pub manifest_rows: BTreeMap<String, u64>,
    /// Rows of the restored store, counted before `verify` added its own
    /// audit row.
    pub restored_rows: BTreeMap<String, u64>,
    pub verify: VerifyReport,
    pub audit: AuditVerifyReport,
    /// The audit head of the manifest that the chain was checked to reach.
    pub audit_head_seq: i64,
    pub ok: bool,
}

/// Restore `archive_path` into `target`. `progress` gets (bytes, total)
/// while members are written.
pub async fn restore(
    archive_path: &Path,
    target: &RestoreTarget,
    actor: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RestoreReport> {
    let manifest = archive::verify(archive_path)?;
    let dialect = Dialect::from_uri(&target.store_uri).ok_or_else(|| {
        OpsError::Unsupported(
            "the restore target must be a sqlite://, postgres:// or mysql:// store URI".into(),
        )
    })?;
    if dialect.name() != manifest.dialect {
        return Err(OpsError::Unsupported(format!(
            "this is a {} backup; it cannot be restored into a {} store",
            manifest.dialect,
            dialect.name()
        )));
    }
    let keystore_in_place = check_keystore_target(&target.keystore_dir, &manifest)?;
    let db_path = match dialect {
        Dialect::Sqlite => Some(check_sqlite_target(&target.store_uri).await?),
        _ => None,
    };

    // Stage: nothing below touches a target name until the renames.
    let mut cleanup = Cleanup::new();
    let staged_ks = super::temp_beside(&target.keystore_dir, "restore");
    let staged_db = db_path.as_deref().map(|p| super::temp_beside(p, "restore"));
    if let Some(parent) = staged_ks.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    keystore::file::ensure_dir(&staged_ks)?;
    cleanup.add(&staged_ks);
    if let Some(s) = &staged_db {
        cleanup.add(s);
    }
    let total: u64 = manifest.members.iter().map(|m| m.size).sum();
    archive::extract(
        archive_path,
        &manifest,
        &|name| {
            if name == DB_MEMBER {
                staged_db.clone()
            } else {
                name.strip_prefix(KEYSTORE_PREFIX)
                    .map(|f| staged_ks.join(f))
            }
        },
        &|n| progress(n, total),
    )?;
    let ks = Keystore::load_async(KeystoreConfig {
        dir: staged_ks.clone(),
        passphrase: target.passphrase.clone(),
        test_mode: false,
    })
    .await?;
    let keys = KeystoreHandle::new(ks);

    let (store, restored) = match &staged_db {
        Some(staged) => {
            let copy = open_sqlite_copy(staged).await?;
            let facts = StoreFacts::read(&copy).await;
            close_sqlite_copy(copy, staged).await?;
            let facts = facts?;
            compare_exact(&manifest, &facts)?;
            (None, facts)
        }
        None => {
            let store = SqlStore::connect_existing(&target.store_uri, keys.clone()).await?;
            if !super::facts::store_has_table(&store, "secrets_audit_head").await? {
                return Err(OpsError::RestoredMismatch(
                    "the target database has no mlflow-secrets tables: restore the native dump into it first (docs/operations.md)".into(),
                ));
            }
            let facts = StoreFacts::read(&store).await?;
            compare_dumped(&manifest, &facts)?;
            (Some(store), facts)
        }
    };

    // Put the parts in place: keystore first, database last.
    let keystore_state = if keystore_in_place {
        "already in place"
    } else {
        install_keystore(&staged_ks, &target.keystore_dir)?;
        "written"
    };
    if let (Some(staged), Some(db)) = (&staged_db, &db_path) {
        std::fs::rename(staged, db).map_err(io_err(db))?;
        if let Some(d) = db.parent() {
            super::sync_dir(d);
        }
    }
    cleanup.keep();
    if keystore_in_place {
        let _ = std::fs::remove_dir_all(&staged_ks);
    }

    let store = match store {
        Some(s) => s,
        None => SqlStore::connect_existing(&target.store_uri, keys).await?,
    };
    let verify = store.verify(actor, &|_| {}).await?;
    let head = &manifest.facts.audit_head;
    let audit = if head.seq > 0 {
        store.audit_verify_head(head.into()).await?
    } else {
        store.audit_verify().await?
    };
    let ok = verify.failed.is_empty() && audit.ok;
    Ok(RestoreReport {
        dialect: manifest.dialect.clone(),
        database_written: db_path.is_some(),
        keystore: keystore_state.to_string(),
        manifest_rows: manifest.facts.rows.clone(),
        restored_rows: restored.rows,
        verify,
        audit,
        audit_head_seq: head.seq,
        ok,
    })
}

/// The keystore target must hold no KEK file, or exactly the archive's
/// (true: nothing to write).
fn check_keystore_target(dir: &Path, m: &Manifest) -> Result<bool> {
    let present = keystore::list_versions(dir)?;
    if present.is_empty() {
        return Ok(false);
    }
    for member in m
        .members
        .iter()
        .filter(|x| x.name.starts_with(KEYSTORE_PREFIX))
    {
        let file = dir.join(&member.name[KEYSTORE_PREFIX.len()..]);
        let same = file.exists() && archive::hash_file(&file)?.1 == member.sha256;
        if !same {
            return Err(OpsError::KeystoreNotEmpty {
                dir: dir.to_path_buf(),
                what: format!(
                    "{} KEK file(s) that differ from the backup's",
                    present.len()
                ),
            });
        }
    }
    if present.len() != m.kek_versions.len() {
        return Err(OpsError::KeystoreNotEmpty {
            dir: dir.to_path_buf(),
            what: format!(
                "{} KEK file(s), the backup has {}",
                present.len(),
                m.kek_versions.len()
            ),
        });
    }
    Ok(true)
}

/// The SQLite target must not exist, or hold no row.
async fn check_sqlite_target(uri: &str) -> Result<PathBuf> {
    let path = sqlite_path(uri).ok_or_else(|| {
        OpsError::Unsupported("an in-memory SQLite store cannot be restored into".into())
    })?;
    if path.exists() {
        let store = open_sqlite_copy(&path).await?;
        let facts = StoreFacts::read(&store).await;
        store.pool.close().await;
        let rows = match facts {
            Ok(f) => f.total_rows(),
            // Unreadable or not migrated: count what is there.
            Err(_) => {
                let s = open_sqlite_copy(&path).await?;
                let mut n = 0;
                for t in super::facts::TABLES {
                    n += super::facts::count_rows(&s, t).await?;
                }
                s.pool.close().await;
                n
            }
        };
        if rows > 0 {
            return Err(OpsError::TargetNotEmpty {
                target: path.display().to_string(),
                rows,
            });
        }
        // A write-ahead log left after our own connections closed belongs
        // to another process: renaming a new file under it would let that
        // log be replayed onto the restored database.
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        if Path::new(&wal).exists() {
            return Err(OpsError::Unsupported(format!(
                "restore target {} is open in another process (its -wal file exists): stop serve or the operator first",
                path.display()
            )));
        }
    }
    Ok(path)
}

/// The staged SQLite copy must be the manifest's snapshot exactly.
fn compare_exact(m: &Manifest, f: &StoreFacts) -> Result<()> {
    if m.facts != *f {
        let mut diffs = Vec::new();
        for (t, n) in &m.facts.rows {
            let got = f.rows.get(t).copied().unwrap_or(0);
            if got != *n {
                diffs.push(format!("{t}: {got} row(s), the manifest says {n}"));
            }
        }
        if m.facts.audit_head != f.audit_head {
            diffs.push(format!(
                "audit head is seq {}, the manifest says seq {}",
                f.audit_head.seq, m.facts.audit_head.seq
            ));
        }
        if m.facts.migration != f.migration {
            diffs.push("the migration level differs".into());
        }
        if m.facts.rows_by_kek_version != f.rows_by_kek_version {
            diffs.push("the rows per KEK version differ".into());
        }
        return Err(OpsError::RestoredMismatch(diffs.join("; ")));
    }
    Ok(())
}

/// A database restored from a native dump taken after the archive holds
/// at least the archive's audit rows, the same migrations, and no row
/// under a KEK version the keystore part lacks. (Secrets may have been
/// created or deleted between the two, so those counts are reported, not
/// compared.)
fn compare_dumped(m: &Manifest, f: &StoreFacts) -> Result<()> {
    let audit_m = m.facts.rows.get("secrets_audit_log").copied().unwrap_or(0);
    let audit_f = f.rows.get("secrets_audit_log").copied().unwrap_or(0);
    if f.total_rows() == 0 {
        return Err(OpsError::RestoredMismatch(
            "the target database is empty: restore the native dump into it first (docs/operations.md)".into(),
        ));
    }
    if audit_f < audit_m {
        return Err(OpsError::RestoredMismatch(format!(
            "the database has {audit_f} audit row(s), fewer than the {audit_m} the archive recorded: the dump is older than the archive"
        )));
    }
    if f.migration.latest() != m.facts.migration.latest() {
        return Err(OpsError::RestoredMismatch(format!(
            "the database's migration level {:?} is not the archive's {:?}",
            f.migration.latest(),
            m.facts.migration.latest()
        )));
    }
    if let Some(v) = f
        .rows_by_kek_version
        .keys()
        .find(|v| !m.kek_versions.iter().any(|k| k.version == **v))
    {
        return Err(OpsError::RestoredMismatch(format!(
            "rows use KEK version {v}, which the archive's keystore does not hold"
        )));
    }
    Ok(())
}

/// Move the staged keystore directory into place: one rename when the
/// target is missing or an empty directory, else file by file (a mounted
/// directory with other entries).
fn install_keystore(staged: &Path, dir: &Path) -> Result<()> {
    let empty_dir = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !dir.exists() || empty_dir {
        std::fs::rename(staged, dir).map_err(io_err(dir))?;
    } else {
        for e in std::fs::read_dir(staged).map_err(io_err(staged))? {
            let e = e.map_err(io_err(staged))?;
            let to = dir.join(e.file_name());
            std::fs::rename(e.path(), &to).map_err(io_err(&to))?;
        }
        let _ = std::fs::remove_dir(staged);
    }
    if let Some(p) = dir.parent() {
        super::sync_dir(p);
    }
    Ok(())
}
