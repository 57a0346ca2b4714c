#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `mlflow import` benchmark (target: 10,000 gateway secrets in <= 30 s).
#
# Seeds BENCH_SECRETS gateway secrets into a fresh SQLite tracking database
# with MLflow's own SqlAlchemyStore.create_gateway_secret (the pinned venv of
# scripts/mlflow-env.sh, tests/testkit/gateway.py: one process, KEK derived
# once as scripts/bench/mlflow_store_seed.py explains, SQLite without fsync),
# caches that database under ~/.cache/mlflow-secrets/bench (BENCH_RESEED=1
# seeds again), generates a keystore of ours, then times
# `mlflow-secrets mlflow import` end to end (process start, MLflow KEK
# derivation, reading and decrypting every row, our KEK, listing the
# workspace, and the creates, 256 secrets and their audit rows per
# transaction) and a rerun
# (every value compared, all skipped). Prints the figures.
#
# Environment:
#   BENCH_SECRETS=10000   gateway secrets to import
#   BENCH_RESEED=1        seed MLflow's database again instead of the cached one
#   BENCH_BIN=PATH        binary to time [default: the release build in CARGO_TARGET_DIR]
#   CARGO_TARGET_DIR      default <repo>/target
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
N="${BENCH_SECRETS:-10000}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BENCH_BIN:-}"
if [ -z "$BIN" ]; then
  (cd "$ROOT" && cargo build --release --quiet --bin mlflow-secrets)
  BIN="$TARGET/release/mlflow-secrets"
fi
PY="$("$ROOT/scripts/mlflow-env.sh" python)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export MLFLOW_CRYPTO_KEK_PASSPHRASE="bench mlflow passphrase"

# The seeded database is cached, keyed by MLflow's version, the count and
# the seeding code: seeding is MLflow's work, not the import's, and the
# import only reads it (from a copy).
MLFLOW_VERSION="$("$PY" -c 'import mlflow; print(mlflow.__version__)')"
SEED_KEY="$(sha256sum < "$ROOT/tests/testkit/gateway.py" | cut -c1-12)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-secrets/bench"
SEEDED="$CACHE/mlflow-$MLFLOW_VERSION-gateway-$N-$SEED_KEY.db"
if [ ! -s "$SEEDED" ] || [ -n "${BENCH_RESEED:-}" ]; then
  mkdir -p "$CACHE"
  rm -f "$CACHE"/mlflow-*-gateway-"$N"-*.db
  echo "==> seeding $N gateway secrets with MLflow $MLFLOW_VERSION's SqlAlchemyStore (one process, KEK derived once, no fsync)" >&2
  t0=$(date +%s.%N)
  "$PY" "$ROOT/tests/testkit/gateway.py" seed --db-uri "sqlite:///$WORK/seed.db" \
    --count "$N" --prefix bench --no-fsync > /dev/null 2> "$WORK/seed.log" || { cat "$WORK/seed.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "    seeded in $(echo "$t1 - $t0" | bc) s" >&2
  mv "$WORK/seed.db" "$SEEDED.tmp" && mv "$SEEDED.tmp" "$SEEDED"
else
  echo "==> $N gateway secrets seeded earlier by MLflow $MLFLOW_VERSION: $SEEDED" >&2
fi
cp "$SEEDED" "$WORK/mlflow.db"
rows=$("$PY" -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM secrets").fetchone()[0])' "$WORK/mlflow.db")
[ "$rows" = "$N" ] || { echo "the seeded database holds $rows gateway secrets, not $N (BENCH_RESEED=1 reseeds)" >&2; exit 1; }

printf '%s\n' "bench our passphrase" > "$WORK/pass"
chmod 600 "$WORK/pass"
export MLFLOW_SECRETS_KEYSTORE_PATH="$WORK/keystore"
export MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$WORK/pass"
export MLFLOW_SECRETS_STORE_URI="sqlite://$WORK/ours.db"
unset MLFLOW_SECRETS_TEST_MODE
"$BIN" -q kek generate > /dev/null
"$BIN" -q migrate > /dev/null

run() {
  local s e
  s=$(date +%s.%N)
  "$BIN" -q mlflow import --from "sqlite:///$WORK/mlflow.db" -o json > "$WORK/report.json"
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
first=$(run)
imported=$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r["imported"]))' "$WORK/report.json")
second=$(run)
skipped=$("$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r["skipped"]))' "$WORK/report.json")
[ "$imported" = "$N" ] || { echo "expected $N imported, got $imported" >&2; exit 1; }
[ "$skipped" = "$N" ] || { echo "expected $N skipped on the rerun, got $skipped" >&2; exit 1; }
rate=$(echo "$N / $first" | bc)
echo "mlflow import of $N gateway secrets (SQLite to SQLite): ${first} s (${rate}/s); target <= 30 s"
echo "rerun, every value compared and skipped: ${second} s"
