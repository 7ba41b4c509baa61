"""Crash safety and concurrency of the jar, with real processes.

- SIGKILL at random moments during saves of large objects (many rounds): after each kill every
  earlier version still loads intact, the jar verifies clean, and a new save works.
- Several processes saving at once, two or more of them to the same name, while another process
  keeps loading it: every save lands in the history (no lost update) and no reader ever sees a
  partial object.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from brinery import Jar
from jar_support import jar_env_vars, run_cli

# A saved object that says which save made it, and can be checked for integrity after loading.
MAKE = '''
import numpy as np
import pandas as pd

def make(seed, rows=100_000):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(8)})
    frame["label"] = np.repeat(np.arange(rows // 1000), 1000).astype("int64") + seed
    return {"seed": seed, "frame": frame, "weights": rng.random(400_000)}

def check(obj):
    """The object is exactly what make(obj["seed"]) built (raises AssertionError if not)."""
    want = make(obj["seed"])
    pd.testing.assert_frame_equal(obj["frame"], want["frame"])
    np.testing.assert_array_equal(obj["weights"], want["weights"])
'''

SAVER = """
import sys
sys.path.insert(0, sys.argv[2])
from jarobj import make
from brinery import Jar
jar = Jar(sys.argv[1])
first = int(sys.argv[3])
for seed in range(first, first + 50):
    obj = make(seed)
    print("start", seed, flush=True)
    jar.save("big", obj, note=f"seed {seed}")
    print("done", seed, flush=True)
"""


def _module(tmp: Path) -> Path:
    code = tmp / "code"
    code.mkdir(exist_ok=True)
    (code / "jarobj.py").write_text(MAKE)
    sys.path.insert(0, str(code))
    return code


def test_sigkill_during_saves_never_damages_earlier_versions(jar_env: Path) -> None:
    code = _module(jar_env)
    try:
        from jarobj import check, make  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("jarobj", None)
    path = jar_env / "jar"
    jar = Jar(path)
    jar.save("big", make(0), note="seed 0")
    env = jar_env_vars(jar_env)
    rng = random.Random(int(os.environ.get("BRINERY_TEST_SEED", "6")))
    save_seconds = 0.5  # replaced by the measured length of a save after the first round
    landed = {0}
    rounds = 10
    killed_mid_save = 0
    for round_ in range(rounds):
        first = 1000 * (round_ + 1)
        child = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), str(code), str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        lines = [child.stdout.readline()]
        assert lines[0].split() == ["start", str(first)], child.stderr.read() if child.stderr else ""
        if round_ == 0:  # let one save finish to learn how long a save takes on this machine
            began = time.monotonic()
            lines.append(child.stdout.readline())
            save_seconds = max(time.monotonic() - began, 0.05)
            lines.append(child.stdout.readline())
        time.sleep(rng.uniform(0, 1.3 * save_seconds))
        child.send_signal(signal.SIGKILL)
        out, _err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        lines += out.splitlines()
        words = [w.split() for w in lines if w.strip()]
        done = {int(seed) for what, seed in words if what == "done"}
        killed = int(words[-1][1]) if words[-1][0] == "start" else None
        landed |= done
        killed_mid_save += killed is not None

        # every version in the history loads intact; the first one is still seed 0
        log = jar.log("big")
        seeds = [int(v.note.split()[1]) for v in log if not v.deleted]
        assert set(seeds) - landed <= {killed}  # at most the killed save, if it had committed
        landed.update(seeds)
        obj = jar.load("big")
        check(obj)
        assert obj["seed"] == seeds[-1]
        first_obj = jar.load("big", 1)
        check(first_obj)
        assert first_obj["seed"] == 0
        # and a new save works right after the kill
        marker = {"round": round_, "values": np.arange(round_ + 3)}
        version = jar.save("after", marker)
        assert version == round_ + 1
        again = jar.load("after")
        assert again["round"] == round_ and list(again["values"]) == list(range(round_ + 3))
    print(f"{killed_mid_save} of {rounds} kills landed inside a save")
    assert killed_mid_save >= rounds // 3  # the kills really landed inside saves
    for v in jar.log("big"):  # the whole history, once more, at the end
        check(jar.load("big", v.version))
    report = jar.verify()
    assert report.ok, str(report)
    proc = run_cli("jar", "--jar", str(path), "verify", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from brinery import Jar
path, who, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
jar = Jar(path)
while not go.exists():
    time.sleep(0.005)
for k in range(count):
    obj = {"who": who, "k": k, "data": np.full(300_000, who * 1000 + k, dtype=np.int64)}
    jar.save("shared", obj, note=f"{who}/{k}")
    jar.save(f"own{who}", obj)
print("ok", flush=True)
"""

READER = """
import json, sys, time
from pathlib import Path
import numpy as np
from brinery import Jar
path, go, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
jar = Jar(path)
while not go.exists():
    time.sleep(0.005)
loads = 0
seen = set()
while not stop.exists() or loads == 0:
    obj = jar.load("shared")
    expected = np.full(300_000, obj["who"] * 1000 + obj["k"], dtype=np.int64)
    assert np.array_equal(obj["data"], expected), (obj["who"], obj["k"])
    seen.add((obj["who"], obj["k"]))
    loads += 1
print(json.dumps({"loads": loads, "distinct": len(seen)}), flush=True)
"""


def test_concurrent_savers_lose_no_update(jar_env: Path) -> None:
    path = jar_env / "jar"
    jar = Jar(path)
    jar.save("shared", {"who": -1, "k": 0, "data": np.full(300_000, -1000, dtype=np.int64)}, note="-1/0")
    env = jar_env_vars(jar_env)
    go, stop = jar_env / "go", jar_env / "stop"
    writers, count = 4, 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(who), str(count), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for who in range(writers)
    ]
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(go), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "ok", err[-3000:]
    stop.touch()
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err[-3000:]
    stats = json.loads(out)
    assert stats["loads"] >= 1

    log = jar.log("shared")
    assert [v.version for v in log] == list(range(1, writers * count + 2))
    notes = [v.note for v in log]
    assert notes[0] == "-1/0"
    assert sorted(notes[1:]) == sorted(f"{w}/{k}" for w in range(writers) for k in range(count))
    for w in range(writers):  # each writer's own saves land in its order
        mine = [n for n in notes if n.startswith(f"{w}/")]
        assert mine == [f"{w}/{k}" for k in range(count)]
        assert [v.version for v in jar.log(f"own{w}")] == list(range(1, count + 1))
    for v in log:
        obj = jar.load("shared", v.version)
        assert f"{obj['who']}/{obj['k']}" == v.note
        assert np.array_equal(obj["data"], np.full(300_000, obj["who"] * 1000 + obj["k"], dtype=np.int64))
    assert jar.verify().ok
