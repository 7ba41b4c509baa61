"""Byte identity: ``brinery.dumps(obj, p) == pickle.dumps(obj, p)`` for every protocol.

Covers the standard library's types, custom classes of every reduce shape, shared and recursive
structures, numpy arrays of many dtypes and layouts, pandas frames and fitted scikit-learn
models; ``dump`` to a file equals ``dumps``; out-of-band buffers equal the stdlib's.
"""

from __future__ import annotations

import array
import collections
import copyreg
import datetime
import decimal
import enum
import fractions
import functools
import io
import pathlib
import pickle
import re
import sys
import types
import uuid

import brinery
import pytest

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


# --------------------------------------------------------------------------------------------
# Classes of every reduce shape (module level, so that they pickle by reference)
# --------------------------------------------------------------------------------------------


class Plain:
    def __init__(self, a=1):
        self.a = a
        self.b = [a, "x"]


class WithSlots:
    __slots__ = ("x", "y")

    def __init__(self):
        self.x = 1
        self.y = (2, 3)


class SlotsAndDict(WithSlots):
    def __init__(self):
        super().__init__()
        self.z = {"k": 1}


class GetState:
    def __init__(self):
        self.v = 5

    def __getstate__(self):
        return {"v": self.v, "extra": True}

    def __setstate__(self, state):
        self.__dict__.update(state)


class FalseState:
    def __getstate__(self):
        return 0


class NewArgs(int):
    def __new__(cls, v, tag="t"):
        self = super().__new__(cls, v)
        self.tag = tag
        return self

    def __getnewargs__(self):
        return (int(self), self.tag)


class NewArgsEx:
    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self.args = args
        self.kwargs = kwargs
        return self

    def __getnewargs_ex__(self):
        return self.args, self.kwargs


class ReduceString:
    def __reduce__(self):
        return "REDUCE_STRING_SINGLETON"


REDUCE_STRING_SINGLETON = ReduceString()


class Reduce2:
    def __init__(self, a):
        self.a = a

    def __reduce__(self):
        return (Reduce2, (self.a,))


class Reduce3:
    def __reduce__(self):
        return (Reduce3, (), {"state": [1, 2]})


class ListLike(list):
    def __reduce__(self):
        return (ListLike, (), None, iter(list(self)))


class DictLike(dict):
    def __reduce__(self):
        return (DictLike, (), None, None, iter(list(self.items())))


def set_state(obj, state):
    obj.__dict__.update(state)


class WithStateSetter:
    def __init__(self):
        self.q = 1

    def __reduce__(self):
        return (WithStateSetter, (), {"q": self.q}, None, None, set_state)


class ReduceEx:
    def __reduce_ex__(self, proto):
        return (ReduceEx, (), {"proto": proto})


class SubList(list):
    pass


class SubDict(dict):
    pass


class SubTuple(tuple):
    pass


class SubStr(str):
    pass


class SubInt(int):
    pass


class Color(enum.Enum):
    RED = 1
    GREEN = "g"


class Outer:
    class Inner:
        class Deeper:
            pass


def module_function(x):
    return x


Point = collections.namedtuple("Point", "x y")


def _recursive_list():
    lst = [1]
    lst.append(lst)
    return lst


def _recursive_dict():
    d = {"a": 1}
    d["self"] = d
    return d


def _recursive_tuple():
    lst = []
    t = (lst, 1)
    lst.append(t)
    return t


def _recursive_object():
    p = Plain()
    p.me = p
    p.b.append(p)
    return p


def _shared():
    s = "shared string"
    lst = [1, 2]
    return [s, s, lst, lst, (lst, s), {"k": lst}]


