//! Bulk maintenance figures: `rewrap` and `verify` of many secrets on SQLite,
//! timed through the real CLI binary. Prints the numbers; asserts nothing
//! about speed.
//!
//!     cargo bench --bench store_bulk                 # 100,000 secrets
//!     MLFLOW_SECRETS_BENCH_SECRETS=20000 cargo bench --bench store_bulk
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs on 300
//! secrets, so the script itself stays tested.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use mlflow_secrets::crypto::{self, Aad};
use mlflow_secrets::keystore::{
    self, KeystoreConfig, KeystoreHandle, NewKekOptions, PassphraseSource,
};
use mlflow_secrets::model::now_ms;
use mlflow_secrets::store::SqlStore;
use mlflow_secrets::value::SecretValue;
use secrecy::SecretString;
use sqlx::Connection;

/// Rows per seeding transaction.
const SEED_BATCH: usize = 2000;

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
    let mut conn = sqlx::AnyConnection::connect(&uri).await.unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(SEED_BATCH) {
        sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
        for i in chunk {
            let id = uuid::Uuid::new_v4().to_string();
            let name = format!("bench-{i:07}");
            let v = SecretValue::from_string(format!("sk-bench-{i:07}-abcdefghijklmnop")).unwrap();
            let sealed =
                crypto::seal(&kek, &Aad::new("default", &id, &name), &v.to_plaintext()).unwrap();
            sqlx::query(
                "INSERT INTO secrets (secret_id, workspace, secret_name, ciphertext, iv, wrapped_dek, \
                 kek_version, aad_hash, masked_value, is_shared, state, created_at, last_updated_at) \
                 VALUES (?, 'default', ?, ?, ?, ?, ?, ?, ?, FALSE, 'ACTIVE', ?, ?)",
            )
            .bind(id)
            .bind(name)
            .bind(sealed.ciphertext)
            .bind(sealed.iv.to_vec())
            .bind(sealed.wrapped_dek)
            .bind(i64::from(sealed.kek_version))
            .bind(sealed.aad_hash)
            .bind(v.mask())
            .bind(now_ms())
            .bind(now_ms())
            .execute(&mut conn)
            .await
            .unwrap();
        }
        sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
    }
    drop(conn);
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
    println!("  seed (library, {SEED_BATCH}/txn):   {seed:8.2} s");
    println!(
        "  rewrap --all (CLI, end to end): {rewrap:8.2} s  ({:.0} secrets/s)",
        n as f64 / rewrap
    );
    println!(
        "  verify (CLI, end to end):       {verify:8.2} s  ({:.0} secrets/s)",
        n as f64 / verify
    );
}
