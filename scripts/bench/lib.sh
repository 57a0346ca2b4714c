# SPDX-License-Identifier: Apache-2.0
# scripts/bench/lib.sh - shell helpers shared by the load benchmarks
# (scripts/bench_rest.sh, scripts/bench/compare_mlflow.sh). Source it after
# setting PROG (the caller's name for log lines), ROOT (the checkout), WORK
# (a private temp dir), BENCH_DIR (this directory), BIN (the release binary),
# SECRETS, SEED_CONCURRENCY, MLFLOW_REST_SECRETS, CONNECTIONS and THREADS
# (wrk defaults) and PGIDS=() (the process groups started, for the caller's
# cleanup trap).

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

stop_group() {
    local pgid="$1" i
    kill -TERM -- "-$pgid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 -- "-$pgid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
}

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

# setup_ours: one keystore (KEK version 1) in $WORK and a reader and a
# writer token for every server of ours the caller starts; sets READER_TOKEN
# and WRITER_TOKEN. Needs BIN (the release binary).
setup_ours() {
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
}

# start_ours TARGET STORE_URI: `mlflow-secrets serve` on a free loopback
# port, seeded with SECRETS secrets over REST (ids in $WORK/ids-TARGET, page
# tokens in $WORK/pages-TARGET); sets OURS_BASE and OURS_PID.
start_ours() {
    local target="$1" uri="$2" port base pid
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

    OURS_BASE=$base OURS_PID=$pid
}

# start_mlflow: the pinned MLflow (scripts/mlflow-env.sh) as `mlflow server`
# on SQLite with its default workers, seeded with SECRETS gateway secrets
# (the first MLFLOW_REST_SECRETS over its REST API, the rest through its own
# store code); sets MLFLOW_BASE and MLFLOW_PID.
start_mlflow() {
    local py port base pid n_rest
    py=$("$ROOT/scripts/mlflow-env.sh" python)
    MLFLOW_BIN="$(dirname "$py")/mlflow"
    MLFLOW_VERSION=$("$py" -c 'import mlflow; print(mlflow.__version__)')
    port=$(free_port)
    base="http://127.0.0.1:$port"
    export MLFLOW_CRYPTO_KEK_PASSPHRASE
    MLFLOW_CRYPTO_KEK_PASSPHRASE=$(head -c 32 /dev/urandom | base64)
    export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
    mkdir -p "$WORK/mlflow-artifacts"
    log "[mlflow] starting mlflow server $MLFLOW_VERSION (SQLite, default workers) on $base"
    start_server mlflow "$MLFLOW_BIN" server \
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

    MLFLOW_BASE=$base MLFLOW_PID=$pid
}
