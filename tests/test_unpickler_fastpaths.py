"""Semantics the unpickler's fast paths must keep: the cyclic GC restored exactly as found, no
string sharing that the stdlib would not produce, large payloads intact."""

import gc
import io
import pickle

import brinery
import numpy as np
import pytest


class Recorder(brinery.Unpickler):
    """Records gc.isenabled() while find_class runs, and loads a nested pickle there."""

    def find_class(self, module, name):
        self.seen = gc.isenabled()
        self.nested = brinery.loads(pickle.dumps({"nested": [1, 2]}))
        return super().find_class(module, name)


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_restored_as_found(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        data = pickle.dumps([{"a": [1]}, (2, 3)], 5)
        assert brinery.loads(data) == pickle.loads(data)
        assert gc.isenabled() is enabled
        with pytest.raises(pickle.UnpicklingError):
            brinery.loads(data[:-3] + b"\x00.")
        assert gc.isenabled() is enabled
        u = Recorder(io.BytesIO(pickle.dumps(io.StringIO, 5)))
        assert u.load() is io.StringIO
        assert u.seen is False  # paused during the load
        assert u.nested == {"nested": [1, 2]}  # a nested load leaves it paused
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def enabling(base):
    """An Unpickler of `base` whose find_class turns the cyclic GC on, as application code may."""

    class Enabler(base):
        def find_class(self, module, name):
            gc.enable()
            return super().find_class(module, name)

    return Enabler


def test_gc_enable_by_a_callback_stays():
    # Started with the collector off, a load whose callback turns it on leaves it on, as
    # `_pickle` does (restoring "as found" must not undo the callback's choice).
    was = gc.isenabled()
    try:
        data = pickle.dumps([io.StringIO, 1], 5)
        for unpickler in (enabling(brinery.Unpickler), enabling(pickle.Unpickler)):
            gc.disable()
            assert unpickler(io.BytesIO(data)).load() == [io.StringIO, 1]
            assert gc.isenabled() is True, unpickler
    finally:
        gc.enable() if was else gc.disable()


def test_equal_strings_stay_distinct_objects():
    # Two equal strings that are distinct objects are pickled twice (not memoized); the stdlib
    # loads two objects, and so must brinery, even when a recycled string is available.
    parts = ["key_" + str(i) for i in (1, 1)]
    assert parts[0] is not parts[1]
    data = pickle.dumps(parts, 5)
    for _ in range(3):
        a, b = brinery.loads(data)
        assert a == b == "key_1"
        assert a is not b
        ref = pickle.loads(data)
        assert pickle.dumps([a, b], 5) == pickle.dumps(ref, 5)
    kept = brinery.loads(data)
    again = brinery.loads(data)
    assert kept[0] is not again[0] and kept[1] is not again[1]


@pytest.mark.parametrize("protocol", range(6))
def test_one_byte_payloads_are_distinct_objects_as_in_the_stdlib(protocol):
    # CPython caches one-byte `bytes`; `_pickle` allocates BINBYTES payloads itself, so two
    # one-byte payloads pickled separately load as two objects, and dump again as two (found
    # by the hypothesis round-trip test on a fresh clone)
    a, b = bytes([0xC2]), bytes(bytearray([0xC2]))
    data = pickle.dumps([a, b, a, b"", b"xy"], protocol)
    ref = pickle.loads(data)
    for got in (brinery.loads(data), brinery.load(io.BytesIO(data))):
        assert got == ref
        assert [got[0] is got[1], got[0] is got[2]] == [ref[0] is ref[1], ref[0] is ref[2]]
        assert pickle.dumps(got, 5) == pickle.dumps(ref, 5)


@pytest.mark.parametrize(
    "text", ["ab", "abc", "abcd", "abcdefg", "abcdefgh", "x" * 17, "y" * 32, "z" * 33, "caf\u00e9", "a\udcff"]
)
def test_short_strings(text):
    data = pickle.dumps([text, text + "", {text: text[::-1]}], 5)
    assert brinery.loads(data) == pickle.loads(data)


@pytest.mark.parametrize("protocol", [4, 5])
def test_large_payloads_memory_and_file(tmp_path, protocol):
    arr = np.arange(2 << 20, dtype=np.float64)  # 16 MiB: the populated-payload path
    blob = bytes(range(256)) * (40 << 10)  # 10 MiB bytes (BINBYTES8 at protocol 4+)
    data = pickle.dumps((arr, blob, bytearray(blob)), protocol)
    got = brinery.loads(data)
    assert np.array_equal(got[0], arr) and got[1] == blob and got[2] == bytearray(blob)
    path = tmp_path / "big.pkl"
    path.write_bytes(data + pickle.dumps("after", protocol))
    with open(path, "rb") as f:
        got = brinery.load(f)
        assert np.array_equal(got[0], arr) and got[1] == blob and got[2] == bytearray(blob)
        assert brinery.load(f) == "after"
    with open(path, "rb", buffering=0) as f:  # no peek: field by field, payloads via readinto
        got = brinery.load(f)
        assert type(got[1]) is bytes and got[1] == blob and type(got[2]) is bytearray


def test_unique_then_repeated_strings():
    # A long run of strings that never repeat turns the string recycler off for a while; strings
    # loaded then, and those of the next loads (recycler on again), are equal and distinct as
    # the stdlib's.
    unique = [f"item-{i:07d}" for i in range(20_000)]
    repeated = [["alpha", "beta", "gamma"][i % 3] + "_k" for i in range(3_000)]
    for obj in (unique + repeated, repeated, unique[:100] + repeated):
        data = pickle.dumps(obj, 5)
        for _ in range(2):
            got = brinery.loads(data)
            assert got == obj
            assert len({id(s) for s in got}) == len(got)
            assert pickle.dumps(got, 5) == data


def test_small_ints_are_the_interpreters_own():
    # BININT1 (0..255) loads CPython's cached small ints, as the stdlib does.
    values = list(range(256)) * 2
    data = pickle.dumps(values, 5)
    for _ in range(2):
        got = brinery.loads(data)
        assert got == values
        assert all(a is b for a, b in zip(got, pickle.loads(data), strict=True))
        assert got[200] is int("200")


def test_each_load_starts_with_an_empty_memo():
    # Loads reuse their memo's and marks' storage between calls: nothing of a previous load,
    # failed half-way or not, may be found by the next one.
    truncated = b"\x80\x04(\x8c\x06secret\x94(\x8c\x01x\x94"
    with pytest.raises(EOFError):
        pickle.loads(truncated)
    with pytest.raises(EOFError):
        brinery.loads(truncated)
    with pytest.raises(pickle.UnpicklingError, match="Memo value not found at index 0"):
        brinery.loads(b"\x80\x04h\x00.")
    brinery.loads(pickle.dumps(["kept", "kept"], 5))
    with pytest.raises(pickle.UnpicklingError, match="Memo value not found at index 1"):
        brinery.loads(b"\x80\x04]\x94h\x01.")
    # A MARK left open by a failed load does not close a list in the next one.
    with pytest.raises(EOFError):
        brinery.loads(b"\x80\x04((((")
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(b"\x80\x04K\x01e.")
    with pytest.raises(pickle.UnpicklingError):
        brinery.loads(b"\x80\x04K\x01e.")
    assert brinery.loads(b"\x80\x04](K\x01K\x02e.") == [1, 2]


class Reloader:
    """Its state is a pickle, loaded (with a memo of its own) while the outer load runs."""

    def __init__(self, inner):
        self.inner = inner

    def __reduce__(self):
        return (Reloader, (None,), pickle.dumps(self.inner, 5))

    def __setstate__(self, state):
        self.inner = brinery.loads(state)


def test_nested_loads_keep_their_own_memos():
    shared = ["shared"]
    inner = {"a": ["x"] * 3, "b": (1, 2)}
    outer = [shared, Reloader(inner), shared, [Reloader(inner), shared]]
    out = brinery.loads(pickle.dumps(outer, 5))
    assert out[0] is out[2] is out[3][1]
    assert out[1].inner == inner == out[3][0].inner
    assert out[1].inner["a"][0] is out[1].inner["a"][2]


def fixed_width_column(n, width=8):
    """A column of `n` distinct strings of one width, every 97th repeated (a BINGET back)."""
    base = [f"{i:0{width}d}" for i in range(n)]
    return [base[i - 1] if i % 97 == 0 and i else s for i, s in enumerate(base)]


@pytest.mark.parametrize("n", [50, 20_000])  # under and over the memo filter's 64 KiB
def test_runs_of_same_length_strings(n):
    # The loader takes runs of memoized strings of one length (a column of fixed-width labels)
    # in a loop of their own. It must leave everything as the stdlib does: every memo index
    # (the repeats are BINGETs back into the run), a run ended by another length, by a
    # non-ASCII text of the same length, by a string the pickler did not memoize (optimized
    # away), by the end of a frame, and the memo an Unpickler exposes.
    col = fixed_width_column(n)
    col[n // 2] = "é" * 4  # 8 bytes of UTF-8: same length, not ASCII
    col[n // 3] = "x" * 9  # another length
    obj = [col, col[: n // 4], "tail", col[1::97]]
    for proto in (2, 4, 5):
        data = pickle.dumps(obj, proto)
        assert brinery.dumps(obj, proto) == data
        for stream in (data, pickletools_optimize(data)):
            expected = pickle.loads(stream)
            out = brinery.loads(stream)
            assert out == expected
            ids = {id(s) for s in out[0]}
            assert all(id(s) in ids for s in out[1] + out[3])  # shared, not copied
            u, ref = brinery.Unpickler(io.BytesIO(stream)), pickle.Unpickler(io.BytesIO(stream))
            assert u.load() == ref.load()
            assert u.memo.copy() == ref.memo.copy()
            assert brinery.safe_loads(stream) == expected


def pickletools_optimize(data):
    import pickletools

    return pickletools.optimize(data)
