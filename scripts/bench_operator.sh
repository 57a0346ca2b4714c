#!/usr/bin/env bash
# Operator reconcile benchmark (issue 5): how long BENCH_OBJECTS MlflowSecrets
# (each importing its value from a Kubernetes Secret) take to become Ready
# against the test control plane, and the operator's memory with
# BENCH_RSS_OBJECTS of them in the cluster and in the store.
#
# It builds the release binary, starts a control plane with
# scripts/testenv.sh (or uses $KUBECONFIG when BENCH_KUBECONFIG is set),
# generates a keystore, starts `mlflow-secrets operator` on SQLite, then:
#   1. creates BENCH_OBJECTS Secrets + MlflowSecrets (kubectl create, 4 in
#      parallel) and prints the time from the first create to all Ready;
#   2. adds objects up to BENCH_RSS_OBJECTS, waits for all Ready, and prints
#      the operator's RSS (VmRSS and VmHWM).
#
# Environment:
#   BENCH_OBJECTS=1000        objects for the timing (target: Ready < 60 s)
#   BENCH_RSS_OBJECTS=10000   objects for the memory figure (target < 100 MiB;
#                             0 skips phase 2)
#   BENCH_KUBECONFIG=PATH     use this control plane instead of starting one
#   CARGO_TARGET_DIR          default <repo>/target
set -euo pipefail

