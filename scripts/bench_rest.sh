#!/usr/bin/env bash
# scripts/bench_rest.sh - load benchmark of the REST server.
#
# Builds the release binary, then for each target starts a server on a free
# loopback port with a throwaway store, seeds BENCH_SECRETS secrets through the
# REST API, and runs a fixed-duration, fixed-concurrency, keep-alive load with
# wrk (scripts/bench/rest_load.lua) against
#
#   GET /api/2.0/mlflow/secrets/get?secret_id=<random one of the seeded ids>
#   GET /api/2.0/mlflow/secrets/list?max_results=100[&page_token=<random page>]
#
# on SQLite and on PostgreSQL, then the same `get` load against MLflow's own
# server (`mlflow server`, SQLite backend, its default workers) on
#
#   GET /api/3.0/mlflow/gateway/secrets/get?secret_id=<random>
#
# and prints requests/s, p50 and p99 for each, the server's RSS (VmRSS, and
# the peak VmHWM) after seeding and after the load, and the ratios to MLflow.
# Everything listens on 127.0.0.1 only; every process started is stopped on
# exit (trap). See docs/benchmarks.md.
#
# Environment (all optional):
#   BENCH_SECRETS=10000       secrets in each store
#   BENCH_DURATION=15         seconds of measured load per endpoint
#   BENCH_WARMUP=3            seconds of unmeasured `get` load first
#   BENCH_CONNECTIONS=32      wrk connections (keep-alive)
#   BENCH_THREADS=2           wrk threads
#   BENCH_SEED_CONCURRENCY=8  client threads of the REST seeding client
#   BENCH_TARGETS="sqlite postgres mlflow"   which targets to run
#   BENCH_DIAGNOSTICS=1       also measure, on our targets, `get` over 1
#                             connection and GET /health (the HTTP stack
#                             alone), BENCH_DIAG_DURATION=5 seconds each;
#                             0 to skip
#   BENCH_MLFLOW_VERSION=3.17.2   pip-installed into BENCH_MLFLOW_VENV
#   BENCH_MLFLOW_VENV=~/.cache/mlflow-secrets-bench/venv
#   BENCH_MLFLOW_REST_SECRETS=200   how many of MLflow's secrets to create over
#                             its REST API; the rest go through its store code
#                             with the KEK derived once (see
#                             scripts/bench/mlflow_store_seed.py). Set it to
#                             BENCH_SECRETS to create all of them over REST
#                             (~0.1 s of PBKDF2 each).
#   MLFLOW_SECRETS_TEST_POSTGRES_URL   a PostgreSQL server to use (its user
#                             needs CREATEDB); otherwise a private one is
#                             started and stopped with scripts/db.sh
#                             (MLFLOW_SECRETS_DB_DIR=/tmp/mlflow-secrets-bench-db.*).
#                             A fresh database is created and dropped either way.
#   CARGO_TARGET_DIR          default: <repo>/target
#
# Needs: cargo, python3, wrk (apt-get install -y wrk), psql for PostgreSQL.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$ROOT/scripts/bench"
PROG="scripts/bench_rest.sh"

SECRETS="${BENCH_SECRETS:-10000}"
DURATION="${BENCH_DURATION:-15}"
WARMUP="${BENCH_WARMUP:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
SEED_CONCURRENCY="${BENCH_SEED_CONCURRENCY:-8}"
TARGETS="${BENCH_TARGETS:-sqlite postgres mlflow}"
DIAGNOSTICS="${BENCH_DIAGNOSTICS:-1}"
DIAG_DURATION="${BENCH_DIAG_DURATION:-5}"
MLFLOW_VERSION="${BENCH_MLFLOW_VERSION:-3.17.2}"
MLFLOW_VENV="${BENCH_MLFLOW_VENV:-$HOME/.cache/mlflow-secrets-bench/venv}"
MLFLOW_REST_SECRETS="${BENCH_MLFLOW_REST_SECRETS:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/mlflow-secrets"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-secrets-bench.XXXXXX")"
PGIDS=()            # process groups of the servers we started (setsid)
PG_ADMIN_URL=""     # set once we created a database to drop
PG_DB=""
OWN_DB_DIR=""       # set if we started our own db.sh instance

