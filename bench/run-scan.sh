#!/usr/bin/env bash
# Benchmark the scanner (issue 4, requirement 7): opcodes/s on opcode-dense pickles and bytes/s
# on buffer-dominated ones; writes bench/results/scan.md. Usage: bash bench/run-scan.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BRINERY_BENCH_INPUTS="$PWD/target/bench-inputs"
[ -f "$BRINERY_BENCH_INPUTS/blob.pkl" ] || .venv/bin/python scripts/gen_bench_inputs.py "$BRINERY_BENCH_INPUTS"
extra=()
if [ "${1:-}" = "--quick" ]; then extra=(--warm-up-time 1 --measurement-time 2); fi
cargo bench --quiet -p brinery-bench --bench scan -- --noplot "${extra[@]}" > target/bench-scan.log 2>&1 \
  || { cat target/bench-scan.log; exit 1; }
.venv/bin/python bench/summarize_scan.py target/criterion target/bench-scan.log | tee bench/results/scan.md
