#!/usr/bin/env python3
"""brinery's Python benchmark: brinery against the stdlib pickle and the usual alternatives.

    python bench/run.py            # the full run (~30 min on this machine: both interpreters)
    python bench/run.py --quick    # about a minute: small sizes, fewer repeats
    python bench/run.py --only pickle,unpickle,records --array-gb 0.25 --python pyenv

What it measures, in one process per interpreter, interleaving the contenders (each repeat runs
every contender once, in a rotating order) and reporting medians over the repeats:

- pyperformance's ``bm_pickle`` workloads (``pickle``, ``pickle_dict``, ``pickle_list``,
  ``unpickle``, ``unpickle_list``; same objects, same unrolled loops, protocol HIGHEST): brinery
  vs the C pickle vs the pure-Python pickle (``pickle._dumps``/``pickle._loads``), in
  microseconds per call as pyperformance reports them;
- data-science objects: 1M records, a 1M-row DataFrame, a 1 GB float64 array, a fitted
  RandomForest of 100 trees: brinery vs pickle, cloudpickle, joblib, and orjson/msgspec (records),
  parquet/feather (DataFrame), numpy.save (array); in memory (dumps, loads) and through a file
  (dump + flush + fsync, load with the file evicted from the page cache first), with the output
  size and the peak memory of each call, and the disk's raw sequential bandwidth measured in the
  same run (for the array's file targets).

Every load is timed together with a ``gc.collect(0)`` right after it, for every contender. Memory
is pre-touched before each large sample (this VM returns idle memory to the host, and faulting it
back costs ~2.4 s/GB). Peak memory is VmHWM after resetting it through /proc/self/clear_refs,
minus VmRSS before the call.

It runs under both interpreters of this machine (the project's .venv Python and Debian's
/usr/bin/python3.11 with the venv's site-packages on PYTHONPATH), prints a table per interpreter
with the ratios against the stdlib pickle and the pass/fail of each target of issue 5, warns when
brinery is slower than the stdlib anywhere, and writes JSON, Markdown and a PNG chart (default
bench/results/, or target/bench-quick/ for --quick). It never fails on timing.

The contenders (bench/requirements.txt) are installed on first use into target/bench-site, a
directory of their own that only the benchmark puts on its path (last, so the project's numpy and
pandas stay the venv's): installing pyarrow into .venv would change how pandas stores strings for
the whole test suite.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / ".venv"
VENV_PY = VENV / "bin" / "python"
# The contenders' own directory (see the module docs), appended to sys.path by every process.
BENCH_SITE = ROOT / "target" / "bench-site"
DEBIAN_PY = Path("/usr/bin/python3.11")

MICRO_NAMES = ["pickle", "pickle_dict", "pickle_list", "unpickle", "unpickle_list"]
DATA_NAMES = ["records", "dataframe", "array", "forest"]
OPS = ["dumps", "loads", "dump", "load"]
MAIN = ("brinery", "pickle", "disk (raw)")
OP_LABEL = {"dumps": "dumps", "loads": "loads+gc0", "dump": "dump+fsync", "load": "load(file)+gc0"}

FULL = {
    "repeats": 5,
    "array_repeats": 3,
    "array_other_repeats": 1,
    "micro_repeats": 41,
    "micro_sample": 0.05,
    "records": 1_000_000,
    "rows": 1_000_000,
    "array_gb": 1.0,
    "trees": 100,
    "forest_samples": 20_000,
    "budget": 40.0,
}
QUICK = {
    "repeats": 3,
    "array_repeats": 3,
    "array_other_repeats": 3,
    "micro_repeats": 15,
    "micro_sample": 0.01,
    "records": 50_000,
    "rows": 50_000,
    "array_gb": 1 / 16,
    "trees": 10,
    "forest_samples": 2_000,
    "budget": 3.0,
}

# issue 5, requirement 2: ratios of stdlib-pickle time to brinery time.
TARGETS = {
    "micro_each": 1.3,
    "micro_geomean": 1.5,
    "records_dumps": 3.0,
    "records_dumps_stretch": 4.0,
    "records_loads": 2.0,
    "records_loads_stretch": 3.0,
    "dataframe": 1.5,
    "forest": 1.5,
    "array_mem": 2.0,
    "array_disk": 0.8,
    "array_peak": 1.1,
}


# ============================================================================================
# Orchestrator


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="about one minute: small sizes, few repeats")
    p.add_argument(
        "--only",
        help="comma-separated workloads: "
        + ",".join(MICRO_NAMES + DATA_NAMES)
        + " (or the groups 'micro' and 'data'); default all",
    )
    p.add_argument(
        "--python",
        default="both",
        choices=["both", "pyenv", "debian"],
        help="which interpreter(s): the .venv Python, Debian's /usr/bin/python3.11, or both",
    )
    p.add_argument("--repeats", type=int, help="repeats of each data-science sample (median reported)")
    p.add_argument("--array-repeats", type=int, help="repeats of each array sample (default 3)")
    p.add_argument(
        "--array-other-repeats",
        type=int,
        help="repeats of the array samples of contenders other than brinery and pickle (default 1)",
    )
    p.add_argument("--micro-repeats", type=int, help="repeats of each pyperformance sample")
    p.add_argument("--records", type=int, help="number of records (default 1,000,000)")
    p.add_argument("--rows", type=int, help="DataFrame rows (default 1,000,000)")
    p.add_argument("--array-gb", type=float, help="float64 array size in GB (default 1)")
    p.add_argument("--trees", type=int, help="RandomForest trees (default 100)")
    p.add_argument("--forest-samples", type=int, help="RandomForest training samples (default 20,000)")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time in-memory calls by wall-clock (default) or by this process's CPU time (user+system, "
        "all threads: for a machine shared with other work); file calls are always timed by wall-clock",
    )
    p.add_argument(
        "--contenders",
        help="comma-separated contenders to measure (brinery and pickle are needed for the ratios), e.g. "
        "brinery,pickle,cloudpickle,orjson,'msgspec (msgpack)'",
    )
    p.add_argument("--no-file", action="store_true", help="skip the file (fsync) measurements")
    p.add_argument(
        "--all-contenders",
        action="store_true",
        help="with --quick: also the pure-Python pickle, cloudpickle, joblib, orjson, ... "
        "(--quick measures only brinery and the stdlib pickle)",
    )
    p.add_argument(
        "--budget", type=float, help="seconds per contender and operation after which its repeats stop early"
    )
    p.add_argument("--out", help="results directory (default bench/results, or target/bench-quick)")
    p.add_argument(
        "--tmpdir", help="where the files are written (default target/bench-tmp: the project disk)"
    )
    p.add_argument(
        "--commit",
        help="measure brinery built from this git revision (e.g. HEAD) apart from the work tree, "
        "instead of the build installed in .venv",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="no measuring: merge the results of several runs (e.g. one per interpreter) into one "
        "report, JSON and chart in --out",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker(json.loads(Path(args.worker).read_text()))
    if args.merge:
        return write_results(merge(args.merge), Path(args.out) if args.out else HERE / "results")

    if Path(sys.prefix).resolve() != VENV.resolve():
        ensure_venv()
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])
    ensure_bench_requirements()
    sys.path.append(str(BENCH_SITE))

    cfg = dict(QUICK if args.quick else FULL)
    for key in (
        "repeats",
        "array_repeats",
        "array_other_repeats",
        "micro_repeats",
        "records",
        "rows",
        "array_gb",
        "trees",
        "forest_samples",
        "budget",
    ):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["quick"] = args.quick
    cfg["file"] = not args.no_file
    cfg["clock"] = args.clock
    cfg["contenders"] = "all" if (args.all_contenders or not args.quick) else ["brinery", "pickle"]
    if args.contenders:
        cfg["contenders"] = [c.strip() for c in args.contenders.split(",")]
    cfg["workloads"] = parse_only(args.only)
    out_dir = (
        Path(args.out) if args.out else (ROOT / "target" / "bench-quick" if args.quick else HERE / "results")
    )
    # A directory of its own: runs started at the same time in one work tree must not share files.
    tmpdir = (Path(args.tmpdir) if args.tmpdir else ROOT / "target" / "bench-tmp") / f"run-{os.getpid()}"
    tmpdir.mkdir(parents=True, exist_ok=True)
    cfg["tmpdir"] = str(tmpdir)
    cfg["cache"] = str(ROOT / "target" / "bench-cache")
    out_dir.mkdir(parents=True, exist_ok=True)

    command = "python bench/run.py " + " ".join(sys.argv[1:])
    started = time.time()
    machine = describe_machine(tmpdir)
    machine["loadavg_start"] = read_loadavg()
    first = []
    commit = None
    if args.commit:
        commit, site = build_commit(args.commit)
        first = [str(site)]
        cfg["brinery_commit"] = commit
    interpreters = []
    pyenv_env = os.environ.copy()
    if first:
        pyenv_env["PYTHONPATH"] = os.pathsep.join(first)
    if args.python in ("both", "pyenv"):
        interpreters.append(("pyenv", str(VENV_PY), pyenv_env))
    if args.python in ("both", "debian"):
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(first + venv_import_paths())
        interpreters.append(("debian", str(DEBIAN_PY), env))
    brinery_info = describe_brinery(pyenv_env, commit)

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs = []
    for label, exe, env in interpreters:
        if runs and runs[-1].get("interrupted"):
            runs.append(
                {"label": label, "executable": exe, "errors": ["not run: the benchmark was interrupted"]}
            )
            continue
        print(f"\n==> {label}: {exe}", flush=True)
        runs.append(run_interpreter(label, exe, env, cfg, tmpdir))

    machine["loadavg_end"] = read_loadavg()
    result = {
        "command": command.strip(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "config": cfg,
        "machine": machine,
        "brinery": brinery_info,
        "targets": TARGETS,
        "runs": runs,
    }
    for run in runs:
        run["targets"] = evaluate_targets(run, cfg)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return write_results(result, out_dir)


def merge(paths):
    """One result from several runs' python.json (e.g. one run per interpreter): the runs that
    measured something, one per interpreter, in the order given."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    result = dict(parts[0])
    runs = {}
    for part in parts:
        for run in part["runs"]:
            have = runs.get(run["label"])
            if have is None or not (have.get("micro") or have.get("data")):
                runs[run["label"]] = run
            elif run.get("micro") or run.get("data"):
                # The same interpreter measured again: later parts replace whole workloads.
                have.setdefault("micro", {}).update(run.get("micro") or {})
                have.setdefault("data", {}).update(run.get("data") or {})
                have["errors"] = [e for e in have.get("errors", []) if "interrupted" not in e] + [
                    e for e in run.get("errors", []) if "interrupted" not in e
                ]
    for run in runs.values():
        if run.get("micro") or run.get("data"):
            run["targets"] = evaluate_targets(run, result["config"])
    result["runs"] = [runs[k] for k in ("pyenv", "debian") if k in runs] + [
        v for k, v in runs.items() if k not in ("pyenv", "debian")
    ]
    starts = [time.mktime(time.strptime(p["started_utc"], "%Y-%m-%d %H:%M:%S")) for p in parts]
    ends = [t + p["duration_s"] for t, p in zip(starts, parts, strict=True)]
    result["started_utc"] = min(p["started_utc"] for p in parts)
    result["duration_s"] = round(max(ends) - min(starts), 1)
    result["command"] = " ; ".join(p["command"] for p in parts)
    result["merged_from"] = [f"{p['command']} (started {p['started_utc']} UTC)" for p in parts]
    clocks = {p["config"].get("clock", "wall") for p in parts}
    if len(clocks) > 1:
        result["brinery"]["warning"] = "the merged runs used different clocks"
    shas = {p["brinery"].get("native_module_sha256") for p in parts}
    if len(shas) > 1:
        result["brinery"]["warning"] = f"the merged runs measured different builds: {sorted(shas)}"
    la = [p["machine"].get("loadavg_start") for p in parts] + [p["machine"].get("loadavg_end") for p in parts]
    la = [x for x in la if x]
    result["machine"]["loadavg_start"] = parts[0]["machine"].get("loadavg_start")
    result["machine"]["loadavg_end"] = max(la, key=lambda x: float(x[0])) if la else None
    return result