stop_group() {
    local pgid="$1" i
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local g
    for g in "${PGIDS[@]}"; do stop_group "$g"; done
    if [[ -n "$PG_DB" && -n "$PG_ADMIN_URL" ]]; then
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$PG_DB\"" >/dev/null 2>&1 ||
            log "could not drop database $PG_DB"
    fi
    if [[ -n "$OWN_DB_DIR" ]]; then
        MLFLOW_SECRETS_DB_DIR="$OWN_DB_DIR" "$ROOT/scripts/db.sh" down >/dev/null 2>&1 ||
            log "scripts/db.sh down failed for $OWN_DB_DIR"
        rm -f "${OWN_DB_DIR%/}.lock"
    fi
    if [[ $rc -ne 0 && -z "${BENCH_KEEP_WORK:-}" ]]; then
        log "failed; logs of the servers:"
        local f
        for f in "$WORK"/*.log; do
            [[ -f "$f" ]] || continue
            echo "----- $f (last 20 lines)" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [[ -n "${BENCH_KEEP_WORK:-}" ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME CMD...: start CMD in its own session (so the whole tree
# can be stopped), stdout+stderr to $WORK/NAME.log; sets SERVER_PID.
start_server() {
    local name="$1"; shift
    setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    SERVER_PID=$!
    disown "$SERVER_PID"   # no "Killed" job notice if stop_group needs SIGKILL
    PGIDS+=("$SERVER_PID")
}

wait_http() {  # URL PID TIMEOUT_S
    local url="$1" pid="$2" timeout="$3" i
    for i in $(seq $((timeout * 10))); do
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || die "server exited before answering $url"
        sleep 0.1
    done
    die "no answer from $url within ${timeout}s"
}

# The process tree under PID (PID included).
tree_pids() {
    local pid="$1" child
    echo "$pid"
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do tree_pids "$child"; done
}

# mem PID: "RSS_MiB HWM_MiB PSS_MiB PROCS", summed over the process tree
# (MLflow runs several processes). RSS counts shared pages once per process;
# PSS (smaps_rollup) splits them, so its sum is the tree's real footprint.
mem() {
    local rss=0 hwm=0 pss=0 n=0 p r h s
    for p in $(tree_pids "$1"); do
        r=$(awk '/^VmRSS:/{print $2}' /proc/"$p"/status 2>/dev/null || true)
        h=$(awk '/^VmHWM:/{print $2}' /proc/"$p"/status 2>/dev/null || true)
        s=$(awk '/^Pss:/{print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || true)
        [[ -n "$r" ]] || continue
        rss=$((rss + r)); hwm=$((hwm + ${h:-0})); pss=$((pss + ${s:-0})); n=$((n + 1))
    done
    awk -v r="$rss" -v h="$hwm" -v s="$pss" -v n="$n" 'BEGIN{printf "%.1f %.1f %.1f %d\n", r/1024, h/1024, s/1024, n}'
}

# cpu_ticks PID: user+system clock ticks of the process tree so far.
cpu_ticks() {
    local t=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

# settle PID: wait (at most 120 s) until the server's process tree uses less
# than 5% of a CPU over 2 s, so start-up work (MLflow's job runner imports
# for a while after /health answers) does not land in the measurement.
settle() {
    local pid="$1" hz a b i
    hz=$(getconf CLK_TCK)
    for i in $(seq 60); do
        a=$(cpu_ticks "$pid"); sleep 2; b=$(cpu_ticks "$pid")
        if (( (b - a) * 100 < hz * 2 * 5 )); then return 0; fi
    done
    log "warning: server still busy after 120 s; measuring anyway"
}

# run_wrk LABEL BASE_URL PREFIX FILE TOKEN DURATION [CONNECTIONS THREADS]:
# prints the WRK_RESULT line.
run_wrk() {
    local label="$1" base="$2" prefix="$3" file="$4" token="$5" dur="$6" out
    local conns="${7:-$CONNECTIONS}" threads="${8:-$THREADS}"
    out=$(wrk -t"$threads" -c"$conns" -d"${dur}s" --timeout 10s \
        -s "$BENCH_DIR/rest_load.lua" "$base" -- "$prefix" "$file" "$token" 2>"$WORK/wrk-$label.err") ||
        { cat "$WORK/wrk-$label.err" >&2; die "wrk failed for $label"; }
    echo "$out" >"$WORK/wrk-$label.out"
    grep '^WRK_RESULT' <<<"$out" || die "no result from wrk for $label: $out"
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

RESULTS=()   # "target endpoint rps p50 p99 http_errors socket_errors"
MEMS=()      # "target phase rss hwm procs"

record() {  # TARGET ENDPOINT WRK_RESULT_LINE
    local r="$3"
    RESULTS+=("$1 $2 $(field rps "$r") $(field p50_ms "$r") $(field p99_ms "$r") $(field http_errors "$r") $(field socket_errors "$r")")
    log "$1 $2: $(field rps "$r") req/s, p50 $(field p50_ms "$r") ms, p99 $(field p99_ms "$r") ms, errors $(field http_errors "$r")/$(field socket_errors "$r")"
    if [[ "$(field http_errors "$r")" != 0 || "$(field socket_errors "$r")" != 0 ]]; then
        log "warning: $1 $2 had errors (HTTP >= 400 / socket); see $WORK/wrk-$1-$2.*"
    fi
}

record_mem() {  # TARGET PHASE PID
    local m r h s n; m=$(mem "$3")
    MEMS+=("$1 $2 $m")
    read -r r h s n <<<"$m"
    log "$1 memory $2: RSS $r MiB (peak $h MiB), PSS $s MiB, $n process(es)"
}

# ---------------------------------------------------------------- preflight
command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v curl >/dev/null || die "curl not found"
[[ "$SECRETS" -ge 100 ]] || die "BENCH_SECRETS must be at least 100"

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet --bin mlflow-secrets) || die "cargo build --release failed"
"$BIN" serve --help >/dev/null 2>&1 || die "$BIN has no 'serve' command"

# One keystore (KEK version 1) and one reader and one writer token for all
# of our targets.
export MLFLOW_SECRETS_KEYSTORE_PATH="$WORK/keystore"
export MLFLOW_SECRETS_KEK_PASSPHRASE_FILE="$WORK/kek-pass"
(umask 077; head -c 32 /dev/urandom | base64 >"$MLFLOW_SECRETS_KEK_PASSPHRASE_FILE")
"$BIN" -q kek generate >/dev/null || die "kek generate failed"
make_token() {  # PRINCIPAL ROLE -> token on stdout, line appended to tokens
    local j
    j=$("$BIN" -o json token create --principal "$1" --role "$2" --all-workspaces)
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_file_line"])' <<<"$j" >>"$WORK/tokens"
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' <<<"$j"
}
: >"$WORK/tokens"; chmod 600 "$WORK/tokens"
READER_TOKEN=$(make_token bench-reader reader)
WRITER_TOKEN=$(make_token bench-writer writer)

# ---------------------------------------------------------------- our server
bench_ours() {  # TARGET STORE_URI
    local target="$1" uri="$2" port base pid r
    port=$(free_port)
    base="http://127.0.0.1:$port"
    log "[$target] starting mlflow-secrets serve on $base"
    start_server "serve-$target" "$BIN" --store-uri "$uri" serve \
        --listen "127.0.0.1:$port" --auth-tokens-file "$WORK/tokens" \
        --rate-limit-per-minute 0 --decrypt-limit-per-minute 0 \
        --decrypt-limit-per-workspace-per-minute 0
    pid=$SERVER_PID
    wait_http "$base/health" "$pid" 60

    log "[$target] seeding $SECRETS secrets over REST ($SEED_CONCURRENCY client threads)"
    python3 "$BENCH_DIR/seed.py" --api mlflow-secrets --port "$port" --token "$WRITER_TOKEN" \
        --count "$SECRETS" --concurrency "$SEED_CONCURRENCY" \
        --ids-out "$WORK/ids-$target" --pages-out "$WORK/pages-$target"
    record_mem "$target" after-seeding "$pid"

    # A request of each kind must succeed before we measure.
    curl -fsS -o /dev/null -H "Authorization: Bearer $READER_TOKEN" \
        "$base/api/2.0/mlflow/secrets/get?secret_id=$(head -n1 "$WORK/ids-$target")" ||
        die "[$target] get failed"
    curl -fsS -o /dev/null -H "Authorization: Bearer $READER_TOKEN" \
        "$base/api/2.0/mlflow/secrets/list?max_results=100" || die "[$target] list failed"

    settle "$pid"
    run_wrk "$target-warmup" "$base" "/api/2.0/mlflow/secrets/get?secret_id=" \
        "$WORK/ids-$target" "$READER_TOKEN" "$WARMUP" >/dev/null
    log "[$target] get: ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads"
    r=$(run_wrk "$target-get" "$base" "/api/2.0/mlflow/secrets/get?secret_id=" \
        "$WORK/ids-$target" "$READER_TOKEN" "$DURATION")
    record "$target" get "$r"
    log "[$target] list (100 a page, random page of $(wc -l <"$WORK/pages-$target")): ${DURATION}s"
    r=$(run_wrk "$target-list" "$base" "/api/2.0/mlflow/secrets/list?max_results=100" \
        "$WORK/pages-$target" "$READER_TOKEN" "$DURATION")
    record "$target" list "$r"
    if [[ "$DIAGNOSTICS" == 1 ]]; then
        # Not targets, for reading the figures above: the service time of one
        # get with no queueing (1 connection), and the HTTP stack alone
        # (/health: no token, no audit write; one SELECT 1).
        r=$(run_wrk "$target-get-c1" "$base" "/api/2.0/mlflow/secrets/get?secret_id=" \
            "$WORK/ids-$target" "$READER_TOKEN" "$DIAG_DURATION" 1 1)
        record "$target" get-c1 "$r"
        printf '\n' >"$WORK/empty"
        r=$(run_wrk "$target-health" "$base" "/health" "$WORK/empty" "" "$DIAG_DURATION")
        record "$target" health "$r"
    fi
    record_mem "$target" after-load "$pid"
    stop_group "$pid"
}

# Sets PG_URL (not in a subshell: OWN_DB_DIR must reach the cleanup trap).
# A private scripts/db.sh instance rather than the shared one, which other
# test runs start and stop at any time.
postgres_url() {
    if [[ -n "${MLFLOW_SECRETS_TEST_POSTGRES_URL:-}" ]]; then
        PG_URL="$MLFLOW_SECRETS_TEST_POSTGRES_URL"; return
    fi
    local env
    # Not under $WORK (mode 0700): the postgres OS user must reach it.
    OWN_DB_DIR=$(mktemp -u "${TMPDIR:-/tmp}/mlflow-secrets-bench-db.XXXXXX")
    log "starting a private PostgreSQL with scripts/db.sh (MLFLOW_SECRETS_DB_DIR=$OWN_DB_DIR)"
    env=$(MLFLOW_SECRETS_DB_DIR="$OWN_DB_DIR" "$ROOT/scripts/db.sh" up)
    PG_URL=$(sed -n 's/^export MLFLOW_SECRETS_TEST_POSTGRES_URL=//p' <<<"$env")
}

bench_postgres() {
    command -v psql >/dev/null || die "psql not found (scripts/db.sh up installs it)"
    local base_url
    PG_URL=""
    postgres_url
    [[ -n "$PG_URL" ]] || die "no PostgreSQL URL"
    base_url="${PG_URL%/*}"
    PG_ADMIN_URL="$base_url/postgres"
    PG_DB="mlflow_secrets_bench_$$"
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE \"$PG_DB\"" >/dev/null || die "CREATE DATABASE failed"
    log "[postgres] fresh database $PG_DB; migrate"
    "$BIN" -q --store-uri "$base_url/$PG_DB" migrate >/dev/null || die "migrate failed"
    bench_ours postgres "$base_url/$PG_DB"
}

# ---------------------------------------------------------------- MLflow
bench_mlflow() {
    local py="$MLFLOW_VENV/bin/python"
    if ! "$py" -c "import mlflow, sys; sys.exit(mlflow.__version__ != '$MLFLOW_VERSION')" 2>/dev/null; then
        log "[mlflow] installing mlflow==$MLFLOW_VERSION into $MLFLOW_VENV"
        [[ -x "$py" ]] || python3 -m venv "$MLFLOW_VENV"
        "$MLFLOW_VENV/bin/pip" install -q "mlflow==$MLFLOW_VERSION" || die "pip install mlflow==$MLFLOW_VERSION failed"
    fi
    local port base pid n_rest r
    port=$(free_port)
    base="http://127.0.0.1:$port"
    export MLFLOW_CRYPTO_KEK_PASSPHRASE
    MLFLOW_CRYPTO_KEK_PASSPHRASE=$(head -c 32 /dev/urandom | base64)
    export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
    mkdir -p "$WORK/mlflow-artifacts"
    log "[mlflow] starting mlflow server $MLFLOW_VERSION (SQLite, default workers) on $base"
    start_server mlflow "$MLFLOW_VENV/bin/mlflow" server \
        --backend-store-uri "sqlite:///$WORK/mlflow.db" \
        --default-artifact-root "$WORK/mlflow-artifacts" \
        --host 127.0.0.1 --port "$port"
    pid=$SERVER_PID
    wait_http "$base/health" "$pid" 180

    n_rest=$MLFLOW_REST_SECRETS
    [[ "$n_rest" -le "$SECRETS" ]] || n_rest=$SECRETS
    log "[mlflow] creating $n_rest secrets over POST /api/3.0/mlflow/gateway/secrets/create"
    python3 "$BENCH_DIR/seed.py" --api mlflow --port "$port" --count "$n_rest" \
        --concurrency "$SEED_CONCURRENCY" --ids-out "$WORK/ids-mlflow"
    if [[ "$n_rest" -lt "$SECRETS" ]]; then
        log "[mlflow] creating the other $((SECRETS - n_rest)) through MLflow's store code (KEK derived once)"
        "$py" "$BENCH_DIR/mlflow_store_seed.py" --db-uri "sqlite:///$WORK/mlflow.db" \
            --artifact-root "$WORK/mlflow-artifacts" --start "$n_rest" --count "$SECRETS" \
            --ids-out "$WORK/ids-mlflow"
    fi
    [[ "$(sort -u "$WORK/ids-mlflow" | wc -l)" -eq "$SECRETS" ]] || die "[mlflow] expected $SECRETS ids"
    record_mem mlflow after-seeding "$pid"
    curl -fsS -o /dev/null "$base/api/3.0/mlflow/gateway/secrets/get?secret_id=$(tail -n1 "$WORK/ids-mlflow")" ||
        die "[mlflow] get failed"

    settle "$pid"
    run_wrk mlflow-warmup "$base" "/api/3.0/mlflow/gateway/secrets/get?secret_id=" \
        "$WORK/ids-mlflow" "" "$WARMUP" >/dev/null
    log "[mlflow] get: ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads"
    r=$(run_wrk mlflow-get "$base" "/api/3.0/mlflow/gateway/secrets/get?secret_id=" \
        "$WORK/ids-mlflow" "" "$DURATION")
    record mlflow get "$r"
    record_mem mlflow after-load "$pid"
    stop_group "$pid"
}

# ---------------------------------------------------------------- run
for t in $TARGETS; do
    case "$t" in
        sqlite) bench_ours sqlite "sqlite://$WORK/bench.db" ;;
        postgres) bench_postgres ;;
        mlflow) bench_mlflow ;;
        *) die "unknown target $t (sqlite, postgres, mlflow)" ;;
    esac
done

# ---------------------------------------------------------------- summary
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"
{
    echo
    echo "REST load benchmark: $SECRETS secrets, ${DURATION}s per row, $CONNECTIONS keep-alive connections, $THREADS wrk threads, loopback"
    echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average after: $LOADAVG"
    echo "mlflow-secrets $("$BIN" --version 2>/dev/null | awk '{print $NF}') ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')); wrk generator on the same CPUs"
    echo
    printf '%-9s %-7s %10s %9s %9s %8s\n' target req reqs/s p50_ms p99_ms errors
    for row in "${RESULTS[@]}"; do
        read -r t e rps p50 p99 he se <<<"$row"
        printf '%-9s %-7s %10.0f %9.2f %9.2f %8s\n' "$t" "$e" "$rps" "$p50" "$p99" "$((he + se))"
    done
    if [[ "$DIAGNOSTICS" == 1 ]]; then
        echo "(get-c1: one connection, one wrk thread; health: GET /health; ${DIAG_DURATION}s each, diagnostics only)"
    fi
    echo
    printf '%-9s %-14s %9s %9s %9s %6s\n' target when RSS_MiB peak_MiB PSS_MiB procs
    for row in "${MEMS[@]}"; do
        read -r t ph rss hwm pss n <<<"$row"
        printf '%-9s %-14s %9s %9s %9s %6s\n' "$t" "$ph" "$rss" "$hwm" "$pss" "$n"
    done
    ml=""
    for row in "${RESULTS[@]}"; do [[ "$row" == "mlflow get "* ]] && ml="$row"; done
    if [[ -n "$ml" ]]; then
        read -r _ _ mrps _ mp99 _ _ <<<"$ml"
        echo
        for row in "${RESULTS[@]}"; do
            read -r t e rps p50 p99 _ _ <<<"$row"
            [[ "$e" == get && "$t" != mlflow ]] || continue
            awk -v t="$t" -v a="$rps" -v b="$mrps" -v c="$p99" -v d="$mp99" 'BEGIN{
                printf "%s get vs MLflow get: %.1fx the requests/s, p99 %.1fx lower (%.2f ms vs %.2f ms)\n", t, a/b, d/c, c, d}'
        done
    fi
    echo
    echo "targets: sqlite get >= 5000 req/s with p99 <= 10 ms; RSS < 64 MiB with $SECRETS secrets"
    for row in "${RESULTS[@]}"; do
        read -r t e rps _ p99 _ _ <<<"$row"
        [[ "$t" == sqlite && "$e" == get ]] || continue
        awk -v a="$rps" -v c="$p99" 'BEGIN{printf "  sqlite get: %s (%.0f req/s, p99 %.2f ms)\n", (a>=5000 && c<=10)?"MET":"NOT MET", a, c}'
    done
    for row in "${MEMS[@]}"; do
        read -r t ph rss hwm _ _ <<<"$row"
        [[ "$t" != mlflow && "$ph" == after-load ]] || continue
        awk -v t="$t" -v h="$hwm" 'BEGIN{printf "  %s peak RSS: %s (%.1f MiB)\n", t, (h<64)?"MET":"NOT MET", h}'
    done
}
