//! Seeding many secrets fast for the bulk benchmarks: through the real
//! envelope code (`crypto::seal` with a fresh DEK per row), but in large
//! transactions on one connection, because one transaction per `create`
//! would dominate the run. No audit rows are written.

use mlflow_secrets::crypto::{self, Aad, Kek};
use mlflow_secrets::model::now_ms;
use mlflow_secrets::value::SecretValue;
use sqlx::Connection;

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
