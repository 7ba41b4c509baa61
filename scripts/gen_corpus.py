#!/usr/bin/env python3
"""Generate brinery's pickle test corpus with CPython.

Usage: .venv/bin/python scripts/gen_corpus.py OUTDIR

For every case and every protocol it can be pickled at (0-5) this writes

- ``OUTDIR/<case>.p<N>.pkl``: the pickle,
- ``OUTDIR/<case>.p<N>.dis``: the exact stdout of ``python -m pickletools <case>.p<N>.pkl``
  (skipped where pickletools itself raises, e.g. on ints beyond ``sys.int_info.default_max_str_digits``),
- ``OUTDIR/<case>.p<N>.buf<I>``: the out-of-band buffers of protocol-5 cases that have some,

plus hand-written pickles (``hand_<name>.p<N>.pkl``) that CPython never emits but ``pickle.loads``
accepts, and ``OUTDIR/manifest.json``: a list of entries, sorted by file, with the keys

- ``file`` (the .pkl name), ``case``, ``protocol`` (for hand-written pickles: the highest protocol
  among their opcodes), ``dis`` (whether the .dis file exists), ``oob_buffers`` (count),
- ``buffers`` (the .buf file names, in order), ``hand`` (hand-written?),
- ``dis_error`` (why there is no .dis, or null),
- ``load`` (how CPython loads it: ``"loads"``; ``"persistent"`` = with
  ``corpus_classes.PersistentUnpickler``; ``"latin1"`` = ``pickle.loads(..., encoding="latin1")``;
  ``"int_max_str_digits=0"`` = only after ``sys.set_int_max_str_digits(0)``; ``"buffers"`` =
  ``pickle.loads(data, buffers=...)``).

Case/protocol pairs CPython refuses to pickle are listed in ``OUTDIR/skipped.json``.

The output is deterministic: fixed seeds, no clock, and the script re-executes itself with
``PYTHONHASHSEED=0`` so that set and frozenset iteration order is stable. Loading the corpus with
CPython needs ``PYTHONPATH=scripts`` (module ``corpus_classes``).
"""

from __future__ import annotations

import os
import sys

if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import collections
import datetime
import decimal
import fractions
import functools
import io
import json
import pathlib
import pickle
import pickletools
import random
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import corpus_classes as cc

PROTOCOLS = range(6)


@dataclass
class Case:
    """One object to pickle at several protocols."""

    name: str
    make: Callable[[], object]
    protocols: tuple[int, ...] = tuple(PROTOCOLS)
    oob: bool = False  # pickle with a buffer_callback (protocol 5 only)
    persistent: bool = False  # pickle with corpus_classes.PersistentPickler
    deep: bool = False  # needs a high recursion limit and a big stack
    unlimited_digits: bool = False  # ints beyond the default int<->str digit limit


# ------------------------------------------------------------------------------------------------
# The cases


def scalar_cases() -> Iterator[Case]:
    yield Case("none", lambda: None)
    yield Case("true", lambda: True)
    yield Case("false", lambda: False)
    ints = {
        "int_0": 0,
        "int_1": 1,
        "int_neg1": -1,
        "int_255": 255,
        "int_256": 256,
        "int_65535": 65535,
        "int_65536": 65536,
        "int_2p31": 2**31,
        "int_neg2p31": -(2**31),
        "int_2p31m1": 2**31 - 1,
        "int_neg2p31m1": -(2**31) - 1,
        "int_2p63": 2**63,
        "int_neg2p63": -(2**63),
        "int_2p63m1": 2**63 - 1,
        "int_2p64": 2**64,
        "int_10p100": 10**100,
        "int_neg10p300": -(10**300),
    }
    for name, value in ints.items():
        yield Case(name, lambda v=value: v)
    yield Case("int_huge_2p100000", lambda: 2**100000, unlimited_digits=True)
    yield Case(
        "int_list_mixed",
        lambda: [0, 1, -1, 255, 256, -256, 2**31, 2**63, -(2**64), 10**30],
    )
    floats = {
        "float_0": 0.0,
        "float_neg0": -0.0,
        "float_1_5": 1.5,
        "float_1e300": 1e300,
        "float_5em324": 5e-324,
        "float_inf": float("inf"),
        "float_neginf": float("-inf"),
        "float_nan": float("nan"),
        "float_0_1": 0.1,
        "float_neg_2_5e_m10": -2.5e-10,
    }
    for name, value in floats.items():
        yield Case(name, lambda v=value: v)


