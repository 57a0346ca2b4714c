//! Passphrase to KEK derivation (docs/design.md §3).
//!
//! PBKDF2-HMAC-SHA256 with upstream MLflow's salt scheme and iteration count,
//! so the same passphrase yields the same KEK in both systems. Derivation is
//! deliberately slow (about 0.1 s), so it is done once per process and
//! version and cached, and async callers run it on a blocking thread.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::{KEY_LEN, Kek};

/// Upstream MLflow's PBKDF2 iteration count (OWASP's 2023 figure for SHA-256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// The fixed prefix of the default salt; the version follows as `u32_be`.
pub const DEFAULT_SALT_PREFIX: &[u8] = b"mlflow-secrets-kek-v1-2025";

/// `b"mlflow-secrets-kek-v1-2025" || u32_be(version)`.
pub fn default_salt(version: u32) -> Vec<u8> {
    let mut salt = DEFAULT_SALT_PREFIX.to_vec();
    salt.extend_from_slice(&version.to_be_bytes());
    salt
}

/// Run PBKDF2-HMAC-SHA256 and return the 32-byte key. Blocking and slow.
pub fn derive_kek_bytes(
    passphrase: &SecretString,
    salt: &[u8],
    iterations: u32,
) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // The non-generic entry point is monomorphised inside the (optimised)
    // pbkdf2 crate rather than in ours, so debug builds derive at full speed.
    let params = pbkdf2::Params::new_with_output_len(iterations, KEY_LEN)
        .expect("iteration count and key length are within PBKDF2's limits");
    pbkdf2::pbkdf2_hmac_with_params(
        passphrase.expose_secret().as_bytes(),
        salt,
        pbkdf2::Algorithm::Pbkdf2Sha256,
        params,
        out.as_mut_slice(),
    );
    out
}

/// Process-wide cache of derived KEKs.
///
/// The key is a SHA-256 over (version, salt, iterations, passphrase), so a
/// changed passphrase or salt never hits a stale entry, and the map holds no
/// passphrase. The map holds only *weak* references: a KEK stays in memory
/// exactly as long as a loaded keystore uses it. A reload that drops a
/// retired version, or a replaced passphrase, therefore drops (and wipes)
/// that key once the previous keystore is gone, while keys the new keystore
/// keeps are shared with it and never derived twice (security review
/// finding 18).
static KEK_CACHE: LazyLock<Mutex<HashMap<[u8; 32], Weak<Kek>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn cache_key(version: u32, salt: &[u8], iterations: u32, passphrase: &SecretString) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mlflow-secrets-kek-cache-v1");
    h.update(version.to_be_bytes());
    h.update((salt.len() as u64).to_be_bytes());
    h.update(salt);
    h.update(iterations.to_be_bytes());
    h.update(passphrase.expose_secret().as_bytes());
    h.finalize().into()
}

/// Derive the KEK of `version`, or return it from the process cache.
pub fn derive_kek_cached(
    version: u32,
    passphrase: &SecretString,
    salt: &[u8],
    iterations: u32,
) -> Arc<Kek> {
    let key = cache_key(version, salt, iterations, passphrase);
    if let Some(kek) = KEK_CACHE
        .lock()
        .expect("kek cache")
        .get(&key)
        .and_then(Weak::upgrade)
    {
        return kek;
    }
    // Derive outside the lock: two threads racing derive twice, which is
    // harmless, while a slow derivation never blocks lookups of other versions.
    let bytes = derive_kek_bytes(passphrase, salt, iterations);
    let kek = Arc::new(Kek::from_bytes(version, &bytes));
    let mut cache = KEK_CACHE.lock().expect("kek cache");
    // Forget keys nobody holds any more, so the map cannot grow either.
    cache.retain(|_, w| w.strong_count() > 0);
    if let Some(raced) = cache.get(&key).and_then(Weak::upgrade) {
        return raced;
    }
    cache.insert(key, Arc::downgrade(&kek));
    kek
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few iterations: the test is about the cache, not the KDF.
    const ITER: u32 = 1_000;

    #[test]
    fn cached_keks_are_shared_while_held_and_freed_when_dropped() {
        let pass = SecretString::from("kdf cache test passphrase");
        let salt = default_salt(7);
        let a = derive_kek_cached(7, &pass, &salt, ITER);
        let b = derive_kek_cached(7, &pass, &salt, ITER);
        assert!(Arc::ptr_eq(&a, &b), "a held key is derived once");
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(
            weak.upgrade().is_none(),
            "the cache kept a key no keystore holds"
        );
        // A new derivation still works (and gives the same key bytes).
        let c = derive_kek_cached(7, &pass, &salt, ITER);
        assert_eq!(c.version(), 7);
    }
}
