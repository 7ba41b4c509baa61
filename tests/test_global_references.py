"""References to module globals stay exactly the stdlib's, both ways, whatever changes between calls.

``dumps``: ``save_global`` caches how a class pickles by reference (crates/brinery-py/src/pickler/
global_names.rs), and exact ``datetime.date``/``datetime.datetime`` objects are reduced without the
call through ``__reduce_ex__``. ``loads``: ``find_class`` reads ``sys.modules`` and the module's
``__dict__`` directly when the import would return them (crates/brinery-py/src/imports.rs). These
tests change everything those shortcuts depend on (the class's names, its module's entry,
``sys.modules``, ``builtins.__import__``, the module's type, a module ``__getattr__``) and check
each time that brinery writes and loads what the stdlib does, or fails as it fails; and they
compare dates and datetimes of every shape at every protocol.
"""

from __future__ import annotations

import builtins
import copyreg
import datetime
import io
import pickle
import sys
import types

import brinery
import pytest

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
MODNAME = "brinery_class_cache_probe"


def outcome(dumps, obj, proto):
    """What `dumps(obj, proto)` gives: ("ok", bytes) or ("error", type name, message)."""
    try:
        return ("ok", dumps(obj, proto))
    except Exception as e:  # noqa: BLE001 (any outcome is compared with the stdlib's)
        return ("error", type(e).__name__, str(e))


def assert_same(obj, protocols=PROTOCOLS):
    for proto in protocols:
        # brinery first, then pickle, then brinery again: the second call is the cached one.
        first = outcome(brinery.dumps, obj, proto)
        expected = outcome(pickle.dumps, obj, proto)
        again = outcome(brinery.dumps, obj, proto)
        assert first == expected, proto
        assert again == expected, proto


@pytest.fixture
def probe():
    """A module in sys.modules with two classes, removed afterwards."""
    mod = types.ModuleType(MODNAME)
    exec("class A:\n    pass\nclass B:\n    pass\n", mod.__dict__)
    sys.modules[MODNAME] = mod
    try:
        yield mod
    finally:
        sys.modules.pop(MODNAME, None)


def test_classes_of_one_module_share_the_module_name(probe):
    # At protocol 4+ the second class's module name is a memo hit in the stdlib's output.
    assert_same([probe.A, probe.B, probe.A, int, datetime.date, collections_ordered_dict()])


def collections_ordered_dict():
    import collections

    return collections.OrderedDict


def test_renamed_class(probe):
    assert_same(probe.A)
    probe.A.__qualname__ = "B"  # now names the other class: the stdlib refuses
    assert_same(probe.A)
    probe.A.__qualname__ = "C"
    getattr(probe.A, "no_such_attribute", None)  # gives the renamed class a new version tag
    assert_same(probe.A)
    probe.A.__qualname__ = "A"
    assert_same(probe.A)


def test_class_moved_to_another_module(probe):
    other = types.ModuleType(MODNAME + "_other")
    sys.modules[other.__name__] = other
    try:
        assert_same(probe.A)
        probe.A.__module__ = other.__name__  # not found there
        assert_same(probe.A)
        other.A = probe.A  # found there: the stdlib writes the new module's name
        assert_same(probe.A)
    finally:
        del sys.modules[other.__name__]


def test_module_attribute_rebound(probe):
    cls = probe.A
    assert_same(cls)
    probe.A = probe.B  # "it's not the same object as ..."
    assert_same(cls)
    del probe.A  # "attribute lookup ... failed"
    assert_same(cls)


def test_sys_modules_entry_replaced_or_removed(probe):
    cls = probe.A
    assert_same(cls)
    clone = types.ModuleType(MODNAME)
    clone.A = cls
    sys.modules[MODNAME] = clone  # another module object holding the same class
    assert_same(cls)
    sys.modules[MODNAME] = None  # import refused
    assert_same(cls)
    del sys.modules[MODNAME]  # import fails (no such module on disk)
    assert_same(cls)


def test_module_class_changed(probe):
    class Shadowing(types.ModuleType):
        @property
        def A(self):  # noqa: N802 (shadows the class named A)
            return 42

    cls = probe.A
    assert_same(cls)
    probe.__class__ = Shadowing  # getattr(module, "A") is now the property's value
    assert probe.A == 42
    assert_same(cls)