STDLIB_OBJECTS = {
    "none": None,
    "bools": [True, False],
    "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31 - 1, 2**31, 2**63, -(2**63) - 1],
    "bigints": [2**64, -(2**64), 2**1000, -(2**2049), 10**300],
    "floats": [0.0, -0.0, 1.5, 1e300, 1e-300, float("inf"), float("-inf"), 1e16, 0.1],
    "nan": float("nan"),
    "strings": ["", "a", "héllo", "\u20ac", "\U0001f600", "a\nb\\c\r\x00\x1a", "x" * 300],
    "surrogates": ["\ud800", "a\udcffb"],
    "bytes": [b"", b"a", b"\x00\xff" * 200, bytes(range(256))],
    "bytearray": [bytearray(), bytearray(b"abc"), bytearray(300)],
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((),)],
    "lists": [[], [1], list(range(999)), list(range(1000)), list(range(1001)), list(range(2500))],
    "dicts": [{}, {1: 2}, dict.fromkeys(range(1000)), dict.fromkeys(range(2001))],
    "sets": [set(), {1}, set(range(1000)), set(range(2001)), frozenset(), frozenset("abc")],
    "nested": {"a": [1, (2, {3: frozenset([4])})], "b": {"c": b"d"}},
    "shared": _shared(),
    "recursive_list": _recursive_list(),
    "recursive_dict": _recursive_dict(),
    "recursive_tuple": _recursive_tuple(),
    "recursive_object": _recursive_object(),
    "singletons": [None, Ellipsis, NotImplemented, type(None), type(Ellipsis), type(NotImplemented)],
    "types": [int, str, object, type, Plain, Outer.Inner.Deeper, Color],
    "functions": [len, module_function, pickle.dumps, functools.reduce, str.upper],
    "methods": [[].append, "x".join, dict.fromkeys, Outer.Inner.__init__],
    "complex": [1 + 2j, complex(0, -1)],
    "decimal": [decimal.Decimal("1.10"), decimal.Decimal("-inf")],
    "fraction": fractions.Fraction(3, 7),
    "datetime": [
        datetime.datetime(2024, 2, 29, 12, 30, 1, 5),
        datetime.date(2000, 1, 1),
        datetime.time(1, 2, 3),
        datetime.timedelta(days=3, seconds=5),
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        datetime.timezone(datetime.timedelta(hours=-5), "EST"),
    ],
    "collections": [
        collections.OrderedDict(a=1, b=2),
        collections.defaultdict(list, {"x": [1]}),
        collections.Counter("abracadabra"),
        collections.deque([1, 2, 3], maxlen=5),
        Point(1, 2),
        collections.ChainMap({1: 2}, {3: 4}),
    ],
    "misc": [
        range(1, 10, 3),
        slice(1, None, 2),
        uuid.UUID(int=12345),
        pathlib.PurePosixPath("/a/b"),
        re.compile(r"a+b", re.I),
        array.array("d", [1.0, 2.5]),
        array.array("u", "hi"),
        functools.partial(max, 1, key=abs),
        types.SimpleNamespace(a=1, b=[2]),
        memoryview(b"abc").tobytes(),
        ValueError("bad", 1),
        KeyError("k"),
        Color.RED,
        Color.GREEN,
    ],
    "custom": [
        Plain(),
        GetState(),
        FalseState(),
        NewArgs(7, "seven"),
        NewArgsEx(1, 2, k=3),
        REDUCE_STRING_SINGLETON,
        Reduce2([1]),
        Reduce3(),
        ListLike(range(2500)),
        ListLike([1]),
        DictLike((i, str(i)) for i in range(1500)),
        DictLike(a=1),
        WithStateSetter(),
        ReduceEx(),
        SubList([1, 2]),
        SubDict(a=1),
        SubTuple((1, 2)),
        SubStr("s"),
        SubInt(5),
    ],
    # Below protocol 2 both raise the same TypeError (slots without __getstate__).
    "slots": [WithSlots(), SlotsAndDict()],
    "large_payloads": [b"x" * 70000, "y" * 70000, bytearray(b"z" * 70000), list(range(40000))],
}


def _outcome(fn):
    try:
        return fn()
    except Exception as e:  # the same failure, same type and message, counts as identical
        return (type(e), str(e))


