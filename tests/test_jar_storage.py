"""What the jar stores and how it gives it back: dedup of unchanged parts between versions,
memory-mapped loading of large arrays, and corruption detection (jar.verify and `brinery jar
verify`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from brinery import Jar
from jar_support import disk_usage, jar_env_vars, run_cli


def test_a_changed_column_adds_less_than_half(jar_env: Path) -> None:
    path = jar_env / "jar"
    jar = Jar(path)
    rng = np.random.default_rng(11)
    df = pd.DataFrame(rng.random((100_000, 40)), columns=[f"f{i}" for i in range(40)])  # 32 MB
    df.insert(0, "id", np.arange(100_000))
    jar.save("wide", df)
    first = disk_usage(path)
    assert first > 25_000_000  # random floats do not compress: the version is stored in full
    changed = df.copy()
    changed["f17"] = changed["f17"] * 1.5 + 1  # the way a notebook changes a column
    jar.save("wide", changed)
    added = disk_usage(path) - first
    print(f"first version {first:,} bytes on disk, second adds {added:,}")
    assert added < first / 2
    assert jar.log("wide")[1].stored < first / 2
    pd.testing.assert_frame_equal(jar.load("wide", 1), df)
    pd.testing.assert_frame_equal(jar.load("wide"), changed)
    assert not changed._mgr.is_consolidated()  # the save consolidated a copy, not the caller's frame


MMAP_PROBE = """
import json, sys
import numpy as np
from brinery import Jar

def counters():
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    rss = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
    return int(io["rchar"]), rss

jar = Jar(sys.argv[1])
jar.load("small")  # warm up: imports and the store are ready before measuring
read0, rss0 = counters()
arr = jar.load("big")
read1, rss1 = counters()
chain, base = [], arr
while base is not None and len(chain) < 12:
    chain.append(type(base).__name__)
    base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
total = float(arr.sum())
read2, rss2 = counters()
print(json.dumps({
    "read_on_load": read1 - read0, "rss_on_load": rss1 - rss0, "rss_after_sum": rss2 - rss1,
    "read_on_sum": read2 - read1, "writeable": bool(arr.flags.writeable),
    "owndata": bool(arr.flags.owndata), "chain": chain, "sum": total, "shape": list(arr.shape),
}))
"""


def test_large_array_loads_memory_mapped(jar_env: Path) -> None:
    path = jar_env / "jar"
    jar = Jar(path)
    big = np.random.default_rng(5).random(8_000_000)  # 64 MB
    size = big.nbytes
    jar.save("big", big)
    jar.save("small", {"x": np.arange(10)})
    proc = subprocess.run(
        [sys.executable, "-c", MMAP_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=jar_env_vars(jar_env),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout)
    print(probe)
    assert probe["shape"] == [8_000_000] and probe["sum"] == float(big.sum())
    assert probe["writeable"] and not probe["owndata"]  # writable: private copy-on-write pages
    assert "memoryview" in probe["chain"] and probe["chain"][-1] not in ("bytes", "bytearray")
    # loading neither read the file nor brought its pages into memory ...
    assert probe["read_on_load"] < size / 16
    assert probe["rss_on_load"] < size / 8
    # ... using the array did, through the mapping (page faults, not read calls)
    assert probe["rss_after_sum"] > size / 2
    assert probe["read_on_sum"] < size / 16


def test_verify_names_the_versions_a_damaged_chunk_affects(jar_env: Path) -> None:
    path = jar_env / "jar"
    jar = Jar(path)
    jar.save("weights", np.random.default_rng(8).random(1_000_000))  # 8 MB of raw chunks
    jar.save("config", {"lr": 0.1})
    assert jar.verify().ok
    env = jar_env_vars(jar_env)
    clean = run_cli("jar", "--jar", str(path), "verify", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    victim = max((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    report = jar.verify()
    assert not report.ok and not report
    affected = [v for p in report.problems for v in p["versions"]]
    assert "main:weights@1" in affected and not any("config" in v for v in affected)
    assert "weights@1" in str(report)
    damaged = run_cli("jar", "--jar", str(path), "verify", env=env)
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert "weights@1" in damaged.stdout + damaged.stderr
    assert jar.load("config") == {"lr": 0.1}  # what the damage does not reach still loads
