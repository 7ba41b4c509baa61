"""brinery's Unpickler, load and loads against CPython 3.11's ``_pickle``.

What the standard library writes, brinery reads into the same objects (every protocol; stdlib
types, custom classes, recursive structures, numpy/pandas/scikit-learn, out-of-band buffers,
Python 2 pickles); files are read with the same calls, so several pickles load from one file in a
row and the file positions match; the ``pickle.find_class`` audit event fires; the Unpickler is
subclassable like ``_pickle.Unpickler``; and thousands of mutated pickles raise only Python
exceptions (the same type and message as ``_pickle``), checked in a subprocess so that a crash
is a failure.
"""

from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import fractions
import gc
import inspect
import io
import pickle
import sys
import weakref

import brinery
import pytest

PROTOCOLS = list(range(pickle.HIGHEST_PROTOCOL + 1))


# ---------------------------------------------------------------------------------------------
# Module-level classes (they pickle by reference)
# ---------------------------------------------------------------------------------------------


class Plain:
    def __init__(self, a=1, b="two"):
        self.a = a
        self.b = b

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)


class Slotted:
    __slots__ = ("x", "y")

    def __init__(self, x=0, y=None):
        self.x = x
        self.y = y

    def __eq__(self, other):
        return type(other) is type(self) and (self.x, self.y) == (other.x, other.y)


class WithState:
    def __init__(self, v=0):
        self.v = v

    def __getstate__(self):
        return {"doubled": self.v * 2}

    def __setstate__(self, state):
        self.v = state["doubled"] // 2

    def __eq__(self, other):
        return type(other) is type(self) and other.v == self.v


class Reduced:
    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return (Reduced, self.args, {"extra": 1}, iter([1, 2]), iter([("k", "v")]))

    def append(self, item):
        self.__dict__.setdefault("items", []).append(item)

    def extend(self, items):
        for item in items:
            self.append(item)

    def __setitem__(self, key, value):
        self.__dict__.setdefault("mapping", {})[key] = value

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)


class KwOnly:
    def __new__(cls, *, flag):
        obj = super().__new__(cls)
        obj.flag = flag
        return obj

    def __getnewargs_ex__(self):
        return (), {"flag": self.flag}

    def __eq__(self, other):
        return type(other) is type(self) and other.flag == self.flag


class MyList(list):
    pass


class MyDict(dict):
    pass


class Outer:
    class Inner:
        def __eq__(self, other):
            return type(other) is type(self)


def sample_objects():
    return [
        None,
        True,
        False,
        0,
        -1,
        255,
        256,
        65535,
        2**31 - 1,
        -(2**31),
        2**63,
        -(2**1000),
        1.5,
        float("inf"),
        -0.0,
        "",
        "ascii",
        "é€😀",
        "\ud800 lone",
        b"",
        b"\x00\xff" * 100,
        bytearray(b"abc"),
        (),
        (1,),
        (1, 2),
        (1, 2, 3),
        tuple(range(10)),
        [],
        list(range(2500)),
        {},
        {i: str(i) for i in range(2500)},
        set(),
        {1, 2, 3},
        frozenset({"a", "b"}),
        frozenset(),
        complex(1, 2),
        datetime.datetime(2024, 7, 14, 22, 30, tzinfo=datetime.UTC),
        datetime.date(2020, 2, 29),
        datetime.timedelta(days=3, seconds=5),
        decimal.Decimal("3.14159"),
        fractions.Fraction(3, 7),
        collections.OrderedDict(a=1, b=2),
        collections.Counter("abracadabra"),
        collections.deque([1, 2, 3], maxlen=5),
        collections.defaultdict(list, {"x": [1]}),
        range(1, 10, 2),
        slice(1, 2, 3),
        len,
        Plain,
        Outer.Inner,
        Outer.Inner(),
        Plain(3, [4]),
        Slotted(1, "y"),
        WithState(21),
        Reduced(1, 2),
        KwOnly(flag=True),
        MyList([1, 2]),
        MyDict(a=1),
        type(None),
        NotImplemented,
        Ellipsis,
    ]


