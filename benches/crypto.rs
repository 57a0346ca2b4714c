//! Crypto hot paths (criterion). Run: `cargo bench --bench crypto`.
//!
//! - `encrypt_secret`: fresh DEK and IV, seal the value, wrap the DEK.
//! - `decrypt_secret`: the store's read path with the KEK cached: keystore
//!   lookup, AAD hash check, DEK unwrap, AES-GCM decrypt, JSON parse.
//! - `derive_kek`: PBKDF2-HMAC-SHA256 at 600000 iterations.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mlflow_secrets::crypto::{self, Aad, DEFAULT_ITERATIONS, Kek, default_salt};
use mlflow_secrets::keystore::{Keystore, KeystoreHandle};
use mlflow_secrets::value::SecretValue;
use secrecy::SecretString;

const SECRET_ID: &str = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";

fn value() -> SecretValue {
    SecretValue::from_string("sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp".to_string()).unwrap()
}

fn envelope(c: &mut Criterion) {
    // Test mode gives a KEK without PBKDF2; the cipher work is identical.
    let handle = KeystoreHandle::new(Keystore::test_mode());
    let v = value();
    c.bench_function("encrypt_secret", |b| {
        b.iter(|| {
            let ks = handle.current();
            let aad = Aad::new("default", SECRET_ID, "openai-key");
            black_box(crypto::seal(ks.active().unwrap(), &aad, &v.to_plaintext()).unwrap())
        })
    });
    let ks = handle.current();
    let sealed = crypto::seal(
        ks.active().unwrap(),
        &Aad::new("default", SECRET_ID, "openai-key"),
        &v.to_plaintext(),
    )
    .unwrap();
    c.bench_function("decrypt_secret", |b| {
        b.iter(|| {
            let ks = handle.current();
            let kek = ks.kek(sealed.kek_version).unwrap();
            let aad = Aad::new("default", SECRET_ID, "openai-key");
            let pt = crypto::open(
                kek,
                &aad,
                &sealed.aad_hash,
                &sealed.ciphertext,
                &sealed.iv,
                &sealed.wrapped_dek,
            )
            .unwrap();
            black_box(SecretValue::from_plaintext(&pt).unwrap())
        })
    });
}

fn kdf(c: &mut Criterion) {
    let pass = SecretString::from("correct horse battery staple");
    let salt = default_salt(1);
    c.bench_function("derive_kek", |b| {
        b.iter(|| {
            let key = crypto::derive_kek_bytes(&pass, &salt, DEFAULT_ITERATIONS);
            black_box(Kek::from_bytes(1, &key))
        })
    });
}

criterion_group!(fast, envelope);
criterion_group! {
    name = slow;
    config = Criterion::default().sample_size(10);
    targets = kdf
}
criterion_main!(fast, slow);
