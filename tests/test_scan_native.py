"""The native scan binding (crates/brinery-py/src/scan.rs) and the load-time rules of
``Unpickler(..., policy=...)`` (crates/brinery-py/src/unpickler/policy.rs), rule by rule.

Each hand-made stream below would run something (or reach something it must not) when loaded
with the stdlib; the native unpickler with a policy refuses it before the step happens, with the
rule code the scanner uses. The streams' payloads are inert (``collections`` / ``decimal`` only).
"""

import collections
import datetime
import decimal
import io
import pickle

import brinery
import numpy as np
import pandas as pd
import pytest
from brinery import _native


def load_with_policy(data, policy=None):
    return _native.Unpickler(io.BytesIO(data), policy=policy or _native.Policy()).load()


REFUSED = [
    # (stream, rule the load-time guard reports)
    (b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00hi\x85R.", "BRS003"),
    (b"\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.", "BRS003"),
    (b"\x80\x04\x8c\x07pathlib\x8c\tos.system\x93.", "BRS003"),
    (b"\x80\x02cmypkg_not_there\nModel\n)R.", "BRS001"),
    (b"\x80\x02ccollections\nOrderedDict\n)R)R.", "BRS005"),
    (b"\x80\x02cbuiltins\nobject\n)R.", "BRS002"),
    # getattr on an instance: an unlisted method (BRS001), a special name, a plain list (BRS006)
    (b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\n)RX\x04\x00\x00\x00keys\x86R.", "BRS001"),
    (b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\n)RX\x08\x00\x00\x00__init__\x86R.", "BRS006"),
    (b"\x80\x02cbuiltins\ngetattr\n]X\x06\x00\x00\x00append\x86R.", "BRS006"),
    (b"\x80\x02cbuiltins\ngetattr\ncdecimal\nDecimal\nX\x0b\x00\x00\x00__globals__\x86R.", "BRS003"),
    (b"\x80\x02c_codecs\nencode\nccollections\nOrderedDict\n)R\x85R.", "BRS008"),
    (b"\x80\x02ccopyreg\n_reconstructor\ncbuiltins\nobject\ncbuiltins\nobject\nN\x87R.", "BRS008"),
    (b"\x80\x02ccollections\nOrderedDict\n}X\x01\x00\x00\x00xK\x01sb.", "BRS007"),
    (b"\x80\x02ccollections\nOrderedDict\n(X\x01\x00\x00\x00xK\x01u.", "BRS007"),
    (b"\x80\x02\x82\x01.", "BRS009"),
    (b"\x80\x02X\x01\x00\x00\x00xQ.", "BRS010"),
    (b"\x80\x02\x80\x04N.", "BRS016"),
]


@pytest.mark.parametrize("data, rule", REFUSED, ids=[r[1] + f"-{i}" for i, r in enumerate(REFUSED)])
def test_load_time_guard_refuses_with_the_rule(data, rule):
    with pytest.raises(brinery.UnsafePickleError) as info:
        load_with_policy(data)
    assert isinstance(info.value, pickle.UnpicklingError)
    (finding,) = info.value.findings
    assert finding.rule == rule, info.value
    assert str(info.value).startswith(f"refusing to load: {rule}: ")
    # the static scan refuses every one of them too
    assert not _native.scan_bytes(data).ok


def test_guard_allows_real_data_and_enum_members_by_name():
    objs = [
        np.arange(6.0).reshape(2, 3),
        pd.DataFrame({"a": [1, 2], "t": pd.date_range("2020", periods=2, tz="UTC")}),
        collections.OrderedDict(a=1),
        datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
        decimal.Decimal("1.5"),
        b"\xe9x",
    ]
    for proto in (2, 4, 5):
        for obj in objs:
            data = pickle.dumps(obj, proto)
            got = load_with_policy(data)
            assert pickle.dumps(got, proto) == pickle.dumps(pickle.loads(data), proto)
    # getattr(<allowed global>, '<constant>') is how some enums pickle by name: the result must
    # itself be listed (here by allow_refs=), never any attribute of an allowed class
    data = b"\x80\x02cbuiltins\ngetattr\ncdecimal\nDecimal\nX\x04\x00\x00\x00real\x86R."
    with pytest.raises(
        brinery.UnsafePickleError, match="BRS001: getattr reaches decimal.Decimal.real"
    ) as info:
        load_with_policy(data)
    assert str(info.value).endswith('allow it with allow=["decimal:Decimal.real"]')
    assert [f.rule for f in _native.scan_bytes(data).findings] == ["BRS001"]
    policy = _native.Policy(allow_refs=["decimal:Decimal.real"])
    assert load_with_policy(data, policy) is decimal.Decimal.real
    assert _native.scan_bytes(data, policy).ok


def test_allow_and_dotted_steps():
    data = b"\x80\x02ccollections\nOrderedDict\n)R."
    with pytest.raises(brinery.UnsafePickleError):
        load_with_policy(data, _native.Policy(profiles=["numpy"]))
    policy = _native.Policy(profiles=[], allow=["collections.OrderedDict"])
    assert load_with_policy(data, policy) == collections.OrderedDict()
    assert policy.allows("collections", "OrderedDict")
    assert not _native.Policy(profiles=[], allow_refs=["collections.OrderedDict"]).allows(
        "collections", "OrderedDict"
    )
    assert _native.Policy(profiles=[], allow_refs=["collections.OrderedDict"]).allows(
        "collections", "OrderedDict", call=False
    )
    # the deny-list wins over allow=
    assert not _native.Policy(allow=["os.system"]).allows("os", "system")
    with pytest.raises(ValueError, match="is not a global name"):
        _native.Policy(allow=["Model"])
    with pytest.raises(ValueError, match="unknown profile"):
        _native.Policy(profiles=["nope"])


def test_scan_report_and_finding_fields():
    report = _native.scan_bytes(b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00hi\x85R.")
    assert not report.ok
    assert report.globals == ["posix.system"]
    assert report.opcodes == 6
    (f,) = report.findings
    assert (f.rule, f.name, f.offset, f.opcode, f.global_name, f.member) == (
        "BRS003",
        "dangerous-global",
        2,
        "GLOBAL",
        "posix.system",
        None,
    )
    assert f.message == (
        "global posix.system is never allowed: it runs commands and touches files at byte 2 (GLOBAL)"
    )
    assert repr(f).startswith("<Finding BRS003 dangerous-global: global posix.system")
    assert repr(_native.scan_bytes(pickle.dumps([1, 2], 4))) == "<ScanReport ok: 0 globals, 9 opcodes>"
    assert _native.scan_bytes(bytearray(pickle.dumps(1, 2))).ok
    assert _native.scan_bytes(memoryview(pickle.dumps(1, 2))).ok
    with pytest.raises(TypeError):
        _native.scan_bytes("not bytes")
    assert _native.SCAN_PROFILES == ("stdlib-data", "numpy", "pandas", "sklearn")


# --- red-team regressions (/work/notes/redteam.md): each stream ran a payload through allowed
# names before the fix. Every one must be flagged by the scan with the rule given, refused by
# safe_loads and by Unpickler(policy=) alone, with no payload running (an audit hook watches).

_AUDIT = {"on": False, "events": []}
_WATCHED = {"exec", "compile", "os.system", "subprocess.Popen", "socket.connect"}


def _audit_hook(event, args):
    if _AUDIT["on"] and event in _WATCHED:
        _AUDIT["events"].append(event)


import sys  # noqa: E402

sys.addaudithook(_audit_hook)


def _refused_everywhere(data, rule):
    # imported first: importing a module compiles and execs its code (audit events of their own)
    import dateutil.tz._tzfile  # noqa: F401
    import numpy.random._pickle  # noqa: F401
    import pandas.core.indexes.base as pandas_index_base
    import pandas.core.indexes.interval  # noqa: F401
    import sklearn.linear_model._base  # noqa: F401
    import sklearn.metrics  # noqa: F401

    new_index = pandas_index_base._new_Index
    report = brinery.scan(data)
    assert rule in [f.rule for f in report.findings], report.findings
    for load in (brinery.safe_loads, load_with_policy):
        _AUDIT["events"].clear()
        _AUDIT["on"] = True
        try:
            with pytest.raises(brinery.UnsafePickleError):
                load(data)
        finally:
            _AUDIT["on"] = False
        assert _AUDIT["events"] == [], (load, _AUDIT["events"])
    assert pandas_index_base._new_Index is new_index


# F6: the scan's memo counted a far index twice (memo_far + dense growth), so MEMOIZE drifted
# from the loader's and `GET 3` hid builtins.getattr; getattr as SimpleNamespace.__new__ given to
# copyreg._reconstructor as `base` reached `__globals__`, rebound an allowed name, ran exec.
F06 = b"\x80\x04Nr\x88\x13\x00\x000Nr\xff\x0f\x00\x000Nr\x88\x13\x00\x000Nr\x03\x00\x00\x000cbuiltins\ngetattr\n\x940cpandas.core.indexes.base\n_new_Index\nr\x14\x00\x00\x000ctypes\nSimpleNamespace\n)R(\x8c\x07__new__j\x03\x00\x00\x00\x8c\x08__init__cbuiltins\nslice\ndbr\n\x00\x00\x000ctypes\nSimpleNamespace\n)Rccopyreg\n_reconstructor\ncpandas.core.indexes.base\n_new_Index\nj\n\x00\x00\x00\x8c\x0c__builtins__\x87Rbr\x0b\x00\x00\x000ccopyreg\n_reconstructor\ncpandas.core.indexes.base\n_new_Index\nj\n\x00\x00\x00\x8c\x0b__globals__\x87Rr\x0c\x00\x00\x000j\x0c\x00\x00\x00\x8c\n_new_Indexj\x0b\x00\x00\x00s0ccopyreg\n_reconstructor\ncpandas.core.indexes.base\n_new_Index\nj\n\x00\x00\x00\x8c\x04exec\x87Rr\r\x00\x00\x000ctypes\nSimpleNamespace\n)R(\x8c\x07__new__j\r\x00\x00\x00\x8c\x08__init__cbuiltins\nslice\ndbr\x0e\x00\x00\x000j\x0c\x00\x00\x00\x8c\n_new_IndexX1\x00\x00\x00import os; os.system('touch /tmp/redteam/MARKER')s0ccopyreg\n_reconstructor\ncpandas.core.indexes.base\n_new_Index\nj\x0e\x00\x00\x00}\x87R0j\x0c\x00\x00\x00\x8c\n_new_Indexj\x14\x00\x00\x00s0}\x8c\x05model\x8c\x02oks."  # noqa: E501
# F6b: the same chain with builtins.getattr as a plain value (no memo trick): the guard alone.
F06B = F06.replace(b"j\x03\x00\x00\x00\x8c\x08__init__", b"cbuiltins\ngetattr\n\x8c\x08__init__", 1)
# F12: getattr(pandas.DataFrame, 'query') as a value + _new_IntervalIndex(SimpleNamespace(
# from_arrays=<it>), {'self': df, 'expr': ...}) -> DataFrame.query -> pandas.eval -> os.system.
F12 = b"\x80\x04\x8c\x1cpandas.core.indexes.interval\x8c\x12_new_IntervalIndex\x93\x8c\x05types\x8c\x0fSimpleNamespace\x93)R}\x8c\x0bfrom_arrays\x8c\x08builtins\x8c\x07getattr\x93\x8c\x06pandas\x8c\tDataFrame\x93\x8c\x05query\x86Rsb}\x8c\x04self\x8c\x06pandas\x8c\tDataFrame\x93}\x8c\x01a]K\x01as\x85Rs\x8c\x04expr\x8cYa.__class__.__init__.__globals__['sys'].modules['os'].system('touch /tmp/redteam/MARKER')s\x86R0N."  # noqa: E501
# F12b: an sklearn estimator whose BUILD state sets from_arrays, in place of the namespace.
F12B = F12.replace(
    b"\x8c\x05types\x8c\x0fSimpleNamespace\x93)R",
    b"\x8c\x1asklearn.linear_model._base\x8c\x10LinearRegression\x93)\x81",
)
# F11: __generator_ctor(df, getattr(DataFrame, 'to_clipboard')) calls its second argument.
F11 = b"\x80\x04\x8c\x14numpy.random._pickle\x8c\x10__generator_ctor\x93\x8c\x06pandas\x8c\tDataFrame\x93}\x8c\x01a]K\x01as\x85R\x8c\x08builtins\x8c\x07getattr\x93\x8c\x06pandas\x8c\tDataFrame\x93\x8c\x0cto_clipboard\x86R\x86R."  # noqa: E501
# F11: a reference-only/unlisted function handed to the helper that calls it.
F11_REF = b"\x80\x04\x8c\x14numpy.random._pickle\x8c\x10__generator_ctor\x93\x8c\x08accuracy\x8c\x0fsklearn.metrics\x8c\nget_scorer\x93\x86R."  # noqa: E501
# F6 (helper bases): copyreg._reconstructor with a base that is not a builtin type.
RECON_BASE = b"\x80\x02ccopyreg\n_reconstructor\ncpandas\nDataFrame\nccollections\nOrderedDict\nN\x87R."
# dateutil's tzfile helper given another class.
TZ_UNPICKLE = b"\x80\x02cdateutil.tz._tzfile\n_unpickle\n(ccollections\nOrderedDict\nNNNtR."

# F4: BUILD on objects an allowed call returned that already existed (dateutil's tzoffset cache,
# the tzutc singleton, an enum member): a "safe" load changed them for the whole process.
F04_TZOFFSET = b"\x80\x02cdateutil.tz\ntzoffset\nX\x03\x00\x00\x00ESTJ\xb0\xb9\xff\xff\x86R}X\x07\x00\x00\x00_offsetcdatetime\ntimedelta\nK\x00M\x90~\x86Rsb0N."  # noqa: E501
F04_TZUTC = b"\x80\x02cdateutil.tz\ntzutc\n)R}X\t\x00\x00\x00utcoffsetNsb0N."
F04_ENUM = b"\x80\x02cuuid\nSafeUUID\nK\x00\x85R}X\x06\x00\x00\x00_name_X\x06\x00\x00\x00hackedsb0N."

# F7: allowed callables asked to allocate from a size in a few bytes (1 GiB each here).
F07_BYTEARRAY = b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x40\x85R."
F07_BYTES_LONG = b"\x80\x03cbuiltins\nbytes\n\x8a\x05\x00\x00\x00\x00\x01\x85R."  # LONG1 2**32
F07_NDARRAY = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x01\x00J\x00\x00\x01\x00\x86\x85R."
F07_RECONSTRUCT = (
    b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x40\x85C\x01b\x87R."
)
F07_MARECONSTRUCT = (
    b"\x80\x02cnumpy.ma.core\n_mareconstruct\n(cnumpy.ma.core\nMaskedArray\ncnumpy\nndarray\n"
    b"J\x00\x00\x00\x40\x85C\x01btR."
)
# __bit_generator_ctor calls a class it is given: only numpy's bit generators by name or class.
BITGEN_CLASS = b"\x80\x02cnumpy.random._pickle\n__bit_generator_ctor\ncnumpy\nndarray\n\x85R."
BITGEN_NAME = b"\x80\x02cnumpy.random._pickle\n__generator_ctor\ncpandas\nDataFrame\n\x85R."


def _nested_slices(depth):
    # slice(slice(...slice(None)...)) through calls only, no MARK (red-team F14)
    return b"\x80\x02cbuiltins\nslice\nq\x000" + b"h\x00" * depth + b"N" + b"\x85R" * depth + b"."


REDTEAM = [
    ("F07-bytearray", F07_BYTEARRAY, "BRS008"),
    ("F07-bytes-long", F07_BYTES_LONG, "BRS008"),
    ("F07-ndarray", F07_NDARRAY, "BRS008"),
    ("F07-reconstruct", F07_RECONSTRUCT, "BRS008"),
    ("F07-mareconstruct", F07_MARECONSTRUCT, "BRS008"),
    ("bitgen-class", BITGEN_CLASS, "BRS008"),
    ("bitgen-name", BITGEN_NAME, "BRS008"),
    ("F14", _nested_slices(2100), "BRS017"),
    ("F06", F06, "BRS006"),
    ("F06b", F06B, "BRS006"),
    ("F12", F12, "BRS001"),
    ("F12b", F12B, "BRS001"),
    ("F11", F11, "BRS008"),
    ("F11-ref", F11_REF, "BRS008"),
    ("F06-base", RECON_BASE, "BRS008"),
    ("tzfile-unpickle", TZ_UNPICKLE, "BRS008"),
    ("F04-tzoffset", F04_TZOFFSET, "BRS007"),
    ("F04-tzutc", F04_TZUTC, "BRS007"),
    ("F04-enum", F04_ENUM, "BRS007"),
]


@pytest.mark.parametrize("data, rule", [r[1:] for r in REDTEAM], ids=[r[0] for r in REDTEAM])
def test_redteam_streams_are_refused_before_any_payload(data, rule):
    _refused_everywhere(data, rule)


def test_guard_refuses_getattr_as_a_value_and_bad_helper_arguments_alone():
    # what the scan also flags, refused by the load-time guard with its own rule
    cases = [
        (F06B, "BRS006"),
        (F12, "BRS001"),
        (F11, "BRS001"),
        (RECON_BASE, "BRS008"),
        (TZ_UNPICKLE, "BRS008"),
        (
            b"\x80\x02cnumpy.random._pickle\n__generator_ctor\nX\x07\x00\x00\x00MT19937cbuiltins\nslice\n\x86R.",
            "BRS008",
        ),
    ]
    for data, rule in cases:
        with pytest.raises(brinery.UnsafePickleError) as info:
            load_with_policy(data)
        assert info.value.findings[0].rule == rule, info.value


def test_guard_alone_refuses_sizes_bit_generators_and_deep_call_nesting():
    # Unpickler(policy=) without the scan: the guard enforces the same limits during the load
    cases = [
        (F07_BYTEARRAY, "BRS008"),
        (F07_BYTES_LONG, "BRS008"),
        (F07_NDARRAY, "BRS008"),
        (F07_RECONSTRUCT, "BRS008"),
        (F07_MARECONSTRUCT, "BRS008"),
        (BITGEN_CLASS, "BRS008"),
        (BITGEN_NAME, "BRS008"),
        (_nested_slices(2100), "BRS017"),
    ]
    for data, rule in cases:
        with pytest.raises(brinery.UnsafePickleError) as info:
            load_with_policy(data)
        assert info.value.findings[0].rule == rule, info.value


def test_sizes_and_nesting_within_the_limits_still_load():
    assert load_with_policy(b"\x80\x02c__builtin__\nbytearray\nK\x10\x85R.") == bytearray(16)
    assert brinery.safe_loads(b"\x80\x03cbuiltins\nbytes\nM\x00\x04\x85R.") == bytes(1024)
    arr = brinery.safe_loads(b"\x80\x02cnumpy\nndarray\nK\x03K\x04\x86\x85R.")
    assert arr.shape == (3, 4)
    got = brinery.safe_loads(_nested_slices(100))
    assert isinstance(got, slice)
    # numpy's bit generators by name, by class and as instances (what numpy writes)
    for data in (
        b"\x80\x02cnumpy.random._pickle\n__bit_generator_ctor\nX\x05\x00\x00\x00PCG64\x85R.",
        b"\x80\x02cnumpy.random._pickle\n__bit_generator_ctor\ncnumpy.random\nSFC64\n\x85R.",
    ):
        assert brinery.scan(data).ok
        assert type(load_with_policy(data)).__name__ in ("PCG64", "SFC64")
    for obj in (np.random.default_rng(1), np.random.Generator(np.random.Philox(2)), np.random.RandomState(3)):
        for proto in (2, 4, 5):
            data = pickle.dumps(obj, proto)
            assert brinery.scan(data).ok, brinery.scan(data).findings
            assert pickle.dumps(brinery.safe_loads(data), proto) == pickle.dumps(pickle.loads(data), proto)


def test_the_fast_loop_under_a_policy_never_fills_a_global_dict():
    # the guard's fast loop stops for good once an allowed global is an exact dict: SETITEMS on
    # it is refused, and the dict is left as it was
    import copyreg

    before = dict(copyreg._extension_registry)
    data = b"\x80\x02ccopyreg\n_extension_registry\n(X\x01\x00\x00\x00aK\x01u0N."
    pol = brinery.Policy(allow=["copyreg._extension_registry"])
    with pytest.raises(brinery.UnsafePickleError):
        load_with_policy(data, pol)
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(data, policy=pol)
    assert copyreg._extension_registry == before


def test_a_repeated_proto_is_refused_under_a_policy():
    data = b"\x80\x02\x80\x02N."
    with pytest.raises(brinery.UnsafePickleError) as info:
        load_with_policy(data)
    assert info.value.findings[0].rule == "BRS016"
    assert brinery.loads(data) is None  # the plain loader accepts it, as pickle does


def test_helpers_still_load_what_the_libraries_write():
    rng = np.random.default_rng(3)
    objs = [
        rng,
        np.random.RandomState(4),
        pd.interval_range(0, 3),
        pd.Index([1, 2]),
        pd.date_range("2024-01-01", periods=3, tz="UTC"),
        collections.OrderedDict(a=1),
    ]
    for proto in (0, 2, 4, 5):
        for obj in objs:
            data = pickle.dumps(obj, proto)
            assert brinery.scan(data).ok, (obj, brinery.scan(data).findings)
            got = load_with_policy(data)
            assert pickle.dumps(got, proto) == pickle.dumps(pickle.loads(data), proto)


def test_build_on_shared_objects_is_refused_by_the_guard_alone():
    import uuid

    import dateutil.tz

    est = dateutil.tz.tzoffset("EST", -18000)
    for data in (F04_TZOFFSET, F04_TZUTC, F04_ENUM):
        with pytest.raises(brinery.UnsafePickleError) as info:
            load_with_policy(data)
        assert info.value.findings[0].rule == "BRS007", info.value
        assert "did not create" in str(info.value)
    assert dateutil.tz.tzoffset("EST", -18000).utcoffset(None) == datetime.timedelta(hours=-5)
    assert est.utcoffset(None) == datetime.timedelta(hours=-5)
    assert dateutil.tz.UTC.utcoffset(None) == datetime.timedelta(0)
    assert uuid.SafeUUID(0).name == "safe"
    # objects the load creates still take their state
    df = pd.DataFrame({"a": [1, 2]})
    assert load_with_policy(pickle.dumps(df, 5)).equals(df)


# F10/F10b/F10c: numpy's dtype and array __setstate__ trust their state: cleared flags on an
# object dtype, an object array with fewer items than its shape, a 6-item dtype state. Each
# crashed the interpreter (SIGSEGV) during or right after a "safe" load; the guard now refuses
# BUILD states of a shape numpy's pickler never writes. Run in a child: a regression would crash.
F10 = b"\x80\x04\x8c\x0bcollections\x8c\x05deque\x93\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct\x93\x8c\x05numpy\x8c\x07ndarray\x93K\x00\x85C\x01b\x87R(K\x01K\x01\x85\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02O8\x89\x88\x87R(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89C\x08AAAAAAAAtb\x85R."  # noqa: E501
F10B = b"\x80\x04\x95\x8f\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\xde\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02O8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t\x94b\x89]\x94(\x8c\x01a\x94Net\x94b."  # noqa: E501
F10C = b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02i8\x89\x88\x87R(K\x03\x8c\x01<NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb."  # noqa: E501


@pytest.mark.parametrize("data", [F10, F10B, F10C], ids=["F10", "F10b", "F10c"])
def test_numpy_setstate_crashers_are_refused(data):
    import subprocess

    code = (
        "import io, sys, brinery\n"
        "from brinery import _native\n"
        "data = sys.stdin.buffer.read()\n"
        "for load in (brinery.safe_loads,\n"
        "             lambda d: _native.Unpickler(io.BytesIO(d), policy=_native.Policy()).load()):\n"
        "    try:\n"
        "        load(data)\n"
        "    except brinery.UnsafePickleError as e:\n"
        "        print(e.findings[0].rule)\n"
    )
    if data is not F10B:  # the short item list is a list: only the guard sees its length
        assert "BRS008" in [f.rule for f in brinery.scan(data).findings]
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split() == ["BRS008", "BRS008"], out.stdout.decode()


def test_numpy_states_numpy_writes_still_load():
    objs = [
        np.dtype([("a", "O"), ("b", "i4")]),
        np.dtype([("a", "i4")], align=True),
        np.dtype("i8", metadata={"x": 1}),
        np.dtype("M8[ns]"),
        np.dtype(("f8", (2, 3))),
        np.array([1, "x", None], dtype=object),
        np.zeros((2, 3), dtype=[("a", "O"), ("b", "f4")]),
        np.arange(5.0),
        np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
        np.ma.masked_array(np.array(["a", None], dtype=object), mask=[1, 0]),
    ]
    for proto in (2, 4, 5):
        for obj in objs:
            data = pickle.dumps(obj, proto)
            got = load_with_policy(data)
            assert pickle.dumps(got, proto) == pickle.dumps(pickle.loads(data), proto)


def test_dtype_byte_order_as_bytes_loads():
    # a Python 2 pickle loaded with encoding="bytes" gives numpy the byte order as b"<", which
    # numpy takes as it takes "<"; any other byte is still refused
    state = b"(K\x03C\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb."
    data = b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f8\x89\x88\x87R" + state
    assert load_with_policy(data) == pickle.loads(data) == np.dtype("<f8")
    with pytest.raises(brinery.UnsafePickleError, match="BUILD state of a numpy dtype"):
        load_with_policy(data.replace(b"C\x01<", b"C\x01X"))


def test_callable_entry_rebound_to_data_is_refused(monkeypatch):
    # F6's last step rebound an allowed module global to a code string and had a helper call
    # it: a `call` entry must still resolve to something callable
    monkeypatch.setattr(decimal, "Decimal", "import os")
    with pytest.raises(brinery.UnsafePickleError, match="does not resolve to a callable"):
        load_with_policy(b"\x80\x02cdecimal\nDecimal\nX\x01\x00\x00\x001\x85R.")


def test_sklearn_new_obj_helpers_take_allowed_classes_only():
    # sklearn's trees and distance metrics pickle as newObj(<class>) + state; newObj calls
    # obj.__new__(obj), so anything but an allowed class is refused, by the scan and the guard
    from sklearn.metrics import DistanceMetric
    from sklearn.neighbors import BallTree, KDTree

    X = np.random.default_rng(0).normal(size=(30, 3))
    for obj in (KDTree(X), BallTree(X), DistanceMetric.get_metric("manhattan")):
        for proto in (2, 4, 5):
            data = pickle.dumps(obj, proto)
            assert brinery.scan(data).ok, brinery.scan(data).findings
            got = brinery.safe_loads(data)
            assert type(got) is type(obj)
        if hasattr(obj, "query"):
            assert (got.query(X[:3], k=2)[1] == obj.query(X[:3], k=2)[1]).all()
    modules = ("sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree", "sklearn.metrics._dist_metrics")
    for module in modules:
        for arg in (b"ctypes\nSimpleNamespace\n)R", b"cbuiltins\nobject\n"):
            data = b"\x80\x02c" + module.encode() + b"\nnewObj\n" + arg + b"\x85R."
            report = brinery.scan(data)
            assert "BRS008" in [f.rule for f in report.findings], (module, report.findings)
            with pytest.raises(brinery.UnsafePickleError) as info:
                load_with_policy(data)
            assert info.value.findings[0].rule in ("BRS008", "BRS002"), info.value


# F11(c): SETITEM on an object a call built runs its own __setitem__, and pandas' calls a
# callable key with the frame (com.apply_if_callable): here numpy.sin(frame).
F11C_SETITEM = b"\x80\x02cpandas\nDataFrame\n)Rcnumpy\nsin\nK\x01s."
F11C_SETITEMS = b"\x80\x02cpandas\nSeries\n)R(K\x00cnumpy\ncos\nu."


def test_callable_keys_for_objects_a_call_built_are_refused():
    for data in (F11C_SETITEM, F11C_SETITEMS):
        _refused_everywhere(data, "BRS008")
        with pytest.raises(brinery.UnsafePickleError) as info:
            load_with_policy(data)
        assert info.value.findings[0].rule == "BRS008", info.value
    # what Python writes for dict subclasses (SETITEMS of plain data) still loads
    for obj in (
        collections.OrderedDict(a=1, b=[2]),
        collections.Counter("abca"),
        collections.defaultdict(list, x=[1]),
    ):
        for proto in (0, 2, 5):
            data = pickle.dumps(obj, proto)
            assert brinery.scan(data).ok, brinery.scan(data).findings
            assert brinery.safe_loads(data) == obj