def str_cases() -> Iterator[Case]:
    strs = {
        "str_empty": "",
        "str_ascii": "hello, world",
        "str_quotes": "it's \"quoted\" 'twice'",
        "str_backslash": "back\\slash \\u0041 \\n",
        "str_newlines": "line1\nline2\n",
        "str_cr": "a\rb\r\n",
        "str_ctrl_1a": "x\x1ay",
        "str_nul": "a\0b\0",
        "str_latin1": "café crème ÿ",
        "str_cjk": "中文字符 日本語",
        "str_emoji": "snake \U0001f40d and \U0001f600",
        "str_lone_surrogate": "\ud800",
        "str_lone_low_surrogate": "a\udfffb",
        "str_surrogate_pair_points": "\ud83d\ude00",
        "str_all_escapes": "\\\n\r\x1a\0\t\x7f\x80\xff\u0100\uffff",
        "str_70k": ("abcdéfgh\u4e2d" * 7000),
    }
    for name, value in strs.items():
        yield Case(name, lambda v=value: v)
    yield Case(
        "str_many_small",
        lambda: [f"item-{i:05d}-{'x' * (i % 40)}" for i in range(2500)],
    )


def bytes_cases() -> Iterator[Case]:
    rng = random.Random(1234)
    b300 = bytes(rng.randrange(256) for _ in range(300))
    b70k = bytes(range(256)) * 280
    b1m = b"brinery-" * (1 << 17)
    yield Case("bytes_empty", lambda: b"")
    yield Case("bytes_short", lambda: b"abc\x00\xff")
    yield Case("bytes_all_values", lambda: bytes(range(256)))
    yield Case("bytes_300", lambda: b300)
    yield Case("bytes_70k", lambda: b70k)
    # Protocols 0 (via _codecs.encode of a str), 3 (BINBYTES) and 4 (outside any frame).
    yield Case("bytes_1m", lambda: b1m, (0, 3, 4))
    yield Case("bytearray_empty", lambda: bytearray())
    yield Case("bytearray_short", lambda: bytearray(b"ab\x00\xfe"))
    yield Case("bytearray_70k", lambda: bytearray(b70k))
    yield Case("bytes_shared", lambda: [b"same", b"same"])


def container_cases() -> Iterator[Case]:
    for n in range(6):
        yield Case(f"tuple_{n}", lambda n=n: tuple(range(n)))
    yield Case("tuple_nested", lambda: ((), (1,), ((2, 3), (4, (5, 6, 7)))))
    yield Case("list_empty", list)
    yield Case("list_small", lambda: [1, "two", 3.0, None, True])
    yield Case("list_2500", lambda: list(range(2500)))
    yield Case("dict_empty", dict)
    yield Case("dict_small", lambda: {"a": 1, "b": [2, 3], "c": {"d": None}})
    yield Case("dict_2500", lambda: {f"k{i}": i for i in range(2500)})
    yield Case("set_empty", lambda: set())
    yield Case("set_small", lambda: {1, 2, 3, "a"})
    yield Case("set_2500", lambda: set(range(2500)))
    yield Case("frozenset_empty", lambda: frozenset())
    yield Case("frozenset_small", lambda: frozenset({1, "b", (2, 3)}))
    yield Case("frozenset_in_set", lambda: {frozenset({1, 2}), frozenset()})
    yield Case(
        "dict_nonstr_keys",
        lambda: {
            1: "int",
            (1, 2): "tuple",
            frozenset({3}): "frozenset",
            None: "none",
            1.5: "float",
            b"k": "bytes",
        },
    )
    yield Case(
        "nested_mixed",
        lambda: {
            "users": [
                {"id": 1, "name": "Ada", "tags": ("admin", "dev"), "score": 9.5},
                {
                    "id": 2,
                    "name": "Linus",
                    "tags": (),
                    "score": None,
                    "raw": b"\x00\x01",
                },
            ],
            "meta": {"count": 2, "flags": {True, False}, "ratio": 2**70},
            (1, "k"): [[], [[]], {}],
        },
    )


