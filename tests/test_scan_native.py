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
    (b"\x80\x02cbuiltins\ngetattr\nccollections\nOrderedDict\n)RX\x04\x00\x00\x00keys\x86R.", "BRS006"),
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
            assert pickle.dumps(got, proto) == data
    # getattr(<allowed global>, '<constant>') is how some enums pickle by name
    data = b"\x80\x02cbuiltins\ngetattr\ncdecimal\nDecimal\nX\x04\x00\x00\x00real\x86R."
    assert load_with_policy(data) is decimal.Decimal.real
    assert _native.scan_bytes(data).ok


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
