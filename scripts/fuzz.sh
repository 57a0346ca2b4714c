#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, stable toolchain) of the parsers of
# fuzz/fuzz_targets. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# cargo-fuzz needs nightly (-Zsanitizer); this builds the same libFuzzer
# harness on stable with LLVM's SanitizerCoverage pass and no sanitizer
# (Rust code is memory-safe; a panic aborts and libFuzzer saves the input
# under fuzz/artifacts/). `--target` keeps build scripts uninstrumented.
# Found inputs are added to fuzz/corpus/<target>, which is committed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokens_line rest_requests)
triple=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
cargo build --target "$triple" --bins
mkdir -p artifacts
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${secs}s"
  "$CARGO_TARGET_DIR/$triple/debug/$t" -max_total_time="$secs" -max_len=4096 \
    -artifact_prefix="artifacts/$t-" "corpus/$t"
done
