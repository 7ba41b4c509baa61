"""The jar store binding (``brinery._native.JarStore``): zero-copy buffers, their lifetime, copies,
errors, and the GIL released while the store works."""

from __future__ import annotations

import gc
import pickle
import threading
import time
from pathlib import Path

import brinery._native as native
import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> native.JarStore:
    monkeypatch.setenv("BRINERY_KEY_FILE", str(tmp_path / "key"))
    return native.JarStore(tmp_path / ".brinery")


def save(store: native.JarStore, name: str, obj: object, **kw: object) -> dict:
    bufs: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    return store.save("main", name, data, [b.raw() for b in bufs], **kw)


def test_large_buffers_load_as_mapped_copy_on_write_memory(store: native.JarStore) -> None:
    a = np.random.default_rng(0).random((1000, 400))  # 3.2 MB: four mapped chunks
    info = save(store, "a", a, meta={"type": "numpy.ndarray", "shape": [1000, 400]}, note="n")
    assert info["version"] == 1 and info["note"] == "n" and info["buffers"] == [a.nbytes]
    assert info["signature"] == "trusted" and info["key_id"] == native.JarStore.key_id()
    assert "numpy.dtype" in info["globals"]
    data, bufs, meta = store.load("main", "a")
    assert meta["meta"] == {"type": "numpy.ndarray", "shape": [1000, 400]}
    (view,) = bufs
    assert not view.readonly and type(view.obj).__name__ == "MappedRegion"
    b = pickle.loads(data, buffers=bufs)
    assert np.array_equal(a, b) and b.flags.writeable and not b.flags.owndata
    # a write lands in a private page of this load only: the chunk files, and so the next
    # load, are unchanged
    b[0, 0] = 1.0
    memoryview(view.obj)[-1:] = b"x"
    data2, bufs2, _ = store.load("main", "a")
    assert np.array_equal(pickle.loads(data2, buffers=bufs2), a)
    assert store.verify()["ok"]
    # The mapping lives as long as anything uses it, not as long as the store.
    del store, data, bufs, view, meta, data2, bufs2
    gc.collect()
    assert b[0, 0] == 1.0
    # (the memoryview write above changed the last byte of b's memory: compare the rest)
    assert float(b.ravel()[1:-1].sum()) == pytest.approx(float(a.ravel()[1:-1].sum()))


def test_copy_gives_writable_memory(store: native.JarStore) -> None:
    df = pd.DataFrame({f"c{i}": np.arange(200_000, dtype=np.float64) * i for i in range(8)})
    save(store, "df", df)
    data, bufs, _ = store.load("main", "df", copy=True)
    assert all(not v.readonly and isinstance(v.obj, bytearray) for v in bufs)
    got = pickle.loads(data, buffers=bufs)
    pd.testing.assert_frame_equal(got, df)
    got.iloc[0, 0] = 42.0
    assert got.iloc[0, 0] == 42.0


def test_zero_arrays_are_compressed_and_still_load(store: native.JarStore) -> None:
    z = np.zeros(3 << 20, dtype=np.uint8)
    info = save(store, "z", z)
    assert info["stored"] < z.nbytes // 10
    data, bufs, _ = store.load("main", "z")
    assert np.array_equal(pickle.loads(data, buffers=bufs), z)


def test_errors(store: native.JarStore, tmp_path: Path) -> None:
    save(store, "x", [1, 2])
    with pytest.raises(KeyError, match='no object named "y" on branch "main"'):
        store.load("main", "y")
    with pytest.raises(KeyError, match=r'"x" has no version 5 on branch "main" \(it has 1\)'):
        store.load("main", "x", 5)
    with pytest.raises(KeyError, match='branch "b" does not exist'):
        store.names("b")
    with pytest.raises(native.JarError, match='invalid name "a@b"'):
        store.save("main", "a@b", pickle.dumps(1))
    with pytest.raises(native.JarError, match="out-of-band buffers but 0 were given"):
        bufs: list[pickle.PickleBuffer] = []
        data = pickle.dumps(np.arange(10), protocol=5, buffer_callback=bufs.append)
        store.save("main", "x", data, [])
    with pytest.raises(TypeError, match="version must be an int, a tag"):
        store.load("main", "x", 1.5)  # type: ignore[arg-type]
    with pytest.raises(native.JarError, match="not a jar"):
        native.JarStore(tmp_path / "nothing", create=False)


def test_the_gil_is_released_while_saving(store: native.JarStore) -> None:
    big = np.random.default_rng(1).random(8 << 20)  # 64 MB
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    before = ticks
    try:
        save(store, "big", big)
        during = ticks - before
    finally:
        done.set()
        t.join()
    # The counting thread ran while the store hashed and wrote (it could not if the GIL were held).
    assert during > 0


def test_log_branches_tags_export(store: native.JarStore, tmp_path: Path) -> None:
    a = np.arange(300_000, dtype=np.int64)
    save(store, "a", a)
    save(store, "a", a + 1)
    store.tag("main", "a", 1, "first")
    store.create_branch("exp", "main")
    save(store, "a", a + 2)
    assert [v["version"] for v in store.log("main", "a")] == [1, 2, 3]
    assert [v["version"] for v in store.log("exp", "a")] == [1, 2]
    assert store.log("main", "a")[0]["tags"] == ["first"]
    assert store.branches() == ["exp", "main"]
    out = tmp_path / "a.pkl"
    store.export_pickle("main", "a", "first", out)
    with open(out, "rb") as f:
        assert np.array_equal(pickle.load(f), a)
    store.import_pickle("exp", "imported", out, note="from file")
    assert store.contains("exp", "imported") and not store.contains("main", "imported")
    store.delete("main", "a")
    assert store.names("main") == []
    report = store.gc()
    assert set(report) == {"chunks", "manifests", "entries", "temporary", "bytes"}
    v = store.verify()
    assert v["ok"] and v["problems"] == []
    assert native.JarStore.find(tmp_path) == str(tmp_path / ".brinery")
