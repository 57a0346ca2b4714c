#!/usr/bin/env bash
# scripts/bench_webhook.sh - webhook admission load benchmark (issue 5,
# "Performance"). Runs benches/webhook_load.rs in a release build against the
# test control plane, on SQLite and PostgreSQL: a pod with 5 bindings,
# dryRun=false, AdmissionReview over TLS to the webhook served in-process;
# prints p50/p99/requests-per-second at a fixed 200/s and at max throughput,
# and the store and API-server halves alone. See docs/webhook.md.
#
# Needs: a control plane (MLFLOW_SECRETS_TEST_KUBECONFIG; without it one is
# built if needed and started with scripts/testenv.sh for this run) and the
# databases (scripts/db.sh up; PostgreSQL is skipped when its URL is unset).
#
# Environment (optional): WEBHOOK_BENCH_RATE=200 WEBHOOK_BENCH_SECS=20
# WEBHOOK_BENCH_MAX_SECS=10 WEBHOOK_BENCH_CONCURRENCY=16
# WEBHOOK_BENCH_BACKENDS=sqlite,postgres
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${MLFLOW_SECRETS_TEST_KUBECONFIG:-}" ]]; then
  # A control plane of its own: the benchmark's synthetic Job owners leave
  # thousands of Secrets for the garbage collector of whatever cluster it uses.
  scripts/testenv.sh build
  export MLFLOW_SECRETS_TESTENV_DIR="${TMPDIR:-/tmp}/mlflow-secrets-bench-webhook.$$"
  trap 'scripts/testenv.sh down >/dev/null 2>&1 || true; rm -rf "$MLFLOW_SECRETS_TESTENV_DIR"' EXIT
  MLFLOW_SECRETS_TEST_KUBECONFIG="$(scripts/testenv.sh up | tail -n 1)"
  export MLFLOW_SECRETS_TEST_KUBECONFIG
fi
if [[ -z "${MLFLOW_SECRETS_TEST_POSTGRES_URL:-}" ]]; then
  eval "$(scripts/db.sh env 2>/dev/null)" || true
fi
cargo bench --bench webhook_load
