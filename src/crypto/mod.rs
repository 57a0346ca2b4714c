//! Envelope encryption (docs/design.md §3).
//!
//! Layering: [`keys`] holds the key types (KEK, DEK) and the primitive
//! wrap/unwrap operations, [`kdf`] turns a passphrase into a KEK, and
//! [`envelope`] seals and opens a secret value with its AAD. Nothing in this
//! module touches the database; the SQL layer owns the crypto columns.

pub(crate) mod envelope;
pub(crate) mod kdf;
pub(crate) mod keys;

pub use envelope::{Aad, Columns, Sealed, open, open_with, rewrap_dek, seal};
pub use kdf::{DEFAULT_ITERATIONS, default_salt, derive_kek_bytes};
pub use keys::{Dek, KEY_LEN, Kek, NONCE_LEN, TAG_LEN, WRAPPED_DEK_LEN};

/// Errors of the crypto layer. None of them carries key material or plaintext:
/// they say *which* check failed so that callers can name the object.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// `aad_hash` does not match the row's workspace, id and name: the row was
    /// moved or renamed after it was written.
    #[error("row metadata does not match its ciphertext")]
    AadMismatch,
    /// The wrapped DEK did not authenticate under the KEK of its version.
    #[error("wrapped DEK failed authentication under KEK version {0}")]
    UnwrapFailed(u32),
    /// The value ciphertext did not authenticate under its DEK and AAD.
    #[error("ciphertext failed authentication (tampered or swapped row)")]
    DecryptFailed,
    /// A crypto field has the wrong length.
    #[error("malformed {field}: expected {expected} bytes, found {found}")]
    Malformed {
        field: &'static str,
        expected: usize,
        found: usize,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// Encryption failed (only possible for absurdly large inputs).
    #[error("encryption failed")]
    EncryptFailed,
}

/// Fill `buf` from the OS CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Random)
}
