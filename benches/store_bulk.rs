//! Bulk maintenance figures: `rewrap` and `verify` of many secrets on SQLite,
//! timed through the real CLI binary. Prints the numbers; asserts nothing
//! about speed.
//!
//!     cargo bench --bench store_bulk                 # 100,000 secrets
//!     MLFLOW_SECRETS_BENCH_SECRETS=20000 cargo bench --bench store_bulk
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
use mlflow_secrets::store::SqlStore;
use secrecy::SecretString;

fn cli(args: &[&str], store: &str, ks: &Path, pass: &Path) -> f64 {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_mlflow-secrets"))
        .args(args)
        .args(["--store-uri", store, "-o", "json"])
        .env("MLFLOW_SECRETS_KEYSTORE_PATH", ks)
        .env("MLFLOW_SECRETS_KEK_PASSPHRASE_FILE", pass)
        .output()
        .expect("run mlflow-secrets");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "mlflow-secrets {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("MLFLOW_SECRETS_BENCH_SECRETS") {
        Ok(v) => v.parse().expect("MLFLOW_SECRETS_BENCH_SECRETS is a number"),
        Err(_) if full => 100_000,
        Err(_) => 300,
    };
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("pass");
    std::fs::create_dir(&pass).unwrap();
    std::fs::write(pass.join("v1"), "bench passphrase one").unwrap();
    std::fs::write(pass.join("v2"), "bench passphrase two").unwrap();
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
    let uri = format!("sqlite://{}", tmp.path().join("bench.db").display());
    let store = SqlStore::connect(&uri, handle.clone()).await.unwrap();
    store.migrate().await.unwrap();

    // Seed through the real envelope code, in large transactions (the
    // one-transaction-per-create path would dominate the run).
    let seed_start = Instant::now();
    let kek = handle.current().active().unwrap().clone();
    bulk_seed::seed(&uri, &kek, n).await;
    let seed = seed_start.elapsed().as_secs_f64();

    keystore::rotate(
        &ks,
        &SecretString::from("bench passphrase two"),
        NewKekOptions::default(),
    )
    .unwrap();
    let rewrap = cli(
        &["rewrap", "--all", "--batch-size", "1000"],
        &uri,
        &ks,
        &pass,
    );
    let verify = cli(&["verify"], &uri, &ks, &pass);
    let counts = store.kek_version_counts().await.unwrap();
    assert_eq!(
        counts.get(&2).copied(),
        Some(n as u64),
        "every row moved to v2"
    );

    println!("store_bulk: {n} secrets on SQLite");
    println!(
        "  seed (library, {}/txn):   {seed:8.2} s",
        bulk_seed::SEED_BATCH
    );
    println!(
        "  rewrap --all (CLI, end to end): {rewrap:8.2} s  ({:.0} secrets/s)",
        n as f64 / rewrap
    );
    println!(
        "  verify (CLI, end to end):       {verify:8.2} s  ({:.0} secrets/s)",
        n as f64 / verify
    );
}