PROG=scripts/bench_operator.sh
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OBJECTS="${BENCH_OBJECTS:-1000}"
RSS_OBJECTS="${BENCH_RSS_OBJECTS:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/mlflow-secrets"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-secrets-bench-op.XXXXXX")"
OP_PID=""
OWN_TESTENV=""
cleanup() {
    local rc=$?
    trap - EXIT
    [[ -n "$OP_PID" ]] && kill -TERM "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null || true
    if [[ -n "${NS:-}" ]]; then
        kubectl delete namespace "$NS" "$OP_NS" --wait=false >/dev/null 2>&1 || true
        kubectl delete mutatingwebhookconfiguration "$WEBHOOK_CONFIG" >/dev/null 2>&1 || true
    fi
    if [[ -n "$OWN_TESTENV" ]]; then
        MLFLOW_SECRETS_TESTENV_DIR="$OWN_TESTENV" "$ROOT/scripts/testenv.sh" down >/dev/null 2>&1 || true
    fi
    if [[ $rc -ne 0 ]]; then
        log "failed; operator log (last 30 lines):"
        tail -n 30 "$WORK/operator.log" >&2 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

log "building the release binary"
(cd "$ROOT" && cargo build --release --quiet --bin mlflow-secrets) || die "cargo build --release failed"

export PATH="$("$ROOT/scripts/testenv.sh" bin-dir):$PATH"
if [[ -n "${BENCH_KUBECONFIG:-}" ]]; then
    export KUBECONFIG="$BENCH_KUBECONFIG"
else
    "$ROOT/scripts/testenv.sh" build
    OWN_TESTENV="$WORK/testenv"
    export KUBECONFIG="$(MLFLOW_SECRETS_TESTENV_DIR="$OWN_TESTENV" "$ROOT/scripts/testenv.sh" up | tail -n 1)"
fi
kubectl apply --server-side --force-conflicts -f "$ROOT/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
    crd/mlflowsecrets.secrets.mlflow.org crd/mlflowsecretbindings.secrets.mlflow.org >/dev/null

SUFFIX="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
NS="bench-op-$SUFFIX"
OP_NS="bench-op-system-$SUFFIX"
WEBHOOK_CONFIG="mlflow-secrets-bench-$SUFFIX"
kubectl create namespace "$NS" >/dev/null
kubectl create namespace "$OP_NS" >/dev/null

# A keystore with a random passphrase, as an operator would mount it.
mkdir -p "$WORK/keystore"
head -c 24 /dev/urandom | base64 > "$WORK/passphrase"
chmod 600 "$WORK/passphrase"
MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$WORK/passphrase" \
    "$BIN" --keystore "$WORK/keystore" kek generate --passphrase-file "$WORK/passphrase" >/dev/null

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$WORK/passphrase" setsid "$BIN" operator \
    --store-uri "sqlite://$WORK/secrets.db" --keystore "$WORK/keystore" \
    --webhook-listen "127.0.0.1:$PORT" --webhook-url "https://127.0.0.1:$PORT/mutate" \
    --webhook-config-name "$WEBHOOK_CONFIG" \
    --webhook-namespace-selector "mlflow-secrets.bench/operator=$SUFFIX" \
    --namespace "$OP_NS" --identity bench --log-format json --log-level warn \
    >"$WORK/operator.log" 2>&1 &
OP_PID=$!
for _ in $(seq 120); do
    [[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/ready")" == 200 ]] && break
    kill -0 "$OP_PID" 2>/dev/null || die "the operator exited"
    sleep 0.5
done
[[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/ready")" == 200 ]] || die "operator not ready"
log "operator ready (pid $OP_PID)"

rss() { awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{printf "%.1f %.1f\n", r/1024, h/1024}' "/proc/$OP_PID/status"; }

# gen FROM TO: Secrets + MlflowSecrets FROM..TO-1 as YAML chunks of 250 objects.
gen() {
    local from=$1 to=$2
    python3 - "$from" "$to" "$WORK/chunks" <<'PY'
import os, sys, secrets
lo, hi, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
for f in os.listdir(out):
    os.remove(os.path.join(out, f))
chunk, docs = 0, []
def flush():
    global chunk, docs
    if docs:
        with open(os.path.join(out, f"c{chunk:05d}.yaml"), "w") as fh:
            fh.write("\n---\n".join(docs))
        chunk += 1
        docs = []
for i in range(lo, hi):
    docs.append(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: src-{i}\nstringData:\n  k: sk-bench-{secrets.token_hex(16)}\n")
    docs.append(f"apiVersion: secrets.mlflow.org/v1alpha1\nkind: MlflowSecret\nmetadata:\n  name: key-{i}\nspec:\n  valueFrom:\n    secretKeyRef:\n      name: src-{i}\n      key: k\n")
    if len(docs) >= 250:
        flush()
flush()
PY
}

ready_count() {
    kubectl get mlflowsecrets -n "$NS" -o json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for o in d["items"] if any(c.get("type")=="Ready" and c.get("status")=="True" for c in o.get("status",{}).get("conditions",[]))))'
}

# create_and_wait FROM TO -> prints "create_s ready_s"
create_and_wait() {
    local from=$1 to=$2 t0 t1 t2 n
    gen "$from" "$to"
    t0=$(date +%s.%N)
    ls "$WORK"/chunks/*.yaml | xargs -P 4 -n 1 kubectl create -n "$NS" -o name -f >/dev/null
    t1=$(date +%s.%N)
    while :; do
        n=$(ready_count)
        [[ "$n" -ge "$to" ]] && break
        kill -0 "$OP_PID" 2>/dev/null || die "the operator exited"
        if awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{exit !(a-b > 900)}'; then die "only $n of $to Ready after 900 s"; fi
        sleep 1
    done
    t2=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN{printf "%.1f %.1f\n", b-a, c-a}'
}

log "phase 1: $OBJECTS MlflowSecrets with valueFrom"
read -r C1 R1 < <(create_and_wait 0 "$OBJECTS")
read -r RSS1 HWM1 < <(rss)
log "phase 1: created in ${C1}s, all Ready ${R1}s after the first create; RSS ${RSS1} MiB"

RSS2="-" HWM2="-" R2="-"
if [[ "$RSS_OBJECTS" -gt "$OBJECTS" ]]; then
    log "phase 2: up to $RSS_OBJECTS MlflowSecrets"
    read -r _ R2 < <(create_and_wait "$OBJECTS" "$RSS_OBJECTS")
    sleep 5
    read -r RSS2 HWM2 < <(rss)
fi

echo
echo "operator reconcile benchmark: SQLite store, 2 CPUs, control plane on the same machine"
printf '%-40s %s\n' "MlflowSecrets (phase 1)" "$OBJECTS"
printf '%-40s %s s\n' "creating them (kubectl, 4 parallel)" "$C1"
printf '%-40s %s s   (target < 60 s)\n' "first create -> all Ready" "$R1"
printf '%-40s %s MiB (peak %s MiB)\n' "operator RSS after phase 1" "$RSS1" "$HWM1"
if [[ "$RSS2" != "-" ]]; then
    printf '%-40s %s\n' "MlflowSecrets (phase 2)" "$RSS_OBJECTS"
    printf '%-40s %s s\n' "phase 2: first create -> all Ready" "$R2"
    printf '%-40s %s MiB (peak %s MiB)   (target < 100 MiB)\n' "operator RSS with $RSS_OBJECTS" "$RSS2" "$HWM2"
fi
