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
#   MLFLOW_SECRETS_MLFLOW_VERSION=3.17.2   the MLflow of scripts/mlflow-env.sh
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
MLFLOW_REST_SECRETS="${BENCH_MLFLOW_REST_SECRETS:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$CARGO_TARGET_DIR/release/mlflow-secrets"

# shellcheck source=scripts/bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------- cleanup
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlflow-secrets-bench.XXXXXX")"
PGIDS=()            # process groups of the servers we started (setsid)
PG_ADMIN_URL=""     # set once we created a database to drop
PG_DB=""
OWN_DB_DIR=""       # set if we started our own db.sh instance

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

# ---------------------------------------------------------------- preflight
command -v wrk >/dev/null || die "wrk not found: apt-get install -y wrk"
command -v curl >/dev/null || die "curl not found"
[[ "$SECRETS" -ge 100 ]] || die "BENCH_SECRETS must be at least 100"

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
log "building the release binary (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release --quiet --bin mlflow-secrets) || die "cargo build --release failed"
"$BIN" serve --help >/dev/null 2>&1 || die "$BIN has no 'serve' command"

setup_ours

# ---------------------------------------------------------------- our server
bench_ours() {  # TARGET STORE_URI
    local target="$1" uri="$2" base pid r
    start_ours "$target" "$uri"
    base=$OURS_BASE pid=$OURS_PID

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
    local base pid r
    start_mlflow
    base=$MLFLOW_BASE pid=$MLFLOW_PID

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