def sharing_cases() -> Iterator[Case]:
    def shared_list():
        a = [1]
        return [a, a]

    def shared_str():
        s = "shared-string-" * 3
        return [s, s, {"k": s}]

    def shared_tuple():
        t = (1, 2, "x")
        return {"a": t, "b": [t, t]}

    def self_list():
        lst: list = []
        lst.append(lst)
        return lst

    def self_dict():
        d: dict = {}
        d["self"] = d
        return d

    def recursive_tuple():
        t: tuple = ([],)
        t[0].append(t)
        return t

    def graph_cycle():
        a, b, c = cc.Node("a"), cc.Node("b"), cc.Node("c")
        a.edges = [b, c]
        b.edges = [c, a]
        c.edges = [c]
        return a

    def object_self_ref():
        p = cc.Plain(name="p")
        p.me = p
        p.others = [p, {"p": p}]
        return p

    def deep(n):
        x: list = []
        for _ in range(n):
            x = [x]
        return x

    yield Case("shared_list", shared_list)
    yield Case("shared_str", shared_str)
    yield Case("shared_tuple", shared_tuple)
    yield Case("cycle_list", self_list)
    yield Case("cycle_dict", self_dict)
    yield Case("cycle_tuple", recursive_tuple)
    yield Case("cycle_graph", graph_cycle)
    yield Case("cycle_object", object_self_ref)
    yield Case("deep_list_900", lambda: deep(900), deep=True)
    # Protocols 0 (text) and 4 (frames, MEMOIZE) only, to keep the .dis files small; the 900-deep
    # list covers every protocol.
    yield Case("deep_list_20000", lambda: deep(20000), (0, 4), deep=True)


def class_cases() -> Iterator[Case]:
    def reduce3():
        r = cc.Reduce3([1, 2])
        r.extra = {"k": "v"}
        return r

    def reduce4():
        r = cc.Reduce4([1, 2, 3])
        r.tag = "listy"
        return r

    def my_list():
        m = cc.MyList([1, 2, 3])
        m.attr = "list-attr"
        return m

    def my_dict():
        m = cc.MyDict(a=1, b=2)
        m.attr = "dict-attr"
        return m

    def slots_dict():
        s = cc.SlotsDict(1)
        s.extra = "in-dict"
        return s

    yield Case("obj_plain", lambda: cc.Plain(a=1, b="two", c=[3]))
    yield Case("obj_plain_empty", lambda: cc.Plain())
    yield Case("reduce_2", lambda: cc.Reduce2(1, "b"))
    yield Case("reduce_3", reduce3)
    yield Case("reduce_4_listitems", reduce4)
    yield Case("reduce_5_dictitems", lambda: cc.Reduce5(x=1, y=[2]))
    yield Case("reduce_6_state_setter", lambda: cc.Reduce6("a-value"))
    yield Case("reduce_string", lambda: cc.SINGLETON)
    yield Case("getnewargs", lambda: cc.NewArgs(3, 4))
    yield Case("getnewargs_ex", lambda: cc.NewArgsEx(5, label="five"))
    yield Case("getstate_setstate", lambda: cc.WithState(7, "seven"))
    yield Case("slots", lambda: cc.Slots(1, [2]))
    yield Case("slots_with_dict", slots_dict)
    yield Case("slots_getstate", lambda: cc.SlotsState("x"))
    yield Case("list_subclass", my_list)
    yield Case("dict_subclass", my_dict)
    yield Case(
        "ext_codes",
        lambda: [cc.Ext1Target, cc.Ext2Target, cc.Ext4Target, cc.Ext1Target],
    )
    yield Case(
        "persistent_ids",
        lambda: [cc.External("alpha"), {"b": cc.External("beta")}, 3],
        persistent=True,
    )


