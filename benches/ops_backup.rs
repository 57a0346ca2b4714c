//! Backup and restore figures: `mlflow-secrets backup` of a SQLite store
//! with many secrets (time, archive size), then `restore` of that archive
//! into a fresh directory (which includes `verify`, a decrypt of every
//! secret, and `audit verify --head`). Timed through the real CLI binary.
//! Prints the numbers; asserts nothing about speed.
//!
//!     cargo bench --bench ops_backup                 # 100,000 secrets
//!     MLFLOW_SECRETS_BENCH_SECRETS=20000 cargo bench --bench ops_backup
//!
//! The count and the small run under `cargo test --all-targets` are
//! [`bulk_seed::secret_count`]'s.

#[path = "support/bulk_seed.rs"]
mod bulk_seed;

use bulk_seed::{BenchStore, cli};
use mlflow_secrets::store::SecretsStore;
use mlflow_secrets::value::SecretValue;

#[tokio::main]
async fn main() {
    let n = bulk_seed::secret_count();
    // Audited creates on top of the bulk rows, so the archive carries an
    // audit chain and bindings as a real store does.
    let audited = (n / 100).max(10);
    let b = BenchStore::new(&["bench passphrase one"]).await;
    bulk_seed::seed(&b.uri, &b.kek(), n).await;
    let BenchStore {
        _tmp,
        pass,
        ks,
        db,
        uri,
        store,
        ..
    } = b;
    let (uri, ks, pass, db) = (&uri, &ks, &pass, &db);
    for i in 0..audited {
        let v = SecretValue::from_string(format!("sk-audited-{i:06}-abcdefghijklmnop")).unwrap();
        let s = store
            .create_secret("default", &format!("audited-{i}"), &v, false, "bench")
            .await
            .unwrap();
        let job = format!("job-{i}");
        let bound = store.bind_secret(&s.secret_id, "SCORER_JOB", &job, "API_KEY", "bench");
        bound.await.unwrap();
    }
    drop(store);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let db_bytes = std::fs::metadata(db).unwrap().len()
        + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);

    let tmp = _tmp.path();
    let archive = tmp.join("backup.tar");
    let (backup, _) = cli(
        &["backup", "--out", archive.to_str().unwrap()],
        uri,
        ks,
        pass,
    );
    let archive_bytes = std::fs::metadata(&archive).unwrap().len();

    let fresh = tmp.join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let target = format!("sqlite://{}", fresh.join("restored.db").display());
    let (restore, out) = cli(
        &["restore", archive.to_str().unwrap()],
        &target,
        &fresh.join("keystore"),
        pass,
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "restore did not verify: {out}");
    assert_eq!(
        report["verify"]["ok"].as_u64(),
        Some((n + audited) as u64),
        "every secret decrypts after the restore"
    );

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "ops_backup: {} secrets on SQLite ({n} bulk-seeded, {audited} created and bound with audit rows)",
        n + audited
    );
    println!(
        "  live database files (db + WAL):   {:8.1} MiB",
        mib(db_bytes)
    );
    println!(
        "  backup (CLI, end to end):         {backup:8.2} s   archive {:.1} MiB ({archive_bytes} bytes)",
        mib(archive_bytes)
    );
    println!(
        "  restore + verify + audit verify:  {restore:8.2} s  ({:.0} secrets/s)",
        (n + audited) as f64 / restore
    );
}
