//! Key types. Both keep their bytes in zeroizing storage, print as
//! `[REDACTED]`, and implement neither `Display` nor `Serialize`: the only way
//! to use a key is through the operations below.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad as AeadAad, LessSafeKey, Nonce, UnboundKey};
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

/// One expanded AES-256-GCM key: the only AEAD in the crate.
///
/// Backed by AWS-LC (`aws-lc-rs`): its AES-NI/VAES and CLMUL assembly makes
/// the per-read path (unwrap a DEK, expand it, open the value) about twice as
/// fast as RustCrypto's `aes-gcm`, on par with `ring`, and unlike `ring` it
/// keeps the key schedule in memory it allocates itself and wipes on free
/// (`OPENSSL_free` cleanses), so a dropped key leaves no copy behind.
/// docs/benchmarks.md has the three side by side (`cargo bench --bench crypto`).
pub(crate) struct Cipher(LessSafeKey);

impl Cipher {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        // AES_256_GCM accepts exactly KEY_LEN bytes; the type guarantees it.
        Self(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key"),
        ))
    }

    /// Encrypt `in_out` in place and return the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                AeadAad::from(aad),
                in_out,
            )
            .map_err(|_| CryptoError::EncryptFailed)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Open `ciphertext || tag` in place (the caller's buffer, zeroizing
    /// when it holds key material); the plaintext is the first
    /// `in_out.len() - TAG_LEN` bytes. `None` when it does not authenticate.
    pub(crate) fn open_in_place(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Option<()> {
        self.0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                AeadAad::from(aad),
                in_out,
            )
            .ok()
            .map(|_| ())
    }

    /// Open `ciphertext || tag` into zeroizing memory; `None` when it does not
    /// authenticate (the buffer is wiped on the way out either way).
    pub(crate) fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
        let len = self
            .0
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                AeadAad::from(aad),
                buf.as_mut_slice(),
            )
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}

/// A key-encryption key of one keystore version.
///
/// It holds the expanded AES key schedule rather than the raw bytes, so that
/// unwrapping a DEK on the hot read path does no key expansion. The schedule
/// is wiped on drop (see [`Cipher`]).
pub struct Kek {
    version: u32,
    cipher: Cipher,
}

impl Kek {
    /// Build a KEK from raw key bytes (the output of the KDF).
    pub fn from_bytes(version: u32, key: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self {
            version,
            cipher: Cipher::new(key),
        }
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
        let tag = self.cipher.seal(*nonce, &[], &mut out[NONCE_LEN..])?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Open `nonce || ciphertext || tag` produced by [`Kek::seal_no_aad`].
    /// Returns `None` when it does not authenticate.
    pub(crate) fn open_no_aad(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext_and_tag) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher.open(nonce, &[], ciphertext_and_tag)
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
        // On the stack, not the heap: this runs once per value read.
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("length checked");
        let mut buf = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
        buf.copy_from_slice(sealed);
        self.cipher
            .open_in_place(nonce, &[], buf.as_mut_slice())
            .ok_or(CryptoError::UnwrapFailed(self.version))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&buf[..KEY_LEN]);
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
    /// A DEK from fresh random bytes the caller drew (envelope::seal draws
    /// the DEK and its nonces in one call); copied straight into zeroizing
    /// storage.
    pub(crate) fn from_slice(key: &[u8; KEY_LEN]) -> Self {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(key);
        Self(k)
    }

    /// A DEK from known bytes: only for cross-implementation test vectors.
    #[doc(hidden)]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub(crate) fn cipher(&self) -> Cipher {
        Cipher::new(&self.0)
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([REDACTED])")
    }
}