def _via_file(write):
    f = io.BytesIO()
    write(f)
    return f.getvalue()


def _identical(obj, proto, **kw):
    expected = _outcome(lambda: pickle.dumps(obj, proto, **kw))
    assert _outcome(lambda: brinery.dumps(obj, proto, **kw)) == expected, "dumps"
    got = _outcome(lambda: _via_file(lambda f: brinery.dump(obj, f, proto, **kw)))
    assert got == expected, "dump"
    got = _outcome(lambda: _via_file(lambda f: brinery.Pickler(f, proto, **kw).dump(obj)))
    assert got == expected, "Pickler.dump"


def check_identity(obj, protocols=PROTOCOLS, **kw):
    for proto in protocols:
        _identical(obj, proto, **kw)


@pytest.mark.parametrize("name", sorted(STDLIB_OBJECTS))
def test_stdlib_and_custom_objects(name):
    check_identity(STDLIB_OBJECTS[name])


@pytest.mark.parametrize("fix_imports", [True, False])
def test_fix_imports(fix_imports):
    import _compat_pickle  # noqa: F401  (names renamed for Python 2)

    obj = [range, set, frozenset, map, IOError, collections.UserDict, bytes, str, pickle.Pickler]
    check_identity(obj, fix_imports=fix_imports)


def test_extension_registry():
    copyreg.add_extension(__name__, "Plain", 0x42)
    copyreg.add_extension(__name__, "WithSlots", 0x4243)
    copyreg.add_extension(__name__, "Reduce2", 0x424344)
    try:
        check_identity([Plain, WithSlots, Reduce2, Plain(), Reduce2(1)])
    finally:
        copyreg.remove_extension(__name__, "Plain", 0x42)
        copyreg.remove_extension(__name__, "WithSlots", 0x4243)
        copyreg.remove_extension(__name__, "Reduce2", 0x424344)


def test_copyreg_dispatch_table_is_read_live():
    class Local:
        pass

    def reduce_local(obj):
        return (Plain, (9,))

    copyreg.pickle(Local, reduce_local)
    try:
        check_identity([Local(), Local()])
    finally:
        del copyreg.dispatch_table[Local]


def test_write_call_sequence_equals_cpython():
    class Chunks:
        def __init__(self):
            self.chunks = []

        def write(self, b):
            self.chunks.append(bytes(b))

    obj = [b"x" * 100000, list(range(30000)), "y" * 70000, bytearray(b"z" * 70000)]
    for proto in PROTOCOLS:
        a, b = Chunks(), Chunks()
        brinery.Pickler(a, proto).dump(obj)
        pickle.Pickler(b, proto).dump(obj)
        assert b"".join(a.chunks) == b"".join(b.chunks)
        if proto >= 4:
            assert [len(c) for c in a.chunks] == [len(c) for c in b.chunks]


def test_out_of_band_buffers():
    data = [
        pickle.PickleBuffer(b"readonly"),
        pickle.PickleBuffer(bytearray(b"writable")),
        pickle.PickleBuffer(b"big" * 30000),
    ]
    for callback_result in (None, False, True):
        ours, theirs = [], []

        def cb_ours(buf, ours=ours, result=callback_result):
            ours.append(buf)
            return result

        def cb_theirs(buf, theirs=theirs, result=callback_result):
            theirs.append(buf)
            return result

        got = brinery.dumps(data, 5, buffer_callback=cb_ours)
        expected = pickle.dumps(data, 5, buffer_callback=cb_theirs)
        assert got == expected
        assert [bytes(b) for b in ours] == [bytes(b) for b in theirs]
    # In-band without a callback.
    check_identity(data, protocols=[5])


# --------------------------------------------------------------------------------------------
# numpy, pandas, scikit-learn
# --------------------------------------------------------------------------------------------

np = pytest.importorskip("numpy")


