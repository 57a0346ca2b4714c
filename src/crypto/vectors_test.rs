//! Cross-implementation test vectors, generated with Python's `cryptography`
//! package by `scripts/gen_test_vectors.py`. They pin the exact byte format
//! of docs/design.md §3: if any of these fail, data written by one build (or by
//! MLflow) would not be readable by another.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::*;
use crate::crypto::kdf::derive_kek_bytes;
use crate::crypto::keys::{Dek, Kek};
use crate::crypto::{DEFAULT_ITERATIONS, WRAPPED_DEK_LEN, default_salt, envelope};
use crate::value::SecretValue;

#[derive(Deserialize)]
struct Vectors {
    kek_vectors: Vec<KekVector>,
    secret_vectors: Vec<SecretVector>,
    check_vectors: Vec<CheckVector>,
    mlflow_vectors: Vec<MlflowVector>,
}

#[derive(Deserialize)]
struct KekVector {
    passphrase: String,
    version: u32,
    salt_hex: String,
    iterations: u32,
    kek_hex: String,
}

#[derive(Deserialize)]
struct SecretVector {
    name: String,
    workspace: String,
    secret_id: String,
    secret_name: String,
    kek_hex: String,
    dek_hex: String,
    iv_hex: String,
    wrap_nonce_hex: String,
    plaintext: String,
    value_kind: String,
    value: serde_json::Value,
    aad: String,
    aad_hash: String,
    ciphertext_hex: String,
    wrapped_dek_hex: String,
}

#[derive(Deserialize)]
struct CheckVector {
    kek_hex: String,
    nonce_hex: String,
    label: String,
    check_value_hex: String,
}

#[derive(Deserialize)]
struct MlflowVector {
    secret_id: String,
    secret_name: String,
    passphrase: String,
    kek_version: u32,
    kek_hex: String,
    plaintext: String,
    encrypted_value_hex: String,
    wrapped_dek_hex: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("../../tests/fixtures/crypto_vectors.json")).unwrap()
}

fn kek(hex_key: &str, version: u32) -> Kek {
    let mut k = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_key, k.as_mut_slice()).unwrap();
    Kek::from_bytes(version, &k)
}

fn arr<const N: usize>(h: &str) -> [u8; N] {
    let mut a = [0u8; N];
    hex::decode_to_slice(h, &mut a).unwrap();
    a
}

#[test]
fn kdf_reproduces_python_keks() {
    let v = vectors();
    assert!(v.kek_vectors.len() >= 4);
    for k in &v.kek_vectors {
        let salt = hex::decode(&k.salt_hex).unwrap();
        if salt.len() != 16 {
            assert_eq!(
                salt,
                default_salt(k.version),
                "default salt scheme, v{}",
                k.version
            );
        }
        let key = derive_kek_bytes(
            &SecretString::from(k.passphrase.as_str()),
            &salt,
            k.iterations,
        );
        assert_eq!(hex::encode(key.as_slice()), k.kek_hex, "KEK v{}", k.version);
    }
}