def stdlib_cases() -> Iterator[Case]:
    paris = zoneinfo.ZoneInfo("Europe/Paris")

    def default_dict():
        d: collections.defaultdict = collections.defaultdict(list)
        d["a"].append(1)
        d["b"].extend([2, 3])
        return d

    yield Case("ordereddict", lambda: collections.OrderedDict([("z", 1), ("a", 2)]))
    yield Case("defaultdict_list", default_dict)
    yield Case("counter", lambda: collections.Counter("abracadabra"))
    yield Case("deque", lambda: collections.deque([1, 2, 3], maxlen=5))
    yield Case("namedtuple", lambda: cc.Point(1, y=2))
    yield Case("datetime", lambda: datetime.datetime(2024, 1, 2, 3, 4, 5, 678901))
    yield Case("date", lambda: datetime.date(1999, 12, 31))
    yield Case("time", lambda: datetime.time(12, 30, 15, 500))
    yield Case("timedelta", lambda: datetime.timedelta(days=-1, seconds=2, microseconds=3))
    yield Case(
        "datetime_utc",
        lambda: datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC),
    )
    yield Case(
        "datetime_offset",
        lambda: datetime.datetime(
            2024,
            6,
            1,
            12,
            0,
            tzinfo=datetime.timezone(datetime.timedelta(hours=-5), "EST"),
        ),
    )
    yield Case("datetime_paris", lambda: datetime.datetime(2024, 7, 14, 22, 30, tzinfo=paris))
    yield Case(
        "decimal",
        lambda: [
            decimal.Decimal("3.14159"),
            decimal.Decimal("-Infinity"),
            decimal.Decimal("NaN"),
        ],
    )
    yield Case("fraction", lambda: fractions.Fraction(3, 7))
    yield Case("complex", lambda: [complex(1.5, -2.0), 1j])
    yield Case("uuid", lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"))
    yield Case("purepath", lambda: pathlib.PurePosixPath("/tmp/brinery/x.pkl"))
    yield Case("range", lambda: range(1, 10, 2))
    yield Case("slice", lambda: slice(1, None, 2))
    yield Case("enum", lambda: [cc.Color.RED, cc.Color.GREEN, cc.Color.RED])
    yield Case("intenum", lambda: cc.Level.HIGH)
    yield Case("partial_builtin", lambda: functools.partial(int, base=2))
    yield Case("module_function", lambda: cc.module_function)
    yield Case("module_class", lambda: cc.Plain)
    yield Case("builtins_as_values", lambda: [len, int, type(None), Ellipsis, NotImplemented])


def oob_cases() -> Iterator[Case]:
    five = (5,)
    yield Case(
        "oob_bytearray",
        lambda: pickle.PickleBuffer(bytearray(b"out-of-band writable")),
        five,
        oob=True,
    )
    yield Case(
        "oob_readonly",
        lambda: pickle.PickleBuffer(b"out-of-band readonly"),
        five,
        oob=True,
    )

    def several():
        a = pickle.PickleBuffer(bytearray(b"first"))
        b = pickle.PickleBuffer(b"second")
        return {"a": a, "b": b, "again": [a]}

    yield Case("oob_several", several, five, oob=True)
    yield Case(
        "inband_picklebuffer_bytearray",
        lambda: pickle.PickleBuffer(bytearray(b"in-band")),
        five,
    )
    yield Case("inband_picklebuffer_readonly", lambda: pickle.PickleBuffer(b"in-band ro"), five)


def numpy_cases() -> Iterator[Case]:
    import numpy as np

    rng = np.random.default_rng(42)

    def obj_array():
        a = np.empty(4, dtype=object)
        a[:] = [1, "two", None, [3, 4]]
        return a

    def structured():
        dt = np.dtype([("name", "U8"), ("age", "<i4"), ("weight", "<f8")])
        return np.array([("ann", 31, 55.5), ("bob", 42, 80.25)], dtype=dt)

    yield Case("np_bool", lambda: np.array([True, False, True]))
    yield Case("np_int8", lambda: np.array([-128, 0, 127], dtype=np.int8))
    yield Case("np_int64", lambda: np.arange(-5, 5, dtype=np.int64))
    yield Case("np_uint16", lambda: np.array([0, 1, 65535], dtype=np.uint16))
    yield Case("np_float32", lambda: np.linspace(0, 1, 7, dtype=np.float32))
    yield Case("np_float64", lambda: rng.standard_normal(16))
    yield Case("np_complex128", lambda: np.array([1 + 2j, -3.5j], dtype=np.complex128))
    yield Case(
        "np_datetime64_ns",
        lambda: np.array(["2020-01-01T00:00:00.123456789", "NaT"], dtype="datetime64[ns]"),
    )
    yield Case("np_timedelta64", lambda: np.array([1, -2, 3], dtype="timedelta64[s]"))
    yield Case("np_unicode_u10", lambda: np.array(["a", "héllo", "中文"], dtype="U10"))
    yield Case("np_bytes_s5", lambda: np.array([b"ab", b"abcde"], dtype="S5"))
    yield Case("np_object", obj_array)
    yield Case("np_0d", lambda: np.array(3.25))
    yield Case(
        "np_2d_fortran",
        lambda: np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
    )
    yield Case("np_structured", structured)
    # 1 MiB of float64 whose bytes are printable, so that the .dis files stay ~1 MB each;
    # protocols 2 (latin-1 str), 4 (BINBYTES outside frames) and 5 (in-band PickleBuffer).
    yield Case(
        "np_float64_1m",
        lambda: np.frombuffer(b"brinery!" * (1 << 17), dtype=np.float64).copy(),
        (2, 4, 5),
    )
    yield Case("np_scalar_float64", lambda: np.float64(2.5))
    yield Case("np_scalar_int32", lambda: np.int32(-7))
    yield Case("np_masked", lambda: np.ma.array([1, 2, 3], mask=[False, True, False]))
    yield Case("np_oob", lambda: np.arange(10, dtype=np.int16), (5,), oob=True)


def pandas_cases() -> Iterator[Case]:
    import pandas as pd

    def frame():
        return pd.DataFrame(
            {
                "f": [1.5, float("nan"), -2.0],
                "i": [1, 2, 3],
                "s": ["a", "b", None],
                "c": pd.Categorical(["x", "y", "x"]),
                "t": pd.date_range("2024-03-30", periods=3, freq="D", tz="Europe/Paris"),
                "b": [True, False, True],
            }
        )

    def multi():
        idx = pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["letter", "num"])
        return pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=idx)

    yield Case("pd_dataframe", frame)
    yield Case("pd_series", lambda: pd.Series([1, 2, 3], index=["a", "b", "c"], name="s"))
    yield Case("pd_multiindex", multi)
    yield Case("pd_rangeindex", lambda: pd.RangeIndex(0, 10, 2))
    yield Case("pd_timestamp", lambda: pd.Timestamp("2024-01-02 03:04:05.123456789"))
    yield Case("pd_timedelta", lambda: pd.Timedelta("1 days 02:03:04"))
    yield Case("pd_period", lambda: pd.Period("2024-03", freq="M"))
    yield Case(
        "pd_categorical",
        lambda: pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
    )
    yield Case("pd_interval", lambda: pd.Interval(0.5, 1.5, closed="left"))


