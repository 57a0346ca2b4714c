#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The full test suite, exactly as CI runs it (.ci/run calls this script).
# On a fresh Debian machine it installs and starts everything the tests
# need, on loopback only, and stops it again whatever the outcome:
#   - PostgreSQL and MariaDB (scripts/db.sh), for the store contract suite;
#   - a Kubernetes control plane built from source and cached
#     (scripts/testenv.sh), for the operator and webhook tests.
# Then: cargo fmt --check, cargo clippy -D warnings, cargo test, and a
# schemathesis run (every check) against a live `mlflow-secrets serve`.
#
# Usage: scripts/test.sh [extra cargo test arguments]
# Set MLFLOW_SECRETS_SKIP_K8S=1 to run without the control plane: its tests
# are then skipped (MLFLOW_SECRETS_K8S=off), or start one of their own on
# demand with MLFLOW_SECRETS_K8S=auto.
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
    rm -rf "$MLFLOW_SECRETS_TESTENV_DIR"
  fi
  if [ "$started_db" = 1 ]; then
    step "stopping PostgreSQL and MariaDB"
    scripts/db.sh down || true
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

step "toolchain: $(cargo --version), $(go version 2>/dev/null || echo 'no go')"

# Rust builds are cached outside the checkout, keyed by toolchain version, so
# a fresh clone on a machine that ran the suite before starts warm.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-secrets/cargo-target/$(rustc --version | cut -d' ' -f2)"
  export CARGO_TARGET_DIR
fi
step "cargo target dir: $CARGO_TARGET_DIR"

# Tools the scripts need that a minimal Debian may lack.
missing=()
for tool in openssl curl flock setsid python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    openssl curl util-linux python3 >/dev/null
fi

step "starting PostgreSQL and MariaDB on loopback"
db_env=$(scripts/db.sh up)
started_db=1
eval "$db_env"
export MLFLOW_SECRETS_REQUIRE_ALL_BACKENDS=1

# --- backup/restore drill (tests/ops_backup.rs) ---
# It dumps and restores PostgreSQL and MariaDB with their native tools,
# which come with the packages scripts/db.sh installs.
for tool in pg_dump pg_restore mysqldump mysql; do
  if ! command -v "$tool" >/dev/null; then
    echo "scripts/test.sh: $tool is missing; tests/ops_backup.rs needs it" >&2
    exit 1
  fi
done
# --- end of the backup/restore drill block ---

if [ "${MLFLOW_SECRETS_SKIP_K8S:-0}" = 1 ]; then
  export MLFLOW_SECRETS_K8S="${MLFLOW_SECRETS_K8S:-off}"
else
  step "building the Kubernetes control plane (cached after the first run)"
  scripts/testenv.sh build
  step "starting the Kubernetes control plane"
  # A run directory of our own, so a control plane someone runs by hand
  # (default /tmp/mlflow-secrets-testenv) is never touched.
  export MLFLOW_SECRETS_TESTENV_DIR="${MLFLOW_SECRETS_TESTENV_DIR:-${TMPDIR:-/tmp}/mlflow-secrets-testenv-ci.$$}"
  started_k8s=1
  kubeconfig=$(scripts/testenv.sh up | tail -n 1)
  export MLFLOW_SECRETS_TEST_KUBECONFIG="$kubeconfig"
  # Every control-plane test runs and fails without it (tests/k8s/support/env.rs).
  export MLFLOW_SECRETS_K8S=require
  PATH="$(scripts/testenv.sh bin-dir):$PATH"
  export PATH
fi

# --- MLflow (tests/cli/mlflow_*.rs, tests/k8s/mlflow_sync.rs) ---------------
# The pinned MLflow venv, installed once here (cached) so the MLflow tests
# never race to install it; MLFLOW_SECRETS_MLFLOW=off skips them instead.
if [ "${MLFLOW_SECRETS_MLFLOW:-}" != off ]; then
  step "preparing the pinned MLflow virtualenv (cached after the first run)"
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    # A fresh machine may have no package lists yet.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  scripts/mlflow-env.sh >/dev/null
  export MLFLOW_SECRETS_MLFLOW=require
fi
# ---------------------------------------------------------------------------
# --- Web UI browser tests (tests/ui/browser.rs) ---------------------------
# Debian's headless Chromium, no browser download; the tests fail instead
# of skipping when it is required and missing.
ui_browser=$(command -v chromium-headless-shell || command -v chromium || true)
if [ -z "$ui_browser" ]; then
  step "installing chromium-headless-shell for the UI browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium-headless-shell >/dev/null
  ui_browser=$(command -v chromium-headless-shell)
fi
export MLFLOW_SECRETS_UI_BROWSER=require
export MLFLOW_SECRETS_UI_BROWSER_PATH="$ui_browser"
# --- end of the web UI block -------------------------------------------------

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
test_log=$(mktemp)
cargo test --all-targets "$@" 2>&1 | tee "$test_log"

step "schemathesis against mlflow-secrets serve"
scripts/schemathesis.sh

# One closing line for the whole run: the cargo test totals (schemathesis
# prints its own counts above).
passed=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' "$test_log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$test_log" | awk '{s+=$1} END {print s+0}')
rm -f "$test_log"
step "done"
echo "tests: $passed passed, $failed failed"