def record_imports(monkeypatch):
    """Replace `builtins.__import__` by a wrapper; returns the list of module names it is asked for."""
    calls = []
    real_import = builtins.__import__

    def recording_import(name, *args, **kwargs):
        calls.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", recording_import)
    return calls


def test_import_hook_is_called_as_by_the_stdlib(probe, monkeypatch):
    assert_same(probe.A)
    calls = record_imports(monkeypatch)
    pickle.dumps(probe.A, 4)
    stdlib_calls, calls[:] = list(calls), []
    brinery.dumps(probe.A, 4)
    assert calls == stdlib_calls == [MODNAME]


def test_extension_codes_still_apply(probe):
    assert_same(probe.A)
    copyreg.add_extension(MODNAME, "A", 0x7ABC)
    try:
        assert_same(probe.A)
        assert b"\x83" in brinery.dumps(probe.A, 2)  # EXT2
    finally:
        copyreg.remove_extension(MODNAME, "A", 0x7ABC)
    assert_same(probe.A)


# --------------------------------------------------------------------------------------------
# datetime.date and datetime.datetime


def _zone(name):
    try:
        import zoneinfo

        return zoneinfo.ZoneInfo(name)
    except Exception:  # noqa: BLE001 (no tz database on this machine)
        return datetime.timezone(datetime.timedelta(hours=1), name)


DATES = [
    datetime.date.min,
    datetime.date.max,
    datetime.date(1980, 5, 7),
    datetime.date(2024, 2, 29),
    datetime.date(255, 12, 31),
    datetime.date(256, 1, 1),
]
DATETIMES = [
    datetime.datetime.min,
    datetime.datetime.max,
    datetime.datetime(2024, 2, 29, 12, 30, 1, 5),
    datetime.datetime(2000, 1, 1, 23, 59, 59, 999_999),
    datetime.datetime(1999, 12, 31, 0, 0, 0, 65_536),
    datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(2024, 1, 1, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5), "EST")),
    datetime.datetime(2021, 10, 31, 2, 30, fold=1),
    datetime.datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=_zone("Europe/Paris")),
    datetime.datetime(2021, 3, 28, 12, tzinfo=_zone("Europe/Paris")),
]


@pytest.mark.parametrize("value", DATES + DATETIMES, ids=repr)
def test_dates_and_datetimes(value):
    assert_same(value)
    shared = [value, value, {"d": value}]
    assert_same(shared)
    restored = brinery.loads(brinery.dumps(value, 5))
    assert restored == value and type(restored) is type(value)
    assert getattr(restored, "fold", 0) == getattr(value, "fold", 0)
    assert getattr(restored, "tzinfo", None) == getattr(value, "tzinfo", None)


class SubDate(datetime.date):
    def __reduce__(self):
        return (SubDate, (2000, 1, 2))


class SubDateTime(datetime.datetime):
    pass


def test_subclasses_take_the_general_path():
    assert_same([SubDate(1999, 1, 1), SubDateTime(2001, 2, 3, 4, 5, 6, 7, fold=1)])
    assert brinery.loads(brinery.dumps(SubDate(1999, 1, 1))) == datetime.date(2000, 1, 2)


def test_dispatch_tables_win_over_the_shortcut(monkeypatch):
    value = datetime.date(2020, 1, 1)

    def as_ordinal(d):
        return (datetime.date.fromordinal, (d.toordinal(),))

    monkeypatch.setitem(copyreg.dispatch_table, datetime.date, as_ordinal)
    assert_same(value)
    assert b"fromordinal" in brinery.dumps(value, 4)
    monkeypatch.delitem(copyreg.dispatch_table, datetime.date)

    for module in (pickle, brinery):
        buf = io.BytesIO()
        p = module.Pickler(buf, 4)
        p.dispatch_table = {datetime.datetime: lambda d: (datetime.datetime.fromisoformat, (d.isoformat(),))}
        p.dump([datetime.datetime(2020, 1, 1, 1), value])
        if module is pickle:
            expected = buf.getvalue()
    assert buf.getvalue() == expected
    assert b"fromisoformat" in expected


