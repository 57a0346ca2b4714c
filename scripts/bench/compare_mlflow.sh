#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# scripts/bench/compare_mlflow.sh - our REST server against MLflow's, in one
# run. The machines we measure on are shared and noisy, so the figures that
# matter are ratios taken side by side:
#
#   1. seed the same number of secrets (BENCH_SECRETS, default 10,000) into
#      our SQLite store (over our REST API) and into MLflow's gateway
#      secrets (MLflow's own REST API and store code, scripts/bench/lib.sh);
#   2. keep both servers running on loopback and drive them with the same
#      load generator (wrk, same connections, threads and duration),
#      alternating A B A B for BENCH_ROUNDS rounds of `get` and of `list`;
#   3. print requests/s, p50 and p99 per server and endpoint (the median over
#      the rounds), both servers' memory after the load, and the ratios.
#
#   ours:   GET /api/2.0/mlflow/secrets/get?secret_id=<random seeded id>
#           GET /api/2.0/mlflow/secrets/list?max_results=100[&page_token=..]
#   MLflow: GET /api/3.0/mlflow/gateway/secrets/get?secret_id=<random>
#           GET /api/3.0/mlflow/gateway/secrets/list
# MLflow's list has no paging: one call returns every secret (10,000 here),
# ours returns a page of 100. The list ratio compares one call each, not the
# same amount of data; the output says so next to it.
#
# Environment (optional): BENCH_SECRETS=10000 BENCH_ROUNDS=3 BENCH_DURATION=10
# BENCH_WARMUP=3 BENCH_CONNECTIONS=32 BENCH_THREADS=2 BENCH_SEED_CONCURRENCY=8
# BENCH_MLFLOW_REST_SECRETS=50 MLFLOW_SECRETS_MLFLOW_VERSION (3.17.2)
# BENCH_KEEP_WORK=1 (keep the temporary directory: server and wrk logs)
# CARGO_TARGET_DIR (default <repo>/target), BENCH_PREBUILT=1 (use the
# release binary already in CARGO_TARGET_DIR, e.g. from `cargo bench`).
# BENCH_NICE (e.g. -10, as root: the niceness of this script and so of
# both servers, the seeding and wrk, which all inherit it; on a machine
# shared with builds it measures the servers more than the scheduler).
# Needs wrk, curl, python3.
set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
PROG="scripts/bench/compare_mlflow.sh"

SECRETS="${BENCH_SECRETS:-10000}"
ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-3}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
SEED_CONCURRENCY="${BENCH_SEED_CONCURRENCY:-8}"
MLFLOW_REST_SECRETS="${BENCH_MLFLOW_REST_SECRETS:-50}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/mlflow-secrets"

