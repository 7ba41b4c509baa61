#!/usr/bin/env bash
# Set up everything (scripts/setup.sh: .venv, the brinery command, `pip install .` of the Python
# module) and run every test: lints; the Rust suites (unit, corpus differential tests against
# CPython's pickletools and pickle.loads, malformed-input tables, randomized mutation tests, CLI);
# then pytest (CPython's own pickle conformance suite against brinery, byte identity and interop
# with numpy/pandas/scikit-learn, property, robustness, leak and typing tests). CI runs exactly
# this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export PYO3_PYTHON="$PWD/.venv/bin/python"
export BRINERY_PYTHON="$PWD/.venv/bin/python"
export BRINERY_CORPUS="$PWD/target/corpus"

echo "==> generating the test corpus with $("$BRINERY_PYTHON" --version)"
rm -rf "$BRINERY_CORPUS"
"$BRINERY_PYTHON" scripts/gen_corpus.py "$BRINERY_CORPUS"

echo "==> lint: cargo fmt, clippy, ruff check, ruff format"
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
ruff check .
ruff format --check .

echo "==> cargo test"
cargo test --release --workspace 2>&1 | tee target/test-output.txt

echo "==> pytest"
# `import brinery` is the installed package: the source tree keeps it under python/.
python -m pytest -q -p no:cacheprovider --junit-xml=target/pytest.xml tests

echo "==> instruction counts, brinery vs the C pickle (callgrind; a report, never a failure)"
python bench/instructions.py || echo "(instruction counts not measured)"

# One closing line for the whole run: every cargo test binary plus pytest.
python - <<'PY'
import re
import xml.etree.ElementTree as ET

passed = failed = skipped = 0
for line in open("target/test-output.txt", encoding="utf-8"):
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        passed += int(m[1]); failed += int(m[2]); skipped += int(m[3])
root = ET.parse("target/pytest.xml").getroot()
for suite in root.iter("testsuite"):
    n, f, e, s = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    passed += n - f - e - s; failed += f + e; skipped += s
print(f"\n{passed} passed, {failed} failed, {skipped} skipped")
PY
