#!/usr/bin/env python3
"""Generate cross-implementation crypto test vectors for mlflow-secrets.

Usage:
    python3 scripts/gen_test_vectors.py > tests/fixtures/crypto_vectors.json
    python3 scripts/gen_test_vectors.py --out tests/fixtures/crypto_vectors.json

Requires Python 3.11 and the `cryptography` package (pip install cryptography).

What this file is
-----------------
An INDEPENDENT implementation (Python `cryptography`/OpenSSL, not the Rust
crates) of the crypto format in docs/design.md §3/§4/§5, plus the upstream MLflow
3.8 gateway-secrets format of docs/design.md §11. The Rust test suite loads the
fixture and checks that it derives, decrypts and (given the same fixed DEK,
IV and nonces) encrypts to exactly the same bytes.

What is verified (by the Rust tests, and by self_check() below before the
fixture is written):
  * kek_vectors: PBKDF2-HMAC-SHA256(passphrase UTF-8, salt, iterations) -> 32
    bytes, with the default salt b"mlflow-secrets-kek-v1-2025" || u32_be(N)
    for versions 1, 2 and 7 (including a non-ASCII passphrase), and with a
    stored 16-byte "random" salt (the `kek generate --random-salt` variant).
  * secret_vectors: the whole chain passphrase -> KEK -> DEK -> value:
    plaintext = compact, key-sorted UTF-8 JSON of the value object
    ({"value": s} for a string), AAD = "{workspace}|{secret_id}|{secret_name}",
    aad_hash = lowercase hex SHA-256(AAD), ciphertext = AES-256-GCM(DEK, iv,
    plaintext, AAD) with the 16-byte tag appended, wrapped_dek = nonce(12) ||
    AES-256-GCM(KEK, nonce, DEK) (60 bytes). Every kek_hex is one of the
    kek_vectors' KEKs.
  * check_vectors: keystore check value = nonce(12) || AES-256-GCM(KEK,
    nonce, b"mlflow-secrets-kek-check-v1"), one per KEK vector.
  * mlflow_vectors: upstream MLflow 3.8 gateway secrets (secret_id
    "s-<32 hex>", AAD "{secret_id}|{secret_name}" unhashed, plaintext =
    Python json.dumps of a dict of strings with default separators and
    ensure_ascii, encrypted_value = nonce(12) || ct || tag). Dict keys are
    inserted already sorted, so json.dumps(d) == json.dumps(d, sort_keys=True)
    (upstream uses sort_keys=True for dicts).

Determinism: no randomness. All DEKs, IVs, nonces and ids come from fixed()
below (SHA-256 of a fixed label written in this file) or from literal bytes,
so rerunning the script reproduces the fixture byte for byte. The fixture is
generated: do not edit it by hand, change this script and regenerate.
These keys are public test data: never use them for real secrets.
"""

import argparse
import hashlib
import json
import sys
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

DEFAULT_SALT_PREFIX = b"mlflow-secrets-kek-v1-2025"
DEFAULT_ITERATIONS = 600_000
CHECK_LABEL = b"mlflow-secrets-kek-check-v1"


def fixed(label: str, n: int) -> bytes:
    """n deterministic bytes (n <= 32) standing in for CSPRNG output."""
    return hashlib.sha256(b"mlflow-secrets test vectors/" + label.encode()).digest()[:n]


def fixed_uuid4(label: str) -> str:
    return str(uuid.UUID(bytes=fixed(label, 16), version=4))


def default_salt(version: int) -> bytes:
    return DEFAULT_SALT_PREFIX + version.to_bytes(4, "big")


