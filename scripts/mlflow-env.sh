#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A pinned MLflow in a virtualenv cached outside the checkout, keyed by
# version, for the tests and benchmarks that run real MLflow (its own store
# writes the gateway secrets `mlflow import` reads; a real `mlflow server`
# receives `mlflow push`; scripts/bench compares our server with MLflow's).
#
# Usage: scripts/mlflow-env.sh            install if needed, print the venv dir
#        scripts/mlflow-env.sh python     print the venv's python3
# Environment:
#   MLFLOW_SECRETS_MLFLOW_VERSION   default 3.17.2
#   MLFLOW_SECRETS_MLFLOW_VENV      default ~/.cache/mlflow-secrets/mlflow-venv/<version>
#
# The install is keyed by a marker file that holds the package set and is
# written only after every package imported, so an interrupted install is
# redone rather than half-used, and a changed set is installed on top.
set -euo pipefail

VERSION="${MLFLOW_SECRETS_MLFLOW_VERSION:-3.17.2}"
VENV="${MLFLOW_SECRETS_MLFLOW_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-secrets/mlflow-venv/$VERSION}"
MARKER="$VENV/.mlflow-secrets-ready"
# Drivers for MLflow's tracking store on PostgreSQL and MySQL/MariaDB, and
# Flask-WTF for MLflow's basic-auth app (`mlflow[auth]`: the push test
# signs in with MLFLOW_TRACKING_USERNAME/PASSWORD).
EXTRA=(psycopg2-binary==2.9.10 PyMySQL==1.1.1 Flask-WTF==1.3.0)
WANT="mlflow==$VERSION ${EXTRA[*]}"

if [ "$(cat "$MARKER" 2>/dev/null)" != "$WANT" ]; then
  echo "==> installing $WANT into $VENV (cached after the first run)" >&2
  mkdir -p "$(dirname "$VENV")"
  # One installer at a time: parallel test binaries may all ask at once.
  exec 9>"$VENV.lock"
  flock 9
  if [ "$(cat "$MARKER" 2>/dev/null)" != "$WANT" ]; then
    # A venv with this MLflow only lacks packages: install on top of it.
    if [ ! -f "$MARKER" ]; then
      rm -rf "$VENV"
      python3 -m venv "$VENV"
    fi
    rm -f "$MARKER"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "mlflow==$VERSION" "${EXTRA[@]}" >&2
    "$VENV/bin/python3" -c "import mlflow, psycopg2, pymysql, flask_wtf, sys; sys.exit(mlflow.__version__ != '$VERSION')"
    printf '%s' "$WANT" > "$MARKER"
  fi
fi

case "${1:-}" in
  python) echo "$VENV/bin/python3" ;;
  "") echo "$VENV" ;;
  *) echo "usage: $0 [python]" >&2; exit 2 ;;
esac
