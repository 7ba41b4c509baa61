#!/usr/bin/env bash
# Idempotent setup: a Python venv at .venv with the test/corpus dependencies, and a release build
# of the brinery command. Safe to run repeatedly; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found (install Rust with rustup)" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements-dev.stamp
if [ ! -f "$stamp" ] || ! cmp -s requirements-dev.txt "$stamp"; then
  echo "==> installing Python dependencies into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  cp requirements-dev.txt "$stamp"
fi

echo "==> building the brinery command (release)"
cargo build --release --quiet -p brinery-cli

# The Python module, exactly as a user installs it: `pip install .` (maturin is the PEP 517
# backend; the build runs in this tree, so cargo's target/ keeps it incremental).
export PATH="$PWD/.venv/bin:$PATH"   # the build backend (maturin) lives in the venv
echo "==> pip install . (the brinery Python module)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps .

# pyarrow for tests/test_safety_pyarrow.py only, in a directory of its own (not the venv: with
# pyarrow importable pandas 3 stores strings as Arrow arrays, which would change the whole suite).
if [ ! -d target/pyarrow-site/pyarrow ]; then
  echo "==> installing pyarrow into target/pyarrow-site"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --target target/pyarrow-site --no-deps 'pyarrow>=14'
fi
