#!/usr/bin/env bash
# The demo: set up (scripts/setup.sh), then run a small project of Jupyter notebooks (demo/, copied
# to target/demo/churn and made a git repository) that share objects through the jar: notebook 1
# cleans raw data and saves the DataFrame, notebook 2 loads it and saves a fitted model, notebook 3
# tries another model on a branch and compares. Then the history from the command line, a wrong
# turn and the restore of an earlier version, a verify; and last, a look inside a pickle exported
# from the jar without running it (disassembly identical to pickletools, JSON, a damaged file),
# and scans it and a malicious pickle (brinery scan, safe_load refusing before anything runs).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
root=$PWD
brinery=$root/target/release/brinery
py=$root/.venv/bin/python
work=$root/target/demo
project=$work/churn
rm -rf "$work" && mkdir -p "$work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
export BRINERY_PROGRESS=off   # no progress bars in the transcript
unset BRINERY_JAR BRINERY_BRANCH

step "0. a project of notebooks: a copy of demo/ in $project (a git repository), its raw data"
cp -r demo "$project"
rm -rf "$project/data" "$project/.brinery"
git init -q "$project"
"$py" "$project/make_raw_data.py"
cd "$project"
run_nb() { "$py" "$root/scripts/run_notebook.py" "$project" "$@"; }

step "1. notebooks/01_clean.ipynb: clean the raw data, %jar save df"
run_nb notebooks/01_clean.ipynb

step "2. notebooks/02_model.ipynb: %jar load df, fit a model, jar.save(\"model\", ...)"
run_nb notebooks/02_model.ipynb

step "3. 03_compare.ipynb: jar.branch(\"forest\"), save a random forest there, compare the branches"
run_nb 03_compare.ipynb

step "4. the project's jar from the command line: brinery jar ls, log, and the branch"
"$brinery" jar ls
"$brinery" jar log model
"$brinery" jar --branch forest log model

step "5. a wrong turn: notebook 1 again, keeping only spend below the median"
DEMO_KEEP_QUANTILE=0.5 run_nb notebooks/01_clean.ipynb | grep -E 'saved df|^  Out │ \(' || true
"$brinery" jar log df

step "6. restore version 1 of df (a new version, so the history keeps the wrong turn)"
"$py" -c '
from brinery import jar
df = jar.load("df", 1)
version = jar.save("df", df, note="restored version 1")
print(f"restored df version 1 as version {version}: {df.shape[0]} rows")'
"$brinery" jar log df
"$brinery" jar show df@3

step "7. brinery jar verify: every chunk re-hashed"
"$brinery" jar verify

step "8. a plain pickle out of the jar, and a look inside without running it"
"$brinery" jar export model@1 "$work/model.pkl"
"$brinery" dis "$work/model.pkl" | head -n 12
"$py" -m pickletools "$work/model.pkl" > "$work/model.pickletools.txt"
"$brinery" dis "$work/model.pkl" > "$work/model.brinery.txt"
cmp -s "$work/model.pickletools.txt" "$work/model.brinery.txt" \
  && echo "  identical to python -m pickletools ($(wc -l < "$work/model.brinery.txt") lines)" \
  || { echo "  DIFFERENT from pickletools"; exit 1; }
echo "  the globals the model references (brinery json, nothing runs):"
"$brinery" json --compact "$work/model.pkl" | grep -o '"\$global":\["[^"]*","[^"]*"\]' | sort -u | sed 's/^/    /'
head -c 600 "$work/model.pkl" > "$work/damaged.pkl"
set +e
"$brinery" json "$work/damaged.pkl"
echo "  a damaged pickle: exit code $?"
set -e

step "9. is it safe to load? brinery scan (nothing runs, nothing is imported)"
set +e
"$brinery" scan "$work/model.pkl"
echo "  the fitted model: exit code $?"
# A pickle that would run a shell command when loaded (made by hand: the payload never runs here).
printf '\x80\x04\x95\x24\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06system\x93\x8c\x12echo pwned >&2; id\x85R.' \
  > "$work/evil.pkl"
"$brinery" scan "$work/evil.pkl"
echo "  a pickle that calls os.system: exit code $?"
"$py" - "$work/evil.pkl" <<'PY'
import sys
import brinery

try:
    brinery.safe_load(sys.argv[1])
except brinery.UnsafePickleError as e:
    print(f"  brinery.safe_load refused it before anything ran: {str(e).splitlines()[0]}")
PY
set -e

step "done: the project is in $project (its jar in $project/.brinery)"