#[test]
fn seal_is_byte_exact_and_open_round_trips() {
    let v = vectors();
    assert!(v.secret_vectors.len() >= 5);
    for s in &v.secret_vectors {
        let kek = kek(&s.kek_hex, 1);
        let aad = Aad::new(&s.workspace, &s.secret_id, &s.secret_name);
        assert_eq!(aad.as_bytes(), s.aad.as_bytes(), "{}", s.name);
        assert_eq!(aad.hash_hex(), s.aad_hash, "{}", s.name);

        // Our JSON encoding of the value is the same as Python's.
        let value = match s.value_kind.as_str() {
            "string" => SecretValue::from_string(s.value.as_str().unwrap().to_string()).unwrap(),
            _ => SecretValue::from_json_text(&s.value.to_string()).unwrap(),
        };
        assert_eq!(
            std::str::from_utf8(&value.to_plaintext()).unwrap(),
            s.plaintext,
            "{}",
            s.name
        );

        let sealed = envelope::seal_with(
            &kek,
            &aad,
            s.plaintext.as_bytes(),
            &Dek::from_bytes(arr(&s.dek_hex)),
            arr(&s.iv_hex),
            arr(&s.wrap_nonce_hex),
        )
        .unwrap();
        assert_eq!(
            hex::encode(&sealed.ciphertext),
            s.ciphertext_hex,
            "{}",
            s.name
        );
        assert_eq!(
            hex::encode(&sealed.wrapped_dek),
            s.wrapped_dek_hex,
            "{}",
            s.name
        );
        assert_eq!(sealed.wrapped_dek.len(), WRAPPED_DEK_LEN);

        let pt = open(
            &kek,
            &aad,
            &s.aad_hash,
            &hex::decode(&s.ciphertext_hex).unwrap(),
            &hex::decode(&s.iv_hex).unwrap(),
            &hex::decode(&s.wrapped_dek_hex).unwrap(),
        )
        .unwrap();
        assert_eq!(&pt[..], s.plaintext.as_bytes(), "{}", s.name);

        // Reading unwraps {"value": s} alone to a string, and nothing else.
        let read = SecretValue::from_plaintext(&pt).unwrap();
        match (&read, &s.value) {
            (SecretValue::String(got), serde_json::Value::String(want)) => {
                assert_eq!(got.expose_secret(), want, "{}", s.name)
            }
            (SecretValue::Object(got), serde_json::Value::Object(want)) => {
                let got: BTreeMap<_, _> = got
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose_secret().to_string()))
                    .collect();
                let want: BTreeMap<_, _> = want
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                assert_eq!(got, want, "{}", s.name);
            }
            (SecretValue::String(_), serde_json::Value::Object(o)) => {
                assert!(o.len() == 1 && o.contains_key("value"), "{}", s.name)
            }
            _ => panic!("{}: value kind mismatch", s.name),
        }
    }
}

#[test]
fn check_values_match() {
    for c in vectors().check_vectors {
        let kek = kek(&c.kek_hex, 1);
        let sealed = kek
            .seal_no_aad_with_nonce(&arr(&c.nonce_hex), c.label.as_bytes())
            .unwrap();
        assert_eq!(hex::encode(&sealed), c.check_value_hex);
        assert_eq!(c.label.as_bytes(), crate::keystore::file::CHECK_LABEL);
        let opened = kek
            .open_no_aad(&hex::decode(&c.check_value_hex).unwrap())
            .unwrap();
        assert_eq!(&opened[..], c.label.as_bytes());
    }
}

#[test]
fn upstream_mlflow_gateway_secrets_decrypt() {
    let v = vectors();
    assert!(!v.mlflow_vectors.is_empty());
    for m in &v.mlflow_vectors {
        // Same passphrase and version give the same KEK as upstream.
        let key = derive_kek_bytes(
            &SecretString::from(m.passphrase.as_str()),
            &default_salt(m.kek_version),
            DEFAULT_ITERATIONS,
        );
        assert_eq!(hex::encode(key.as_slice()), m.kek_hex);
        let kek = Kek::from_bytes(m.kek_version, &key);
        let pt = open_mlflow_gateway(
            &kek,
            &m.secret_id,
            &m.secret_name,
            &hex::decode(&m.encrypted_value_hex).unwrap(),
            &hex::decode(&m.wrapped_dek_hex).unwrap(),
        )
        .unwrap();
        assert_eq!(&pt[..], m.plaintext.as_bytes());
    }
}

#[test]
fn tampering_is_detected_per_field() {
    let v = vectors();
    let (a, b) = (&v.secret_vectors[0], &v.secret_vectors[2]);
    let kek_a = kek(&a.kek_hex, 1);
    let aad_a = Aad::new(&a.workspace, &a.secret_id, &a.secret_name);
    let h = |x: &str| hex::decode(x).unwrap();
    // Another row's ciphertext, iv or wrapped DEK never opens under this row.
    let cases = [
        (h(&b.ciphertext_hex), h(&a.iv_hex), h(&a.wrapped_dek_hex)),
        (h(&a.ciphertext_hex), h(&b.iv_hex), h(&a.wrapped_dek_hex)),
        (h(&a.ciphertext_hex), h(&a.iv_hex), h(&b.wrapped_dek_hex)),
    ];
    for (ct, iv, wd) in cases {
        assert!(open(&kek_a, &aad_a, &a.aad_hash, &ct, &iv, &wd).is_err());
    }
    // A renamed row fails the AAD hash check with the documented message.
    let renamed = Aad::new(&a.workspace, &a.secret_id, "renamed");
    let err = open(
        &kek_a,
        &renamed,
        &a.aad_hash,
        &h(&a.ciphertext_hex),
        &h(&a.iv_hex),
        &h(&a.wrapped_dek_hex),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "row metadata does not match its ciphertext"
    );
}
