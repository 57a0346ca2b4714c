//! Sealing and opening one secret value (docs/design.md §3).
//!
//! The value is encrypted under a fresh DEK with the row's AAD
//! (`{workspace}|{secret_id}|{secret_name}`); the DEK is wrapped by the
//! active KEK. A reader checks `aad_hash` before decrypting so that a row
//! whose metadata was changed fails with a precise error instead of a
//! generic authentication failure.

use aws_lc_rs::digest::{Digest, SHA256, SHA256_OUTPUT_LEN, digest};
use zeroize::{Zeroize, Zeroizing};

use super::keys::{Dek, KEY_LEN, Kek, NONCE_LEN, TAG_LEN};
use super::{CryptoError, random_bytes};

/// The additional authenticated data that binds a ciphertext to its row.
///
/// Built on every read, so the usual row's AAD lives inline (no heap
/// allocation); a longer one (long workspace and name) goes to the heap.
#[derive(Clone, PartialEq, Eq)]
pub struct Aad(AadBytes);

/// Inline capacity: a 36-character id plus a workspace and a name of up to
/// 100 bytes together.
const AAD_INLINE: usize = 138;

#[derive(Clone, PartialEq, Eq)]
enum AadBytes {
    Inline { buf: [u8; AAD_INLINE], len: u8 },
    Heap(Vec<u8>),
}

/// Length of `aad_hash`: lower-case hex of a SHA-256.
const AAD_HASH_HEX_LEN: usize = 2 * SHA256_OUTPUT_LEN;

impl Aad {
    pub fn new(workspace: &str, secret_id: &str, secret_name: &str) -> Self {
        let parts = [
            workspace.as_bytes(),
            b"|",
            secret_id.as_bytes(),
            b"|",
            secret_name.as_bytes(),
        ];
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > AAD_INLINE {
            return Self(AadBytes::Heap(parts.concat()));
        }
        let mut buf = [0u8; AAD_INLINE];
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Self(AadBytes::Inline {
            buf,
            len: u8::try_from(len).expect("AAD_INLINE fits in u8"),
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            AadBytes::Inline { buf, len } => &buf[..usize::from(*len)],
            AadBytes::Heap(v) => v,
        }
    }

    /// Lower-case hex SHA-256 of the AAD bytes: the `aad_hash` column.
    pub fn hash_hex(&self) -> String {
        let hash = self.hash();
        let mut out = String::with_capacity(AAD_HASH_HEX_LEN);
        for byte in hash.as_ref() {
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// SHA-256 through AWS-LC: SHA-NI assembly in one call, no hasher
    /// state to set up.
    fn hash(&self) -> Digest {
        digest(&SHA256, self.as_bytes())
    }

    /// Compare against a stored `aad_hash`, accepting upper-case hex digits
    /// as before (a stored character matches iff it lower-cases to ours).
    /// Each digit of our digest is compared as it is encoded: no decoding
    /// of the stored text and no intermediate buffer. The loop has no early
    /// exit, so its time does not depend on where the two differ.
    fn matches(&self, stored_hex: &str) -> bool {
        let stored = stored_hex.as_bytes();
        if stored.len() != AAD_HASH_HEX_LEN {
            return false;
        }
        let hash = self.hash();
        let diff =
            hash.as_ref()
                .iter()
                .zip(stored.chunks_exact(2))
                .fold(0u8, |acc, (byte, pair)| {
                    acc | (HEX_DIGITS[usize::from(byte >> 4)] ^ pair[0].to_ascii_lowercase())
                        | (HEX_DIGITS[usize::from(byte & 0x0f)] ^ pair[1].to_ascii_lowercase())
                });
        diff == 0
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The AAD is row metadata (`workspace|id|name`), never secret: shown as text.
impl std::fmt::Debug for Aad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Aad")
            .field(&String::from_utf8_lossy(self.as_bytes()))
            .finish()
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

/// The crypto columns of one row, borrowed as the database returned them
/// (lengths are checked when opening).
#[derive(Clone, Copy)]
pub struct Columns<'a> {
    pub aad_hash: &'a str,
    pub ciphertext: &'a [u8],
    pub iv: &'a [u8],
    pub wrapped_dek: &'a [u8],
}

/// Decrypt a row's value into zeroizing memory: [`open_with`] for callers
/// that keep the plaintext.
pub fn open(
    kek: &Kek,
    aad: &Aad,
    aad_hash: &str,
    ciphertext: &[u8],
    iv: &[u8],
    wrapped_dek: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let row = Columns {
        aad_hash,
        ciphertext,
        iv,
        wrapped_dek,
    };
    open_with(kek, aad, row, |pt| Zeroizing::new(pt.to_vec()))
}

/// Values whose ciphertext fits in this many bytes are decrypted on the
/// stack by [`open_with`]. Secrets are mostly API keys of a few dozen bytes.
const STACK_CIPHERTEXT: usize = 256;

/// Decrypt a row's value and hand the plaintext to `read`: the store's read
/// path, which only parses it. Checks, in order: the AAD hash (first, for
/// the precise error on a moved or renamed row), the lengths, the DEK
/// unwrap, the value authentication. `kek` must be the KEK of the row's
/// `kek_version`. A small value is decrypted in a stack buffer (no
/// allocation on the hot path); the bytes it held are wiped when `read`
/// returns, or on unwind.
pub fn open_with<T>(
    kek: &Kek,
    aad: &Aad,
    row: Columns<'_>,
    read: impl FnOnce(&[u8]) -> T,
) -> Result<T, CryptoError> {
    if !aad.matches(row.aad_hash) {
        return Err(CryptoError::AadMismatch);
    }
    let iv: [u8; NONCE_LEN] = row.iv.try_into().map_err(|_| CryptoError::Malformed {
        field: "iv",
        expected: NONCE_LEN,
        found: row.iv.len(),
    })?;
    let ciphertext = row.ciphertext;
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::Malformed {
            field: "ciphertext",
            expected: TAG_LEN,
            found: ciphertext.len(),
        });
    }
    let cipher = kek.unwrap_dek(row.wrapped_dek)?.cipher();
    if ciphertext.len() > STACK_CIPHERTEXT {
        let plaintext = cipher
            .open(iv, aad.as_bytes(), ciphertext)
            .ok_or(CryptoError::DecryptFailed)?;
        return Ok(read(&plaintext));
    }
    let mut buf = StackBuf {
        bytes: [0u8; STACK_CIPHERTEXT],
        used: ciphertext.len(),
    };
    let in_out = &mut buf.bytes[..ciphertext.len()];
    in_out.copy_from_slice(ciphertext);
    cipher
        .open_in_place(iv, aad.as_bytes(), in_out)
        .ok_or(CryptoError::DecryptFailed)?;
    Ok(read(&in_out[..ciphertext.len() - TAG_LEN]))
}

/// A stack buffer that wipes the prefix it used on drop (all of it would
/// be 256 volatile writes for a 60-byte value).
struct StackBuf {
    bytes: [u8; STACK_CIPHERTEXT],
    used: usize,
}

impl Drop for StackBuf {
    fn drop(&mut self) {
        self.bytes[..self.used].zeroize();
    }
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