def assert_same(got, want):
    assert type(got) is type(want)
    assert pickle.dumps(got, 5) == pickle.dumps(want, 5)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_loads_equals_stdlib_at_every_protocol(proto):
    for obj in sample_objects():
        try:
            data = pickle.dumps(obj, proto)
        except (pickle.PicklingError, TypeError, AttributeError):
            continue  # e.g. KwOnly below protocol 2
        want = pickle.loads(data)
        got = brinery.loads(data)
        assert_same(got, want)
        assert got == want or got != got or obj is NotImplemented


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_shared_and_recursive_structures(proto):
    a = [1]
    a.append(a)
    d = {"self": None}
    d["self"] = d
    shared = ["shared"]
    obj = [a, d, shared, shared, (shared,)]
    got = brinery.loads(pickle.dumps(obj, proto))
    assert got[0][1] is got[0]
    assert got[1]["self"] is got[1]
    assert got[2] is got[3] is got[4][0]
    p = Plain()
    p.a = p
    got = brinery.loads(pickle.dumps(p, proto))
    assert got.a is got


def test_numpy_pandas_sklearn():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    linear_model = pytest.importorskip("sklearn.linear_model")
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    frame = pd.DataFrame(
        {
            "a": [1, 2, 3],
            "b": pd.Categorical(["x", "y", "x"]),
            "t": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
        }
    )
    model = linear_model.LinearRegression().fit([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
    for proto in PROTOCOLS:
        for obj in (arr, arr.T, np.float64(2.5), np.dtype("<U3")):
            got = brinery.loads(pickle.dumps(obj, proto))
            assert type(got) is type(obj)
            assert np.array_equal(got, obj) if isinstance(obj, np.ndarray) else got == obj
        assert brinery.loads(pickle.dumps(frame, proto)).equals(frame)
        got = brinery.loads(pickle.dumps(model, proto))
        assert got.predict([[3.0]])[0] == pytest.approx(7.0)


def test_out_of_band_buffers():
    np = pytest.importorskip("numpy")
    arr = np.arange(1000, dtype=np.int64)
    ro = np.arange(10, dtype=np.int8)
    ro.flags.writeable = False
    buffers = []
    data = pickle.dumps([arr, ro, pickle.PickleBuffer(b"bytes")], 5, buffer_callback=buffers.append)
    raw = [b.raw() for b in buffers]
    got = brinery.loads(data, buffers=raw)
    assert np.array_equal(got[0], arr) and np.array_equal(got[1], ro)
    assert got[0].base is not None  # zero-copy: a view of the supplied buffer
    assert not got[1].flags.writeable
    assert bytes(got[2]) == b"bytes"
    f = io.BytesIO(data)
    got = brinery.load(f, buffers=iter(raw))
    assert np.array_equal(got[0], arr)
    with pytest.raises(pickle.UnpicklingError, match="no \\*buffers\\* argument"):
        brinery.loads(data)
    with pytest.raises(pickle.UnpicklingError, match="not enough out-of-band buffers"):
        brinery.loads(data, buffers=[])


# Python 2 pickles (written by CPython 2.7).
PY2_PICKLES = [
    # pickle.dumps('caf\xe9', 0) / 1 / 2
    b"S'caf\\xe9'\np0\n.",
    b"U\x04caf\xe9q\x00.",
    b"\x80\x02U\x04caf\xe9q\x00.",
    # BINSTRING, dict of str, unicode
    b"\x80\x02}q\x00(U\x01kq\x01T\x03\x00\x00\x00\xff\x00\x01q\x02X\x02\x00\x00\x00\xc3\xa9q\x03Vu\\xe9\nq\x04u.",
    # set([1, 2]) at protocol 2 through __builtin__.set
    b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
    # an old-style instance (INST) and a copy_reg reconstructor
    b"(i__main__\nPlainOld\np0\n(dp1\nS'a'\np2\nI1\nsb.".replace(
        b"__main__\nPlainOld", b"test_unpickler\nPlain"
    ),
    b"ccopy_reg\n_reconstructor\np0\n(ctest_unpickler\nPlain\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n"
    b"(dp5\nS'a'\np6\nL12345678901234567890L\nsb.",
    # xrange and a long at protocol 2, a UserDict
    b"\x80\x02c__builtin__\nxrange\nq\x00K\x00K\x05K\x01\x87q\x01Rq\x02.",
    b"\x80\x02(cUserDict\nUserDict\no}U\x04data}K\x01K\x02ssb.",
]


@pytest.mark.parametrize("data", PY2_PICKLES)
@pytest.mark.parametrize("encoding", ["latin1", "bytes", "ASCII"])
def test_python2_pickles(data, encoding):
    sys.modules.setdefault("test_unpickler", sys.modules[__name__])
    for fix_imports in (True, False):
        try:
            want = pickle.loads(data, encoding=encoding, fix_imports=fix_imports)
        except Exception as exc:  # noqa: BLE001 - the same exception is expected
            with pytest.raises(type(exc)) as info:
                brinery.loads(data, encoding=encoding, fix_imports=fix_imports)
            assert str(info.value) == str(exc)
            continue
        got = brinery.loads(data, encoding=encoding, fix_imports=fix_imports)
        assert type(got) is type(want)
        assert describe(got) == describe(want)


def describe(obj):
    return pickle.dumps(obj, 5)


def test_encoding_errors():
    data = b"U\x04caf\xe9q\x00."
    assert brinery.loads(data, encoding="ascii", errors="replace") == "caf\ufffd"
    assert brinery.loads(data, encoding="utf-8", errors="surrogateescape") == "caf\udce9"


class UnseekableIO(io.BytesIO):
    def peek(self, *args):
        raise NotImplementedError


class MinimalIO:
    """read and readline only (no peek, no readinto)."""

    def __init__(self, data):
        self._bio = io.BytesIO(data)
        self.read = self._bio.read
        self.readline = self._bio.readline

    def tell(self):
        return self._bio.tell()


class CallLog(io.BytesIO):
    """A BytesIO that records every call the unpickler makes."""

    def __init__(self, data, log):
        super().__init__(data)
        self.log = log

    def read(self, *args):
        self.log.append(("read", *args))
        return super().read(*args)

    def readline(self, *args):
        self.log.append(("readline", *args))
        return super().readline(*args)

    def readinto(self, b):
        self.log.append(("readinto", len(b)))
        return super().readinto(b)


def file_kinds(data):
    yield io.BytesIO(data), io.BytesIO(data)
    yield io.BufferedReader(io.BytesIO(data), 7), io.BufferedReader(io.BytesIO(data), 7)
    yield io.BufferedReader(io.BytesIO(data)), io.BufferedReader(io.BytesIO(data))
    yield UnseekableIO(data), UnseekableIO(data)
    yield MinimalIO(data), MinimalIO(data)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_several_pickles_from_one_file(proto):
    objs = [1, "two", [3.0, b"four" * 5000], {"five": (5,)}, list(range(3000)), bytearray(70000)]
    data = b"".join(pickle.dumps(o, proto) for o in objs)
    for ours, theirs in file_kinds(data):
        u = brinery.Unpickler(ours)
        ref = pickle.Unpickler(theirs)
        for obj in objs:
            assert u.load() == ref.load() == obj
            assert ours.tell() == theirs.tell()
        with pytest.raises(EOFError, match="Ran out of input"):
            u.load()
        with pytest.raises(EOFError):
            ref.load()
    # module-level load leaves the file right after STOP as well
    f = io.BytesIO(data)
    for obj in objs:
        assert brinery.load(f) == obj
    assert f.tell() == len(data)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_file_calls_match_stdlib(proto):
    data = pickle.dumps([b"x" * 300000, "text", 10**30, ("a", "b"), {1: b""}], proto) + b"junk"
    ours, theirs = [], []
    assert brinery.load(CallLog(data, ours)) == pickle.load(CallLog(data, theirs))
    assert ours == theirs


def test_truncated_file_raises_like_stdlib():
    data = pickle.dumps([1, "abc", b"xyz" * 10], 2)
    for cut in range(len(data)):
        for make in (io.BytesIO, MinimalIO, lambda d: io.BufferedReader(io.BytesIO(d), 3)):
            try:
                pickle.load(make(data[:cut]))
            except Exception as exc:  # noqa: BLE001
                with pytest.raises(type(exc)) as info:
                    brinery.load(make(data[:cut]))
                assert str(info.value) == str(exc)


def test_find_class_audit_event(run_python):
    proc = run_python(
        """
        import sys, pickle, brinery
        events = []
        sys.addaudithook(lambda ev, args: events.append(args) if ev == "pickle.find_class" else None)
        brinery.loads(pickle.dumps(collections_od := __import__("collections").OrderedDict(), 2))
        brinery.Unpickler(__import__("io").BytesIO(pickle.dumps(len, 4))).load()
        print(events)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[('collections', 'OrderedDict'), ('builtins', 'len')]"


def test_fix_imports_and_dotted_names():
    assert brinery.loads(b"c__builtin__\nset\n)R.") == set()
    with pytest.raises(ModuleNotFoundError):
        brinery.loads(b"c__builtin__\nset\n)R.", fix_imports=False)
    # dotted names only at protocol 4+
    assert brinery.loads(b"\x80\x04cbuiltins\nstr.join\n.") is str.join
    with pytest.raises(AttributeError, match="Can't get attribute 'str.join'"):
        brinery.loads(b"\x80\x02cbuiltins\nstr.join\n.")
    with pytest.raises(AttributeError, match="Can't pickle local attribute"):
        brinery.loads(b"\x80\x04cbuiltins\nstr.<locals>\n.")


def test_extension_registry_is_read_live():
    code = 0xBEEF
    copyreg.add_extension("test_unpickler", "Plain", code)
    try:
        sys.modules.setdefault("test_unpickler", sys.modules[__name__])
        assert type(brinery.loads(b"\x80\x02\x83\xef\xbe)\x81.")) is Plain
        assert copyreg._extension_cache[code] is Plain
    finally:
        copyreg.remove_extension("test_unpickler", "Plain", code)
    with pytest.raises(ValueError, match="unregistered extension code 48879"):
        brinery.loads(b"\x80\x02\x83\xef\xbe.")


def test_signatures_match_stdlib():
    import _pickle

    for ours, theirs in ((brinery.load, _pickle.load), (brinery.loads, _pickle.loads)):
        assert str(inspect.signature(ours)) == str(inspect.signature(theirs))
    # brinery adds one keyword-only parameter, `policy=None` (the safe-load mode)
    ours = str(inspect.signature(brinery.Unpickler)).replace(", policy=None)", ")")
    assert ours == str(inspect.signature(_pickle.Unpickler))
    with pytest.raises(TypeError, match="file must have 'read' and 'readline' attributes"):
        brinery.Unpickler(object())
    with pytest.raises(TypeError):
        brinery.loads("a str")
    assert brinery.loads(memoryview(b"K\x05.")) == 5
    assert brinery.loads(bytearray(b"K\x05.")) == 5


def test_subclass_hooks():
    class Restricted(brinery.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("builtins", "set"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")

    assert Restricted(io.BytesIO(pickle.dumps({1, 2}, 3))).load() == {1, 2}
    with pytest.raises(pickle.UnpicklingError, match="forbidden"):
        Restricted(io.BytesIO(pickle.dumps(len, 4))).load()

    class Pers(brinery.Unpickler):
        def persistent_load(self, pid):
            return ("loaded", pid)

    assert Pers(io.BytesIO(b"\x80\x02K\x07Q.")).load() == ("loaded", 7)
    u = brinery.Unpickler(io.BytesIO(b"Pabc\n."))
    with pytest.raises(pickle.UnpicklingError, match="no persistent_load function"):
        u.load()
    u = brinery.Unpickler(io.BytesIO(b"Pabc\n."))
    u.persistent_load = lambda pid: pid.upper()
    assert u.load() == "ABC"

    class BadInit(brinery.Unpickler):
        def __init__(self):
            pass

    with pytest.raises(pickle.UnpicklingError, match=r"__init__\(\) was not called by BadInit"):
        BadInit().load()


def test_no_reference_cycle_and_gc():
    class Pers(brinery.Unpickler):
        def persistent_load(self, pid):
            return pid

    u = Pers(io.BytesIO(pickle.dumps("abc", 2)))
    assert u.load() == "abc"
    r = weakref.ref(u)
    del u
    assert r() is None  # freed by refcounting alone: no cycle through persistent_load
    # a cycle through the memo is collected by the GC
    u = Pers(io.BytesIO(b""))
    u.memo = {0: u}
    r = weakref.ref(u)
    del u
    gc.collect()
    assert r() is None


def test_memo_proxy():
    data = pickle.dumps(["abcdefg", "abcdefg", 44], 2)
    u = brinery.Unpickler(io.BytesIO(data))
    first = u.load()
    memo = u.memo.copy()
    assert memo and all(isinstance(k, int) for k in memo)
    primed = brinery.Unpickler(io.BytesIO(b"\x80\x02h\x00."))
    primed.memo = u.memo
    assert primed.load() is first
    primed.memo = {0: "zero"}
    assert brinery.Unpickler(io.BytesIO(b"")).memo.copy() == {}
    assert primed.memo.copy() == {0: "zero"}
    assert pickle.loads(pickle.dumps(primed.memo)) == {0: "zero"}
    primed.memo.clear()
    assert primed.memo.copy() == {}
    with pytest.raises(TypeError):
        primed.memo = object()
    with pytest.raises(ValueError):
        primed.memo = {-1: None}
    with pytest.raises(TypeError, match="attribute deletion is not supported"):
        del primed.memo


ERROR_CASES = [
    b"",
    b"N",
    b"\x80\x06.",
    b"h\x07.",
    b"g7\n.",
    b"a.",
    b"(a.",
    b"Iabc\n.",
    b"I\n.",
    b"Labc\n.",
    b"Fabc\n.",
    b"F1e999\n.",
    b"\x82\x00.",
    b"\xff",
    b"z",
    b"T\xff\xff\xff\xff",
    b"\x8b\xff\xff\xff\xff",
    b"(0.",
    b"N(.",
    b"(K\x01d.",
    b"}(K\x01u.",
    b"N(K\x01\x90.",
    b"K\x01}b.",
    b"cbuiltins\nobject\n)\x81K\x01b.",
    b"cbuiltins\nlen\n)\x81.",
    b"cbuiltins\nint\nN\x81.",
    b"cbuiltins\nint\n)N\x92.",
    b"N)R.",
    b"\x95\x05\x00\x00\x00\x00\x00\x00\x00N.",
    b"Vab\\u12\n.",
    b"X\x01\x00\x00\x00\xff.",
    b"c\xff\nfoo\n.",
    b"c\xff\nfoo",
    b"(i\xff\nfoo",
    b"i\xff\nfoo",
    b"Np-1\n.",
    b"Ng-1\n.",
    b"N\x98.",
    b"K\x01K\x02\x93.",
    b"\x80\x03C\x00",
    b"S'abc\n.",
    b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
]


@pytest.mark.parametrize("data", ERROR_CASES)
def test_errors_match_stdlib(data):
    with pytest.raises(Exception) as want:  # noqa: PT011
        pickle.loads(data)
    with pytest.raises(type(want.value)) as got:
        brinery.loads(data)
    assert str(got.value) == str(want.value)
    assert isinstance(got.value, type(want.value))


def test_deep_nesting_does_not_overflow(run_python):
    proc = run_python(
        """
        import brinery, sys
        n = 1_000_000
        data = b"\\x80\\x02" + b"]" * n + b"a" * (n - 1) + b"."
        obj = brinery.loads(data)
        depth = 0
        while obj:
            obj = obj[0]
            depth += 1
        print(depth)
        data = b"(" * n + b"t" * n + b"."
        print(len(brinery.loads(data)))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["999999", "1"]


FUZZ = r"""
import glob, io, os, pickle, random, resource, sys, warnings
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
warnings.simplefilter("ignore")
sys.setrecursionlimit(5000)
sys.path.insert(0, "scripts")
import brinery

seeds = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.pkl"))):
    data = open(path, "rb").read()
    if not any(x in data for x in (b"numpy", b"pandas", b"sklearn", b"scipy")):
        seeds.append(data)
objs = [None, 1, 2**70, 1.5, "abc", b"xy", bytearray(b"z"), [1, [2]], (1, 2), {"a": 1}, {1}]
for obj in objs:
    seeds += [pickle.dumps(obj, p) for p in range(6)]
rng = random.Random(int(sys.argv[2]))

def mutate(d):
    d = bytearray(d)
    for _ in range(rng.randint(1, 4)):
        if not d:
            d = bytearray(b".")
        i = rng.randrange(len(d))
        k = rng.random()
        if k < 0.3: d[i] = rng.randrange(256)
        elif k < 0.5: del d[i:i + rng.randint(1, 4)]
        elif k < 0.7: d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        elif k < 0.85: d = d[:i]
        else:
            j = rng.randrange(len(d)); d[i:i] = d[j:j + rng.randint(1, 8)]
    return bytes(d)

def outcome(fn, data, file):
    try:
        if file:
            f = io.BytesIO(data); fn(f); return ("ok", f.tell())
        fn(data); return ("ok",)
    except MemoryError:
        return ("memory",)
    except RecursionError:
        return ("recursion",)
    except Exception as exc:
        return (type(exc).__name__, str(exc))

mismatches = 0
n = int(sys.argv[3])
for i in range(n):
    data = mutate(rng.choice(seeds))
    if any(x in data for x in (b"os\n", b"system", b"posix", b"subprocess", b"shutil")):
        continue
    file = i % 2 == 1
    ours = outcome(brinery.load if file else brinery.loads, data, file)
    theirs = outcome(pickle.load if file else pickle.loads, data, file)
    if ours != theirs and "memory" not in (ours[0], theirs[0]):
        mismatches += 1
        if mismatches <= 10:
            print("MISMATCH", data, ours, theirs)
print("done", n, "mismatches", mismatches)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_pickles_raise_only_python_exceptions(run_python, corpus_dir, seed):
    proc = run_python(FUZZ, str(corpus_dir), str(seed), "3000", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done 3000 mismatches 0" in proc.stdout, proc.stdout[-3000:]


def test_fix_imports_none_means_false_like_c():
    """`fix_imports` is converted with PyObject_IsTrue, as Argument Clinic's `bool` does in
    `_pickle`: an explicit None turns the Python 2 name mapping off (it used to mean True)."""
    data = b"c__builtin__\nset\n)R."  # protocol 0: __builtin__.set only exists through the mapping
    assert brinery.loads(data) == pickle.loads(data) == set()
    for load in (
        lambda m: m.loads(data, fix_imports=None),
        lambda m: m.load(io.BytesIO(data), fix_imports=None),
        lambda m: m.Unpickler(io.BytesIO(data), fix_imports=None).load(),
    ):
        with pytest.raises(ModuleNotFoundError) as ours:
            load(brinery)
        with pytest.raises(ModuleNotFoundError) as theirs:
            load(pickle)
        assert str(ours.value) == str(theirs.value)


def test_any_contiguous_buffer_loads_as_pickle_loads_takes_it(tmp_path):
    """`pickle.loads` takes any contiguous buffer as the pickle's bytes, whatever its item format
    (an exploratory review found `array.array('b')` and ctypes arrays refused, and `safe_loads`
    refusing mmap, numpy arrays and `array.array`)."""
    import array
    import ctypes
    import mmap

    import numpy as np

    obj = {"a": [1, 2.5, "x"], "b": (None, True)}
    data = pickle.dumps(obj, protocol=5)
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    sources = {
        "array('b')": array.array("b", data),
        "array('B')": array.array("B", data),
        "ctypes": (ctypes.c_char * len(data)).from_buffer_copy(data),
        "numpy uint8": np.frombuffer(data, dtype=np.uint8).copy(),
        "numpy int8": np.frombuffer(data, dtype=np.int8),
        "mmap": mapped,
        "PickleBuffer": pickle.PickleBuffer(bytearray(data)),
    }
    for name, src in sources.items():
        assert pickle.loads(src) == obj, name
        assert brinery.loads(src) == obj, name
        assert brinery.safe_loads(src) == obj, name
    mapped.close()
    for bad in (object(), "text", 42):
        with pytest.raises(TypeError, match="bytes-like"):
            brinery.loads(bad)
        with pytest.raises(TypeError, match="bytes-like"):
            brinery.safe_loads(bad)


@pytest.mark.parametrize("module", [pickle, brinery], ids=["stdlib", "brinery"])
def test_persistent_load_set_before_init_is_kept(module):
    # A subclass's __init__ may set persistent_load before calling super().__init__: C's
    # __init__ looks the attribute up then, so the function applies (a second __init__ clears it).
    class U(module.Unpickler):
        def __init__(self, f):
            self.persistent_load = lambda pid: ("PL", pid)
            super().__init__(f)

    assert U(io.BytesIO(b"P1\n.")).load() == ("PL", "1")


def test_buffers_that_are_not_c_contiguous_are_refused_as_by_the_stdlib():
    import numpy as np

    data = pickle.dumps([1, 2, 3], 2)
    spread = bytearray(2 * len(data))
    spread[::2] = data
    strided = memoryview(spread)[::2]
    fortran = np.asfortranarray(np.frombuffer(data * 2, dtype=np.uint8).reshape(len(data), 2))
    for obj, error in ((strided, BufferError), (fortran, ValueError)):
        with pytest.raises(error) as std:
            pickle.loads(obj)
        with pytest.raises(error) as ours:
            brinery.loads(obj)
        assert str(ours.value) == str(std.value)
        # the safe loader refuses them too (before any scan), with the exporter's error or
        # its own BufferError
        with pytest.raises((error, BufferError)):
            brinery.safe_loads(obj)
    # contiguous views of any item format load as their bytes, as in the stdlib
    assert brinery.loads(memoryview(spread)[::2].tobytes()) == [1, 2, 3]
    as_words = memoryview(bytearray(data + b"\0" * (-len(data) % 4))).cast("I")
    assert brinery.loads(as_words) == pickle.loads(as_words)


def test_load_reentered_on_the_running_unpickler_says_so():
    class U(brinery.Unpickler):
        def persistent_load(self, pid):
            return self.load()

    with pytest.raises(pickle.UnpicklingError, match=r"load\(\) is already running on this Unpickler"):
        U(io.BytesIO(b"P1\n.")).load()
