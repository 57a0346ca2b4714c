//! Backup and restore figures: `mlflow-secrets backup` of a SQLite store
//! with many secrets (time, archive size), then `restore` of that archive
//! into a fresh directory (which includes `verify`, a decrypt of every
//! secret, and `audit verify --head`). Timed through the real CLI binary.
//! Prints the numbers; asserts nothing about speed.
//!
//!     cargo bench --bench ops_backup                 # 100,000 secrets
//!     MLFLOW_SECRETS_BENCH_SECRETS=20000 cargo bench --bench ops_backup
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs on 300
//! secrets, so the script itself stays tested.

#[path = "support/bulk_seed.rs"]
mod bulk_seed;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mlflow_secrets::keystore::{
    self, KeystoreConfig, KeystoreHandle, NewKekOptions, PassphraseSource,
};
use mlflow_secrets::store::{SecretsStore, SqlStore};
use mlflow_secrets::value::SecretValue;
use secrecy::SecretString;

/// Run the CLI against `store` and `ks`; returns (seconds, stdout).
fn cli(args: &[&str], store: &str, ks: &Path, pass: &Path) -> (f64, String) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mlflow-secrets"))
        .args(args)
        .args(["--store-uri", store, "--keystore"])
        .arg(ks)
        .args(["-o", "json"])
        .env("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", pass)
        .output()
        .expect("run mlflow-secrets");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "mlflow-secrets {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("MLFLOW_SECRETS_BENCH_SECRETS") {
        Ok(v) => v.parse().expect("MLFLOW_SECRETS_BENCH_SECRETS is a number"),
        Err(_) if full => 100_000,
        Err(_) => 300,
    };
    // Audited creates on top of the bulk rows, so the archive carries an
    // audit chain and bindings as a real store does.
    let audited = (n / 100).max(10);
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("pass");
    std::fs::create_dir(&pass).unwrap();
    std::fs::write(pass.join("v1"), "bench passphrase one").unwrap();
    let ks = tmp.path().join("keystore");
    keystore::generate(
        &ks,
        &SecretString::from("bench passphrase one"),
        NewKekOptions::default(),
    )
    .unwrap();
    let cfg = KeystoreConfig {
        dir: ks.clone(),
        passphrase: PassphraseSource::new(&pass),
        test_mode: false,
    };
    let handle = KeystoreHandle::new(keystore::Keystore::load(&cfg).unwrap());
    let db = tmp.path().join("bench.db");
    let uri = format!("sqlite://{}", db.display());
    let store = SqlStore::connect(&uri, handle.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let kek = handle.current().active().unwrap().clone();
    bulk_seed::seed(&uri, &kek, n).await;
    for i in 0..audited {
        let v = SecretValue::from_string(format!("sk-audited-{i:06}-abcdefghijklmnop")).unwrap();
        let s = store
            .create_secret("default", &format!("audited-{i}"), &v, false, "bench")
            .await
            .unwrap();
        store
            .bind_secret(
                &s.secret_id,
                "SCORER_JOB",
                &format!("job-{i}"),
                "API_KEY",
                "bench",
            )
            .await
            .unwrap();
    }
    drop(store);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let db_bytes = std::fs::metadata(&db).unwrap().len()
        + std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);

    let archive = tmp.path().join("backup.tar");
    let (backup, _) = cli(
        &["backup", "--out", archive.to_str().unwrap()],
        &uri,
        &ks,
        &pass,
    );
    let archive_bytes = std::fs::metadata(&archive).unwrap().len();

    let fresh = tmp.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let target = format!("sqlite://{}", fresh.join("restored.db").display());
    let (restore, out) = cli(
        &["restore", archive.to_str().unwrap()],
        &target,
        &fresh.join("keystore"),
        &pass,
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
