#!/usr/bin/env bash
# scripts/bench_webhook.sh - webhook admission load benchmark
# (docs/benchmarks.md). Runs benches/webhook_load.rs in a release build against the
# test control plane, on SQLite and PostgreSQL: a pod with 5 bindings,
# dryRun=false, AdmissionReview over TLS to the webhook served in-process;
# prints p50/p99/requests-per-second at a fixed 200/s and at max throughput,
# the store and API-server halves alone, and RESULT lines for the split
# target (our half p99, end-to-end p99 less the Secret create's p99, the
# Job check from the cache and by GET). See docs/benchmarks.md.
#
# Needs: a control plane (MLFLOW_SECRETS_TEST_KUBECONFIG; without it, each
# backend gets a fresh one, built if needed and started with
# scripts/testenv.sh) and the databases (scripts/db.sh up; PostgreSQL is
# skipped when its URL is unset).
#
# Environment (optional): WEBHOOK_BENCH_RATE=200 WEBHOOK_BENCH_SECS=20
# WEBHOOK_BENCH_GET_SECS=10 WEBHOOK_BENCH_MAX_SECS=10 (0: no max phase)
# WEBHOOK_BENCH_CONCURRENCY=16
# WEBHOOK_BENCH_BACKENDS=sqlite,postgres
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${MLFLOW_SECRETS_TEST_POSTGRES_URL:-}" ]]; then
  eval "$(scripts/db.sh env 2>/dev/null)" || true
fi
if [[ -n "${MLFLOW_SECRETS_TEST_KUBECONFIG:-}" ]]; then
  exec cargo bench --bench webhook_load
fi

# Each backend on a fresh control plane of its own, for a quiet and equal
# measurement. Every admission names a real Job (~14,500 per backend,
# created suspended before the clock starts); kube-controller-manager runs
# without its job controller, so those fixtures stay inert instead of being
# synced at its 20 requests/s for minutes. The garbage collector and the
# rest run as usual.
scripts/testenv.sh build
cargo bench --no-run --bench webhook_load
export MLFLOW_SECRETS_TESTENV_KCM_CONTROLLERS=garbage-collector-controller,namespace-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,ttl-after-finished-controller,clusterrole-aggregation-controller
run_dir="${TMPDIR:-/tmp}/mlflow-secrets-bench-webhook.$$"
trap 'MLFLOW_SECRETS_TESTENV_DIR="$run_dir" scripts/testenv.sh down >/dev/null 2>&1 || true; rm -rf "$run_dir"' EXIT
IFS=, read -r -a backends <<< "${WEBHOOK_BENCH_BACKENDS:-sqlite,postgres}"
for backend in "${backends[@]}"; do
  export MLFLOW_SECRETS_TESTENV_DIR="$run_dir"
  MLFLOW_SECRETS_TEST_KUBECONFIG="$(scripts/testenv.sh up | tail -n 1)"
  MLFLOW_SECRETS_TEST_KUBECONFIG="$MLFLOW_SECRETS_TEST_KUBECONFIG" WEBHOOK_BENCH_BACKENDS="$backend" \
    cargo bench --bench webhook_load
  scripts/testenv.sh down >/dev/null
  rm -rf "$run_dir"
done