def derive_kek(passphrase: str, salt: bytes, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return kdf.derive(passphrase.encode("utf-8"))


def compact_json(obj: dict) -> str:
    # Equals serde_json::to_string of a BTreeMap<String, String>.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def wrap(kek: bytes, nonce: bytes, data: bytes) -> bytes:
    return nonce + AESGCM(kek).encrypt(nonce, data, None)


# --- KEK vectors -----------------------------------------------------------

PASS_ASCII = "correct horse battery staple / mlflow-secrets"
PASS_UNICODE = "pässphrase-ü-🔑"
# "Random-style" 16-byte salt, as `kek generate --random-salt` would store.
RANDOM_SALT = bytes.fromhex("9c41e0b7d35a2f86017bc4e9f25d6a38")

KEK_INPUTS = [  # (key used below, passphrase, version, salt)
    ("v1", PASS_ASCII, 1, default_salt(1)),
    ("v2", PASS_UNICODE, 2, default_salt(2)),
    ("v7", PASS_ASCII, 7, default_salt(7)),  # same passphrase as v1, other KEK
    ("v3-random-salt", PASS_ASCII, 3, RANDOM_SALT),
]

# --- Secret vectors --------------------------------------------------------

SECRET_INPUTS = [  # (name, kek key, workspace, secret_name, value)
    ("ascii_api_key", "v1", "default", "openai-api-key",
     "sk-proj-Vx3kQ9mZ2aLp7RtY8wNc4HbJ6dFs1GeUo0iKyTq5"),
    ("unicode_and_json_escapes", "v2", "team-a", "judge-key-ключ",
     'pässwörd "quoted" back\\slash\nsecond line\ttab 🔑 日本語 /slash'),
    ("object_keys_sorted", "v7", "team-a", "azure-openai",
     {"api_key": "az-9f8e7d6c5b4a", "Deployment": "gpt-4o-judge",
      "api_base": "https://example.openai.azure.com/", "région": "eu-west-3",
      "api_version": "2024-10-21"}),
    ("object_with_value_key", "v1", "default", "multi-field",
     {"value": "primary", "fallback": "secondary"}),
    ("short_value", "v1", "default", "x", "x"),
    ("name_with_pipe_and_slash", "v3-random-salt", "team-a", "prod|llm/anthropic|key",
     "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
]

# --- Upstream MLflow 3.8 gateway-secret vectors ------------------------------

MLFLOW_DEV_PASSPHRASE = "mlflow-default-kek-passphrase-for-development-only"
MLFLOW_INPUTS = [  # (label, passphrase, kek_version, secret_name, dict with sorted keys)
    ("mlflow_openai", PASS_ASCII, 1, "my-openai-key",
     {"api_key": "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2"}),
    ("mlflow_unicode_multi", PASS_UNICODE, 2, "azure|prod/ключ",
     {"api_base": "https://example.openai.azure.com/", "api_key": "kéy-🔑-\"q\"\\n"}),
    ("mlflow_dev_default_passphrase", MLFLOW_DEV_PASSPHRASE, 1, "anthropic",
     {"api_key": "sk-ant-dev-0000"}),
]


def build() -> dict:
    kek_vectors, keks = [], {}
    for key, passphrase, version, salt in KEK_INPUTS:
        kek = derive_kek(passphrase, salt, DEFAULT_ITERATIONS)
        keks[key] = kek
        kek_vectors.append({"passphrase": passphrase, "version": version, "salt_hex": salt.hex(),
                            "iterations": DEFAULT_ITERATIONS, "kek_hex": kek.hex()})

    secret_vectors = []
    for name, kek_key, workspace, secret_name, value in SECRET_INPUTS:
        kek = keks[kek_key]
        secret_id = fixed_uuid4(f"{name}/secret_id")
        dek, iv, wrap_nonce = fixed(f"{name}/dek", 32), fixed(f"{name}/iv", 12), fixed(f"{name}/wrap_nonce", 12)
        kind = "string" if isinstance(value, str) else "object"
        plaintext = compact_json({"value": value} if kind == "string" else value)
        aad = f"{workspace}|{secret_id}|{secret_name}"
        ciphertext = AESGCM(dek).encrypt(iv, plaintext.encode("utf-8"), aad.encode("utf-8"))
        secret_vectors.append({
            "name": name, "workspace": workspace, "secret_id": secret_id, "secret_name": secret_name,
            "kek_hex": kek.hex(), "dek_hex": dek.hex(), "iv_hex": iv.hex(), "wrap_nonce_hex": wrap_nonce.hex(),
            "plaintext": plaintext, "value_kind": kind, "value": value, "aad": aad,
            "aad_hash": hashlib.sha256(aad.encode("utf-8")).hexdigest(),
            "ciphertext_hex": ciphertext.hex(), "wrapped_dek_hex": wrap(kek, wrap_nonce, dek).hex(),
        })

    check_vectors = []
    for key, *_ in KEK_INPUTS:
        nonce = fixed(f"check/{key}/nonce", 12)
        check_vectors.append({"kek_hex": keks[key].hex(), "nonce_hex": nonce.hex(),
                              "label": CHECK_LABEL.decode(),
                              "check_value_hex": wrap(keks[key], nonce, CHECK_LABEL).hex()})

    mlflow_vectors = []
    for label, passphrase, version, secret_name, value in MLFLOW_INPUTS:
        kek = derive_kek(passphrase, default_salt(version), DEFAULT_ITERATIONS)
        secret_id = "s-" + fixed(f"{label}/secret_id", 16).hex()
        dek, nonce, wrap_nonce = fixed(f"{label}/dek", 32), fixed(f"{label}/nonce", 12), fixed(f"{label}/wrap_nonce", 12)
        plaintext = json.dumps(value)  # upstream: json.dumps(d, sort_keys=True); keys already sorted
        aad = f"{secret_id}|{secret_name}"
        mlflow_vectors.append({
            "secret_id": secret_id, "secret_name": secret_name, "passphrase": passphrase,
            "kek_version": version, "kek_hex": kek.hex(), "dek_hex": dek.hex(), "plaintext": plaintext,
            "aad": aad,
            "encrypted_value_hex": (nonce + AESGCM(dek).encrypt(nonce, plaintext.encode("utf-8"),
                                                                  aad.encode("utf-8"))).hex(),
            "wrapped_dek_hex": wrap(kek, wrap_nonce, dek).hex(),
        })

    description = (
        "Cross-implementation crypto vectors for mlflow-secrets, generated by "
        "scripts/gen_test_vectors.py with Python `cryptography` (OpenSSL), independently of the Rust code. "
        "Regenerate with `python3 scripts/gen_test_vectors.py > tests/fixtures/crypto_vectors.json`; "
        "do not edit by hand. Deterministic: DEKs/IVs/nonces/ids are fixed bytes (SHA-256 of labels in the script), "
        "so these are PUBLIC TEST KEYS. Verifies docs/design.md §3-§5: kek_vectors = PBKDF2-HMAC-SHA256(passphrase UTF-8, "
        "salt, iterations) -> 32 bytes (default salt b'mlflow-secrets-kek-v1-2025' || u32_be(version), 600000 iterations; "
        "plus one stored 16-byte random-style salt); secret_vectors = full chain passphrase -> KEK -> DEK -> value: "
        "plaintext is compact key-sorted UTF-8 JSON ({\"value\": s} for a string), AAD = workspace|secret_id|secret_name, "
        "aad_hash = lowercase hex SHA-256(AAD), ciphertext = AES-256-GCM(DEK, iv, plaintext, AAD) || 16-byte tag, "
        "wrapped_dek = wrap_nonce || AES-256-GCM(KEK, DEK) (60 bytes), kek_hex is one of the kek_vectors; "
        "check_vectors = nonce || AES-256-GCM(KEK, 'mlflow-secrets-kek-check-v1'); mlflow_vectors = upstream MLflow 3.8 "
        "gateway secrets (docs/design.md §11): AAD secret_id|secret_name unhashed, plaintext Python json.dumps of a dict "
        "(keys already sorted, default separators, ASCII escapes), encrypted_value = nonce || ct || tag. "
        "The script decrypts every vector back (and re-derives each KEK with hashlib) before writing."
    )
    return {"description": description, "kek_vectors": kek_vectors, "secret_vectors": secret_vectors,
            "check_vectors": check_vectors, "mlflow_vectors": mlflow_vectors}


def self_check(fx: dict) -> None:
    """Decrypt every vector back with `cryptography`; re-derive KEKs with hashlib (a second PBKDF2)."""
    h = bytes.fromhex
    kek_set = set()
    for v in fx["kek_vectors"]:
        kek = hashlib.pbkdf2_hmac("sha256", v["passphrase"].encode("utf-8"), h(v["salt_hex"]), v["iterations"], 32)
        assert kek.hex() == v["kek_hex"], v
        kek_set.add(v["kek_hex"])
    for v in fx["secret_vectors"]:
        assert v["kek_hex"] in kek_set, v["name"]
        assert str(uuid.UUID(v["secret_id"])) == v["secret_id"] and uuid.UUID(v["secret_id"]).version == 4
        wrapped = h(v["wrapped_dek_hex"])
        assert len(wrapped) == 60 and wrapped[:12].hex() == v["wrap_nonce_hex"]
        dek = AESGCM(h(v["kek_hex"])).decrypt(wrapped[:12], wrapped[12:], None)
        assert dek.hex() == v["dek_hex"]
        aad = f'{v["workspace"]}|{v["secret_id"]}|{v["secret_name"]}'
        assert aad == v["aad"] and hashlib.sha256(aad.encode()).hexdigest() == v["aad_hash"]
        pt = AESGCM(dek).decrypt(h(v["iv_hex"]), h(v["ciphertext_hex"]), aad.encode()).decode("utf-8")
        assert pt == v["plaintext"]
        obj = json.loads(pt)
        assert obj == ({"value": v["value"]} if v["value_kind"] == "string" else v["value"])
        assert compact_json(obj) == pt
    # Negative: a row's ciphertext under another row's AAD must fail (swap detection, docs/design.md §10.3).
    rows = fx["secret_vectors"]
    for v, other in zip(rows, rows[1:] + rows[:1]):
        try:
            AESGCM(h(v["dek_hex"])).decrypt(h(v["iv_hex"]), h(v["ciphertext_hex"]), other["aad"].encode())
        except InvalidTag:
            continue
        raise AssertionError(f'{v["name"]}: decrypted under a foreign AAD')
    for v in fx["check_vectors"]:
        cv = h(v["check_value_hex"])
        assert cv[:12].hex() == v["nonce_hex"] and v["kek_hex"] in kek_set
        assert AESGCM(h(v["kek_hex"])).decrypt(cv[:12], cv[12:], None) == v["label"].encode()
    for v in fx["mlflow_vectors"]:
        salt = default_salt(v["kek_version"])
        kek = hashlib.pbkdf2_hmac("sha256", v["passphrase"].encode("utf-8"), salt, DEFAULT_ITERATIONS, 32)
        assert kek.hex() == v["kek_hex"]
        wrapped, enc = h(v["wrapped_dek_hex"]), h(v["encrypted_value_hex"])
        dek = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], None)
        assert len(wrapped) == 60 and dek.hex() == v["dek_hex"]
        assert v["aad"] == f'{v["secret_id"]}|{v["secret_name"]}'
        pt = AESGCM(dek).decrypt(enc[:12], enc[12:], v["aad"].encode()).decode("utf-8")
        assert pt == v["plaintext"] and json.dumps(json.loads(pt), sort_keys=True) == pt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the fixture here instead of stdout")
    args = ap.parse_args()
    fixture = build()
    self_check(fixture)
    text = json.dumps(fixture, indent=2, ensure_ascii=False) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    else:
        sys.stdout.buffer.write(text.encode("utf-8"))
    print("self-check passed", file=sys.stderr)


if __name__ == "__main__":
    main()
