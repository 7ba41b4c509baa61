#!/usr/bin/env python3
"""Benchmark: ``brinery.safe_loads`` against plain ``brinery.loads`` (issue 4, requirement 7).

Usage: .venv/bin/python bench/safe_load.py [--quick] [--out bench/results/safe-load.md]

For each input (real numpy/pandas/scikit-learn data and an opcode-dense Python structure) this
measures the best of N timed repetitions of

- ``brinery.loads(data)``: the plain load,
- ``brinery.safe_loads(data)``: scan (whole stream, all four built-in profiles) then the load with
  the native policy enforcement,
- ``brinery.scan(data)`` alone, with its opcode rate,
- the load with the policy enforced alone (``_native._loads_with_policy``: what ``safe_loads``
  runs after the scan),

and writes a Markdown table with the ratio safe/plain (the target: at most 1.15) between the
``<!-- safe-load table start -->`` and ``<!-- safe-load table end -->`` comments of the output
file, keeping the rest of it (the narrative). Benchmarks measure; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import brinery
import numpy as np
import pandas as pd
from brinery import _native

# The table this script writes goes between these markers; the rest of the file is kept.
TABLE_START = "<!-- safe-load table start -->"
TABLE_END = "<!-- safe-load table end -->"


def inputs() -> dict[str, bytes]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n = 200_000
    frame = pd.DataFrame(
        {
            "t": pd.date_range("2024-01-01", periods=n, freq="s", tz="Europe/Paris"),
            "x": rng.normal(size=n),
            "k": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
            "i": rng.integers(0, 1000, size=n),
            "s": rng.choice(["alpha", "beta", "gamma", "delta"], size=n).astype(object),
        }
    )
    X = rng.normal(size=(2000, 10))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
        pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    records = [
        {"id": i, "name": f"user{i}", "score": i * 0.5, "tags": ["a", "b"], "ok": i % 2 == 0}
        for i in range(100_000)
    ]
    return {
        "numpy float64 array, 8 MB (protocol 5)": pickle.dumps(rng.normal(size=1_000_000), protocol=5),
        "numpy float64 array, 8 MB (protocol 4)": pickle.dumps(rng.normal(size=1_000_000), protocol=4),
        "pandas DataFrame, 200k rows (tz, categorical, object)": pickle.dumps(frame, protocol=5),
        "RandomForestClassifier, 50 trees": pickle.dumps(forest, protocol=5),
        "Pipeline(StandardScaler, LogisticRegression)": pickle.dumps(pipe, protocol=5),
        "list of 100k dicts (opcode-dense)": pickle.dumps(records, protocol=5),
    }


def best_interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The best time of each function, run in turn within every repetition (so that the noise of
    a shared machine hits all of them alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    gc.collect()
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=15, help="timed repetitions (best kept)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "safe-load.md"))
    args = ap.parse_args()
    repeat = 3 if args.quick else args.repeat
    rows = []
    pol = brinery.Policy()
    for name, data in inputs().items():
        assert brinery.scan(data).ok, name
        t = best_interleaved(
            {
                "plain": lambda d=data: brinery.loads(d),
                "safe": lambda d=data: brinery.safe_loads(d),
                "scan": lambda d=data: brinery.scan(d),
                "guarded": lambda d=data: _native._loads_with_policy(d, pol),
            },
            repeat,
        )
        ops = brinery.scan(data).opcodes
        rows.append((name, len(data), ops, t["plain"], t["safe"], t["scan"], t["guarded"]))
        print(f"{name}: plain {t['plain'] * 1e3:.2f} ms, safe {t['safe'] * 1e3:.2f} ms", flush=True)
    ratios = [r[4] / r[3] for r in rows]
    try:
        load = "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    lines = [
        f"`{' '.join([Path(sys.executable).name, 'bench/safe_load.py', *sys.argv[1:]])}` — best of {repeat}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"{platform.machine()}, {platform.processor() or platform.system()}; {load} at the end.",
        "",
        "`safe_loads` = scan of the whole stream with all four built-in profiles, then the load with the "
        "native policy enforcement. Target (issue 4, requirement 7): at most 1.15x the plain load.",
        "",
        "| input | pickle size | opcodes | loads | safe_loads | ratio | scan alone | scan rate "
        "| load with the policy alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, size, ops, plain, safe, scan_t, unp), ratio in zip(rows, ratios, strict=True):
        lines.append(
            f"| {name} | {size / 1e6:.2f} MB | {ops:,} | {plain * 1e3:.2f} ms | {safe * 1e3:.2f} ms | "
            f"{ratio:.3f}x | {scan_t * 1e3:.3f} ms | {ops / scan_t / 1e6:.0f} M opcodes/s | "
            f"{unp * 1e3:.2f} ms |"
        )
    lines += [
        "",
        f"Geometric mean ratio: {statistics.geometric_mean(ratios):.3f}x; worst {max(ratios):.3f}x.",
    ]
    table = "\n".join(lines)
    write_table(Path(args.out), table)
    print(table)


def write_table(out: Path, table: str) -> None:
    """Put ``table`` between the marker comments of ``out``, keeping the rest of the file (the
    narrative written by hand); a file without the markers gets a heading and the table first,
    its old content after it."""
    block = f"{TABLE_START}\n{table}\n{TABLE_END}"
    old = out.read_text(encoding="utf-8") if out.exists() else ""
    start, end = old.find(TABLE_START), old.find(TABLE_END)
    if start >= 0 and end > start:
        new = old[:start] + block + old[end + len(TABLE_END) :]
    else:
        new = f"# safe_loads vs loads\n\n{block}\n" + (f"\n{old}" if old else "")
    out.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