def test_reducer_override_wins_over_the_shortcut():
    class Overriding:
        def reducer_override(self, obj):
            if type(obj) is datetime.date:
                return (str, ("a date",))
            return NotImplemented

    outs = []
    for module in (pickle, brinery):
        cls = type("P", (Overriding, module.Pickler), {})
        buf = io.BytesIO()
        cls(buf, 5).dump([datetime.date(2020, 1, 1), datetime.datetime(2020, 1, 1)])
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    assert pickle.loads(outs[1])[0] == "a date"


# A class whose __name__ is "__newobj__" makes a reduction take the NEWOBJ path: the name check
# in save_reduce reads a class's name without the attribute lookup and must agree.
NewobjNamed = type("__newobj__", (), {"__call__": lambda self, cls, *args: cls.__new__(cls)})
NewobjExNamed = type("__newobj_ex__", (), {})


class ReducesThroughNewobj:
    def __reduce__(self):
        return (NewobjNamed, (ReducesThroughNewobj,))


class ReducesThroughNewobjEx:
    def __reduce__(self):
        return (NewobjExNamed, (ReducesThroughNewobjEx, (), {}))


class ReducesThroughPlainClass:
    def __reduce__(self):
        return (ReducesThroughPlainClass, ())


def test_reduce_callables_named_newobj():
    assert_same(ReducesThroughNewobj())
    assert_same(ReducesThroughNewobjEx())
    assert_same(ReducesThroughPlainClass())
    assert b"\x81" in brinery.dumps(ReducesThroughNewobj(), 2)  # NEWOBJ
    assert b"\x92" in brinery.dumps(ReducesThroughNewobjEx(), 4)  # NEWOBJ_EX


# --------------------------------------------------------------------------------------------
# loads: find_class


def load_outcome(loads, data):
    try:
        return ("ok", loads(data))
    except Exception as e:  # noqa: BLE001 (any outcome is compared with the stdlib's)
        return ("error", type(e).__name__, str(e))


def assert_loads_same(data):
    expected = load_outcome(pickle.loads, data)
    got = load_outcome(brinery.loads, data)
    assert got[0] == expected[0], (got, expected)
    if expected[0] == "ok" and isinstance(expected[1], type):
        assert got[1] is expected[1]
    elif expected[0] == "ok":
        assert got[1] == expected[1]
    else:
        assert got == expected


def references(name):
    """Pickles of `probe.<name>` through GLOBAL (protocol 2) and STACK_GLOBAL (protocol 4)."""
    g = f"c{MODNAME}\n{name}\n.".encode()
    sg = (
        b"\x80\x04\x8c"
        + bytes([len(MODNAME)])
        + MODNAME.encode()
        + b"\x8c"
        + bytes([len(name)])
        + name.encode()
        + b"\x93."
    )
    return [b"\x80\x02" + g, sg]


def test_find_class_follows_every_change(probe):
    for data in references("A"):
        assert_loads_same(data)
        assert brinery.loads(data) is probe.A
    probe.A = probe.B  # rebound
    for data in references("A"):
        assert_loads_same(data)
        assert brinery.loads(data) is probe.B
    clone = types.ModuleType(MODNAME)
    clone.A = int
    sys.modules[MODNAME] = clone  # another module object
    for data in references("A"):
        assert_loads_same(data)
        assert brinery.loads(data) is int
    sys.modules[MODNAME] = None  # import refused
    for data in references("A"):
        assert_loads_same(data)
    del sys.modules[MODNAME]  # no such module
    for data in references("A"):
        assert_loads_same(data)


def test_find_class_module_getattr_and_descriptors(probe):
    probe.__getattr__ = lambda name: f"computed {name}"  # PEP 562: for names not in __dict__
    for data in references("missing"):
        assert_loads_same(data)
        assert brinery.loads(data) == "computed missing"

    class Shadowing(types.ModuleType):
        @property
        def A(self):  # noqa: N802 (shadows the class named A)
            return 42

    probe.__class__ = Shadowing
    for data in references("A"):
        assert brinery.loads(data) == pickle.loads(data) == 42


def test_find_class_import_hook_is_called_as_by_the_stdlib(probe, monkeypatch):
    calls = record_imports(monkeypatch)
    for data in references("A"):
        calls.clear()
        pickle.loads(data)
        stdlib_calls, calls[:] = list(calls), []
        brinery.loads(data)
        assert calls == stdlib_calls == [MODNAME]
