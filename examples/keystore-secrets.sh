#!/usr/bin/env bash
# Create, or rotate, the two Secrets the chart projects at /etc/mlflow:
#
#   mlflow-secrets-keystore        keys kek-v<N>.json  (KDF parameters and a
#                                   check value; no key, no passphrase)
#   mlflow-secrets-kek-passphrase  keys v<N>           (one passphrase per
#                                   KEK version)
#
# Usage:
#   examples/keystore-secrets.sh create [-n NAMESPACE]
#   examples/keystore-secrets.sh rotate [-n NAMESPACE]
#
# create  generates a random passphrase for version 1, runs
#         `mlflow-secrets kek generate`, and creates both Secrets.
# rotate  fetches the keystore files, generates a random passphrase for
#         version N+1, runs `mlflow-secrets kek rotate` (N+1 becomes active,
#         N decrypt-only), updates the keystore Secret and adds v<N+1> to the
#         passphrase Secret. The kubelet then swaps the projected volume and
#         the operator reloads it without a restart; afterwards run
#         `mlflow-secrets rewrap --all` (see docs/kubernetes.md).
#
# Environment: KUBECTL (default kubectl), MLFLOW_SECRETS_BIN (default
# mlflow-secrets), KEYSTORE_SECRET, PASSPHRASE_SECRET (the chart's default
# names), PASSPHRASE_BACKUP_DIR (optional: also copy the new passphrase file
# there, e.g. an encrypted volume; without a copy, the Secret is the only
# place the passphrase exists and losing it loses every secret).
#
# Passphrases only ever touch a private temporary directory (mode 0700,
# removed on exit) and files handed to kubectl: never a command line or an
# environment variable, both of which other users can read through /proc.
set -euo pipefail

KUBECTL=${KUBECTL:-kubectl}
BIN=${MLFLOW_SECRETS_BIN:-mlflow-secrets}
KEYSTORE_SECRET=${KEYSTORE_SECRET:-mlflow-secrets-keystore}
PASSPHRASE_SECRET=${PASSPHRASE_SECRET:-mlflow-secrets-kek-passphrase}
NAMESPACE=mlflow-secrets

die() { echo "keystore-secrets.sh: $*" >&2; exit 1; }

cmd=${1:-}
[ -n "$cmd" ] || die "usage: $0 create|rotate [-n NAMESPACE]"
shift
while [ $# -gt 0 ]; do
  case $1 in
    -n|--namespace) NAMESPACE=${2:?-n needs a namespace}; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done

umask 077
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work/keystore" "$work/passphrase"
kc() { "$KUBECTL" -n "$NAMESPACE" "$@"; }

# 32 random bytes, base64: 256 bits, printable, no trailing newline.
new_passphrase() {
  head -c 32 /dev/urandom | base64 | tr -d '\n' >"$1"
}

backup() {
  if [ -n "${PASSPHRASE_BACKUP_DIR:-}" ]; then
    install -m 0600 "$1" "$PASSPHRASE_BACKUP_DIR/$(basename "$1")"
    echo "copied the passphrase of $(basename "$1") to $PASSPHRASE_BACKUP_DIR"
  else
    echo "WARNING: the passphrase of $(basename "$1") now exists only in Secret $NAMESPACE/$PASSPHRASE_SECRET;" \
      "back it up (PASSPHRASE_BACKUP_DIR) or every secret is lost with it." >&2
  fi
}

run_bin() {
  MLFLOW_SECRETS_KEYSTORE_PATH="$work/keystore" \
    MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$work/passphrase" \
    "$BIN" "$@"
}

case $cmd in
  create)
    for s in "$KEYSTORE_SECRET" "$PASSPHRASE_SECRET"; do
      if kc get secret "$s" >/dev/null 2>&1; then
        die "Secret $NAMESPACE/$s already exists; use \`$0 rotate\` to add a version"
      fi
    done
    new_passphrase "$work/passphrase/v1"
    run_bin kek generate
    # --from-file with a directory: one key per file (kek-v1.json, v1).
    kc create secret generic "$KEYSTORE_SECRET" --from-file="$work/keystore/"
    kc create secret generic "$PASSPHRASE_SECRET" --from-file="$work/passphrase/"
    backup "$work/passphrase/v1"
    ;;
  rotate)
    kc get secret "$KEYSTORE_SECRET" >/dev/null || die "Secret $NAMESPACE/$KEYSTORE_SECRET not found; run \`$0 create\` first"
    # shellcheck disable=SC2016 # a go-template, not shell
    keys=$(kc get secret "$KEYSTORE_SECRET" -o go-template='{{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}')
    max=0
    for k in $keys; do
      case $k in
        kek-v*.json) ;;
        *) continue ;;
      esac
      kc get secret "$KEYSTORE_SECRET" -o go-template="{{index .data \"$k\"}}" | base64 -d >"$work/keystore/$k"
      n=${k#kek-v}; n=${n%.json}
      [ "$n" -gt "$max" ] && max=$n
    done
    [ "$max" -gt 0 ] || die "Secret $NAMESPACE/$KEYSTORE_SECRET holds no kek-v<N>.json"
    next=$((max + 1))
    existing=$(kc get secret "$PASSPHRASE_SECRET" -o go-template="{{with index .data \"v$next\"}}{{.}}{{end}}")
    if [ -n "$existing" ]; then
      # A previous run stopped after storing the passphrase: reuse it.
      printf '%s' "$existing" | base64 -d >"$work/passphrase/v$next"
      echo "reusing the passphrase v$next already in Secret $NAMESPACE/$PASSPHRASE_SECRET"
    else
      new_passphrase "$work/passphrase/v$next"
      # The passphrase first: once the keystore names v<next>, the operator
      # must be able to load it.
      printf '{"data":{"v%s":"%s"}}' "$next" "$(base64 <"$work/passphrase/v$next" | tr -d '\n')" >"$work/patch.json"
      kc patch secret "$PASSPHRASE_SECRET" --type=merge --patch-file="$work/patch.json"
    fi
    run_bin kek rotate
    # Replaces every kek-v<N>.json (the old active one is now decrypt_only).
    kc create secret generic "$KEYSTORE_SECRET" --from-file="$work/keystore/" --dry-run=client -o yaml |
      kc apply --server-side --force-conflicts --field-manager=mlflow-secrets-admin -f -
    backup "$work/passphrase/v$next"
    echo "KEK v$next is active. Next: wait for the operator to log \"reloaded the keystore\", then rewrap (docs/kubernetes.md)."
    ;;
  *) die "unknown command: $cmd (create or rotate)" ;;
esac
