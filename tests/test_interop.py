"""Interop both ways with the standard library, on real-world objects.

For numpy arrays (many dtypes and layouts), pandas objects (tz-aware datetimes, categoricals,
MultiIndex, nullable and interval types), fitted scikit-learn models and standard-library objects,
at every protocol the object can be pickled at:

- what brinery writes, ``pickle.loads`` loads;
- what ``pickle`` writes, ``brinery.loads`` loads;

and in both cases the result equals what the stdlib's own round trip gives: the same
``pickle.dumps(result, 5)`` bytes, and domain equality (``np.array_equal``, ``DataFrame.equals``,
equal predictions). Also through real files (``dump``/``load``) and protocol-5 out-of-band buffers.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import io
import ipaddress
import pathlib
import pickle
import re
import types
import uuid
import zoneinfo

import brinery
import pytest

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
sklearn = pytest.importorskip("sklearn")

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


def canon(value) -> bytes:
    return pickle.dumps(value, 5)


# ---------------------------------------------------------------------------------------------
# Module-level classes and functions (they pickle by reference)
# ---------------------------------------------------------------------------------------------


Point = collections.namedtuple("Point", "x y")


class Color(enum.Enum):
    RED = 1
    GREEN = "g"


class Flags(enum.IntFlag):
    A = 1
    B = 2


@dataclasses.dataclass
class Record:
    name: str
    values: list
    when: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenSlots:
    a: int
    b: tuple


class Stateful:
    def __init__(self):
        self.secret = 42
        self.items = [1, 2]

    def __getstate__(self):
        return {"items": self.items}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.secret = "restored"


def add(a, b=0):
    return a + b


def stdlib_objects():
    tz = zoneinfo.ZoneInfo("Europe/Berlin")
    shared = [1, "shared"]
    return {
        "datetime-naive": datetime.datetime(2024, 2, 29, 12, 30, 45, 123456),
        "datetime-utc": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        "datetime-zoneinfo": datetime.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=tz),
        "datetime-offset": datetime.datetime(
            2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30), "X")
        ),
        "date-time-delta": [
            datetime.date(1, 1, 1),
            datetime.time(23, 59, 59, 999999),
            datetime.timedelta(days=-3, microseconds=7),
        ],
        "decimal": [decimal.Decimal("3.14159265358979323846264338327950288"), decimal.Decimal("-NaN")],
        "fraction": fractions.Fraction(-355, 113),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "collections": [
            collections.OrderedDict([("b", 1), ("a", 2)]),
            collections.defaultdict(list, {"k": [1]}),
            collections.deque([1, 2, 3], maxlen=5),
            collections.Counter("mississippi"),
            Point(1, y=2),
            collections.ChainMap({"a": 1}, {"b": 2}),
        ],
        "enum": [Color.RED, Color.GREEN, Flags.A | Flags.B],
        "dataclass": Record("r", [1.5, None], datetime.datetime(2020, 5, 17)),
        "dataclass-frozen-slots": FrozenSlots(1, (2, 3)),
        "getstate-setstate": Stateful(),
        "paths": [pathlib.PurePosixPath("/a/b"), pathlib.PureWindowsPath("C:/x"), pathlib.Path("rel")],
        "regex": re.compile(r"(?P<w>\w+)\s", re.I | re.M),
        "array": [array.array("d", [1.0, -0.0]), array.array("u", "hé"), array.array("q", [-(2**63)])],
        "numbers": [complex(1, -2), 2**200, -(2**64), 1e308, float("inf"), True, None, ...],
        "builtins": [range(1, 10, 3), slice(1, None, -1), len, int, type(None), NotImplemented],
        "partial": functools.partial(add, 1, b=2),
        "namespace": types.SimpleNamespace(a=1, b=[2]),
        "ipaddress": [ipaddress.ip_address("::1"), ipaddress.ip_network("10.0.0.0/8")],
        "text-bytes": ["é\u20ac\U0001f600\ud800", b"\x00\xff" * 100, bytearray(b"ab" * 40)],
        "shared-and-recursive": (lambda lst: (lst.append(lst), {"l": lst, "s": shared, "t": shared})[1])(
            [shared]
        ),
        "sets": [{1, 2, 3}, frozenset({"a", "b"}), set()],
    }


def numpy_objects():
    rng = np.random.default_rng(0)
    structured = np.zeros(3, dtype=[("a", "<i4"), ("b", ">f8", (2,)), ("c", "U3"), ("d", "S2")])
    structured["a"] = [1, 2, 3]
    structured["c"] = ["x", "yy", "zzz"]
    objs = {
        f"dtype-{dt}": (rng.integers(0, 100, 12) if np.dtype(dt).kind in "iub" else rng.random(12)).astype(dt)
        for dt in [
            "bool",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float16",
            "float32",
            "float64",
            "longdouble",
            "complex64",
            "complex128",
            ">i4",
            ">f8",
        ]
    }
    objs.update(
        {
            "unicode": np.array(["a", "bé", "\U0001f600"]),
            "bytes": np.array([b"a", b"\x00\xff"]),
            "object": np.array([1, "two", None, [3]], dtype=object),
            "datetime64": np.array(["2024-01-01T00:00", "NaT"], dtype="datetime64[ns]"),
            "timedelta64": np.array([1, -2], dtype="timedelta64[s]"),
            "structured": structured,
            "recarray": structured.view(np.recarray),
            "fortran-2d": np.asfortranarray(rng.random((4, 3))),
            "non-contiguous": rng.random((6, 6))[::2, 1::2],
            "3d": rng.integers(-5, 5, (2, 3, 4)),
            "0-d": np.array(3.5),
            "empty": np.empty((0, 4)),
            "nan-inf": np.array([np.nan, -np.inf, -0.0]),
            "scalars": [np.float64(1.5), np.int32(-3), np.bool_(True), np.complex64(1j), np.str_("s")],
            "masked": np.ma.array([1, 2, 3], mask=[0, 1, 0]),
            "big": rng.random(100_000),
            "dtype-objects": [np.dtype("f8"), np.dtype([("x", "i2")])],
        }
    )
    return objs


def numpy_equal(a, b):
    if isinstance(a, np.ndarray) and a.dtype.kind not in "OV":
        nan_kinds = "fcmM"  # NaN and NaT compare equal to themselves here
        return (
            type(a) is type(b)
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=a.dtype.kind in nan_kinds)
        )
    return canon(a) == canon(b)


def pandas_objects():
    idx = pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["letter", "num"])
    frame = pd.DataFrame(
        {
            "int": range(6),
            "float": [0.5, np.nan, -0.0, 1e300, np.inf, 2.0],
            "str": list("abcdef"),
            "when": pd.date_range("2024-03-30", periods=6, freq="7h", tz="Europe/Berlin"),
            "when_utc": pd.date_range("2000-01-01", periods=6, tz="UTC"),
            "naive": pd.date_range("1999-12-31", periods=6, freq="D"),
            "delta": pd.to_timedelta(range(6), unit="s"),
            "cat": pd.Categorical(
                ["lo", "hi", "lo", "mid", "hi", "lo"], categories=["lo", "mid", "hi"], ordered=True
            ),
            "nullable": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "bool": [True, False] * 3,
            "obj": [None, 1, "x", (2,), [3], {"k": 4}],
        },
        index=idx,
    )
    wide = pd.DataFrame(
        np.arange(12).reshape(3, 4),
        columns=pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1), ("y", 2)]),
    )
    return {
        "frame-mixed-multiindex": frame,
        "frame-multiindex-columns": wide,
        "series-tz": pd.Series(
            pd.date_range("2021-03-28", periods=4, freq="h", tz="America/New_York"), name="t"
        ),
        "series-categorical": pd.Series(pd.Categorical(list("abca"))),
        "series-period": pd.Series(pd.period_range("2020-01", periods=3, freq="M")),
        "series-interval": pd.Series(pd.interval_range(0, 3)),
        "series-string": pd.Series(["a", None, "c"], dtype="string"),
        "index-types": [
            pd.RangeIndex(2, 20, 3),
            pd.CategoricalIndex(["a", "b", "a"]),
            pd.DatetimeIndex(["2020-01-01", None], tz="Asia/Tokyo"),
            pd.Index([1.5, 2.5]),
        ],
        "timestamp-timedelta": [
            pd.Timestamp("2024-01-01 12:00", tz="Europe/London"),
            pd.Timedelta("1 days 2 min"),
        ],
        "empty-frame": pd.DataFrame(),
    }


def pandas_equal(a, b):
    if isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        return (
            type(a) is type(b)
            and a.equals(b)
            and (
                getattr(a, "dtypes", None) is None
                or (list(map(str, np.atleast_1d(a.dtypes))) == list(map(str, np.atleast_1d(b.dtypes))))
            )
        )
    return canon(a) == canon(b)


@functools.cache
def sklearn_data():
    from sklearn.datasets import make_classification

    return make_classification(n_samples=200, n_features=8, n_informative=4, random_state=0)


@functools.cache
def sklearn_objects():
    from sklearn.decomposition import PCA
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = sklearn_data()
    return {
        "logistic-regression": LogisticRegression(max_iter=500).fit(X, y),
        "random-forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
        "pipeline": Pipeline(
            [("scale", StandardScaler()), ("pca", PCA(4)), ("clf", LogisticRegression(max_iter=500))]
        ).fit(X, y),
    }


def sklearn_equal(a, b):
    X, _ = sklearn_data()
    return (
        type(a) is type(b)
        and a.get_params().keys() == b.get_params().keys()
        and np.array_equal(a.predict(X), b.predict(X))
        and np.array_equal(a.predict_proba(X), b.predict_proba(X))
    )


# name -> (factory, domain equality)
FAMILIES = {
    "stdlib": (stdlib_objects, lambda a, b: canon(a) == canon(b)),
    "numpy": (numpy_objects, numpy_equal),
    "pandas": (pandas_objects, pandas_equal),
    "sklearn": (sklearn_objects, sklearn_equal),
}


@functools.cache
def objects(family):
    return FAMILIES[family][0]()


CASES = [(family, name) for family, (factory, _) in FAMILIES.items() for name in factory()]


def stdlib_pickle(obj, protocol):
    try:
        return pickle.dumps(obj, protocol)
    except (pickle.PicklingError, TypeError, ValueError, AttributeError) as exc:
        pytest.skip(f"the stdlib cannot pickle it at protocol {protocol}: {exc!r}")


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("family", "name"), CASES, ids=[f"{f}-{n}" for f, n in CASES])
def test_stdlib_loads_what_brinery_writes(family, name, protocol):
    obj = objects(family)[name]
    reference = pickle.loads(stdlib_pickle(obj, protocol))
    loaded = pickle.loads(brinery.dumps(obj, protocol))
    assert canon(loaded) == canon(reference)
    assert FAMILIES[family][1](loaded, reference)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("family", "name"), CASES, ids=[f"{f}-{n}" for f, n in CASES])
def test_brinery_loads_what_stdlib_writes(family, name, protocol):
    obj = objects(family)[name]
    data = stdlib_pickle(obj, protocol)
    reference = pickle.loads(data)
    loaded = brinery.loads(data)
    assert canon(loaded) == canon(reference)
    assert FAMILIES[family][1](loaded, reference)


@pytest.mark.parametrize("direction", ["brinery-to-stdlib", "stdlib-to-brinery"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_through_files(family, direction, tmp_path):
    """``dump`` to a real file and ``load`` from it, every object of a family in one stream."""
    writer, reader = (brinery, pickle) if direction == "brinery-to-stdlib" else (pickle, brinery)
    objs = objects(family)
    path = tmp_path / "stream.pkl"
    with path.open("wb") as f:
        for protocol, obj in zip(PROTOCOLS * len(objs), objs.values(), strict=False):
            writer.dump(obj, f, protocol)
    loaded = []
    with path.open("rb") as f:
        for _ in objs:
            loaded.append(reader.load(f))
        assert f.read() == b""
    for protocol, obj, back in zip(PROTOCOLS * len(objs), objs.values(), loaded, strict=False):
        expected = pickle.loads(pickle.dumps(obj, protocol))
        assert FAMILIES[family][1](back, expected)


@pytest.mark.parametrize("family", ["numpy", "pandas"])
def test_out_of_band_buffers_both_ways(family):
    for name, obj in objects(family).items():
        ref_buffers: list = []
        ref_data = pickle.dumps(obj, 5, buffer_callback=ref_buffers.append)
        buffers: list = []
        data = brinery.dumps(obj, 5, buffer_callback=buffers.append)
        assert data == ref_data, name
        assert [bytes(b.raw()) for b in buffers] == [bytes(b.raw()) for b in ref_buffers], name
        via_stdlib = pickle.loads(data, buffers=buffers)
        via_brinery = brinery.loads(ref_data, buffers=ref_buffers)
        assert FAMILIES[family][1](via_stdlib, via_brinery), name
        assert canon(via_stdlib) == canon(via_brinery), name


def test_out_of_band_buffers_are_used_zero_copy():
    arr = np.arange(1000, dtype="f8")
    buffers: list = []
    data = pickle.dumps(arr, 5, buffer_callback=buffers.append)
    loaded = brinery.loads(data, buffers=buffers)
    assert np.shares_memory(loaded, arr)  # the stdlib reuses the buffer too


def test_unpickler_subclass_with_find_class_and_persistent_load():
    """A restricting find_class and a persistent_load hook work on stdlib-written pickles."""
    obj = {"arr": np.arange(3), "when": datetime.date(2020, 1, 1), "ext": "EXTERNAL"}

    class Persisting(pickle.Pickler):
        def persistent_id(self, o):
            return "pid-ext" if isinstance(o, str) and o == "EXTERNAL" else None

    f = io.BytesIO()
    Persisting(f, 4).dump(obj)
    seen = []

    class Restricting(brinery.Unpickler):
        def find_class(self, module, name):
            seen.append((module, name))
            return super().find_class(module, name)

        def persistent_load(self, pid):
            return f"loaded:{pid}"

    f.seek(0)
    out = Restricting(f).load()
    assert out["ext"] == "loaded:pid-ext"
    assert np.array_equal(out["arr"], obj["arr"]) and out["when"] == obj["when"]
    assert ("datetime", "date") in seen and any(m.startswith("numpy") for m, _ in seen)


def test_the_module_has_every_name_of_the_stdlib_pickle():
    # `import brinery as pickle`: code that reads opcode constants (`pickle.STOP`), calls the
    # helpers (`pickle.whichmodule`) or subclasses the pure-Python implementation (dill
    # subclasses `pickle._Pickler`) keeps working; the names brinery does not reimplement are
    # the stdlib's own objects
    import brinery

    reimplemented = {"Pickler", "Unpickler", "dump", "dumps", "load", "loads"}
    not_api = {"codecs", "io", "re", "sys", "islice", "partial", "pack", "unpack", "maxsize",
               "FunctionType", "PyStringMap", "_Framer", "_Unframer", "_Stop", "_test",
               "_tuplesize2code", "_HAVE_PICKLE_BUFFER"}  # fmt: skip
    for name in dir(pickle):
        if name.startswith("__") or name in not_api:
            continue
        assert hasattr(brinery, name), name
        if name not in reimplemented:
            assert getattr(brinery, name) is getattr(pickle, name), name
    assert set(pickle.__all__) <= set(brinery.__all__)
    star: dict[str, object] = {}
    exec("from brinery import *", star)
    assert star["STOP"] == b"." and star["dumps"] is brinery.dumps and star["Pickler"] is brinery.Pickler

    class Traced(brinery._Pickler):  # the pure-Python pickler, as dill extends it
        def save(self, obj, save_persistent_id=True):
            seen.append(type(obj).__name__)
            super().save(obj, save_persistent_id)

    seen: list[str] = []
    buf = io.BytesIO()
    Traced(buf, protocol=4).dump({"a": [1]})
    assert brinery.loads(buf.getvalue()) == {"a": [1]} and "dict" in seen
    assert brinery.whichmodule(collections.OrderedDict, "OrderedDict") == "collections"
    assert brinery.decode_long(brinery.encode_long(-(2**70))) == -(2**70)
