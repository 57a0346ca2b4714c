#!/usr/bin/env python3
"""Micro-benchmark: per-secret decrypt cost of the mlflow-secrets scheme in Python.

Usage:
    python3 scripts/bench_python_decrypt.py

Requires Python 3.11 and `cryptography`. It is the Python baseline that the
Rust implementation is compared with, i.e. what MLflow's own Python code does
per read once the KEK is derived and cached:

  1. unwrap the DEK: AESGCM(KEK).decrypt(wrapped[:12], wrapped[12:], None)
  2. check hex sha256(AAD) against the stored aad_hash
  3. AESGCM(DEK).decrypt(iv, ciphertext, AAD)
  4. json.loads of the plaintext

It also times one PBKDF2-HMAC-SHA256 derivation with 600000 iterations via
`cryptography` (OpenSSL), the cost paid once per KEK version and process.
The row is built in-process from fixed bytes (the same format as
tests/fixtures/crypto_vectors.json). Output: one labelled figure per line.
"""

import hashlib
import json
import statistics
import timeit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PASSPHRASE = "correct horse battery staple / mlflow-secrets"
SALT = b"mlflow-secrets-kek-v1-2025" + (1).to_bytes(4, "big")
ITERATIONS = 600_000


def derive_kek() -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=SALT, iterations=ITERATIONS)
    return kdf.derive(PASSPHRASE.encode("utf-8"))


def make_row(kek: bytes) -> dict:
    """One stored secret in the docs/design.md §3 format, from fixed bytes."""
    dek, iv, wrap_nonce = bytes(range(32)), bytes(range(100, 112)), bytes(range(200, 212))
    workspace, secret_id, secret_name = "default", "a01bfbdd-4d6f-46af-88c5-6c5487ef2551", "openai-api-key"
    aad = f"{workspace}|{secret_id}|{secret_name}".encode("utf-8")
    plaintext = json.dumps({"value": "sk-proj-Vx3kQ9mZ2aLp7RtY8wNc4HbJ6dFs1GeUo0iKyTq5"},
                           separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")
    return {
        "workspace": workspace, "secret_id": secret_id, "secret_name": secret_name,
        "aad_hash": hashlib.sha256(aad).hexdigest(), "iv": iv,
        "ciphertext": AESGCM(dek).encrypt(iv, plaintext, aad),
        "wrapped_dek": wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, dek, None),
    }


def decrypt(row: dict, kek: bytes):
    """Per-read work with the KEK bytes cached (MLflow builds AESGCM objects per call)."""
    wrapped = row["wrapped_dek"]
    dek = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], None)
    aad = f'{row["workspace"]}|{row["secret_id"]}|{row["secret_name"]}'.encode("utf-8")
    if hashlib.sha256(aad).hexdigest() != row["aad_hash"]:
        raise ValueError("row metadata does not match its ciphertext")
    return json.loads(AESGCM(dek).decrypt(row["iv"], row["ciphertext"], aad))


def main() -> None:
    kek = derive_kek()
    row = make_row(kek)
    assert decrypt(row, kek) == {"value": "sk-proj-Vx3kQ9mZ2aLp7RtY8wNc4HbJ6dFs1GeUo0iKyTq5"}

    number, repeat = 20_000, 15
    runs = timeit.repeat(lambda: decrypt(row, kek), number=number, repeat=repeat)
    decrypt_us = statistics.median(runs) / number * 1e6

    kdf_runs = timeit.repeat(derive_kek, number=1, repeat=5)
    kdf_s = statistics.median(kdf_runs)

    print(f"python_decrypt_cached_kek_median_us: {decrypt_us:.2f}")
    print(f"pbkdf2_sha256_600000_openssl_median_s: {kdf_s:.3f}")


if __name__ == "__main__":
    main()