# shellcheck source=scripts/bench/lib.sh
source "$BENCH_DIR/lib.sh"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-secrets-compare.XXXXXX")"
PGIDS=()
cleanup() {
    local rc=$? g
    trap - EXIT INT TERM
    for g in "${PGIDS[@]}"; do stop_group "$g"; done
    if [[ $rc -ne 0 ]]; then
        for g in "$WORK"/*.log; do [[ -f "$g" ]] && { echo "----- $g" >&2; tail -n 20 "$g" >&2; }; done
    fi
    if [[ -n "${BENCH_KEEP_WORK:-}" ]]; then
        log "kept $WORK (server and wrk logs)"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
if [[ -n "${BENCH_NICE:-}" ]]; then
    renice -n "$BENCH_NICE" -p $$ >/dev/null || die "renice -n $BENCH_NICE failed"
fi
log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
if [[ -n "${BENCH_PREBUILT:-}" ]]; then
    # `cargo bench` builds the same binary with the release profile; on a
    # busy machine reusing it saves a second build of the dependencies
    # (`cargo build` resolves their features without the dev-dependencies).
    [[ -x "$BIN" ]] || die "BENCH_PREBUILT is set but $BIN does not exist"
    log "using the prebuilt $BIN ($(date -r "$BIN" '+%F %T'))"
else
    log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release --quiet --bin mlflow-secrets) || die "cargo build --release failed"
fi

setup_ours
start_ours ours "sqlite://$WORK/bench.db"
start_mlflow
settle "$OURS_PID"
settle "$MLFLOW_PID"
# MLflow's list takes no page token: one line with an empty suffix.
printf '\n' >"$WORK/pages-mlflow"

# measure SERVER ENDPOINT ROUND: one wrk run, recorded as "SERVER ENDPOINT".
measure() {
    local server="$1" endpoint="$2" round="$3" base prefix file token
    if [[ "$server" == ours ]]; then
        base=$OURS_BASE token=$READER_TOKEN
        prefix="/api/2.0/mlflow/secrets/$endpoint"
    else
        base=$MLFLOW_BASE token=""
        prefix="/api/3.0/mlflow/gateway/secrets/$endpoint"
    fi
    if [[ "$endpoint" == get ]]; then
        prefix+="?secret_id=" file="$WORK/ids-$server"
    else
        [[ "$server" == ours ]] && prefix+="?max_results=100"
        file="$WORK/pages-$server"
    fi
    record "$server" "$endpoint" "$(run_wrk "$server-$endpoint-$round" "$base" "$prefix" "$file" "$token" "$DURATION")"
    # MLflow may still be working off requests wrk gave up on (its list
    # takes seconds): let it finish before the next server is measured.
    [[ "$server" == mlflow ]] && settle "$MLFLOW_PID"
    return 0
}

for server in ours mlflow; do
    run_wrk "$server-warmup" "$([[ $server == ours ]] && echo "$OURS_BASE" || echo "$MLFLOW_BASE")" \
        "$([[ $server == ours ]] && echo /api/2.0/mlflow/secrets/get?secret_id= || echo /api/3.0/mlflow/gateway/secrets/get?secret_id=)" \
        "$WORK/ids-$server" "$([[ $server == ours ]] && echo "$READER_TOKEN")" "$WARMUP" >/dev/null
done
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS: get and list, ours then MLflow, ${DURATION}s each"
    for endpoint in get list; do
        measure ours "$endpoint" "$round"
        measure mlflow "$endpoint" "$round"
    done
done
record_mem ours after-load "$OURS_PID"
record_mem mlflow after-load "$MLFLOW_PID"

# median SERVER ENDPOINT COLUMN: the median over the rounds (column 3 rps,
# 4 p50, 5 p99 of RESULTS).
median() {
    local row
    for row in "${RESULTS[@]}"; do
        read -r -a f <<<"$row"
        [[ "${f[0]}" == "$1" && "${f[1]}" == "$2" ]] && echo "${f[$(($3 - 1))]}"
    done | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

echo
echo "ours vs MLflow $MLFLOW_VERSION: $SECRETS secrets each, $ROUNDS alternating rounds of ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads, loopback"
echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average after: $(cut -d' ' -f1-3 /proc/loadavg)${BENCH_NICE:+, niceness $BENCH_NICE}"
printf '%-7s %-5s %10s %9s %9s\n' server req reqs/s p50_ms p99_ms
for endpoint in get list; do
    for server in ours mlflow; do
        printf '%-7s %-5s %10.0f %9.2f %9.2f\n' "$server" "$endpoint" \
            "$(median "$server" "$endpoint" 3)" "$(median "$server" "$endpoint" 4)" "$(median "$server" "$endpoint" 5)"
    done
done
read -r _ _ ours_rss ours_hwm ours_pss _ <<<"${MEMS[-2]}"
read -r _ _ ml_rss ml_hwm ml_pss ml_procs <<<"${MEMS[-1]}"
printf 'memory after the load: ours RSS %s MiB (PSS %s); MLflow RSS %s MiB (PSS %s, %s processes)\n' \
    "$ours_rss" "$ours_pss" "$ml_rss" "$ml_pss" "$ml_procs"
echo
# ratios ENDPOINT: the median over the rounds of each round's own ratios
# (ours and MLflow ran back to back in a round, so load that changes between
# rounds cancels out): "rps_ratio p99_ratio", "n/a" where MLflow completed
# no request in a round.
ratios() {
    local row o=() m=()
    for row in "${RESULTS[@]}"; do
        read -r -a f <<<"$row"
        [[ "${f[1]}" == "$1" ]] || continue
        if [[ "${f[0]}" == ours ]]; then o+=("${f[2]} ${f[4]}"); else m+=("${f[2]} ${f[4]}"); fi
    done
    for i in "${!o[@]}"; do echo "${o[$i]} ${m[$i]}"; done | awk '
        $3 > 0 && $2 > 0 { r[++n] = $1 / $3; q[n] = $4 / $2 }
        function med(a, n,   i, j, t) {
            for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
            return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
        }
        END { if (n == 0) print "n/a n/a"; else printf "%.1f %.1f\n", med(r, n), med(q, n) }'
}
for endpoint in get list; do
    read -r rr pr <<<"$(ratios "$endpoint")"
    printf "%s: %sx MLflow's requests/s, p99 1/%s of MLflow's (medians of the per-round ratios)%s\n" \
        "$endpoint" "$rr" "$pr" \
        "$([[ $endpoint == list ]] && echo "; a page of 100 against MLflow's unpaged list of all, n/a when MLflow completed none in ${DURATION}s")"
done
# The memory target is judged on PSS: summing RSS over MLflow's processes
# counts the pages they share once per process, which would flatter us.
awk -v a="$ours_pss" -v b="$ml_pss" -v c="$ours_rss" -v d="$ml_rss" 'BEGIN{
    printf "memory: PSS 1/%.1f of MLflow'"'"'s (summed RSS 1/%.1f)\n", b/a, d/c}'
read -r rr pr <<<"$(ratios get)"
awk -v r="$rr" -v q="$pr" -v m="$ours_pss" -v n="$ml_pss" 'BEGIN{
    printf "targets: get >= 25x throughput: %s; get p99 <= 1/25: %s; memory <= 1/4 (PSS): %s\n",
        (r + 0 >= 25) ? "MET" : "NOT MET", (q + 0 >= 25) ? "MET" : "NOT MET", (n/m >= 4) ? "MET" : "NOT MET"}'