def sklearn_cases() -> Iterator[Case]:
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_classification(n_samples=60, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    fitted = {
        "sk_logreg": lambda: LogisticRegression().fit(x, y),
        "sk_random_forest": lambda: RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(
            x, y
        ),
        "sk_scaler": lambda: StandardScaler().fit(x),
        "sk_pipeline": lambda: Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(
            x, y
        ),
        "sk_kmeans": lambda: KMeans(n_clusters=2, n_init=1, random_state=0).fit(x),
    }
    for name, make in fitted.items():
        yield Case(name, make)


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for gen in (
        scalar_cases,
        str_cases,
        bytes_cases,
        container_cases,
        sharing_cases,
        class_cases,
        stdlib_cases,
        oob_cases,
        numpy_cases,
        pandas_cases,
        sklearn_cases,
    ):
        cases.extend(gen())
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


# ------------------------------------------------------------------------------------------------
# Hand-written pickles: valid for pickle.loads, never emitted by CPython's pickler


@dataclass
class Hand:
    name: str
    data: bytes
    load: str = "loads"


HAND: list[Hand] = [
    # INST: protocol-0 instance creation from a class named in the stream, then BUILD with a dict.
    Hand("inst", b"(icorpus_classes\nPlain\np0\n(dp1\nVa\np2\nI1\nsb."),
    Hand("inst_with_args", b"(S'x'\nI2\nicorpus_classes\nReduce2\n."),
    # OBJ: protocol-1 instance creation, class on the stack after the MARK.
    Hand("obj", b"(ccorpus_classes\nPlain\no}(X\x01\x00\x00\x00xK\x01ub."),
    Hand("obj_with_args", b"(ccorpus_classes\nReduce2\nK\x01K\x02o."),
    # PERSID text form and BINPERSID.
    Hand("persid", b"(Pext:alpha\nPext:beta\nl.", load="persistent"),
    Hand("binpersid", b"]X\x07\x00\x00\x00ext:gamQa.", load="persistent"),
    # EXT1/EXT2/EXT4 with the codes registered by corpus_classes, written by hand.
    Hand("ext1", b"\x80\x02\x82\xf0."),
    Hand("ext2", b"\x80\x02\x83\x34\x12."),
    Hand("ext4", b"\x80\x02\x84\x78\x56\x34\x12."),
    # DUP, POP, POP_MARK.
    Hand("dup_tuple", b"\x80\x02K\x052\x86."),
    Hand("dup_self_list", b"]2a."),
    Hand("pop", b"K\x01K\x020."),
    Hand("pop_mark", b"K\x01(K\x02K\x031."),
    Hand("pop_mark_empty", b"K\x07(1."),
    # GET/PUT text form with large and overwritten indices.
    Hand("get_put_text", b"(lp123456\nI1\nag123456\na."),
    Hand(
        "binput_sparse",
        b"\x80\x02K\x01r\xa0\x86\x01\x000K\x02q\x050j\xa0\x86\x01\x00h\x05\x86.",
    ),
    # INT text booleans and ints, LONG text.
    Hand("int_bools", b"(I00\nI01\nI-5\nI+7\nI0042\nl."),
    Hand("int_text_big", b"I123456789012345678901234567890\n."),
    Hand("long_text", b"(L12345678901234567890L\nL-5\nL0L\nl."),
    # Python 2 strings.
    Hand("string_quoted", b"(S'hello'\nS\"dq 'x'\"\nS'esc\\n\\x41\\\\'\nl."),
    Hand("binstring", b"(T\x03\x00\x00\x00abcU\x03defl."),
    Hand("string_latin1", b"U\x04caf\xe9.", load="latin1"),
    # UNICODE raw-unicode-escape with \u and \U escapes, FLOAT text.
    Hand("unicode_escapes", b"V\\u00e9\\U0001f600x\\u005c\n."),
    Hand("float_text", b"(F1.5\nF-0.0\nFnan\nF1e300\nF-inf\nl."),
    # Dict with a repeated key (the last one wins).
    Hand("dict_dup_keys", b"}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02u."),
    # In-band READONLY_BUFFER over a bytearray and a bytes.
    Hand("readonly_inband", b"\x80\x05\x96\x03\x00\x00\x00\x00\x00\x00\x00abc\x98."),
    Hand("readonly_bytes", b"\x80\x05C\x03abc\x98."),
    # Two pickles back to back; pickle.loads reads the first and ignores the rest.
    Hand("stacked", pickle.dumps(1, 2) + pickle.dumps([2, "two"], 4)),
    # No PROTO, protocol-2 opcodes anyway; PROTO in the middle; an empty FRAME.
    Hand("no_proto_newtrue", b"\x88."),
    Hand("proto_mid_stream", b"K\x01\x80\x040\x88."),
    Hand("frame_empty", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00N."),
    # MEMOIZE after a PUT at a high index: MEMOIZE stores at the count of entries.
    Hand("memoize_after_put", b"\x80\x04K\x01p5\n0K\x02\x94h\x01\x86."),
]


# ------------------------------------------------------------------------------------------------
# Machinery


def dis_text(data: bytes) -> tuple[str | None, str | None]:
    """What ``python -m pickletools FILE`` prints, or ``(None, error)`` if it raises."""
    out = io.StringIO()
    try:
        pickletools.dis(io.BytesIO(data), out, None, 4, 0)
    except Exception as e:  # noqa: BLE001 - pickletools raises many kinds
        return None, f"{type(e).__name__}: {e}"
    return out.getvalue(), None


def max_opcode_proto(data: bytes) -> int:
    return max(op.proto for op, _arg, _pos in pickletools.genops(data))


def dump(case: Case, obj: object, proto: int) -> tuple[bytes, list[bytes]]:
    buffers: list[pickle.PickleBuffer] = []
    f = io.BytesIO()
    pickler_cls = cc.PersistentPickler if case.persistent else pickle.Pickler
    callback = buffers.append if case.oob else None
    old = sys.get_int_max_str_digits()
    if case.unlimited_digits:
        sys.set_int_max_str_digits(0)
    try:
        pickler_cls(f, proto, buffer_callback=callback).dump(obj)
    finally:
        sys.set_int_max_str_digits(old)
    return f.getvalue(), [bytes(b.raw()) for b in buffers]


def in_big_stack(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a thread with a large stack and recursion limit (for the 20,000-deep list)."""
    result: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    old_limit = sys.getrecursionlimit()
    old_size = threading.stack_size(512 << 20)
    sys.setrecursionlimit(100000)
    try:
        t = threading.Thread(target=run)
        t.start()
        t.join()
    finally:
        threading.stack_size(old_size)
        sys.setrecursionlimit(old_limit)
    if errors:
        raise errors[0]
    return result[0]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    start = time.perf_counter()
    outdir = pathlib.Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    for old in outdir.iterdir():
        if old.is_file() and old.suffix in {".pkl", ".dis", ".json"} or ".buf" in old.suffixes:
            old.unlink()

    manifest: list[dict] = []
    skipped: list[dict] = []
    total = 0
    dis_missing = 0

    def write(case: str, proto: int, data: bytes, buffers: list[bytes], hand: bool, how: str) -> None:
        nonlocal total, dis_missing
        stem = f"{case}.p{proto}"
        (outdir / f"{stem}.pkl").write_bytes(data)
        total += len(data)
        buf_names = []
        for i, buf in enumerate(buffers):
            name = f"{stem}.buf{i}"
            (outdir / name).write_bytes(buf)
            buf_names.append(name)
            total += len(buf)
        text, err = dis_text(data)
        if text is not None:
            (outdir / f"{stem}.dis").write_text(text, encoding="utf-8")
            total += len(text.encode("utf-8"))
        else:
            dis_missing += 1
        manifest.append(
            {
                "file": f"{stem}.pkl",
                "case": case,
                "protocol": proto,
                "dis": text is not None,
                "oob_buffers": len(buffers),
                "buffers": buf_names,
                "hand": hand,
                "dis_error": err,
                "load": how,
            }
        )

    cases = all_cases()
    for case in cases:
        obj = in_big_stack(case.make) if case.deep else case.make()
        for proto in case.protocols:
            try:
                if case.deep:
                    data, buffers = in_big_stack(lambda c=case, o=obj, p=proto: dump(c, o, p))  # type: ignore[misc]
                else:
                    data, buffers = dump(case, obj, proto)
            except Exception as e:  # noqa: BLE001 - CPython refuses some pairs
                skipped.append(
                    {
                        "case": case.name,
                        "protocol": proto,
                        "error": f"{type(e).__name__}: {e}",
                    }
                )
                continue
            if case.persistent:
                how = "persistent"
            elif buffers:
                how = "buffers"
            elif case.unlimited_digits and proto < 2:
                how = "int_max_str_digits=0"
            else:
                how = "loads"
            cc.load_pickle(data, how, buffers)  # every pickle must load with CPython
            write(case.name, proto, data, buffers, False, how)

    for hand in HAND:
        text, err = dis_text(hand.data)
        if text is None:
            raise SystemExit(f"hand-written pickle {hand.name} does not disassemble: {err}")
        cc.load_pickle(hand.data, hand.load)
        write(
            f"hand_{hand.name}",
            max_opcode_proto(hand.data),
            hand.data,
            [],
            True,
            hand.load,
        )

    manifest.sort(key=lambda e: e["file"])
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (outdir / "skipped.json").write_text(json.dumps(skipped, indent=1) + "\n", encoding="utf-8")

    elapsed = time.perf_counter() - start
    print(
        f"corpus: {len(cases)} cases + {len(HAND)} hand-written, {len(manifest)} pickles "
        f"({len(manifest) - dis_missing} with .dis), {len(skipped)} case/protocol pairs skipped, "
        f"{total / 1e6:.1f} MB, {elapsed:.1f} s -> {outdir}"
    )
    for s in skipped:
        print(f"  skipped {s['case']} p{s['protocol']}: {s['error']}")
    for e in manifest:
        if not e["dis"]:
            print(f"  no .dis for {e['file']}: {e['dis_error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
