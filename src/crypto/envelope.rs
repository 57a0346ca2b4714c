//! Sealing and opening one secret value (docs/design.md §3).
//!
//! The value is encrypted under a fresh DEK with the row's AAD
//! (`{workspace}|{secret_id}|{secret_name}`); the DEK is wrapped by the
//! active KEK. A reader checks `aad_hash` before decrypting so that a row
//! whose metadata was changed fails with a precise error instead of a
//! generic authentication failure.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::{Dek, KEY_LEN, Kek, NONCE_LEN, TAG_LEN};
use super::{CryptoError, random_bytes};

/// The additional authenticated data that binds a ciphertext to its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(String);

impl Aad {
    pub fn new(workspace: &str, secret_id: &str, secret_name: &str) -> Self {
        Self(format!("{workspace}|{secret_id}|{secret_name}"))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Lower-case hex SHA-256 of the AAD bytes: the `aad_hash` column.
    pub fn hash_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Constant-shape comparison against a stored `aad_hash`.
    fn matches(&self, stored_hex: &str) -> bool {
        let mut expected = [0u8; 32];
        if stored_hex.len() != 64 || hex::decode_to_slice(stored_hex, &mut expected).is_err() {
            return false;
        }
        let actual: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        actual == expected
    }
}

/// The encrypted columns of one row. Crate-internal by design: these fields
/// never leave the SQL layer (docs/design.md §10 rule 1).
#[derive(Clone)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub iv: [u8; NONCE_LEN],
    pub wrapped_dek: Vec<u8>,
    pub kek_version: u32,
    pub aad_hash: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// Encrypt `plaintext` for the row named by `aad`, under a new DEK.
pub fn seal(kek: &Kek, aad: &Aad, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
    // One call to the OS for the DEK and both nonces: each getrandom(2) is
    // a syscall, and three of them were a third of a seal.
    let mut fresh = Zeroizing::new([0u8; KEY_LEN + 2 * NONCE_LEN]);
    random_bytes(fresh.as_mut_slice())?;
    let (key, nonces) = fresh.split_at(KEY_LEN);
    let dek = Dek::from_slice(key.try_into().expect("KEY_LEN bytes"));
    let iv: [u8; NONCE_LEN] = nonces[..NONCE_LEN].try_into().expect("NONCE_LEN bytes");
    let wrap_nonce: [u8; NONCE_LEN] = nonces[NONCE_LEN..].try_into().expect("NONCE_LEN bytes");
    seal_with(kek, aad, plaintext, &dek, iv, wrap_nonce)
}

/// Deterministic core of [`seal`]; the test vectors pin its output.
pub(crate) fn seal_with(
    kek: &Kek,
    aad: &Aad,
    plaintext: &[u8],
    dek: &Dek,
    iv: [u8; NONCE_LEN],
    wrap_nonce: [u8; NONCE_LEN],
) -> Result<Sealed, CryptoError> {
    let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
    ciphertext.extend_from_slice(plaintext);
    let tag = dek.cipher().seal(iv, aad.as_bytes(), &mut ciphertext)?;
    ciphertext.extend_from_slice(&tag);
    let wrapped_dek = kek.seal_no_aad_with_nonce(&wrap_nonce, dek_bytes(dek))?;
    Ok(Sealed {
        ciphertext,
        iv,
        wrapped_dek,
        kek_version: kek.version(),
        aad_hash: aad.hash_hex(),
    })
}

fn dek_bytes(dek: &Dek) -> &[u8] {
    // The DEK's bytes are private to `keys`; wrapping goes through
    // `Kek::wrap_dek` except here, where the nonce must be fixed.
    dek.as_bytes()
}

/// Decrypt a row's value. Checks, in order: the AAD hash, the DEK unwrap, the
/// value authentication. `kek` must be the KEK of `sealed.kek_version`.
pub fn open(
    kek: &Kek,
    aad: &Aad,
    aad_hash: &str,
    ciphertext: &[u8],
    iv: &[u8],
    wrapped_dek: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if !aad.matches(aad_hash) {
        return Err(CryptoError::AadMismatch);
    }
    let iv: [u8; NONCE_LEN] = iv.try_into().map_err(|_| CryptoError::Malformed {
        field: "iv",
        expected: NONCE_LEN,
        found: iv.len(),
    })?;
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::Malformed {
            field: "ciphertext",
            expected: TAG_LEN,
            found: ciphertext.len(),
        });
    }
    let dek = kek.unwrap_dek(wrapped_dek)?;
    dek.cipher()
        .open(iv, aad.as_bytes(), ciphertext)
        .ok_or(CryptoError::DecryptFailed)
}

/// Re-wrap a DEK from one KEK to another without touching the value
/// ciphertext (used by `rewrap`). The DEK itself is unchanged.
pub fn rewrap_dek(old: &Kek, new: &Kek, wrapped_dek: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let dek = old.unwrap_dek(wrapped_dek)?;
    new.wrap_dek(&dek)
}

const _: () = assert!(KEY_LEN == 32);

/// Decrypt a value in upstream MLflow's gateway-secrets format (docs/design.md §11):
/// `encrypted_value = nonce(12) || ciphertext || tag`, AAD
/// `{secret_id}|{secret_name}` (not hashed). The building block of an
/// importer from an MLflow 3.8+ tracking store.
pub fn open_mlflow_gateway(
    kek: &Kek,
    secret_id: &str,
    secret_name: &str,
    encrypted_value: &[u8],
    wrapped_dek: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if encrypted_value.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed {
            field: "encrypted_value",
            expected: NONCE_LEN + TAG_LEN,
            found: encrypted_value.len(),
        });
    }
    let dek = kek.unwrap_dek(wrapped_dek)?;
    let (nonce, ciphertext_and_tag) = encrypted_value.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("length checked");
    let aad = format!("{secret_id}|{secret_name}");
    dek.cipher()
        .open(nonce, aad.as_bytes(), ciphertext_and_tag)
        .ok_or(CryptoError::DecryptFailed)
}

#[cfg(test)]
#[path = "vectors_test.rs"]
mod vectors_test;