def numpy_arrays():
    rng = np.random.default_rng(0)
    arrays = {
        f"dtype_{dt}": np.arange(24).astype(dt).reshape(4, 6)
        for dt in ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16", "?"]
    }
    arrays.update(
        {
            "big_endian": np.arange(10, dtype=">i4"),
            "fortran": np.asfortranarray(rng.standard_normal((5, 7))),
            "zero_d": np.array(3.5),
            "empty": np.zeros((0, 3)),
            "object": np.array([1, "a", None, (1, 2), {"k": [1]}], dtype=object),
            "structured": np.array(
                [(1, 2.0, b"ab"), (3, 4.0, b"cd")], dtype=[("a", "i4"), ("b", "f8"), ("c", "S2")]
            ),
            "unicode": np.array(["alpha", "béta"]),
            "datetime64": np.array(["2024-01-01", "2024-06-30"], dtype="datetime64[ns]"),
            "timedelta64": np.array([1, 2], dtype="timedelta64[s]"),
            "large": rng.standard_normal(100_000),
            "non_contiguous": np.arange(100)[::3],
            "masked": np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
            "matrix_like_scalars": [np.float64(1.5), np.int32(7), np.bool_(True), np.dtype("f4")],
            "shared": (lambda a: [a, a, a[1:]])(np.ones(5)),
        }
    )
    return arrays


NUMPY = numpy_arrays()


@pytest.mark.parametrize("name", sorted(NUMPY))
def test_numpy(name):
    check_identity(NUMPY[name])


def test_numpy_out_of_band():
    arrays = [np.arange(1000, dtype="f8"), np.ones((30, 40), order="F"), np.arange(10)[::2]]
    ours, theirs = [], []
    got = brinery.dumps(arrays, 5, buffer_callback=ours.append)
    expected = pickle.dumps(arrays, 5, buffer_callback=theirs.append)
    assert got == expected
    assert [bytes(b.raw()) for b in ours] == [bytes(b.raw()) for b in theirs]


pd = pytest.importorskip("pandas")


def pandas_objects():
    idx = pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["letter", "num"])
    return {
        "frame": pd.DataFrame({"i": range(6), "f": [0.5] * 6, "s": list("abcdef")}),
        "tz": pd.DataFrame({"t": pd.date_range("2024-01-01", periods=6, freq="h", tz="Europe/Paris")}),
        "categorical": pd.DataFrame(
            {"c": pd.Categorical(list("abcabc"), categories=list("cba"), ordered=True)}
        ),
        "multiindex": pd.DataFrame({"v": range(6)}, index=idx),
        "series": pd.Series([1.0, None, 3.0], name="s"),
        "nullable": pd.DataFrame(
            {"n": pd.array([1, None, 3], dtype="Int64"), "b": pd.array([True, None, False], dtype="boolean")}
        ),
        "period": pd.period_range("2024-01", periods=3, freq="M"),
        "interval": pd.interval_range(0, 5),
        "timedelta": pd.to_timedelta([1, 2, 3], unit="D"),
        "big": pd.DataFrame({"x": range(50_000), "y": [str(i) for i in range(50_000)]}),
    }


PANDAS = pandas_objects()


@pytest.mark.parametrize("name", sorted(PANDAS))
def test_pandas(name):
    check_identity(PANDAS[name])


sklearn = pytest.importorskip("sklearn")


def sklearn_models():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    return {
        "logistic": LogisticRegression(max_iter=500).fit(X, y),
        "forest": RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y),
        "pipeline": Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]).fit(
            X, y
        ),
    }


SKLEARN = sklearn_models()


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_sklearn(name):
    check_identity(SKLEARN[name])


def test_round_trip_of_fitted_model_predicts_the_same():
    model = SKLEARN["pipeline"]
    X = np.random.default_rng(1).standard_normal((10, 8))
    restored = pickle.loads(brinery.dumps(model))
    assert (restored.predict(X) == model.predict(X)).all()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
