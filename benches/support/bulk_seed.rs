//! Seeding many secrets fast for the bulk benchmarks: through the real
//! envelope code (`crypto::seal` with a fresh DEK per row), but in large
//! transactions on one connection, because one transaction per `create`
//! would dominate the run. No audit rows are written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mlflow_secrets::crypto::{self, Aad, Kek};
use mlflow_secrets::keystore::{
    self, KeystoreConfig, KeystoreHandle, NewKekOptions, PassphraseSource,
};
use mlflow_secrets::model::now_ms;
use mlflow_secrets::store::SqlStore;
use mlflow_secrets::value::SecretValue;
use secrecy::SecretString;
use sqlx::Connection;

/// How many secrets a bulk benchmark seeds: `MLFLOW_SECRETS_BENCH_SECRETS`,
/// else 100,000 under `cargo bench` and 300 under `cargo test
/// --all-targets` (no `--bench` argument), so the script stays tested.
pub fn secret_count() -> usize {
    let full = std::env::args().any(|a| a == "--bench");
    match std::env::var("MLFLOW_SECRETS_BENCH_SECRETS") {
        Ok(v) => v.parse().expect("MLFLOW_SECRETS_BENCH_SECRETS is a number"),
        Err(_) if full => 100_000,
        Err(_) => 300,
    }
}

/// A migrated SQLite store in a temporary directory, with a keystore whose
/// passphrase directory holds `v1` (and whatever a bench adds).
pub struct BenchStore {
    /// Kept for its lifetime: the directory goes when the store does.
    pub _tmp: tempfile::TempDir,
    pub pass: PathBuf,
    pub ks: PathBuf,
    pub db: PathBuf,
    pub uri: String,
    pub handle: KeystoreHandle,
    pub store: SqlStore,
}

impl BenchStore {
    /// `passphrases[0]` is v1's, the one the keystore is generated with.
    pub async fn new(passphrases: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pass = tmp.path().join("pass");
        std::fs::create_dir(&pass).unwrap();
        for (i, p) in passphrases.iter().enumerate() {
            std::fs::write(pass.join(format!("v{}", i + 1)), p).unwrap();
        }
        let ks = tmp.path().join("keystore");
        let first = SecretString::from(passphrases[0]);
        keystore::generate(&ks, &first, NewKekOptions::default()).unwrap();
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
        Self {
            _tmp: tmp,
            pass,
            ks,
            db,
            uri,
            handle,
            store,
        }
    }

    /// The active KEK, for [`seed`].
    pub fn kek(&self) -> std::sync::Arc<Kek> {
        self.handle.current().active().unwrap().clone()
    }
}

/// Run the CLI with `-o json` against `store` and `ks`; returns (seconds,
/// stdout). A failure is fatal.
pub fn cli(args: &[&str], store: &str, ks: &Path, pass: &Path) -> (f64, String) {
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

/// Rows per seeding transaction.
pub const SEED_BATCH: usize = 2000;

/// Insert `n` secrets `bench-<i>` into the migrated SQLite store at `uri`,
/// sealed under `kek`.
pub async fn seed(uri: &str, kek: &Kek, n: usize) {
    let mut conn = sqlx::AnyConnection::connect(uri).await.unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(SEED_BATCH) {
        sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
        for i in chunk {
            let id = uuid::Uuid::new_v4().to_string();
            let name = format!("bench-{i:07}");
            let v = SecretValue::from_string(format!("sk-bench-{i:07}-abcdefghijklmnop")).unwrap();
            let sealed =
                crypto::seal(kek, &Aad::new("default", &id, &name), &v.to_plaintext()).unwrap();
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
}
