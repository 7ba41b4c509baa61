#!/usr/bin/env python3
"""Instruction counts of brinery vs the C pickle: a timing-free regression guard.

    python bench/instructions.py                 # the project's .venv Python
    python bench/instructions.py --python both   # also Debian's /usr/bin/python3.11
    python bench/instructions.py --json out.json

Runs each pyperformance ``bm_pickle`` workload (the same objects and unrolled loops as
bench/run.py, protocol HIGHEST) plus dumps/loads of 1,000 records, for brinery and for the stdlib's
C pickle, in ONE Python process under ``valgrind --tool=callgrind``. Every measured section is
delimited by a call to ``os.getpgrp()``, which callgrind is told to dump its counters before
(``--dump-before=getpgrp``), so each section's instructions are counted exactly, and an empty
section gives the marker's own cost to subtract. Instruction counts do not depend on the load of
the machine (unlike times), so the ratios are stable on a noisy or shared CI machine.

It prints instructions per call (pyperformance's unit) and the ratio _pickle / brinery (above 1:
brinery executes fewer instructions), and flags every workload where brinery executes more. It only
reports: the exit status is 0 unless the command itself is misused; without valgrind it says so
and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
DEBIAN_PY = Path("/usr/bin/python3.11")

# Outer loops of each section: enough calls that per-call counts are exact to well under 1%,
# few enough that the whole run under callgrind takes seconds.
LOOPS = {"pickle": 6, "pickle_dict": 6, "pickle_list": 12, "unpickle": 6, "unpickle_list": 12}
RECORDS = 1000
RECORD_CALLS = 4


def child(calls_scale):
    """Runs under callgrind: warm up, then one marked section per (workload, contender)."""
    import gc
    import pickle

    sys.path.insert(0, str(HERE))
    import brinery
    import workloads as W

    mark = os.getpgrp
    records = W.make_records(RECORDS)
    records_bytes = pickle.dumps(records, W.PROTOCOL)
    contenders = [("pickle", pickle.dumps, pickle.loads), ("brinery", brinery.dumps, brinery.loads)]
    sections = []

    def records_dumps(n, dumps, protocol):
        for _ in range(n):
            dumps(records, protocol)

    def records_loads(n, loads, protocol):
        for _ in range(n):
            loads(records_bytes)

    plan = []
    for name, (fn, inner, kind) in W.MICRO.items():
        plan.append((name, fn, LOOPS[name] * calls_scale, inner, kind))
    plan.append(("records_1k dumps", records_dumps, RECORD_CALLS * calls_scale, 1, "dumps"))
    plan.append(("records_1k loads", records_loads, RECORD_CALLS * calls_scale, 1, "loads"))
    # Warm up every path (lazy imports, caches, interned names) before anything is counted.
    for _, fn, _, _, kind in plan:
        for _, dumps, loads in contenders:
            fn(2, dumps if kind == "dumps" else loads, W.PROTOCOL)
    gc.collect()
    mark()  # part 1 ends: start-up and warm-up
    mark()  # part 2: the empty section (the marker's own cost)
    sections.append(("empty", None, 1, 1))
    for name, fn, loops, inner, kind in plan:
        for cname, dumps, loads in contenders:
            f = dumps if kind == "dumps" else loads
            fn(loops, f, W.PROTOCOL)
            mark()
            sections.append((name, cname, loops, inner))
    print(json.dumps(sections))


def totals(path):
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise ValueError(f"no totals line in {path}")


def measure(exe, env, calls_scale):
    with tempfile.TemporaryDirectory(prefix="brinery-cg-") as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getpgrp",
            f"--callgrind-out-file={out}",
            exe,
            "-s",
            str(Path(__file__).resolve()),
            "--child",
            str(calls_scale),
        ]
        env = dict(env, PYTHONHASHSEED="0")
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"callgrind run failed (exit {r.returncode}): {r.stderr.strip()[-800:]}")
        sections = json.loads(r.stdout.strip().splitlines()[-1])
        # Part i (file cg.out.i) holds the counts up to the i-th marker; part 1 is start-up.
        parts = [totals(f"{out}.{i}") for i in range(2, 2 + len(sections))]
    empty = parts[0]
    res = {}
    for (name, cname, loops, inner), ir in zip(sections[1:], parts[1:], strict=True):
        res.setdefault(name, {})[cname] = (ir - empty) / (loops * inner)
    return res


def venv_import_paths():
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    paths = [str(site)]
    for pth in sorted(site.glob("*.pth")):
        for line in pth.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import")) and Path(line).is_dir():
                paths.append(line)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default="venv", choices=["venv", "debian", "both"])
    p.add_argument("--scale", type=int, default=1, help="multiply the number of calls (default 1)")
    p.add_argument("--json", help="also write the counts to this JSON file")
    p.add_argument("--brinery-path", help="import brinery from this directory first (e.g. a commit's build)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return 0
    if not shutil.which("valgrind"):
        print("instruction counts: skipped (valgrind is not installed)")
        return 0
    first = [str(Path(args.brinery_path).resolve())] if args.brinery_path else []
    interpreters = []
    if args.python in ("venv", "both"):
        exe = VENV_PY if VENV_PY.exists() else Path(sys.executable)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(first)) if first else dict(os.environ)
        interpreters.append(("venv", str(exe), env))
    if args.python in ("debian", "both"):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(first + venv_import_paths()))
        interpreters.append(("debian", str(DEBIAN_PY), env))
    results = {}
    for label, exe, env in interpreters:
        t0 = time.time()
        try:
            res = measure(exe, env, args.scale)
        except Exception as e:  # noqa: BLE001 - report, never fail the caller
            print(f"instruction counts ({label}, {exe}): not measured: {e}")
            continue
        version = subprocess.run(
            [exe, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True
        ).stdout.strip()
        results[label] = {"executable": exe, "version": version, "workloads": res}
        print(
            f"\ninstructions per call, brinery vs the C pickle ({label}: Python {version}, {exe}; "
            f"callgrind, {time.time() - t0:.0f} s)"
        )
        print(f"{'workload':18s} {'_pickle':>12s} {'brinery':>12s} {'_pickle/brinery':>16s}")
        ratios, worse = [], []
        for name, c in res.items():
            r = c["pickle"] / c["brinery"]
            if name in LOOPS:
                ratios.append(r)
            if r < 1:
                worse.append(f"{name} ({r:.2f}x)")
            print(f"{name:18s} {c['pickle']:12,.0f} {c['brinery']:12,.0f} {r:15.2f}x")
        if ratios:
            g = math.exp(sum(map(math.log, ratios)) / len(ratios))
            print(f"{'pyperformance geomean':18s} {'':>12s} {'':>12s} {g:15.2f}x")
            results[label]["pyperformance_geomean"] = g
        if worse:
            print(
                "REGRESSION WARNING: brinery executes more instructions than the C pickle on: "
                + ", ".join(worse)
            )
        results[label]["more_instructions_than_pickle"] = worse
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
