#!/usr/bin/env bash
# Benchmark the core's value model against the serde-pickle crate: read (bytes -> value model) and
# write (value model -> bytes) on the same CPython-made pickles, then print a table of throughputs
# and ratios. Usage: bash bench/run-rust.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BRINERY_BENCH_INPUTS="$PWD/target/bench-inputs"
[ -f "$BRINERY_BENCH_INPUTS/blob.pkl" ] || .venv/bin/python scripts/gen_bench_inputs.py "$BRINERY_BENCH_INPUTS"
extra=()
if [ "${1:-}" = "--quick" ]; then extra=(--warm-up-time 1 --measurement-time 2); fi
cargo bench --quiet -p brinery-bench --bench value_model -- --noplot "${extra[@]}" > target/bench-rust.log 2>&1 \
  || { cat target/bench-rust.log; exit 1; }
.venv/bin/python bench/summarize_rust.py target/criterion "$BRINERY_BENCH_INPUTS" | tee bench/results/rust-value-model.md
