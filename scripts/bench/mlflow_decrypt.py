#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""MLflow's own per-read decrypt, timed: the peer of our `decrypt_secret`.

Runs upstream MLflow's code (`mlflow.utils.crypto._encrypt_secret` and
`_decrypt_secret`, the functions its SqlAlchemyStore calls for a gateway
secret) with the KEK derived once and cached in a `KEKManager`, exactly as a
running `mlflow server` holds it. The same envelope as ours: unwrap the DEK
with AES-256-GCM, AES-256-GCM open of the value with its AAD, JSON parse.

Prints one line: `mlflow_decrypt_secret_median_us: <float>`.
Run with the pinned MLflow's python: `$(scripts/mlflow-env.sh python)`.
"""
import statistics
import sys
import timeit

from mlflow.utils.crypto import KEKManager, _decrypt_secret, _encrypt_secret

SECRET_ID = "s-6f1c2a8e3b4d4e5f8a9b0c1d2e3f4a5b"
SECRET_NAME = "openai-key"
VALUE = {"api_key": "sk-proj-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp"}


def main() -> None:
    number = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    kek = KEKManager(passphrase="correct horse battery staple", kek_version=1)
    sealed = _encrypt_secret(VALUE, kek, SECRET_ID, SECRET_NAME)

    def read():
        return _decrypt_secret(sealed.encrypted_value, sealed.wrapped_dek, kek, SECRET_ID, SECRET_NAME)

    assert read() == VALUE
    runs = timeit.repeat(read, number=number, repeat=11)
    print(f"mlflow_decrypt_secret_median_us: {statistics.median(runs) / number * 1e6:.3f}")


if __name__ == "__main__":
    main()
