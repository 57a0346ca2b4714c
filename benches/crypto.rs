//! Crypto hot paths (criterion). Run: `cargo bench --bench crypto`.
//!
//! - `encrypt_secret`: fresh DEK and IV, seal the value, wrap the DEK.
//! - `decrypt_secret`: the store's read path with the KEK cached: keystore
//!   lookup, AAD hash check, DEK unwrap, AES-GCM decrypt, JSON parse, of a
//!   string value; `decrypt_secret_object` the same for `{"api_key": ...}`.
//! - `derive_kek`: PBKDF2-HMAC-SHA256 at 600000 iterations.
//! - `aead/<backend>`: the AEAD steps of one read (open a wrapped DEK with a
//!   cached KEK, expand the DEK, open the value with its AAD) with AWS-LC
//!   (what the crate uses), `ring` and RustCrypto's `aes-gcm`, so the choice
//!   in src/crypto/keys.rs can be re-checked on any machine.
//!
//! `scripts/bench/crypto_vs_mlflow.sh` runs `decrypt_secret` and MLflow's own
//! Python decrypt back to back and prints the ratio.

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
    // `decrypt_secret` reads a string value (the usual API key);
    // `decrypt_secret_object` one field in an object, the shape MLflow
    // stores (`{"api_key": ...}`, what scripts/bench/mlflow_decrypt.py reads),
    // which takes the general JSON path.
    let object =
        SecretValue::from_json_text(r#"{"api_key":"sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp"}"#)
            .unwrap();
    for (name, v) in [("decrypt_secret", &v), ("decrypt_secret_object", &object)] {
        let ks = handle.current();
        let aad = Aad::new("default", SECRET_ID, "openai-key");
        let sealed = crypto::seal(ks.active().unwrap(), &aad, &v.to_plaintext()).unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                let ks = handle.current();
                let kek = ks.kek(sealed.kek_version).unwrap();
                let aad = Aad::new("default", SECRET_ID, "openai-key");
                // The store's read path (SqlStore::open_row): decrypt into
                // a wiped stack buffer and parse it there.
                let value = crypto::open_with(
                    kek,
                    &aad,
                    crypto::Columns {
                        aad_hash: &sealed.aad_hash,
                        ciphertext: &sealed.ciphertext,
                        iv: &sealed.iv,
                        wrapped_dek: &sealed.wrapped_dek,
                    },
                    SecretValue::from_plaintext,
                )
                .unwrap();
                black_box(value.unwrap())
            })
        });
    }
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

/// Fixed inputs for the backend comparison: a KEK, a DEK wrapped under it and
/// a value sealed under the DEK, as `nonce || ciphertext || tag`.
const KEK_BYTES: [u8; 32] = [7; 32];
const DEK_BYTES: [u8; 32] = [9; 32];
const NONCE: [u8; 12] = [1; 12];
const AAD: &[u8] = b"default|6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b|openai-key";
const PLAINTEXT: &[u8] = b"{\"s\":\"sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp\"}";

fn aead_backends(c: &mut Criterion) {
    let mut group = c.benchmark_group("aead");
    // aws-lc-rs keeps ring's API, so one body serves both.
    macro_rules! ring_api_backend {
        ($krate:ident, $label:literal) => {{
            use $krate::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
            let key = |k: &[u8]| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).unwrap());
            let nonce = || Nonce::assume_unique_for_key(NONCE);
            let kek = key(&KEK_BYTES);
            let mut wrapped = DEK_BYTES.to_vec();
            kek.seal_in_place_append_tag(nonce(), Aad::empty(), &mut wrapped)
                .unwrap();
            let mut sealed = PLAINTEXT.to_vec();
            key(&DEK_BYTES)
                .seal_in_place_append_tag(nonce(), Aad::from(AAD), &mut sealed)
                .unwrap();
            group.bench_function($label, |b| {
                b.iter(|| {
                    let mut w = wrapped.clone();
                    let dek = kek.open_in_place(nonce(), Aad::empty(), &mut w).unwrap();
                    let mut v = sealed.clone();
                    let pt = key(dek)
                        .open_in_place(nonce(), Aad::from(AAD), &mut v)
                        .unwrap();
                    black_box(pt.len())
                })
            });
        }};
    }
    ring_api_backend!(aws_lc_rs, "aws-lc-rs");
    ring_api_backend!(ring, "ring");
    {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        use aes_gcm::{Aes256Gcm, Nonce};
        let kek = Aes256Gcm::new_from_slice(&KEK_BYTES).unwrap();
        let nonce = Nonce::from(NONCE);
        let wrapped = kek.encrypt(&nonce, DEK_BYTES.as_slice()).unwrap();
        let sealed = Aes256Gcm::new_from_slice(&DEK_BYTES)
            .unwrap()
            .encrypt(
                &nonce,
                Payload {
                    msg: PLAINTEXT,
                    aad: AAD,
                },
            )
            .unwrap();
        group.bench_function("rustcrypto-aes-gcm", |b| {
            b.iter(|| {
                let dek = kek.decrypt(&nonce, wrapped.as_slice()).unwrap();
                let pt = Aes256Gcm::new_from_slice(&dek)
                    .unwrap()
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: &sealed,
                            aad: AAD,
                        },
                    )
                    .unwrap();
                black_box(pt.len())
            })
        });
    }
    group.finish();
}

criterion_group!(fast, envelope, aead_backends);
criterion_group! {
    name = slow;
    config = Criterion::default().sample_size(10);
    targets = kdf
}
criterion_main!(fast, slow);