def write_results(result, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    report = render_report(result)
    print("\n" + report)
    (out_dir / "python.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out_dir / "python.md").write_text(report + "\n")
    try:
        make_chart(result, out_dir / "python.png")
        print(f"chart: {out_dir / 'python.png'}")
    except Exception as e:  # noqa: BLE001 - the chart is optional; the tables are the result
        print(f"(no chart: {type(e).__name__}: {e})")
    print(f"results: {out_dir / 'python.json'}, {out_dir / 'python.md'}")
    return 0


def parse_only(only):
    if not only:
        return MICRO_NAMES + DATA_NAMES
    out = []
    for name in only.split(","):
        name = name.strip()
        if name == "micro":
            out += MICRO_NAMES
        elif name == "data":
            out += DATA_NAMES
        elif name in MICRO_NAMES + DATA_NAMES:
            out.append(name)
        elif name:
            sys.exit(f"error: unknown workload {name!r} (known: {', '.join(MICRO_NAMES + DATA_NAMES)})")
    return out


def ensure_venv():
    if (
        not VENV_PY.exists()
        or subprocess.run([str(VENV_PY), "-c", "import brinery"], capture_output=True).returncode != 0
    ):
        print("==> setting up .venv and the brinery module (scripts/setup.sh)", flush=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=True)


def ensure_bench_requirements():
    mods = ["cloudpickle", "joblib", "orjson", "msgspec", "pyarrow", "matplotlib"]

    def importable(m):
        code = f"import sys; sys.path.append({str(BENCH_SITE)!r}); import {m}"
        return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0

    missing = [m for m in mods if not importable(m)]
    if missing:
        print(
            f"==> installing the benchmark's packages into {BENCH_SITE.relative_to(ROOT)}"
            f" ({', '.join(missing)} missing)",
            flush=True,
        )
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
                str(BENCH_SITE),
                "-r",
                str(HERE / "requirements.txt"),
            ]
        )
        if r.returncode != 0:
            print("warning: could not install bench/requirements.txt; the missing contenders are skipped")


