#!/usr/bin/env bash
# Set up everything (scripts/setup.sh) and run every test: lints, the Rust suites (unit, corpus
# differential tests against CPython's pickletools and pickle.loads, malformed-input tables,
# randomized mutation tests), and the CLI tests. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export BRINERY_PYTHON="$PWD/.venv/bin/python"
export BRINERY_CORPUS="$PWD/target/corpus"

echo "==> generating the test corpus with $("$BRINERY_PYTHON" --version)"
rm -rf "$BRINERY_CORPUS"
"$BRINERY_PYTHON" scripts/gen_corpus.py "$BRINERY_CORPUS"

echo "==> lint: cargo fmt, clippy, ruff"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
.venv/bin/ruff check scripts bench tests

echo "==> cargo test"
cargo test --release --workspace 2>&1 | tee target/test-output.txt
# One closing line for the whole run, summed over every cargo test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\n%d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.txt
