#!/usr/bin/env bash
# The demo: set up (scripts/setup.sh), make the pickles a notebook typically saves (a config dict,
# a tz-aware pandas DataFrame, a fitted scikit-learn pipeline), then look inside them with brinery
# without running them: disassembly identical to pickletools, JSON export, and clear errors on a
# damaged file.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
brinery=target/release/brinery
py=.venv/bin/python
work=target/demo
rm -rf "$work" && mkdir -p "$work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "0. import brinery as pickle: a notebook saves a config, a DataFrame and a fitted model"
"$py" scripts/demo_pickles.py "$work"

step "1. brinery dis: the opcodes of a notebook's config dict (first 30 lines)"
"$brinery" dis "$work/config.pkl" | head -n 30

step "2. identical to python -m pickletools, byte for byte, for all three pickles"
for f in config frame model; do
  "$py" -m pickletools "$work/$f.pkl" > "$work/$f.pickletools.txt"
  "$brinery" dis "$work/$f.pkl" > "$work/$f.brinery.txt"
  if cmp -s "$work/$f.pickletools.txt" "$work/$f.brinery.txt"; then
    echo "  $f.pkl: identical ($(wc -l < "$work/$f.brinery.txt") lines)"
  else
    echo "  $f.pkl: DIFFERENT"; diff "$work/$f.pickletools.txt" "$work/$f.brinery.txt" | head; exit 1
  fi
done

step "3. brinery json: the config as JSON (tagged objects for what JSON lacks)"
"$brinery" json "$work/config.pkl"

step "4. brinery json: which globals does the model pickle reference? (from stdin)"
"$brinery" json --compact - < "$work/model.pkl" | grep -o '"\$global":\["[^"]*","[^"]*"\]' | sort -u

step "5. a damaged pickle gives a clear error and exit code 2, never a crash"
set +e
"$brinery" json "$work/damaged.pkl"
echo "  exit code: $?"
set -e

step "done: the pickles are in $work"
