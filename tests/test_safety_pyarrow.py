"""Safe loads of pandas data backed by pyarrow (pandas 3's default ``str`` dtype, ``ArrowDtype``).

pyarrow is not in the test venv (it changes pandas' behaviour for the whole suite): setup.sh
installs it into ``target/pyarrow-site`` and every check here runs in a subprocess with that
directory on ``PYTHONPATH``, which also keeps a crash (a crafted Arrow array read out of bounds)
from taking pytest down: a refusal must be a clean ``UnsafePickleError``.

- real arrow-backed frames, series and indexes at protocols 2, 4 and 5 scan clean and
  ``safe_loads`` equal ``pickle.loads``;
- ``pyarrow.lib._restore_array`` given offsets past its data buffer scans clean (the scan cannot
  validate buffers) but is refused by the load-time guard, naming the call and its byte offset,
  before anything uses the array; a nested type without its children is refused before the call
  (pyarrow would abort the process);
- ``type_for_alias`` with a non-constant or odd argument, ``py_buffer`` with other than bytes, and
  ``_restore_array`` with a type that no pyarrow type helper made are refused by the scan (pyarrow
  never imported) and by the native ``Unpickler(policy=...)`` alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "target" / "pyarrow-site"

pytestmark = pytest.mark.skipif(
    not (SITE / "pyarrow").is_dir(),
    reason=f"pyarrow is not installed in {SITE} (scripts/setup.sh installs it there)",
)

PRELUDE = textwrap.dedent(
    """
    import builtins, io, pickle, sys
    import brinery

    PANDAS = ["stdlib-data", "numpy", "pandas"]

    class R:
        # pickles as f(*args)
        def __init__(self, f, *args):
            self.f, self.args = f, args
        def __reduce__(self):
            return self.f, self.args

    def refused(data, allow=(), native=True):
        # safe_loads refuses; returns the first finding
        try:
            brinery.safe_loads(data, allow=list(allow))
        except brinery.UnsafePickleError as e:
            finding = e.findings[0]
        else:
            raise AssertionError("safe_loads accepted it")
        if native:
            pol = brinery.Policy(PANDAS, allow=list(allow))
            try:
                brinery.Unpickler(io.BytesIO(data), policy=pol).load()
            except brinery.UnsafePickleError:
                pass
            else:
                raise AssertionError("the native Unpickler(policy=) accepted it")
        return finding
    """
)


# Building Arrow string arrays from raw buffers, for the tests of the guard's buffer checks:
# `array(type, length, null_count, offset, validity, offsets, data)` pickles as
# `pyarrow.lib._restore_array` of those buffers.
STRING_ARRAYS = textwrap.dedent(
    """
    import pyarrow as pa

    def le(ns, width):
        return b"".join(n.to_bytes(width, "little", signed=True) for n in ns)

    def array(ty, n, nulls, offset, validity, offsets, data):
        width = 8 if ty == pa.large_string() else 4
        bufs = [validity and pa.py_buffer(validity), pa.py_buffer(le(offsets, width)), pa.py_buffer(data)]
        return R(pa.lib._restore_array, (ty, n, nulls, offset, bufs, [], None))
    """
)


def run(body: str, helpers: str = "") -> str:
    """Run PRELUDE + helpers + body with pyarrow importable; return its stdout (it must exit 0)."""
    env = dict(os.environ, PYTHONPATH=str(SITE))
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + helpers + textwrap.dedent(body)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_arrow_backed_pandas_loads():
    out = run(
        """
        import pandas as pd, pyarrow as pa
        assert pd.DataFrame({"s": ["a"]})["s"].array.__class__.__name__ == "ArrowStringArray"
        objs = {
            "frame": pd.DataFrame({"s": ["a", None, "ccc"], "n": [1, 2, 3]}),
            "labels": pd.DataFrame({"x": [1.0], "y": [2.0]}),
            "index": pd.Index(["p", None, "q"]),
            "indexed": pd.Series([1, 2], index=pd.Index(["a", "b"], name="k")),
            "large_string": pd.Series(["a", None], dtype=pd.ArrowDtype(pa.large_string())),
            "string": pd.Series(["a", None, ""], dtype=pd.ArrowDtype(pa.string())),
            "storage": pd.Series(["a", None], dtype=pd.StringDtype("pyarrow")),
            "int64": pd.Series([1, None, 3], dtype=pd.ArrowDtype(pa.int64())),
            "sliced": pd.DataFrame({"s": ["a", "b", None, "d"]}).iloc[1:],
        }
        n = 0
        for name, obj in objs.items():
            for proto in (2, 4, 5):
                data = pickle.dumps(obj, proto)
                assert b"_restore_array" in data, (name, proto)
                report = brinery.scan(data)
                assert report.ok and not report.findings, (name, proto, report.findings)
                got, want = brinery.safe_loads(data), pickle.loads(data)
                assert type(got) is type(want) and got.equals(want), (name, proto)
                if isinstance(got, pd.DataFrame):
                    assert got.dtypes.equals(want.dtypes), (name, proto)
                else:
                    assert got.dtype == want.dtype, (name, proto)
                # out-of-band buffers
                if proto == 5:
                    bufs = []
                    data = pickle.dumps(obj, 5, buffer_callback=bufs.append)
                    assert brinery.safe_loads(data, buffers=bufs).equals(pickle.loads(data, buffers=bufs))
                n += 1
        print("checked", n)
        """
    )
    assert "checked 27" in out


def test_offsets_past_data_refused_by_guard():
    out = run(
        """
        import pyarrow as pa
        # offsets 0, 1000, 1000 over a one-byte data buffer: reading slot 0 reads 999 bytes past it
        offsets = b"".join(n.to_bytes(8, "little") for n in (0, 1000, 1000))
        bad = R(pa.lib._restore_array, (pa.large_string(), 2, 0, 0,
                [None, pa.py_buffer(offsets), pa.py_buffer(b"a")], [], None))
        for proto in (2, 4, 5):
            for obj in (bad, [bad], {"k": bad}):
                data = pickle.dumps(obj, proto)
                # the scan sees only allowed calls with the right shapes: it cannot check buffers
                assert brinery.scan(data).ok, proto
                f = refused(data)
                assert f.global_name == "pyarrow.lib._restore_array", f.global_name
                assert f.rule == "BRS008", f.rule
                assert "invalid Arrow array" in f.message and "out of bounds" in f.message, f.message
                assert f"at byte {f.offset} (REDUCE)" in f.message, f.message
                assert data[f.offset] == ord("R"), (f.offset, data[f.offset])
        # a valid array built the same way loads
        good = R(pa.lib._restore_array, (pa.large_string(), 2, 0, 0,
                 [None, pa.py_buffer(b"".join(n.to_bytes(8, "little") for n in (0, 1, 1))),
                  pa.py_buffer(b"a")], [], None))
        for proto in (2, 4, 5):
            got = brinery.safe_loads(pickle.dumps(good, proto))
            assert got.equals(pa.array(["a", ""], pa.large_string()))
        print("refused")
        """
    )
    assert out.strip() == "refused"


def test_nested_type_without_children_refused_before_the_call():
    # pyarrow aborts the process (a failed ARROW_CHECK) on a list array without its child
    out = run(
        """
        import pyarrow as pa
        bad = R(pa.lib._restore_array, (pa.list_(pa.int64()), 0, 0, 0, [None, None], [], None))
        allow = ["pyarrow.lib.list_", "pyarrow.lib.field"]
        for proto in (2, 4, 5):
            data = pickle.dumps(bad, proto)
            f = refused(data, allow)
            assert f.global_name == "pyarrow.lib._restore_array", f.global_name
            assert "0 children where its type has 1 fields" in f.message, f.message
        # the same with its child loads, and matches
        arr = pa.array([[1, 2], None, []], pa.list_(pa.int64()))
        for proto in (2, 4, 5):
            data = pickle.dumps(arr, proto)
            assert brinery.safe_loads(data, allow=allow).equals(arr)
        print("refused")
        """
    )
    assert out.strip() == "refused"


def test_bad_helper_arguments_refused_before_import():
    out = run(
        """
        import numpy as np
        def lib(name):  # a stand-in pickled by name, so that pyarrow is not imported here
            f = lambda *a: None
            f.__module__, f.__qualname__, f.__name__ = "pyarrow.lib", name, name
            return f
        import types
        mod = types.ModuleType("pyarrow.lib")
        for n in ("type_for_alias", "py_buffer", "_restore_array"):
            setattr(mod, n, lib(n))
        sys.modules["pyarrow"], sys.modules["pyarrow.lib"] = types.ModuleType("pyarrow"), mod
        tfa, pyb, restore = mod.type_for_alias, mod.py_buffer, mod._restore_array
        cases = {
            "alias int": R(tfa, 5),
            "alias odd": R(tfa, "large_string; __import__('os')"),
            "alias computed": R(tfa, R(tfa, "large_string")),
            "buffer array": R(pyb, np.zeros(3)),
            "buffer str": R(pyb, "text"),
            "restore type str": R(restore, ("large_string", 0, 0, 0, [], [], None)),
            "restore short": R(restore, (R(tfa, "int64"), 0, 0)),
            "restore not tuple": R(restore, [R(tfa, "int64"), 0, 0, 0, [], [], None]),
            "restore dict": R(restore, (R(tfa, "int64"), 0, 0, 0, [], [], 5)),
        }
        pickles = [
            (name, proto, pickle.dumps(obj, proto)) for name, obj in cases.items() for proto in (2, 4, 5)
        ]
        del sys.modules["pyarrow.lib"], sys.modules["pyarrow"]
        for name, proto, data in pickles:
            if True:
                report = brinery.scan(data)
                rules = {f.rule for f in report.findings}
                assert "BRS008" in rules, (name, proto, [f.message for f in report.findings])
                f = refused(data, native=False)
                assert f.rule == "BRS008" and f.global_name.startswith("pyarrow.lib."), (name, f.message)
                assert "pyarrow" not in sys.modules, name  # nothing was imported
        print("scan", len(cases))
        """
    )
    assert out.strip() == "scan 9"


def test_bad_helper_arguments_refused_by_guard():
    # the native Unpickler(policy=...) alone (no scan first) checks the same arguments
    out = run(
        """
        import numpy as np, pyarrow as pa
        tfa, pyb, restore = pa.lib.type_for_alias, pa.lib.py_buffer, pa.lib._restore_array
        empty = (pa.int64(), 0, 0, 0, [None, None], [], None)
        cases = {
            "alias int": (R(tfa, 5), "type alias"),
            "alias odd": (R(tfa, "large_string; x"), "type alias"),
            "buffer array": (R(pyb, np.zeros(3)), "bytes, a bytearray"),
            "buffer list": (R(pyb, [1, 2]), "bytes, a bytearray"),
            "restore type str": (R(restore, ("large_string", 0, 0, 0, [], [], None)), "DataType"),
            "restore buffers": (R(restore, (pa.int64(), 2, 0, 0, [None], [], None)), "1 buffers where"),
            "restore dict": (
                R(restore, (pa.int64(), 0, 0, 0, [None, None], [], empty)),
                "not a dictionary type",
            ),
        }
        pol = brinery.Policy(["stdlib-data", "numpy", "pandas"])
        for name, (obj, why) in cases.items():
            for proto in (2, 4, 5):
                data = pickle.dumps(obj, proto)
                try:
                    brinery.Unpickler(io.BytesIO(data), policy=pol).load()
                except brinery.UnsafePickleError as e:
                    f = e.findings[0]
                    assert f.rule == "BRS008" and why in f.message, (name, f.message)
                else:
                    raise AssertionError(f"{name} at protocol {proto} loaded")
        print("guard", len(cases))
        """
    )
    assert out.strip() == "guard 7"


def test_string_arrays_checked_on_their_buffers_as_strictly_as_full_validation():
    # The guard checks string and large_string arrays on their buffers instead of running
    # Arrow's validate(full=True) (most of a pyarrow-backed frame's safe load); whatever that
    # check does not accept goes to the full validation. Each array below passes pyarrow's
    # cheap validate() and fails only the full one: every one must be refused.
    out = run(
        """
        hostile = {
            # every value must be UTF-8 on its own: an offset inside a 2-byte character
            "Invalid UTF8": array(pa.string(), 2, 0, 0, None, (0, 1, 2), "é".encode()),
            "non-monotonic": array(pa.large_string(), 2, 0, 0, None, (0, 2, 1), b"abc"),
            "null_count value": array(pa.large_string(), 2, 1, 0, b"\\x03", (0, 1, 2), b"ab"),
            # sliced: the second slot of three, whose offsets decrease
            "non-monotonic ": array(pa.string(), 1, 0, 1, None, (0, 2, 1), b"abc"),
            # past the data buffer, 32-bit offsets
            "out of bounds": array(pa.string(), 2, 0, 0, None, (0, 1, 1000), b"a"),
        }
        for want, bad in hostile.items():
            for proto in (2, 5):
                data = pickle.dumps([bad], proto)
                assert brinery.scan(data).ok, (want, proto)
                f = refused(data)
                assert f.rule == "BRS008", (want, f.rule)
                assert "invalid Arrow array" in f.message and want.strip() in f.message, (want, f.message)
        # accepted as Arrow accepts them: nulls with a bitmap, a slice, 32- and 64-bit offsets,
        # multi-byte text, and bytes in a null slot that are not UTF-8 (Arrow reads no null value)
        good = {
            ("a", None, "ccc"): array(pa.string(), 3, 1, 0, b"\\x05", (0, 1, 1, 4), b"accc"),
            ("é", "ü"): array(pa.large_string(), 2, 0, 0, None, (0, 2, 4), "éü".encode()),
            ("b", None): array(pa.string(), 2, 1, 1, b"\\x02", (0, 1, 2, 2), b"ab"),
            ("a", None): array(pa.string(), 2, 1, 0, b"\\x01", (0, 1, 2), b"a\\xff"),
            (): array(pa.large_string(), 0, 0, 0, None, (0,), b""),
        }
        for values, ok in good.items():
            for proto in (2, 5):
                got = brinery.safe_loads(pickle.dumps(ok, proto))
                assert got.to_pylist() == list(values), (values, got)
                pol = brinery.Policy(PANDAS)
                native = brinery.Unpickler(io.BytesIO(pickle.dumps(ok, proto)), policy=pol).load()
                assert native.to_pylist() == list(values), (values, native)
        print("checked")
        """,
        STRING_ARRAYS,
    )
    assert out.strip() == "checked"


def test_string_array_checks_hold_past_the_first_block_and_word():
    # The offsets are compared sixteen at a time, ASCII text skips the UTF-8 and boundary
    # passes, and the validity bitmap is counted eight bytes at a time: a fault anywhere
    # (inside a block, at a block's edge, in the tail after the last block, in the second
    # word of the bitmap) must still be refused, with 32- and 64-bit offsets.
    out = run(
        """
        n = 100  # 101 offsets: six blocks of sixteen and a tail of five
        ascii = b"x" * n
        wide = "é".encode() * n  # two bytes a character
        for ty in (pa.string(), pa.large_string()):
            good = list(range(n + 1))
            for at in (1, 15, 16, 17, 40, 95, 96, 99):
                # one offset dropped below the one before it, text ASCII
                bad = list(good)
                bad[at] = bad[at - 1] - 1 if at > 1 else 0
                if at == 1:
                    bad[0], bad[1] = 1, 0
                f = refused(pickle.dumps([array(ty, n, 0, 0, None, bad, ascii)], 5))
                assert f.rule == "BRS008" and "invalid Arrow array" in f.message, (ty, at, f.message)
                # a negative offset
                bad = list(good)
                bad[at] = -5
                f = refused(pickle.dumps([array(ty, n, 0, 0, None, bad, ascii)], 5))
                assert f.rule == "BRS008", (ty, at, f.message)
                # multi-byte text: one offset inside a character
                mid = [2 * i for i in range(n + 1)]
                mid[at] += 1
                f = refused(pickle.dumps([array(ty, n, 0, 0, None, mid, wide)], 5))
                assert f.rule == "BRS008" and "Invalid UTF8" in f.message, (ty, at, f.message)
            # the same arrays, unharmed, load as Arrow reads them
            got = brinery.safe_loads(pickle.dumps(array(ty, n, 0, 0, None, good, ascii), 5))
            assert got.to_pylist() == ["x"] * n
            even = [2 * i for i in range(n + 1)]
            got = brinery.safe_loads(pickle.dumps(array(ty, n, 0, 0, None, even, wide), 5))
            assert got.to_pylist() == ["é"] * n
            # text that is not UTF-8 past the first word
            bad_text = b"x" * 70 + b"\\xff" + b"x" * 29
            f = refused(pickle.dumps([array(ty, n, 0, 0, None, good, bad_text)], 5))
            assert f.rule == "BRS008" and "Invalid UTF8" in f.message, (ty, f.message)
            # a validity bitmap of 13 bytes: slot 70 (the second word) null
            bits = bytearray(b"\\xff" * 13)
            bits[70 // 8] &= ~(1 << (70 % 8)) & 0xFF
            want = ["x"] * n
            want[70] = None
            got = brinery.safe_loads(pickle.dumps(array(ty, n, 1, 0, bytes(bits), good, ascii), 5))
            assert got.to_pylist() == want
            # ... and a null count that disagrees with it (a count of 0 is not one: Arrow then
            # reads no bitmap and accepts the array)
            for count in (2, 5):
                f = refused(pickle.dumps([array(ty, n, count, 0, bytes(bits), good, ascii)], 5))
                assert f.rule == "BRS008" and "null_count" in f.message, (ty, count, f.message)
            # a slice starting in the bitmap's second byte, ending in its second word
            got = brinery.safe_loads(pickle.dumps(array(ty, 70, 1, 9, bytes(bits), good, ascii), 5))
            assert got.to_pylist() == want[9:79]
        print("checked")
        """,
        STRING_ARRAYS,
    )
    assert out.strip() == "checked"
