//! MLflow's side of the crypto (docs/design.md §11): its passphrase, its KEK
//! derivation per `kek_version`, and decrypting one gateway secret row.
//!
//! The primitives are the crate's own ([`crate::crypto`]): MLflow's KDF is
//! ours with the default salt (`b"mlflow-secrets-kek-v1-2025" ||
//! u32_be(version)`, 600000 iterations), and its value format is opened by
//! [`crate::crypto::envelope::open_mlflow_gateway`]. What is MLflow's alone
//! lives here: where the passphrase comes from, that one passphrase serves
//! every version, and how the plaintext (Python's `json.dumps`) maps to a
//! [`SecretValue`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{MlflowError, Result};
use crate::crypto::{CryptoError, DEFAULT_ITERATIONS, Kek, default_salt, derive_kek_bytes};
use crate::value::SecretValue;

/// MLflow's passphrase variable (`mlflow.utils.crypto`).
pub const PASSPHRASE_ENV: &str = "MLFLOW_CRYPTO_KEK_PASSPHRASE";

/// The passphrase MLflow falls back to when `MLFLOW_CRYPTO_KEK_PASSPHRASE`
/// is unset (`DEFAULT_KEK_PASSPHRASE` in `mlflow/utils/crypto.py`). It is
/// public, so gateway secrets under it are only obfuscated; `import` uses it
/// only when asked to by name (`--mlflow-default-passphrase`).
pub const MLFLOW_DEFAULT_PASSPHRASE: &str = "mlflow-default-kek-passphrase-for-development-only";

/// MLflow's KEK passphrase. Wiped on drop, never printed.
pub struct MlflowPassphrase(SecretString);

impl std::fmt::Debug for MlflowPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MlflowPassphrase([REDACTED])")
    }
}

impl MlflowPassphrase {
    /// The passphrase from `file` (one trailing newline stripped), else from
    /// `MLFLOW_CRYPTO_KEK_PASSPHRASE`, else MLflow's public development
    /// default when `allow_default`. Empty is refused: MLflow would never
    /// have encrypted with it.
    pub fn load(file: Option<&Path>, allow_default: bool) -> Result<Self> {
        let raw = match file {
            Some(f) => Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                MlflowError::Passphrase(format!("cannot read {}: {}", f.display(), e.kind()))
            })?),
            None => match std::env::var(PASSPHRASE_ENV) {
                Ok(p) => Zeroizing::new(p),
                Err(_) if allow_default => Zeroizing::new(MLFLOW_DEFAULT_PASSPHRASE.to_string()),
                Err(_) => {
                    return Err(MlflowError::Passphrase(format!(
                        "set {PASSPHRASE_ENV} or pass --mlflow-passphrase-file; if the MLflow server \
                         runs without one (its public development default), pass --mlflow-default-passphrase"
                    )));
                }
            },
        };
        let p = raw.strip_suffix('\n').unwrap_or(&raw);
        let p = p.strip_suffix('\r').unwrap_or(p);
        if p.is_empty() {
            return Err(MlflowError::Passphrase("the passphrase is empty".into()));
        }
        Ok(Self(SecretString::from(p.to_string())))
    }

    /// A passphrase held by the caller (the unit tests).
    #[cfg(test)]
    pub fn from_secret(p: SecretString) -> Self {
        Self(p)
    }
}

/// MLflow's KEKs, one per `kek_version` in use, each derived once.
pub struct MlflowKeys {
    keks: BTreeMap<u32, Kek>,
}

impl std::fmt::Debug for MlflowKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowKeys")
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why one row did not decrypt. Carries no plaintext.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// The wrapped DEK did not open: the passphrase is wrong for the
    /// version (or the column was replaced).
    #[error("wrapped DEK does not open under MLflow's KEK version {0}")]
    Unwrap(u32),
    /// The DEK opened but the value did not authenticate with the AAD
    /// `secret_id|secret_name`: the row was renamed, moved or tampered with.
    #[error("encrypted_value does not authenticate with its secret_id and secret_name")]
    Value,
    #[error("{0}")]
    Malformed(String),
    /// It decrypted, but to something that is not a string or an object
    /// of strings.
    #[error("decrypted value is not a string or an object of strings")]
    Shape,
}

impl MlflowKeys {
    /// Derive the KEK of every version, each once, in parallel on blocking
    /// threads (600000 PBKDF2 iterations each, about 0.1 s).
    pub async fn derive(pass: &MlflowPassphrase, versions: &BTreeSet<u32>) -> Self {
        let tasks: Vec<_> = versions
            .iter()
            .map(|&v| {
                let p = pass.0.clone();
                tokio::task::spawn_blocking(move || {
                    let bytes = derive_kek_bytes(&p, &default_salt(v), DEFAULT_ITERATIONS);
                    Kek::from_bytes(v, &bytes)
                })
            })
            .collect();
        let mut keks = BTreeMap::new();
        for t in tasks {
            let kek = t.await.expect("KEK derivation does not panic");
            keks.insert(kek.version(), kek);
        }
        Self { keks }
    }

    /// Decrypt one MLflow gateway secret.
    pub fn decrypt(
        &self,
        secret_id: &str,
        secret_name: &str,
        kek_version: u32,
        encrypted_value: &[u8],
        wrapped_dek: &[u8],
    ) -> Result<SecretValue, RowError> {
        let kek = self.keks.get(&kek_version).ok_or_else(|| {
            RowError::Malformed(format!("no KEK derived for version {kek_version}"))
        })?;
        let plain = crate::crypto::envelope::open_mlflow_gateway(
            kek,
            secret_id,
            secret_name,
            encrypted_value,
            wrapped_dek,
        )
        .map_err(|e| match e {
            CryptoError::UnwrapFailed(v) => RowError::Unwrap(v),
            CryptoError::DecryptFailed => RowError::Value,
            other => RowError::Malformed(other.to_string()),
        })?;
        value_from_plaintext(&plain)
    }
}

/// MLflow's plaintext as a value: `json.dumps` of a `dict[str, str]` is an
/// object of strings; a JSON string stays a string; text that is not JSON
/// at all is a plain string, as MLflow's own `_decrypt_secret` reads it.
pub fn value_from_plaintext(plain: &[u8]) -> Result<SecretValue, RowError> {
    let text = std::str::from_utf8(plain).map_err(|_| RowError::Shape)?;
    match SecretValue::from_json_text(text) {
        Ok(v) => Ok(v),
        Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() => {
            SecretValue::from_string(text.to_string()).map_err(|_| RowError::Shape)
        }
        Err(_) => Err(RowError::Shape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn plaintext_shapes() {
        let v =
            value_from_plaintext(br#"{"api_key": "sk-\u00e9x", "api_base": "https://h"}"#).unwrap();
        match v {
            SecretValue::Object(m) => {
                assert_eq!(m["api_key"].expose_secret(), "sk-\u{e9}x");
                assert_eq!(m["api_base"].expose_secret(), "https://h");
            }
            SecretValue::String(_) => panic!("an object stays an object"),
        }
        assert!(value_from_plaintext(br#""sk-1""#).unwrap().is_string());
        assert!(value_from_plaintext(b"not json").unwrap().is_string());
        assert!(matches!(
            value_from_plaintext(br#"{"a": 1}"#),
            Err(RowError::Shape)
        ));
        assert!(matches!(value_from_plaintext(b"{}"), Err(RowError::Shape)));
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        let p = MlflowPassphrase::from_secret(SecretString::from("hunter2-passphrase"));
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
