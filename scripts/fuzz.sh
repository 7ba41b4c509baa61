#!/usr/bin/env bash
# Run every cargo-fuzz target (fuzz/README.md) for SECONDS each (default 300), one after the
# other, seeded with the small pickles of the test corpus. Installs cargo-fuzz if it is missing;
# runs on the stable toolchain through RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only flags).
# Not part of scripts/test.sh: minutes per target are needed to find anything. Exit 1 if any
# target found a crash (left in fuzz/artifacts/<target>/), 0 otherwise.
#
#   bash scripts/fuzz.sh             # 5 minutes per target
#   bash scripts/fuzz.sh 60 scan     # one minute, the scan target only
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode value disasm scan json serde)
fi

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
if [ ! -d target/corpus ]; then
  bash scripts/setup.sh
  .venv/bin/python scripts/gen_corpus.py target/corpus
fi

found=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  find target/corpus -name '*.pkl' -size -64k -exec cp -n {} "fuzz/corpus/$t/" \;
  dict=()
  [ "$t" = decode ] || dict=(-dict=pickle.dict)
  echo "==> fuzz $t for ${seconds}s"
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 "${dict[@]}" \
      2>&1 | grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|thread .* panicked)'); then
    :
  fi
  if compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
    echo "!! $t: crash inputs in fuzz/artifacts/$t/"
    found=1
  fi
done
exit "$found"
