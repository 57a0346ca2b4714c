//! The disaster-recovery drill of docs/operations.md: `backup` while a
//! writer keeps creating secrets, `restore` into a fresh place with the
//! same passphrases, then `verify`, `audit verify --head` and a decrypt of
//! every secret; and each way a restore must refuse before writing
//! anything. SQLite always; PostgreSQL and MariaDB through their native
//! dump when MLFLOW_SECRETS_TEST_POSTGRES_URL / MLFLOW_SECRETS_TEST_MYSQL_URL
//! are set (required with MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS=1).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mlflow_secrets::ops::archive::{self, Manifest};
use mlflow_secrets::store::SecretsStore;
use testkit::ops::*;

/// Bind the odd-numbered secrets of `names` to one job each.
async fn bind_some(store: &mlflow_secrets::store::SqlStore, names: &[&String]) {
    for (i, name) in names.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let sec = store.get_secret_by_name("default", name).await.unwrap();
        store
            .bind_secret(
                &sec.secret_id,
                "SCORER_JOB",
                &format!("job-{i}"),
                "API_KEY",
                "test:bind",
            )
            .await
            .unwrap();
    }
}

fn read_json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The archive must hold none of the values and neither passphrase.
fn assert_no_secret_bytes(archive: &Path, values: &BTreeMap<String, String>) {
    let bytes = std::fs::read(archive).unwrap();
    for (name, v) in values {
        assert!(
            !contains(&bytes, v.as_bytes()),
            "the archive holds the value of {name}"
        );
    }
    for p in [PASS_V1, PASS_V2] {
        assert!(
            !contains(&bytes, p.as_bytes()),
            "the archive holds a passphrase"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the archive is mode {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_drill_backup_under_a_writer_restore_verify_decrypt() {
    let s = Setup::new(None);
    s.generate_keystore();
    s.ok(&["migrate"]);
    let store = s.store_at(&s.store_uri, &s.keystore).await;
    let mut expected = seed(&store, "early", 20).await;
    let names: Vec<&String> = expected.keys().collect();
    bind_some(&store, &names).await;
    let revoked = store
        .get_secret_by_name("default", "early-3")
        .await
        .unwrap();
    store
        .revoke_secret(&revoked.secret_id, "test:revoke")
        .await
        .unwrap();
    drop(store);
    // Rotate and rewrap as the CLI does it, then switch back to v1, so the
    // backup holds rows under both versions.
    s.rotate();
    s.ok(&["rewrap", "--all", "--batch-size", "7"]);
    s.ok(&["kek", "set-active", "--version", "1"]);
    let store = s.store_at(&s.store_uri, &s.keystore).await;
    expected.extend(seed(&store, "late", 10).await);

    // A writer that keeps creating secrets through the store while the
    // backup runs.
    let written: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, stop, store) = (written.clone(), stop.clone(), store.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("during-{i}");
                let v = create_drill_secret(&store, &name, false, "test:writer").await;
                written.lock().unwrap().insert(name, v);
                i += 1;
            }
        })
    };
    while written.lock().unwrap().len() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = written.lock().unwrap().len();
    let archive_path = s.path("backup.tar");
    let arg = archive_path.to_str().unwrap().to_string();
    let s_ref = &s;
    let (code, out, err) =
        tokio::task::block_in_place(|| s_ref.cli(&["backup", "--out", &arg, "-o", "json"]));
    assert_eq!(code, 0, "backup failed: {err}");
    let after_backup = written.lock().unwrap().len();
    // Keep writing a little after the snapshot, then stop.
    while written.lock().unwrap().len() < after_backup + 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    expected.extend(written.lock().unwrap().clone());
    eprintln!("writer: {before} secret(s) before the backup, {after_backup} when it returned");

    let report = read_json(&out);
    let manifest: Manifest = archive::verify(&archive_path).unwrap();
    assert_eq!(
        report["manifest"]["facts"]["audit_head"]["seq"],
        manifest.facts.audit_head.seq
    );
    let snap_secrets = manifest.facts.rows["secrets"] as usize;
    // A snapshot: every secret made before the backup started, none made
    // after it returned.
    assert!(
        snap_secrets >= 30 + before,
        "{snap_secrets} secrets in the snapshot"
    );
    assert!(
        snap_secrets <= 30 + after_backup,
        "{snap_secrets} secrets in the snapshot"
    );
    assert_eq!(manifest.kek_versions.len(), 2);
    assert!(
        manifest.facts.rows_by_kek_version.contains_key(&1)
            && manifest.facts.rows_by_kek_version.contains_key(&2)
    );
    assert_no_secret_bytes(&archive_path, &expected);

    // Restore into a fresh directory with the same passphrases.
    let fresh = s.path("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let uri = format!("sqlite://{}", fresh.join("store.db").display());
    let ks = fresh.join("keystore");
    let r = restore_ok(&s, &arg, &uri, &ks);
    for (table, n) in &manifest.facts.rows {
        assert_eq!(r["restored_rows"][table], *n, "rows of {table}");
    }
    let head = format!(
        "{}:{}",
        manifest.facts.audit_head.seq, manifest.facts.audit_head.hash
    );
    for args in [vec!["verify"], vec!["audit", "verify", "--head", &head]] {
        let o = s
            .cmd()
            .env("MLFLOW_SECRETS_STORE_URI", &uri)
            .env("MLFLOW_SECRETS_KEYSTORE_PATH", &ks)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?} on the restored store: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let restored = s.store_at(&uri, &ks).await;
    assert_eq!(check_values(&restored, &expected).await, snap_secrets);
    assert_eq!(
        restored
            .list_bindings(&Default::default())
            .await
            .unwrap()
            .items
            .len() as u64,
        manifest.facts.rows["secrets_bindings"]
    );
}

/// Rewrite a tar archive member by member, letting `edit` change each
/// member's bytes or drop it (return false).
fn rewrite(src: &Path, dst: &Path, mut edit: impl FnMut(&str, &mut Vec<u8>) -> bool) {
    use std::io::Read;
    let mut a = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dst).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if !edit(&name, &mut data) {
            continue;
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, &name, data.as_slice()).unwrap();
    }
    b.finish().unwrap();
}

