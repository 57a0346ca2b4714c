#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The full test suite, exactly as CI runs it (.ci/run calls this script).
# On a fresh Debian machine it installs and starts everything the tests
# need, on loopback only, and stops it again whatever the outcome:
#   - PostgreSQL and MariaDB (scripts/db.sh), for the store contract suite;
#   - a Kubernetes control plane built from source and cached
#     (scripts/testenv.sh), for the operator and webhook tests.
# Then: cargo fmt --check, cargo clippy -D warnings, cargo test.
#
# Usage: scripts/test.sh [extra cargo test arguments]
# Set MLFLOW_SECRETS_SKIP_K8S=1 to run without the control plane (its tests
# then start one of their own on demand).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }
started_db=0
started_k8s=0

cleanup() {
  local rc=$?
  if [ "$started_k8s" = 1 ]; then
    step "stopping the Kubernetes control plane"
    scripts/testenv.sh down || true
  fi
  if [ "$started_db" = 1 ]; then
    step "stopping PostgreSQL and MariaDB"
    scripts/db.sh down || true
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

step "toolchain: $(cargo --version), $(go version 2>/dev/null || echo 'no go')"

step "starting PostgreSQL and MariaDB on loopback"
db_env=$(scripts/db.sh up)
started_db=1
eval "$db_env"
export MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS=1

if [ "${MLFLOW_SECRETS_SKIP_K8S:-0}" != 1 ]; then
  step "building the Kubernetes control plane (cached after the first run)"
  scripts/testenv.sh build
  step "starting the Kubernetes control plane"
  kubeconfig=$(scripts/testenv.sh up | tail -n 1)
  started_k8s=1
  export MLFLOW_SECRETS_TEST_KUBECONFIG="$kubeconfig"
  export MLFLOW_SECRETS_REQUIRE_K8S=1
  PATH="$(scripts/testenv.sh bin-dir):$PATH"
  export PATH
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets "$@"
