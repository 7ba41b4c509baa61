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
.venv/bin/python bench/summarize_rust.py target/criterion "$BRINERY_BENCH_INPUTS" > target/bench-rust-table.md
cat target/bench-rust-table.md
# The table replaces only what lies between the markers in the results file; the notes around it
# (earlier runs, what changed and why) stay.
.venv/bin/python - target/bench-rust-table.md bench/results/rust-value-model.md <<'EOF'
import sys
from pathlib import Path

table, out = Path(sys.argv[1]).read_text().rstrip("\n"), Path(sys.argv[2])
start, end = "<!-- rust table start -->", "<!-- rust table end -->"
text = out.read_text() if out.exists() else ""
if start in text and end in text:
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    out.write_text(f"{head}{start}\n{table}\n{end}{tail}")
else:
    out.write_text(f"{start}\n{table}\n{end}\n")
EOF