/// A restore into `dir` that must fail with `needle` and leave `dir` empty.
/// `restore` of `archive` into (`uri`, `keystore`) as JSON, which must say
/// `ok`.
fn restore_ok(s: &Setup, archive: &str, uri: &str, keystore: &Path) -> serde_json::Value {
    let out = s.ok(&[
        "restore",
        archive,
        "--store-uri",
        uri,
        "--keystore",
        keystore.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let r = read_json(&out);
    assert_eq!(r["ok"], true, "{out}");
    r
}

fn refused(s: &Setup, target: &str, archive: &Path, needle: &str) {
    let dir = &s.path(target);
    std::fs::create_dir_all(dir).unwrap();
    let uri = format!("sqlite://{}", dir.join("store.db").display());
    let ks = dir.join("keystore");
    let (code, out, err) = s.cli(&[
        "restore",
        archive.to_str().unwrap(),
        "--store-uri",
        &uri,
        "--keystore",
        ks.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "restore should fail: {out}{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the refused restore wrote {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_bad_archives_and_targets_before_writing() {
    let s = Setup::new(None);
    s.generate_keystore();
    s.ok(&["migrate"]);
    let store = s.store_at(&s.store_uri, &s.keystore).await;
    seed(&store, "r", 4).await;
    drop(store);
    let good = s.path("good.tar");
    s.ok(&["backup", "--out", good.to_str().unwrap()]);
    let manifest = archive::verify(&good).unwrap();

    // A corrupted member.
    let bad = s.path("corrupt.tar");
    rewrite(&good, &bad, |name, data| {
        if name == archive::DB_MEMBER {
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
        }
        true
    });
    refused(
        &s,
        "t1",
        &bad,
        "store/mlflow-secrets.db: SHA-256 does not match",
    );

    // A manifest listing a member the archive lacks.
    let bad = s.path("missing.tar");
    rewrite(&good, &bad, |name, _| name != "keystore/kek-v1.json");
    refused(
        &s,
        "t2",
        &bad,
        "keystore/kek-v1.json is listed but not in the archive",
    );

    // A manifest whose facts do not match the database it describes: the
    // hashes pass, the staged copy is compared and thrown away.
    let bad = s.path("facts.tar");
    rewrite(&good, &bad, |name, data| {
        if name == archive::MANIFEST {
            let mut m: serde_json::Value = serde_json::from_slice(data).unwrap();
            let n = m["facts"]["audit_head"]["seq"].as_i64().unwrap();
            m["facts"]["audit_head"]["seq"] = (n + 1).into();
            *data = serde_json::to_vec(&m).unwrap();
        }
        true
    });
    refused(
        &s,
        "t3",
        &bad,
        "does not match the backup manifest: audit head is seq",
    );

    // A wrong passphrase for a KEK version of the archive.
    let wrong = Setup::new(None);
    std::fs::write(wrong.pass.join("v1"), "not the passphrase").unwrap();
    let dir = s.path("t4");
    std::fs::create_dir(&dir).unwrap();
    let (code, _, err) = wrong.cli(&[
        "restore",
        good.to_str().unwrap(),
        "--store-uri",
        &format!("sqlite://{}", dir.join("store.db").display()),
        "--keystore",
        dir.join("keystore").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("wrong passphrase for KEK version 1"), "{err}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "a refused restore wrote files"
    );

    // A target store that holds rows: named with its count.
    let fresh_ks = s.path("t5-keystore");
    let (code, _, err) = s.cli(&[
        "restore",
        good.to_str().unwrap(),
        "--store-uri",
        &s.store_uri,
        "--keystore",
        fresh_ks.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "is not empty: it holds {} row(s)",
            manifest.facts.total_rows()
        )),
        "{err}"
    );
    assert!(
        !fresh_ks.exists(),
        "the keystore was written although the store was refused"
    );
}

/// The drill on a server database: `backup` writes the keystore part and
/// prints the native dump; the dump is taken and restored with the
/// printed commands into a fresh database; `restore` installs the keystore
/// and checks the database against the manifest.
async fn server_drill(var: &str) {
    let Some(admin) = server_url(var) else { return };
    let (_, src) = fresh_database(&admin, "src").await;
    let (dst_name, dst) = fresh_database(&admin, "dst").await;
    let s = Setup::new(Some(src.clone()));
    s.generate_keystore();
    s.ok(&["migrate"]);
    let store = s.store_at(&src, &s.keystore).await;
    let mut expected = seed(&store, "early", 12).await;
    let names: Vec<&String> = expected.keys().collect();
    bind_some(&store, &names).await;
    drop(store);
    s.rotate();
    s.ok(&["rewrap", "--all"]);
    let store = s.store_at(&src, &s.keystore).await;
    expected.extend(seed(&store, "late", 5).await);
    drop(store);

    let archive_path = s.path("keystore-part.tar");
    let arg = archive_path.to_str().unwrap().to_string();
    let report = read_json(&s.ok(&["backup", "--out", &arg, "-o", "json"]));
    let dump = report["native_dump"]
        .as_str()
        .expect("a native dump command")
        .to_string();
    let restore = report["native_restore"]
        .as_str()
        .expect("a native restore command")
        .to_string();
    let manifest = archive::verify(&archive_path).unwrap();
    assert!(!manifest.database_in_archive);
    assert_no_secret_bytes(&archive_path, &expected);

    let pwd = url_password(&admin);
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(s.tmp.path())
            .env("MLFLOW_SECRETS_STORE_URI", &src)
            .env("NEW_STORE_URI", &dst)
            .env("MYSQL_PWD", &pwd)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&dump);
    sh(&restore.replace("NEW_DATABASE", &dst_name));

    let ks = s.path("restored-keystore");
    let r = restore_ok(&s, &arg, &dst, &ks);
    assert_eq!(r["database_written"], false);
    for (table, n) in &manifest.facts.rows {
        assert_eq!(r["restored_rows"][table], *n, "rows of {table}");
    }
    let restored = s.store_at(&dst, &ks).await;
    assert_eq!(check_values(&restored, &expected).await, expected.len());
    // Restoring the keystore part again into a keystore that holds other
    // KEK files is refused.
    let other = Setup::new(None);
    other.generate_keystore();
    let (code, _, err) = s.cli(&[
        "restore",
        &arg,
        "--store-uri",
        &dst,
        "--keystore",
        other.keystore.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("already holds"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drill_with_pg_dump() {
    server_drill("MLFLOW_SECRETS_TEST_POSTGRES_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drill_with_mysqldump() {
    server_drill("MLFLOW_SECRETS_TEST_MYSQL_URL").await;
}
