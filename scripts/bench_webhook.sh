#!/usr/bin/env bash
# scripts/bench_webhook.sh - webhook admission load benchmark (issue 5,
# "Performance"). Runs benches/webhook_load.rs in a release build against the
# test control plane, on SQLite and PostgreSQL: a pod with 5 bindings,
# dryRun=false, AdmissionReview over TLS to the webhook served in-process;
# prints p50/p99/requests-per-second at a fixed 200/s and at max throughput,
# and the store and API-server halves alone. See docs/webhook.md.
#
# Needs: a control plane (scripts/testenv.sh up; MLFLOW_SECRETS_TEST_KUBECONFIG,
# default /work/testenv-shared/kubeconfig if it exists) and the databases
# (scripts/db.sh up; PostgreSQL is skipped when its URL is unset).
#
# Environment (optional): WEBHOOK_BENCH_RATE=200 WEBHOOK_BENCH_SECS=20
# WEBHOOK_BENCH_MAX_SECS=10 WEBHOOK_BENCH_CONCURRENCY=16
# WEBHOOK_BENCH_BACKENDS=sqlite,postgres
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${MLFLOW_SECRETS_TEST_KUBECONFIG:-}" ]]; then
  for k in /work/testenv-shared/kubeconfig; do
    [[ -f $k ]] && export MLFLOW_SECRETS_TEST_KUBECONFIG=$k
  done
fi
[[ -n "${MLFLOW_SECRETS_TEST_KUBECONFIG:-}" ]] ||
  { echo "bench_webhook: set MLFLOW_SECRETS_TEST_KUBECONFIG (scripts/testenv.sh up)" >&2; exit 1; }
if [[ -z "${MLFLOW_SECRETS_TEST_POSTGRES_URL:-}" ]]; then
  eval "$(scripts/db.sh env 2>/dev/null)" || true
fi
exec cargo bench --bench webhook_load
