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

use std::time::Instant;

use bulk_seed::{BenchStore, cli};
use mlflow_secrets::keystore::{self, NewKekOptions};
use secrecy::SecretString;

#[tokio::main]
async fn main() {
    let n = bulk_seed::secret_count();
    let b = BenchStore::new(&["bench passphrase one", "bench passphrase two"]).await;
    let (uri, ks, pass, store) = (&b.uri, &b.ks, &b.pass, &b.store);

    // Seed through the real envelope code, in large transactions (the
    // one-transaction-per-create path would dominate the run).
    let seed_start = Instant::now();
    bulk_seed::seed(uri, &b.kek(), n).await;
    let seed = seed_start.elapsed().as_secs_f64();

    keystore::rotate(
        ks,
        &SecretString::from("bench passphrase two"),
        NewKekOptions::default(),
    )
    .unwrap();
    let (rewrap, _) = cli(&["rewrap", "--all", "--batch-size", "1000"], uri, ks, pass);
    let (verify, _) = cli(&["verify"], uri, ks, pass);
    let counts = store.kek_version_counts().await.unwrap();
    assert_eq!(
        counts.get(&2).copied(),
        Some(n as u64),
        "every row moved to v2"
    );

    let db_mib = std::fs::metadata(&b.db).unwrap().len() as f64 / (1024.0 * 1024.0);
    println!("store_bulk: {n} secrets on SQLite ({db_mib:.1} MiB database file)");
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