def venv_import_paths():
    """The venv's site-packages plus the directories its .pth files add (editable installs)."""
    site = next((VENV / "lib").glob("python3*/site-packages"))
    paths = [str(site)]
    for pth in sorted(site.glob("*.pth")):
        for line in pth.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import")) and Path(line).is_dir():
                paths.append(line)
    return paths


def run_interpreter(label, exe, env, cfg, tmpdir):
    run = {"label": label, "executable": exe, "packages": {}, "errors": []}
    if not Path(exe).exists():
        run["errors"].append(f"{exe} not found: {label} skipped")
        print(f"    {run['errors'][-1]}")
        return run
    # Which packages load under this interpreter (the same cp311 builds serve both).
    probe = (
        f"import importlib, json, sys\nsys.path.append({str(BENCH_SITE)!r})\nout = {{}}\n"
        "for m in ['brinery', 'numpy', 'pandas', 'sklearn', 'cloudpickle', 'joblib', 'orjson', 'msgspec',"
        " 'pyarrow']:\n"
        "    try:\n        mod = importlib.import_module(m)\n"
        "        out[m] = {'ok': True, 'version': getattr(mod, '__version__', ''),"
        " 'file': getattr(mod, '__file__', '')}\n"
        "    except Exception as e:\n        out[m] = {'ok': False, 'error': f'{type(e).__name__}: {e}'}\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([exe, "-s", "-c", probe], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        run["errors"].append(f"{label} could not start: {r.stderr.strip()[-500:]}")
        print(f"    {run['errors'][-1]}")
        return run
    run["packages"] = json.loads(r.stdout)
    for name, info in run["packages"].items():
        if not info["ok"]:
            msg = f"package {name} does not load under {label} ({exe}): {info['error']}"
            run["errors"].append(msg)
            print(f"    WARNING: {msg}")
    if not run["packages"].get("brinery", {}).get("ok"):
        run["errors"].append(f"brinery does not load under {label}: nothing measured")
        return run
    wcfg = dict(cfg, label=label, out=str(tmpdir / f"worker-{label}.json"))
    cfg_path = tmpdir / f"worker-{label}.cfg.json"
    cfg_path.write_text(json.dumps(wcfg))
    Path(wcfg["out"]).unlink(missing_ok=True)
    proc = subprocess.Popen([exe, "-s", str(Path(__file__).resolve()), "--worker", str(cfg_path)], env=env)
    try:
        returncode = proc.wait()
    except KeyboardInterrupt:
        # Interrupted (Ctrl-C or SIGTERM): keep what the worker measured so far and report it.
        proc.terminate()
        proc.wait()
        run["errors"].append(f"the {label} run was interrupted: its remaining workloads were not measured")
        run["interrupted"] = True
        returncode = None
    if returncode not in (0, None) or not Path(wcfg["out"]).exists():
        run["errors"].append(f"the {label} worker failed (exit {returncode})")
        print(f"    {run['errors'][-1]}")
        if not Path(wcfg["out"]).exists():
            return run
    run.update(json.loads(Path(wcfg["out"]).read_text()))
    return run


# ============================================================================================
# Machine and build description


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def read_loadavg():
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return None


def describe_machine(tmpdir):
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    src = sh(f"findmnt -n -o SOURCE,FSTYPE -T {tmpdir}")
    dev = src.split()[0] if src else ""
    disk = sh(f"lsblk -d -n -o NAME,SIZE,ROTA,MODEL {dev}") if dev.startswith("/dev/") else ""
    return {
        "cpu": cpu.group(1).strip() if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "virtualization": " / ".join(
            x for x in (sh("lscpu | sed -n 's/^Hypervisor vendor: *//p'"), sh("systemd-detect-virt")) if x
        ),
        "disk": f"{src} ({disk})" if disk else src,
        "tmpdir": str(tmpdir),
    }


def describe_brinery(env, commit=None):
    """Which brinery is measured: the built module's path, hash and time, and its source revision."""
    so = sh_env([str(VENV_PY), "-c", "import brinery._native as n; print(n.__file__)"], env)
    if commit:
        info = {
            "source": f"commit {commit}, built apart from the work tree (maturin build --release)",
            "git_head": sh(f"git -C {ROOT} log -1 --format='%h %cI %s' {commit}"),
        }
    else:
        info = {
            "source": "the brinery installed in .venv (the work tree's build)",
            "git_head": sh(f"git -C {ROOT} log -1 --format='%h %cI %s'"),
            "uncommitted_source_changes": sh(
                f"git -C {ROOT} status --porcelain -- crates python Cargo.toml Cargo.lock"
            ),
        }
    info["git_branch"] = sh(f"git -C {ROOT} rev-parse --abbrev-ref HEAD")
    if so and Path(so).exists():
        st = Path(so).stat()
        info["native_module"] = so
        info["native_module_mtime_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.st_mtime))
        info["native_module_sha256"] = hashlib.sha256(Path(so).read_bytes()).hexdigest()[:16]
    return info


def sh_env(cmd, env):
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def build_commit(rev):
    """Build brinery at git revision `rev` apart from the work tree; returns the directory to import it from.

    The work tree's module may be rebuilt by someone else while a long run is going, or hold
    uncommitted changes; a build of a named commit makes the results attributable.
    """
    sha = sh(f"git -C {ROOT} rev-parse --short {rev}")
    if not sha:
        sys.exit(f"error: unknown git revision {rev!r}")
    base = ROOT / "target" / "bench-build"
    site = base / f"site-{sha}"
    if (site / "brinery").is_dir():
        return sha, site
    src = base / "src"
    subprocess.run(["rm", "-rf", str(src)], check=True)
    src.mkdir(parents=True)
    # `-m`: the files get the time of extraction, not the commit's. With the commit's times, cargo
    # (which compares modification times) took a build of any later-built commit in the shared
    # target directory as up to date for an older commit, and every site held the same module.
    subprocess.run(f"git -C {ROOT} archive {sha} | tar -x -m -C {src}", shell=True, check=True)
    print(f"==> building brinery at {sha} (maturin build --release; target/bench-build)", flush=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(base / "target"), PATH=f"{VENV / 'bin'}:{os.environ['PATH']}")
    wheels = base / f"wheels-{sha}"
    subprocess.run(
        [
            str(VENV / "bin" / "maturin"),
            "build",
            "--release",
            "--quiet",
            "-i",
            str(VENV_PY),
            "-o",
            str(wheels),
        ],
        cwd=src,
        env=env,
        check=True,
    )
    wheel = next(wheels.glob("brinery-*.whl"))
    subprocess.run(
        [
            str(VENV_PY),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
    )
    return sha, site


def describe_python():
    args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    info = {
        "version": sys.version.split()[0],
        "build": sys.version,
        "executable": sys.executable,
        "config_args": args,
        "shared_libpython": "--enable-shared" in args,
        "cflags": sysconfig.get_config_var("PY_CFLAGS") or "",
    }
    if "--prefix=/usr" in args or sys.executable.startswith("/usr/bin/"):
        # Debian's package: an optimized distribution build whose flags sysconfig does not record.
        name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        pkg = sh(f"dpkg-query -W -f '${{Package}} ${{Version}}' {name}")
        info["build_kind"] = f"Debian package {pkg}".strip()
    else:
        opts = [f for f in ("--enable-optimizations", "--with-lto") if f in args]
        info["build_kind"] = "built " + (" ".join(opts) or "without --enable-optimizations/--with-lto")
    return info


# ============================================================================================
# Worker: runs inside each interpreter


def log(msg):
    print(f"    {msg}", file=sys.stderr, flush=True)


def clock():
    return time.perf_counter()


#: the clock of in-memory calls: wall-clock, or with --clock cpu this process's CPU time (user +
#: system, all threads), which a shared machine's waiting-for-a-core does not inflate.
CPU_CLOCK = [time.perf_counter]


def mclock():
    return CPU_CLOCK[0]()


def proc_status():
    s = Path("/proc/self/status").read_text()
    return {k: int(re.search(k + r":\s+(\d+)", s).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def pretouch(nbytes):
    """Fault in and free `nbytes` of memory so the next allocations get host-backed pages."""
    if nbytes <= 0:
        return
    import numpy as np

    a = np.empty(int(nbytes), dtype=np.uint8)
    a[::4096] = 1
    del a


def evict(path):
    """Drop a file's (clean, fsynced) pages from the page cache: the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def worker(cfg):
    sys.path.insert(0, str(HERE))
    sys.path.append(str(BENCH_SITE))
    import workloads as W

    if cfg.get("clock") == "cpu":
        CPU_CLOCK[0] = time.process_time
        W.set_clock(time.process_time)
    out = {
        "python": describe_python(),
        "micro": {},
        "data": {},
        "errors": [],
        "peak_reset": reset_peak(),
        "loadavg_start": read_loadavg(),
    }
    try:
        import brinery._native as native

        out["brinery_native"] = native.__file__
    except Exception as e:  # noqa: BLE001
        out["errors"].append(f"brinery: {e}")
    selected = cfg["workloads"]
    micro = [m for m in MICRO_NAMES if m in selected]
    if micro:
        log(f"pyperformance bm_pickle: {', '.join(micro)}")
        out["micro"] = run_micro(W, micro, cfg)
        save(cfg, out)
    for kind in ["records", "dataframe", "forest", "array"]:  # the longest last
        if kind not in selected:
            continue
        try:
            out["data"][kind] = run_data(W, kind, cfg)
        except Exception as e:  # noqa: BLE001 - report, keep measuring the other workloads
            import traceback

            traceback.print_exc()
            out["errors"].append(f"{kind}: {type(e).__name__}: {e}")
        gc.collect()
        save(cfg, out)
    out["loadavg_end"] = read_loadavg()
    save(cfg, out)
    return 0


def save(cfg, out):
    tmp = cfg["out"] + ".tmp"
    Path(tmp).write_text(json.dumps(out, default=str))
    os.replace(tmp, cfg["out"])


CHUNKS = 8


def run_micro(W, names, cfg):
    contenders = [c for c in W.micro_contenders() if cfg["contenders"] == "all" or c[0] in cfg["contenders"]]
    res = {}
    for name in names:
        fn, inner, kind = W.MICRO[name]
        objs = W.MICRO_OBJECTS[name]
        import pickle

        import brinery

        identical = all(brinery.dumps(o, W.PROTOCOL) == pickle.dumps(o, W.PROTOCOL) for o in objs)
        funcs = {c: (d if kind == "dumps" else lo) for c, d, lo in contenders}
        names_c = list(funcs)
        loops = {}
        for c, f in funcs.items():
            fn(1, f, W.PROTOCOL)  # warm up
            n = 1
            while True:
                t = fn(n, f, W.PROTOCOL)
                if t >= cfg["micro_sample"] / 4 or n >= 1 << 20:
                    break
                n *= 2
            loops[c] = max(1, int(n * cfg["micro_sample"] / max(t, 1e-9)))
        # Each sample is CHUNKS slices of its loops, the contenders' slices alternating, so that
        # bursts of other work on a shared machine hit every contender alike.
        chunk = {c: max(1, loops[c] // CHUNKS) for c in names_c}
        samples = {c: [] for c in names_c}
        for r in range(cfg["micro_repeats"]):
            total = dict.fromkeys(names_c, 0.0)
            for _ in range(CHUNKS):
                for c in rotate(names_c, r):
                    t = fn(chunk[c], funcs[c], W.PROTOCOL)
                    if kind == "loads":
                        t0 = mclock()
                        gc.collect(0)
                        t += mclock() - t0
                    total[c] += t
            for c in names_c:
                samples[c].append(total[c] / (chunk[c] * CHUNKS * inner))
        res[name] = {
            "op": kind,
            "inner_loops": inner,
            "loops_per_sample": {c: chunk[c] * CHUNKS for c in names_c},
            "byte_identical": identical,
            "contenders": {c: {"median": statistics.median(s), "samples": s} for c, s in samples.items()},
        }
        med = {c: res[name]["contenders"][c]["median"] * 1e6 for c in names_c}
        log(
            f"{name:14s} "
            + "  ".join(f"{c} {v:.2f} us" for c, v in med.items())
            + f"  -> {med['pickle'] / med['brinery']:.2f}x"
        )
    return res


def rotate(items, r):
    r %= len(items)
    return items[r:] + items[:r]


def build(W, kind, cfg):
    if kind == "records":
        return W.make_records(cfg["records"]), f"{cfg['records']:,} records"
    if kind == "dataframe":
        return W.make_dataframe(cfg["rows"]), f"{cfg['rows']:,}-row DataFrame"
    if kind == "array":
        nbytes = int(cfg["array_gb"] * 1e9) // 8 * 8
        return W.make_array(nbytes), f"{nbytes / 1e9:g} GB float64 array"
    if kind == "forest":
        return (
            W.make_forest(cfg["trees"], cfg["forest_samples"], cfg["cache"]),
            f"RandomForest, {cfg['trees']} trees, {cfg['forest_samples']:,} samples",
        )
    raise ValueError(kind)


class RawDisk:
    """The disk's sequential bandwidth: one write of the array's bytes + fsync, one read."""

    name = "disk (raw)"
    missing = None

    def __init__(self, arr):
        self.view = memoryview(arr).cast("B")

    def dump(self, obj, f):
        f.flush()
        fd, view, done = f.fileno(), self.view, 0
        while done < len(view):
            done += os.write(fd, view[done : done + (1 << 30)])

    def load(self, f):
        import numpy as np

        buf = np.empty(len(self.view), dtype=np.uint8)
        mv, done = memoryview(buf), 0
        while done < len(mv):
            n = f.readinto(mv[done:])
            if not n:
                break
            done += n
        return buf


def run_data(W, kind, cfg):
    t0 = clock()
    obj, desc = build(W, kind, cfg)
    gc.collect()
    log(f"{desc} built in {clock() - t0:.1f} s")
    contenders = [
        c for c in W.contenders_for(kind) if cfg["contenders"] == "all" or c.name in cfg["contenders"]
    ]
    if kind == "array" and cfg["file"]:
        contenders.append(RawDisk(obj))
    res = {"description": desc, "contenders": {}}
    if kind == "array":
        res["nbytes"] = obj.nbytes
    tmp = Path(cfg["tmpdir"])
    paths = {}
    warm_peak = {}
    inner = {}
    slow = {}
    active = []
    digests = {}
    for i, c in enumerate(contenders):
        entry = res["contenders"].setdefault(c.name, {"ops": {}})
        if getattr(c, "missing", None):
            entry["error"] = c.missing
            log(f"{c.name}: not available ({c.missing})")
            continue
        paths[c.name] = str(tmp / f"{kind}.{i}.bin")
        if isinstance(c, RawDisk):
            active.append(c)
            warm_peak[c.name] = {"dumps": 0, "loads": obj.nbytes}
            inner[c.name] = {"dumps": 1, "loads": 1}
            continue
        # Warm-up and checks (untimed): the output's size, the round trip, byte identity.
        try:
            gc.collect()
            before = proc_status()["VmRSS"]
            reset_peak()
            t0 = mclock()
            data = c.dumps(obj)
            t_dumps = mclock() - t0
            p_dumps = proc_status()["VmHWM"] - before
            entry["size"] = len(data)
            if c.name in ("brinery", "pickle"):
                digests[c.name] = hashlib.sha256(data).hexdigest()
            with open(paths[c.name], "wb") as f:
                f.write(data)
            gc.collect()
            before = proc_status()["VmRSS"]
            reset_peak()
            t0 = mclock()
            back = c.loads(data)
            t_loads = mclock() - t0
            p_loads = proc_status()["VmHWM"] - before
            entry["roundtrip"] = W.same_object(kind, obj, back)
            del back, data
            warm_peak[c.name] = {"dumps": p_dumps, "loads": p_loads}
            # Calls of a few milliseconds are repeated within a sample (about 50 ms of calls).
            inner[c.name] = {"dumps": calls_for(t_dumps), "loads": calls_for(t_loads)}
            if t_dumps + t_loads > cfg["budget"]:
                # Far slower than the rest (joblib's pure-Python pickler on records): the warm-up
                # calls are its single samples, and its file round trip is skipped.
                slow[c.name] = {"dumps": t_dumps, "loads": t_loads}
            active.append(c)
        except Exception as e:  # noqa: BLE001 - a contender that cannot handle the object is reported
            entry["error"] = f"{type(e).__name__}: {e}"
            log(f"{c.name}: {entry['error']}")
        gc.collect()
    if "brinery" in digests and "pickle" in digests:
        res["byte_identical"] = digests["brinery"] == digests["pickle"]
    ops = OPS if cfg["file"] else OPS[:2]
    for op in ops:
        runnable = [c for c in active if not (isinstance(c, RawDisk) and op in ("dumps", "loads"))]
        spent = {c.name: 0.0 for c in runnable}
        for r in range(cfg["array_repeats"] if kind == "array" else cfg["repeats"]):
            for c in rotate(runnable, r):
                if spent[c.name] > cfg["budget"] and r >= 1:
                    continue
                if kind == "array" and c.name not in MAIN and r >= cfg["array_other_repeats"]:
                    continue  # a 1 GB sample costs seconds: the alternatives get fewer repeats
                if c.name in slow:
                    if r == 0:
                        d = res["contenders"][c.name]["ops"].setdefault(op, {})
                        if op in slow[c.name]:
                            d.update(
                                samples=[slow[c.name][op]],
                                median=slow[c.name][op],
                                calls_per_sample=1,
                                note="one call (the warm-up): over the time budget",
                                peak=warm_peak[c.name][op],
                            )
                        else:
                            d["skipped"] = "over the time budget"
                    continue
                try:
                    k = inner[c.name]["loads" if op in ("loads", "load") else "dumps"]
                    t, peak, size = sample(op, c, obj, paths[c.name], warm_peak[c.name], k)
                except Exception as e:  # noqa: BLE001
                    res["contenders"][c.name]["ops"].setdefault(op, {})["error"] = f"{type(e).__name__}: {e}"
                    spent[c.name] = math.inf
                    log(f"{c.name} {op}: {type(e).__name__}: {e}")
                    continue
                spent[c.name] += t * k
                d = res["contenders"][c.name]["ops"].setdefault(op, {"samples": [], "peak": 0})
                d["samples"].append(t)
                d["calls_per_sample"] = k
                d["peak"] = max(d["peak"], peak)
                if size is not None:
                    d["file_size"] = size
        for c in runnable:
            d = res["contenders"][c.name]["ops"].get(op)
            if d and d.get("samples"):
                d["median"] = statistics.median(d["samples"])
        line = "  ".join(
            f"{c.name} {res['contenders'][c.name]['ops'][op]['median']:.3f}s"
            for c in runnable
            if "median" in res["contenders"][c.name]["ops"].get(op, {})
        )
        log(f"{kind} {OP_LABEL[op]}: {line}")
    for p in paths.values():
        Path(p).unlink(missing_ok=True)
    del obj
    return res


def calls_for(seconds):
    return max(1, min(100, int(0.05 / max(seconds, 1e-6))))


def sample(op, c, obj, path, warm, k=1):
    """Time `k` calls (k > 1 only for calls of a few ms); returns (seconds per call, peak extra bytes,
    file size or None). Loads include a gc.collect(0) after each call."""
    data = None
    if op == "loads":
        data = Path(path).read_bytes()
    elif op == "load":
        evict(path)
        k = 1
    gc.collect()
    need = warm["dumps"] if op in ("dumps", "dump") else warm["loads"]
    pretouch(need * 1.25 + (32 << 20) if need > (8 << 20) else 0)
    before = proc_status()["VmRSS"]
    reset_peak()
    size = out = None
    if op == "dumps":
        t0 = mclock()
        for _ in range(k):
            out = c.dumps(obj)
        t = mclock() - t0
    elif op == "loads":
        t0 = mclock()
        for _ in range(k):
            out = c.loads(data)
            gc.collect(0)
        t = mclock() - t0
    elif op == "dump":
        t0 = clock()
        for _ in range(k):
            with open(path, "wb") as f:
                c.dump(obj, f)
                f.flush()
                os.fsync(f.fileno())
        t = clock() - t0
        size = os.path.getsize(path)
    else:
        t0 = clock()
        with open(path, "rb") as f:
            out = c.load(f)
        gc.collect(0)
        t = clock() - t0
    peak = proc_status()["VmHWM"] - before
    del out, data
    return t / k, peak, size


# ============================================================================================
# Targets, report and chart


def median_of(run, kind, contender, op):
    try:
        return run["data"][kind]["contenders"][contender]["ops"][op]["median"]
    except KeyError:
        return None


def ratio(run, kind, op, contender="brinery", base="pickle"):
    a, b = median_of(run, kind, base, op), median_of(run, kind, contender, op)
    return a / b if a and b else None


def evaluate_targets(run, cfg):
    """Each target of issue 5's requirement 2 for one interpreter: (name, measured, goal, pass)."""
    out = []

    def add(name, value, goal, ok=None, note=""):
        if value is None:
            out.append(
                {"target": name, "value": None, "goal": goal, "pass": None, "note": note or "not measured"}
            )
            return
        out.append(
            {
                "target": name,
                "value": value,
                "goal": goal,
                "pass": (value >= goal) if ok is None else ok,
                "note": note,
            }
        )

    micro = run.get("micro", {})
    ratios = []
    for name in MICRO_NAMES:
        m = micro.get(name)
        if m:
            r = m["contenders"]["pickle"]["median"] / m["contenders"]["brinery"]["median"]
            ratios.append(r)
            add(f"pyperformance {name}", r, TARGETS["micro_each"])
    if len(ratios) == len(MICRO_NAMES):
        add(
            "pyperformance geometric mean",
            math.exp(sum(map(math.log, ratios)) / len(ratios)),
            TARGETS["micro_geomean"],
        )
    sized = {
        "records": cfg["records"] == 1_000_000,
        "dataframe": cfg["rows"] == 1_000_000,
        "array": cfg["array_gb"] == 1.0,
        "forest": cfg["trees"] == 100,
    }

    def note(kind):
        return "" if sized[kind] else "smaller size than the target's"

    if "records" in run.get("data", {}):
        add("records dumps", ratio(run, "records", "dumps"), TARGETS["records_dumps"], note=note("records"))
        add(
            "records dumps (stretch)",
            ratio(run, "records", "dumps"),
            TARGETS["records_dumps_stretch"],
            note=note("records"),
        )
        add(
            "records loads+gc0",
            ratio(run, "records", "loads"),
            TARGETS["records_loads"],
            note=note("records"),
        )
        add(
            "records loads+gc0 (stretch)",
            ratio(run, "records", "loads"),
            TARGETS["records_loads_stretch"],
            note=note("records"),
        )
    for kind in ("dataframe", "forest"):
        if kind in run.get("data", {}):
            add(f"{kind} dumps", ratio(run, kind, "dumps"), TARGETS[kind], note=note(kind))
            add(f"{kind} loads+gc0", ratio(run, kind, "loads"), TARGETS[kind], note=note(kind))
    if "array" in run.get("data", {}):
        arr = run["data"]["array"]
        n = arr.get("nbytes")
        add("array dumps", ratio(run, "array", "dumps"), TARGETS["array_mem"], note=note("array"))
        add("array loads+gc0", ratio(run, "array", "loads"), TARGETS["array_mem"], note=note("array"))
        for op, raw_label in (("dump", "write"), ("load", "read")):
            b, raw = median_of(run, "array", "brinery", op), median_of(run, "array", "disk (raw)", op)
            add(
                f"array {OP_LABEL[op]}: share of raw disk {raw_label} bandwidth",
                raw / b if b and raw else None,
                TARGETS["array_disk"],
                note=(
                    f"disk {n / raw / 1e6:,.0f} MB/s, brinery {n / b / 1e6:,.0f} MB/s" if b and raw else ""
                ),
            )
        for op in ("dump", "load"):
            d = arr["contenders"].get("brinery", {}).get("ops", {}).get(op)
            if d and n:
                # dump: the array is resident anyway (1x) plus whatever the call allocates;
                # load: the call allocates the new array itself.
                used = (n + d["peak"]) if op == "dump" else d["peak"]
                goal = TARGETS["array_peak"]
                add(f"array {OP_LABEL[op]} peak memory / array size", used / n, goal, ok=used / n <= goal)
    return out


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.2f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n} B"


def interp_title(run):
    py = run.get("python", {})
    name = {"pyenv": "pyenv", "debian": "Debian"}.get(run["label"], run["label"])
    return f"{name} Python {py.get('version', '?')} ({run['executable']}; {py.get('build_kind', '?')})"


def render_report(result):
    m = result["machine"]
    lines = ["# brinery Python benchmark", ""]
    lines.append(
        f"Command: `{result['command']}` (started {result['started_utc']} UTC, "
        f"took {result['duration_s'] / 60:.1f} min)."
    )
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, "
        f"kernel {m['kernel']}, virtualization: {m['virtualization']}; files on {m['disk']}."
    )
    if result.get("merged_from"):
        lines.append(
            "Merged from separate runs (`--merge`): "
            + "; ".join(f"`{x}`" for x in result["merged_from"])
            + "."
        )
    if result["brinery"].get("warning"):
        lines.append(f"**{result['brinery']['warning']}**")
    la0, la1 = m.get("loadavg_start"), m.get("loadavg_end")
    if la0 and la1:
        loaded = max(float(la0[0]), float(la1[0])) > 1.5 * (m["cores"] or 1) / 2
        lines.append(
            f"Load average at start {' '.join(la0)}, at end {' '.join(la1)}"
            + (
                ": **the machine was shared with other work during this run; absolute times are noisy, "
                "ratios between interleaved contenders are the meaningful figures.**"
                if loaded
                else "."
            )
        )
    b = result["brinery"]
    lines.append(
        f"brinery measured: {b.get('source')}; branch {b.get('git_branch')} at {b.get('git_head')}; "
        f"native module built {b.get('native_module_mtime_utc', '?')} UTC "
        f"(sha256 {b.get('native_module_sha256', '?')})"
        + (
            "; **the work tree had uncommitted source changes, built into this module**"
            if b.get("uncommitted_source_changes")
            else ""
        )
        + "."
    )
    lines.append(
        "Ratios are stdlib-pickle time / contender time (higher is faster than the stdlib). "
        "Medians over interleaved repeats; loads include a `gc.collect(0)` right after. "
        + (
            "In-memory calls (pyperformance, dumps, loads) are timed by **CPU time** of the process "
            "(`--clock cpu`: user + system time of all its threads, so multi-threaded readers such as "
            "pyarrow's are charged for every thread); file calls by wall-clock."
            if result["config"].get("clock") == "cpu"
            else "All calls are timed by wall-clock."
        )
    )
    summary = render_summary(result)
    if summary:
        lines += ["", "## Targets, both interpreters", "", summary]
    for run in result["runs"]:
        lines += ["", f"## {interp_title(run)}", ""]
        for err in run.get("errors", []):
            lines.append(f"- **{err}**")
        if run.get("errors"):
            lines.append("")
        micro = run.get("micro") or {}
        if micro:
            lines.append(
                "pyperformance `bm_pickle` workloads (protocol 5), time per call as pyperformance reports it:"
            )
            lines.append("")
            lines.append(
                "| workload | pickle (C) | brinery | pure-Python pickle | brinery vs C | identical bytes |"
            )
            lines.append("|---|---:|---:|---:|---:|:-:|")
            ratios = []
            for name in MICRO_NAMES:
                if name not in micro:
                    continue
                c = micro[name]["contenders"]
                r = c["pickle"]["median"] / c["brinery"]["median"]
                ratios.append(r)
                lines.append(
                    f"| {name} | {fmt_time(c['pickle']['median'])} | {fmt_time(c['brinery']['median'])} "
                    f"| {fmt_time(c.get('pickle (pure Python)', {}).get('median'))} | **{r:.2f}x** | "
                    f"{'yes' if micro[name]['byte_identical'] else 'NO'} |"
                )
            if ratios:
                g = math.exp(sum(map(math.log, ratios)) / len(ratios))
                lines.append(f"| geometric mean | | | | **{g:.2f}x** | |")
            lines.append("")
        for kind in DATA_NAMES:
            d = (run.get("data") or {}).get(kind)
            if not d:
                continue
            ops = [op for op in OPS if any(op in c.get("ops", {}) for c in d["contenders"].values())]
            lines.append(
                f"{d['description']}"
                + (
                    f" (brinery's bytes identical to pickle's: {'yes' if d['byte_identical'] else 'NO'})"
                    if "byte_identical" in d
                    else ""
                )
                + ":"
            )
            lines.append("")
            lines.append(
                "| contender | size | "
                + " | ".join(OP_LABEL[op] for op in ops)
                + " | peak memory (dumps / loads) |"
            )
            lines.append("|---|---:|" + "---:|" * len(ops) + "---:|")
            for name, c in d["contenders"].items():
                if "error" in c:
                    lines.append(
                        f"| {name} | " + " | ".join(["-"] * (len(ops) + 1)) + f" | {c['error'][:60]} |"
                    )
                    continue
                cells = []
                for op in ops:
                    o = c["ops"].get(op, {})
                    if "median" not in o:
                        cells.append(
                            o.get("error", "skipped (slow)" if "skipped" in o else "-")[:40] if o else "-"
                        )
                        continue
                    base = median_of(run, kind, "pickle", op)
                    if name == RawDisk.name:
                        cells.append(f"{fmt_time(o['median'])} ({d['nbytes'] / o['median'] / 1e6:,.0f} MB/s)")
                        continue
                    rr = f" ({base / o['median']:.2f}x)" if base and name != "pickle" else ""
                    if name == "brinery":
                        rr = f" **({base / o['median']:.2f}x)**" if base else ""
                    cells.append(f"{fmt_time(o['median'])}{rr}")
                size = c.get("size") or c["ops"].get("dump", {}).get("file_size")
                peaks = " / ".join(
                    fmt_bytes(c["ops"][op]["peak"]) if op in c["ops"] and "peak" in c["ops"][op] else "-"
                    for op in ("dumps", "loads")
                )
                rt = "" if c.get("roundtrip", "exact") == "exact" else f" ({c['roundtrip']})"
                lines.append(f"| {name}{rt} | {fmt_bytes(size)} | " + " | ".join(cells) + f" | {peaks} |")
            lines.append("")
        targets = run.get("targets") or []
        if targets:
            lines.append("Targets (issue 5, requirement 2):")
            lines.append("")
            lines.append("| target | measured | goal | result |")
            lines.append("|---|---:|---:|:-:|")
            for t in targets:
                is_peak = "peak" in t["target"]
                v = "-" if t["value"] is None else (f"{t['value']:.2f}x")
                goal = f"≤ {t['goal']:.2f}x" if is_peak else f"≥ {t['goal']:.2f}x"
                res = {True: "PASS", False: "**FAIL**", None: "n/a"}[t["pass"]]
                note = f" ({t['note']})" if t["note"] else ""
                lines.append(f"| {t['target']}{note} | {v} | {goal} | {res} |")
            lines.append("")
        slower = regressions(run)
        if not (run.get("micro") or run.get("data")):
            pass
        elif slower:
            lines.append(
                "**REGRESSION WARNING: brinery is slower than the stdlib pickle on:** "
                + ", ".join(f"{w} ({r:.2f}x)" for w, r in slower)
            )
        else:
            lines.append(
                "Regression check: brinery is at least as fast as the stdlib pickle on every workload."
            )
    return "\n".join(lines)


def render_summary(result):
    """One table of every target across the interpreters (the README's table)."""
    runs = [r for r in result["runs"] if r.get("targets")]
    if not runs:
        return ""
    head = (
        "| target (stdlib time / brinery time) | goal | "
        + " | ".join(interp_title(r).split(" (")[0] for r in runs)
        + " |"
    )
    lines = [head, "|---|---:|" + "---:|" * len(runs)]
    names = []
    for r in runs:
        for t in r["targets"]:
            if t["target"] not in names:
                names.append(t["target"])
    for name in names:
        cells, goal = [], ""
        for r in runs:
            t = next((t for t in r["targets"] if t["target"] == name), None)
            if not t or t["value"] is None:
                cells.append("-")
                continue
            goal = ("≤ " if "peak" in name else "≥ ") + f"{t['goal']:g}x"
            mark = "" if t["pass"] else " ✗"
            cells.append(f"{t['value']:.2f}x{mark}")
        lines.append(f"| {name} | {goal} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("✗: target not met.")
    return "\n".join(lines)


def regressions(run):
    out = []
    for name, m in (run.get("micro") or {}).items():
        r = m["contenders"]["pickle"]["median"] / m["contenders"]["brinery"]["median"]
        if r < 1:
            out.append((name, r))
    for kind in run.get("data") or {}:
        for op in OPS:
            r = ratio(run, kind, op)
            if r is not None and r < 1:
                out.append((f"{kind} {OP_LABEL[op]}", r))
    return out


def make_chart(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []  # (label, key) in display order
    for name in MICRO_NAMES:
        rows.append((f"pyperf {name}", ("micro", name, None)))
    for kind in DATA_NAMES:
        for op in OPS:
            rows.append((f"{kind} {OP_LABEL[op]}", ("data", kind, op)))
    runs = [r for r in result["runs"] if r.get("micro") or r.get("data")]

    def value(run, key):
        group, name, op = key
        if group == "micro":
            m = (run.get("micro") or {}).get(name)
            return m["contenders"]["pickle"]["median"] / m["contenders"]["brinery"]["median"] if m else None
        return ratio(run, name, op)

    rows = [r for r in rows if any(value(run, r[1]) for run in runs)]
    goal = {}
    for label, (group, name, op) in rows:
        if group == "micro":
            goal[label] = TARGETS["micro_each"]
        elif name == "records" and op in ("dumps", "loads"):
            goal[label] = TARGETS[f"records_{op}"]
        elif name in ("dataframe", "forest") and op in ("dumps", "loads"):
            goal[label] = TARGETS[name]
        elif name == "array" and op in ("dumps", "loads"):
            goal[label] = TARGETS["array_mem"]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.8))
    height = 0.8 / max(1, len(runs))
    colors = ["#3b75af", "#ef8636", "#519e3e"]
    for i, run in enumerate(runs):
        ys = [j + i * height for j in range(len(rows))]
        vals = [value(run, key) or 0 for _, key in rows]
        ax.barh(ys, vals, height=height, color=colors[i % 3], label=interp_title(run).split(" (")[0])
        for y, v in zip(ys, vals, strict=True):
            if v:
                ax.text(v * 1.02, y, f"{v:.2f}x", va="center", fontsize=7)
    for j, (label, _) in enumerate(rows):
        if label in goal:
            ax.plot([goal[label]] * 2, [j - 0.1, j + 0.8 - 0.1], color="black", lw=1.5)
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [0.05, 0.1, 0.2, 0.5, 1, 1.5, 2, 3, 5, 10, 20]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(rows))])
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over the stdlib C pickle (pickle time / brinery time; black marks: targets)")
    m = result["machine"]
    ax.set_title(
        f"brinery vs stdlib pickle — {m['cpu']}, {m['cores']} cores, {result['started_utc'][:10]}", fontsize=9
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
