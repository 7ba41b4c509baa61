"""Save and load a large float64 array through the jar store, next to a plain write+fsync of the
same bytes (what "disk speed" means on this machine). Measures; asserts nothing.

    .venv/bin/python bench/jar_big_array.py [--gib 1] [--dir target]
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time

import brinery._native as native
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--dir", default="target")
    args = ap.parse_args()
    d = tempfile.mkdtemp(dir=args.dir)
    os.environ.setdefault("BRINERY_KEY_FILE", os.path.join(d, "key"))
    store = native.JarStore(os.path.join(d, ".brinery"))
    a = np.random.default_rng(0).random(int(args.gib * (1 << 27)))
    bufs: list[pickle.PickleBuffer] = []
    data = pickle.dumps(a, protocol=5, buffer_callback=bufs.append)
    raw = [b.raw() for b in bufs]

    t = time.perf_counter()
    with open(os.path.join(d, "plain.bin"), "wb") as f:
        f.write(a.data)
        f.flush()
        os.fsync(f.fileno())
    plain = time.perf_counter() - t

    t = time.perf_counter()
    store.save("main", "a", data, raw)
    save = time.perf_counter() - t

    t = time.perf_counter()
    p, views, _ = store.load("main", "a")
    b = pickle.loads(p, buffers=views)
    load = time.perf_counter() - t
    assert b.shape == a.shape

    t = time.perf_counter()
    store.save("main", "a", data, raw)
    resave = time.perf_counter() - t

    t = time.perf_counter()
    ok = store.verify()["ok"]
    verify = time.perf_counter() - t
    print(f"{a.nbytes / 2**30:.2f} GiB float64")
    print(f"plain write+fsync  {plain:7.2f} s")
    print(f"jar save           {save:7.2f} s")
    print(f"jar save unchanged {resave:7.2f} s  (everything deduplicated)")
    print(f"jar load (mmap)    {load * 1000:7.1f} ms")
    print(f"jar verify         {verify:7.2f} s  ok={ok}")


if __name__ == "__main__":
    main()
