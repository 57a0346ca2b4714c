#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# scripts/bench/crypto_vs_mlflow.sh - our per-read decrypt against MLflow's,
# in one run: `decrypt_secret` of benches/crypto.rs (criterion: keystore
# lookup, AAD hash check, DEK unwrap, value decrypt, JSON parse, KEK cached)
# and upstream MLflow's `_decrypt_secret` (scripts/bench/mlflow_decrypt.py,
# the pinned MLflow of scripts/mlflow-env.sh, KEK cached), alternating
# A B A B for BENCH_ROUNDS rounds; prints each round, the medians and the
# ratio, `decrypt_secret_object` (an `{"api_key": ...}` value, MLflow's own
# shape, through the general JSON path) and `encrypt_secret` for the record.
#
# Environment (optional): BENCH_ROUNDS=3, BENCH_MEASUREMENT_TIME=3 (seconds
# per criterion run), CARGO_TARGET_DIR (default <repo>/target),
# BENCH_PRIORITY (a command prefix for both sides, e.g. "nice -n -10" or, as
# root, "chrt -f 10": on a machine shared with builds both then measure
# the code more than the scheduler; the output says when it was used).
set -Eeuo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/../.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-3}"
MEASURE="${BENCH_MEASUREMENT_TIME:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cd "$ROOT"

py=$(scripts/mlflow-env.sh python)
NICE=()
[[ -n "${BENCH_PRIORITY:-}" ]] && read -r -a NICE <<<"$BENCH_PRIORITY"
echo "building benches/crypto.rs (release)" >&2
cargo bench --quiet --bench crypto --no-run 2>/dev/null

# ours NAME: criterion's median for NAME, in µs.
ours() {
    "${NICE[@]}" cargo bench --quiet --bench crypto -- --exact "$1" --warm-up-time 1 \
        --measurement-time "$MEASURE" --noplot >/dev/null 2>&1
    python3 -c 'import json,sys; print("%.3f" % (json.load(open(sys.argv[1]))["median"]["point_estimate"] / 1000))' \
        "$CARGO_TARGET_DIR/criterion/$1/new/estimates.json"
}
theirs() { "${NICE[@]}" "$py" "$BENCH_DIR/mlflow_decrypt.py" | awk '{print $2}'; }

o=() m=()
for round in $(seq "$ROUNDS"); do
    o+=("$(ours decrypt_secret)")
    m+=("$(theirs)")
    echo "round $round: ours ${o[-1]} µs, MLflow ${m[-1]} µs" >&2
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
enc=$(ours encrypt_secret) obj=$(ours decrypt_secret_object)
mo=$(med "${o[@]}") mm=$(med "${m[@]}")
echo
echo "decrypt_secret, KEK cached, $ROUNDS alternating rounds; $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg)${NICE[*]:+, both under \"${NICE[*]}\"}"
echo "ours (AWS-LC):            $mo µs median"
echo "MLflow $("$py" -c 'import mlflow; print(mlflow.__version__)') (Python):   $mm µs median"
awk -v a="$mo" -v b="$mm" -v e="$enc" -v o="$obj" 'BEGIN{
    printf "ratio: %.1fx faster (target >= 15x: %s); decrypt <= 0.6 us: %s\n", b/a, (b/a >= 15) ? "MET" : "NOT MET", (a <= 0.6) ? "MET" : "NOT MET"
    printf "decrypt_secret_object ({\"api_key\": ...}, MLflow'"'"'s shape): %.3f us, %.1fx MLflow\n", o, b/o
    printf "encrypt_secret: %.3f us (target <= 2 us: %s)\n", e, (e <= 2) ? "MET" : "NOT MET"}'
