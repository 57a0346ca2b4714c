//! Key types. Both keep their bytes in zeroizing storage, print as
//! `[REDACTED]`, and implement neither `Display` nor `Serialize`: the only way
//! to use a key is through the operations below.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{CryptoError, random_bytes};

/// AES-256 key length.
pub const KEY_LEN: usize = 32;
/// AES-GCM nonce length (96 bits, the only size GCM handles without hashing).
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// `nonce(12) || AES-GCM(KEK, DEK)(32) || tag(16)` (docs/design.md §3).
pub const WRAPPED_DEK_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// A key-encryption key of one keystore version.
///
/// It holds the expanded AES key schedule rather than the raw bytes, so that
/// unwrapping a DEK on the hot read path does no key expansion. The cipher
/// state is wiped on drop (`aes` is built with its `zeroize` feature).
pub struct Kek {
    version: u32,
    cipher: Aes256Gcm,
}

impl Kek {
    /// Build a KEK from raw key bytes (the output of the KDF).
    pub fn from_bytes(version: u32, key: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
        Self { version, cipher }
    }

    /// The keystore version this KEK belongs to.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Encrypt `plaintext` with a fresh random nonce and no AAD, returning
    /// `nonce || ciphertext || tag`. Used for DEK wrapping and check values.
    pub(crate) fn seal_no_aad(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        self.seal_no_aad_with_nonce(&nonce, plaintext)
    }

    pub(crate) fn seal_no_aad_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(*nonce), &[], (&mut out[NONCE_LEN..]).into())
            .map_err(|_| CryptoError::EncryptFailed)?;
        out.extend_from_slice(tag.as_slice());
        Ok(out)
    }

    /// Open `nonce || ciphertext || tag` produced by [`Kek::seal_no_aad`].
    /// Returns `None` when it does not authenticate.
    pub(crate) fn open_no_aad(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut buf = Zeroizing::new(ct.to_vec());
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
        self.cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &[],
                buf.as_mut_slice().into(),
                &tag.into(),
            )
            .ok()?;
        Some(buf)
    }

    /// Wrap a DEK: `nonce(12) || AES-256-GCM(KEK, DEK, no AAD)`, 60 bytes.
    pub fn wrap_dek(&self, dek: &Dek) -> Result<Vec<u8>, CryptoError> {
        self.seal_no_aad(dek.0.as_slice())
    }

    /// Unwrap a DEK wrapped by [`Kek::wrap_dek`].
    pub fn unwrap_dek(&self, wrapped: &[u8]) -> Result<Dek, CryptoError> {
        if wrapped.len() != WRAPPED_DEK_LEN {
            return Err(CryptoError::Malformed {
                field: "wrapped_dek",
                expected: WRAPPED_DEK_LEN,
                found: wrapped.len(),
            });
        }
        let raw = self
            .open_no_aad(wrapped)
            .ok_or(CryptoError::UnwrapFailed(self.version))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&raw);
        Ok(Dek(key))
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// A data-encryption key: 32 random bytes, new for every value written.
pub struct Dek(Zeroizing<[u8; KEY_LEN]>);

impl Dek {
    /// A fresh DEK from the OS CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        random_bytes(key.as_mut_slice())?;
        Ok(Self(key))
    }

    /// A DEK from known bytes: only for cross-implementation test vectors.
    #[doc(hidden)]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.as_slice()).expect("32-byte key")
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([REDACTED])")
    }
}
