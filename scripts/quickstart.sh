#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The quick start on the embedded SQLite default, end to end: a keystore with
# a random passphrase, a secret, a binding, verify. Everything lives in one
# directory (default: a new temporary one) so it never touches your real
# /etc/mlflow/keystore or /root/.mlflow_kek_pass.
#
# Usage: scripts/quickstart.sh [DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$(mktemp -d -t mlflow-secrets-quickstart.XXXXXX)}
mkdir -p "$DIR"
cd "$ROOT"
# A debug build: it shares the test suite's build cache, and the crypto
# crates are optimised even there (Cargo.toml), so the flow runs as fast.
cargo build --quiet --bin mlflow-secrets
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mlflow-secrets"

export MLFLOW_SECRETS_STORE_URI="sqlite://$DIR/mlflow-secrets.db"
export MLFLOW_SECRETS_KEYSTORE_PATH="$DIR/keystore"
export MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$DIR/kek-passphrase"

run() { printf '\n$ mlflow-secrets %s\n' "$*"; "$BIN" "$@"; }

if [ ! -s "$MLFLOW_SECRETS_KEK_PASSPHRASE_FILE" ]; then
  # A random passphrase, readable by you only. Keep it safe: without it the
  # secrets cannot be decrypted.
  (umask 077 && head -c 32 /dev/urandom | base64 > "$MLFLOW_SECRETS_KEK_PASSPHRASE_FILE")
fi
[ -e "$MLFLOW_SECRETS_KEYSTORE_PATH/kek-v1.json" ] || run kek generate
# In real use, type the value at the hidden prompt or pipe it from a secret
# manager; here a demo key comes from stdin.
printf 'sk-demo-%s\n' "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  | run create openai-judge-key --value-stdin
run get openai-judge-key
run bind openai-judge-key --resource-type SCORER_JOB --resource-id nightly-eval --name OPENAI_API_KEY
run list-bindings --resource-id nightly-eval
run kek list
run verify
run audit verify
printf '\nAll state is in %s\n' "$DIR"
# The web UI of the same store (docs/ui.md): `serve` prints its address.
printf 'Web UI of this store: run\n  MLFLOW_SECRETS_STORE_URI=%s MLFLOW_SECRETS_KEYSTORE_PATH=%s MLFLOW_SECRETS_KEK_PASSPHRASE_FILE=%s %s serve\nand open http://127.0.0.1:5005/secrets (loopback, no tokens file: no sign-in, you act as local)\n' \
  "$MLFLOW_SECRETS_STORE_URI" "$MLFLOW_SECRETS_KEYSTORE_PATH" "$MLFLOW_SECRETS_KEK_PASSPHRASE_FILE" "$BIN"
