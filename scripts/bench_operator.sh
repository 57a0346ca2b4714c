#!/usr/bin/env bash
# Operator reconcile benchmark: how long BENCH_OBJECTS MlflowSecrets
# (each importing its value from a Kubernetes Secret) take to become Ready
# against the test control plane, and the operator's memory with
# BENCH_RSS_OBJECTS of them in the cluster and in the store.
#
# It builds the release binary, starts a control plane with
# scripts/testenv.sh (or uses BENCH_KUBECONFIG), generates a keystore, then:
#   1. creates BENCH_OBJECTS Secrets + MlflowSecrets (kubectl create, 4 in
#      parallel) with no operator running, starts `mlflow-secrets operator`
#      on SQLite and prints the time from its start to all of them Ready
#      (start-up, watch sync, certificate, Lease, and every reconcile:
#      read the source, encrypt, insert with its audit row, status patch).
#      kubectl itself creates objects far slower than the operator
#      reconciles them, so timing from the first create would measure
#      kubectl;
#   2. adds objects up to BENCH_RSS_OBJECTS with the operator running,
#      waits for all Ready, and prints the operator's RSS (VmRSS, VmHWM).
#
# Environment:
#   BENCH_OBJECTS=1000        objects for the timing (target: Ready < 60 s)
#   BENCH_RSS_OBJECTS=10000   objects for the memory figure (target < 100 MiB;
#                             0 skips phase 2)
#   BENCH_KUBECONFIG=PATH     use this control plane instead of starting one
#   CARGO_TARGET_DIR          default <repo>/target
#   BENCH_BIN=PATH            use this release binary instead of building one
set -euo pipefail

PROG=scripts/bench_operator.sh
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OBJECTS="${BENCH_OBJECTS:-1000}"
RSS_OBJECTS="${BENCH_RSS_OBJECTS:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/mlflow-secrets}"

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

if [[ -z "${BENCH_BIN:-}" ]]; then
    log "building the release binary"
    (cd "$ROOT" && cargo build --release --quiet --bin mlflow-secrets) || die "cargo build --release failed"
fi

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

start_operator() {
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$WORK/passphrase" setsid "$BIN" operator \
        --store-uri "sqlite://$WORK/secrets.db" --keystore "$WORK/keystore" \
        --webhook-listen "127.0.0.1:$PORT" --webhook-url "https://127.0.0.1:$PORT/mutate" \
        --webhook-config-name "$WEBHOOK_CONFIG" \
        --webhook-namespace-selector "mlflow-secrets.bench/operator=$SUFFIX" \
        --selector "mlflow-secrets.bench/operator=$SUFFIX" \
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
}


rss() { awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{printf "%.1f %.1f\n", r/1024, h/1024}' "/proc/$OP_PID/status"; }

# gen FROM TO: Secrets + MlflowSecrets FROM..TO-1 as YAML chunks of 250 objects.
gen() {
    local from=$1 to=$2
    python3 - "$from" "$to" "$WORK/chunks" "$SUFFIX" <<'PY'
import os, sys, secrets
lo, hi, out, sel = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
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
    docs.append(f"apiVersion: secrets.mlflow.org/v1alpha1\nkind: MlflowSecret\nmetadata:\n  name: key-{i}\n  labels:\n    mlflow-secrets.bench/operator: {sel}\nspec:\n  valueFrom:\n    secretKeyRef:\n      name: src-{i}\n      key: k\n")
    if len(docs) >= 250:
        flush()
flush()
PY
}

ready_count() {
    kubectl get mlflowsecrets -n "$NS" -o json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for o in d["items"] if any(c.get("type")=="Ready" and c.get("status")=="True" for c in o.get("status",{}).get("conditions",[]))))'
}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f\n", b-a}'; }

# create_objects FROM TO: Secrets + MlflowSecrets FROM..TO-1.
create_objects() {
    gen "$1" "$2"
    ls "$WORK"/chunks/*.yaml | xargs -P 4 -n 1 kubectl create -n "$NS" -o name -f >/dev/null
}

# wait_all_ready N SINCE: wait until N MlflowSecrets are Ready.
wait_all_ready() {
    local want=$1 since=$2 n
    while :; do
        n=$(ready_count)
        [[ "$n" -ge "$want" ]] && break
        kill -0 "$OP_PID" 2>/dev/null || die "the operator exited"
        if awk -v a="$(now)" -v b="$since" 'BEGIN{exit !(a-b > 900)}'; then die "only $n of $want Ready after 900 s"; fi
        sleep 0.5
    done
}

log "phase 1: creating $OBJECTS Secrets + MlflowSecrets (no operator yet)"
T0=$(now); create_objects 0 "$OBJECTS"; C1=$(secs "$T0" "$(now)")
T0=$(now)
start_operator
wait_all_ready "$OBJECTS" "$T0"
R1=$(secs "$T0" "$(now)")
read -r RSS1 HWM1 < <(rss)
log "phase 1: created in ${C1}s; operator start -> $OBJECTS Ready in ${R1}s; RSS ${RSS1} MiB"

RSS2="-" HWM2="-" R2="-" C2="-"
if [[ "$RSS_OBJECTS" -gt "$OBJECTS" ]]; then
    log "phase 2: up to $RSS_OBJECTS MlflowSecrets, operator running"
    T0=$(now); create_objects "$OBJECTS" "$RSS_OBJECTS"; C2=$(secs "$T0" "$(now)")
    wait_all_ready "$RSS_OBJECTS" "$T0"
    R2=$(secs "$T0" "$(now)")
    sleep 5
    read -r RSS2 HWM2 < <(rss)
fi

echo
echo "operator reconcile benchmark: SQLite store, 2 CPUs, control plane on the same machine"
printf '%-44s %s\n' "MlflowSecrets with valueFrom (phase 1)" "$OBJECTS"
printf '%-44s %s s\n' "creating them + their Secrets (kubectl)" "$C1"
printf '%-44s %s s   (target < 60 s)\n' "operator start -> all Ready" "$R1"
printf '%-44s %s MiB (peak %s MiB)\n' "operator RSS after phase 1" "$RSS1" "$HWM1"
if [[ "$RSS2" != "-" ]]; then
    printf '%-44s %s\n' "MlflowSecrets (phase 2, operator running)" "$RSS_OBJECTS"
    printf '%-44s %s s\n' "creating the rest (kubectl)" "$C2"
    printf '%-44s %s s\n' "first create -> all Ready" "$R2"
    printf '%-44s %s MiB (peak %s MiB)   (target < 100 MiB)\n' "operator RSS with $RSS_OBJECTS" "$RSS2" "$HWM2"
fi
