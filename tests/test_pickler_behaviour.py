"""The Pickler behaves like CPython's ``_pickle.Pickler``: same bytes, same exceptions with the
same messages, same hooks, same attributes, no reference cycles; and deep objects raise
``RecursionError`` instead of crashing.

Each case runs against ``brinery`` and ``_pickle`` and compares the outcomes.
"""

from __future__ import annotations

import _pickle
import collections
import copyreg
import gc
import io
import pickle
import re
import sys
import weakref

import brinery
import pytest


def _outcome(fn):
    try:
        result = ("ok", fn())
    except BaseException as e:  # noqa: BLE001 - exceptions are what is compared
        result = ("err", type(e).__name__, str(e))
    # Object addresses differ between the two runs.
    return re.sub(r"0x[0-9a-f]+", "0x?", repr(result))


def same(fn_of_module):
    """Run ``fn(module)`` with brinery and with _pickle; the outcomes must match."""
    ours = _outcome(lambda: fn_of_module(brinery))
    theirs = _outcome(lambda: fn_of_module(_pickle))
    assert ours == theirs


# --------------------------------------------------------------------------------------------
# Module-level functions: arguments and the errors of save()
# --------------------------------------------------------------------------------------------


class R:
    """An object whose __reduce__ returns whatever it was given."""

    def __init__(self, rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


def _local():
    def inner():
        pass

    return inner


class NotFound:
    pass


NotFound.__module__ = "no_such_module_for_brinery_tests"


class Mismatch:
    pass


_mismatch = type("Mismatch", (), {"__module__": __name__})

DUMPS_CASES = {
    "local_function": lambda m: m.dumps(_local(), 2),
    "lambda": lambda m: m.dumps(lambda: 0, 4),
    "module_missing": lambda m: m.dumps(NotFound, 2),
    "not_the_same_object": lambda m: m.dumps(_mismatch, 2),
    "nonascii_global_proto2": lambda m: m.dumps(type("é", (), {"__module__": __name__}), 2),
    "reduce_returns_int": lambda m: m.dumps(R(5)),
    "reduce_too_short": lambda m: m.dumps(R((list,))),
    "reduce_too_long": lambda m: m.dumps(R((list, (), None, None, None, None, None))),
    "reduce_not_callable": lambda m: m.dumps(R((5, ()))),
    "reduce_args_not_tuple": lambda m: m.dumps(R((list, [1]))),
    "reduce_listitems_not_iterator": lambda m: m.dumps(R((list, (), None, [1]))),
    "reduce_dictitems_not_iterator": lambda m: m.dumps(R((dict, (), None, None, [1]))),
    "reduce_state_setter_not_callable": lambda m: m.dumps(R((dict, (), {1: 2}, None, None, 5))),
    "reduce_string_missing": lambda m: m.dumps(R("no_such_global_name")),
    "dictitems_not_pairs": lambda m: [m.dumps(R((dict, (), None, None, iter([1, 2]))), p) for p in range(6)],
    "newobj_empty": lambda m: m.dumps(R((copyreg.__newobj__, ())), 2),
    "newobj_not_a_type": lambda m: m.dumps(R((copyreg.__newobj__, (5,))), 2),
    "newobj_wrong_class": lambda m: m.dumps(R((copyreg.__newobj__, (list,))), 2),
    "newobj_ex_length": lambda m: m.dumps(R((copyreg.__newobj_ex__, (list,))), 4),
    "newobj_ex_class": lambda m: m.dumps(R((copyreg.__newobj_ex__, (1, (), {}))), 4),
    "newobj_ex_args": lambda m: m.dumps(R((copyreg.__newobj_ex__, (list, [], {}))), 4),
    "newobj_ex_kwargs": lambda m: m.dumps(R((copyreg.__newobj_ex__, (list, (), []))), 4),
    "protocol_too_high": lambda m: m.dumps(1, 6),
    "protocol_negative": lambda m: m.dumps(1, -3),
    "protocol_str": lambda m: m.dumps(1, "2"),
    "protocol_float": lambda m: m.dumps(1, 2.0),
    "fix_imports_none": lambda m: m.dumps(range, 2, fix_imports=None),
    "buffer_callback_needs_5": lambda m: m.dumps(1, 4, buffer_callback=print),
    "picklebuffer_needs_5": lambda m: m.dumps(pickle.PickleBuffer(b"x"), 4),
    "picklebuffer_non_contiguous": lambda m: m.dumps(pickle.PickleBuffer(memoryview(b"abcd")[::2]), 5),
    "picklebuffer_released": lambda m: (lambda pb: (pb.release(), m.dumps(pb, 5)))(pickle.PickleBuffer(b"x")),
    "file_without_write": lambda m: m.dump(1, 5),
    "cannot_pickle_file": lambda m: m.dumps(sys.stdin),
    "cannot_pickle_generator": lambda m: m.dumps((x for x in []), 2),
    "deep_but_fine": lambda m: len(m.dumps(_nested(400), 4)),
    "too_deep": lambda m: m.dumps(_nested(5000), 4),
}


def _nested(n):
    lst = []
    for _ in range(n):
        lst = [lst]
    return lst


@pytest.mark.parametrize("name", sorted(DUMPS_CASES))
def test_dumps_outcome_matches_cpython(name):
    same(DUMPS_CASES[name])


# --------------------------------------------------------------------------------------------
# The Pickler object: hooks, attributes, memo
# --------------------------------------------------------------------------------------------


class Big:
    def __init__(self):
        self.v = 7


def _pid(obj):
    return "X" if isinstance(obj, Big) else None


def _run(P, obj, proto=4, setup=None, cls_attrs=None):
    cls = type("Sub", (P,), cls_attrs or {})
    f = io.BytesIO()
    p = cls(f, proto)
    if setup:
        setup(p)
    p.dump(obj)
    return f.getvalue()


class _Chunks:
    def __init__(self):
        self.chunks = []

    def write(self, b):
        self.chunks.append(bytes(b))


def _writes(P, proto, obj):
    w = _Chunks()
    P(w, proto).dump(obj)
    return [len(c) for c in w.chunks]


def _oob(P):
    bufs = []
    f = io.BytesIO()
    P(f, 5, buffer_callback=bufs.append).dump(
        [pickle.PickleBuffer(b"ab"), pickle.PickleBuffer(bytearray(b"cd"))]
    )
    return f.getvalue(), [bytes(b) for b in bufs]


def _reinit(P):
    f = io.BytesIO()
    p = P(f, 2)
    p.dump(["a"])
    p.__init__(f, 0)
    p.dump(["a"])
    return f.getvalue()


def _memo_roundtrip(P):
    p = P(io.BytesIO(), 2)
    p.dump([1, "a", ("t",)])
    copied = p.memo.copy()
    q = P(io.BytesIO(), 2)
    q.memo = p.memo
    f = io.BytesIO()
    r = P(f, 2)
    r.memo = copied
    r.dump(["a"])
    return sorted(v[0] for v in copied.values()), len(q.memo.copy()), f.getvalue()


def _cycle(lst):
    lst.append(lst)
    return lst


PICKLER_CASES = {
    "persistent_id_method": lambda P: [
        _run(P, [Big(), 1, Big()], p, cls_attrs={"persistent_id": lambda s, o: _pid(o)}) for p in range(6)
    ],
    "persistent_id_attribute": lambda P: [
        _run(P, [Big(), 1], p, setup=lambda x: setattr(x, "persistent_id", _pid)) for p in range(6)
    ],
    "persistent_id_nonascii_proto0": lambda P: _run(
        P,
        [Big()],
        0,
        setup=lambda x: setattr(x, "persistent_id", lambda o: "é" if isinstance(o, Big) else None),
    ),
    "persistent_id_int_proto0": lambda P: _run(
        P,
        [Big()],
        0,
        setup=lambda x: setattr(x, "persistent_id", lambda o: 42 if isinstance(o, Big) else None),
    ),
    "persistent_id_delete": lambda P: delattr(P(io.BytesIO()), "persistent_id"),
    "persistent_id_not_callable": lambda P: setattr(P(io.BytesIO()), "persistent_id", 5),
    "persistent_id_unset": lambda P: P(io.BytesIO()).persistent_id,
    "dispatch_table_instance": lambda P: [
        _run(P, [Big(), 1j], p, setup=lambda x: setattr(x, "dispatch_table", {Big: lambda o: (Big, ())}))
        for p in range(6)
    ],
    "dispatch_table_class": lambda P: [
        _run(P, [Big()], p, cls_attrs={"dispatch_table": {Big: lambda o: (int, (5,))}}) for p in range(6)
    ],
    "dispatch_table_chainmap": lambda P: [
        _run(
            P, [Big(), 1j], p, cls_attrs={"dispatch_table": collections.ChainMap({}, copyreg.dispatch_table)}
        )
        for p in range(6)
    ],
    "dispatch_table_unset": lambda P: P(io.BytesIO()).dispatch_table,
    "dispatch_table_delete_unset": lambda P: delattr(P(io.BytesIO()), "dispatch_table"),
    "reducer_override": lambda P: [
        _run(
            P,
            [Big(), len, int, 1],
            p,
            cls_attrs={"reducer_override": lambda s, o: (int, (3,)) if o is len else NotImplemented},
        )
        for p in range(6)
    ],
    "reducer_override_raises": lambda P: _run(
        P, [Big()], 4, cls_attrs={"reducer_override": lambda s, o: 1 / 0}
    ),
    "memo_roundtrip": _memo_roundtrip,
    "memo_reduce": lambda P: (lambda p: (p.dump(["a"]), type(p.memo.__reduce__()[1][0])))(P(io.BytesIO(), 2)),
    "memo_set_int": lambda P: setattr(P(io.BytesIO()), "memo", 5),
    "memo_set_bad_values": lambda P: setattr(P(io.BytesIO()), "memo", {1: 2}),
    "memo_delete": lambda P: delattr(P(io.BytesIO()), "memo"),
    "memo_self_assign": lambda P: (lambda p: (p.dump(["x"]), setattr(p, "memo", p.memo), len(p.memo.copy())))(
        P(io.BytesIO(), 2)
    ),
    "memo_clear": lambda P: (lambda p: (p.dump(["x"]), p.memo.clear(), len(p.memo.copy())))(
        P(io.BytesIO(), 2)
    ),
    "clear_memo": lambda P: (lambda p: (p.dump(["x"]), p.clear_memo(), len(p.memo.copy())))(
        P(io.BytesIO(), 2)
    ),
    "fast": lambda P: [
        _run(P, [[1], [1], {"a": (1, 2)}, frozenset([1])], p, setup=lambda x: setattr(x, "fast", 1))
        for p in range(6)
    ],
    "fast_cycle": lambda P: _run(P, _cycle([]), 2, setup=lambda x: setattr(x, "fast", True)),
    "fast_repeated_frozenset": lambda P: _run(
        P, [frozenset([1])] * 60, 4, setup=lambda x: setattr(x, "fast", 1)
    ),
    "attributes": lambda P: (lambda p: (p.fast, p.bin, setattr(p, "fast", True), p.fast))(P(io.BytesIO(), 0)),
    "fast_delete": lambda P: delattr(P(io.BytesIO()), "fast"),
    "init_not_called": lambda P: type("U", (P,), {"__init__": lambda s: None})().dump(1),
    "reinit": _reinit,
    "write_calls_proto4": lambda P: _writes(
        P,
        4,
        [
            b"x" * 100000,
            list(range(30000)),
            "y" * 70000,
            bytearray(b"z" * 70000),
            pickle.PickleBuffer(b"w" * 70000),
        ],
    ),
    "write_calls_proto5": lambda P: _writes(
        P, 5, [b"x" * 100000, "y" * 70000, pickle.PickleBuffer(bytearray(b"w" * 70000))]
    ),
    "write_raises": lambda P: P(type("W", (), {"write": lambda s, b: 1 / 0})(), 4).dump([1]),
    "out_of_band": _oob,
    "buffer_callback_in_band": lambda P: (
        lambda f: (
            P(f, 5, buffer_callback=lambda b: True).dump([pickle.PickleBuffer(b"ab")] * 2),
            f.getvalue(),
        )
    )(io.BytesIO()),
    "buffer_callback_raises": lambda P: P(io.BytesIO(), 5, buffer_callback=lambda b: 1 / 0).dump(
        pickle.PickleBuffer(b"ab")
    ),
    "keywords": lambda P: (lambda f: (P(file=f, protocol=2, fix_imports=False).dump(range), f.getvalue()))(
        io.BytesIO()
    ),
    "no_weakref_on_base": lambda P: weakref.ref(P(io.BytesIO())),
}


@pytest.mark.parametrize("name", sorted(PICKLER_CASES))
def test_pickler_outcome_matches_cpython(name):
    case = PICKLER_CASES[name]
    ours = _outcome(lambda: case(brinery.Pickler))
    theirs = _outcome(lambda: case(_pickle.Pickler))
    assert ours.replace("brinery.Pickler", "_pickle.Pickler") == theirs


# --------------------------------------------------------------------------------------------
# Reference cycles and GC
# --------------------------------------------------------------------------------------------


def test_hooks_on_subclass_create_no_reference_cycle():
    class P(brinery.Pickler):
        def persistent_id(self, obj):
            return "local function" if callable(obj) else None

        def reducer_override(self, obj):
            return NotImplemented

    def f():
        pass

    wf = weakref.ref(f)
    p = P(io.BytesIO(), 2)
    p.dump([f])
    wp = weakref.ref(p)
    del p, f
    # Freed by reference counting alone, without the cycle collector.
    assert wp() is None
    assert wf() is None


def test_cycle_through_the_memo_is_collected():
    class P(brinery.Pickler):
        pass

    h = Big()
    p = P(io.BytesIO(), 2)
    p.dump([h])
    h.pickler = p
    wp = weakref.ref(p)
    del p, h
    gc.collect()
    assert wp() is None


def test_class_dispatch_table_released_with_the_pickler():
    class Table:
        pass

    holder = [Table()]

    class P(brinery.Pickler):
        def __init__(self, *args, **kwargs):
            self.dispatch_table = holder[0]
            super().__init__(*args, **kwargs)

    p = P(io.BytesIO())
    assert p.dispatch_table is holder[0]
    wt = weakref.ref(holder[0])
    del p, holder[0]
    gc.collect()
    assert wt() is None


# --------------------------------------------------------------------------------------------
# Deep objects with a raised recursion limit: RecursionError, never a crash
# --------------------------------------------------------------------------------------------


@pytest.fixture
def high_recursion_limit():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def test_deep_list_raises_recursion_error_instead_of_overflowing(high_recursion_limit):
    with pytest.raises(RecursionError, match="while pickling an object"):
        brinery.dumps(_nested(300_000), 4)


def test_deep_dict_raises_recursion_error_instead_of_overflowing(high_recursion_limit):
    d = cur = {}
    for _ in range(300_000):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(RecursionError):
        brinery.dumps(d, 2)


def test_deep_objects_within_the_stack_still_pickle(high_recursion_limit):
    obj = _nested(3000)
    assert brinery.dumps(obj, 4) == pickle.dumps(obj, 4)


def test_deep_object_in_a_thread_with_a_small_stack(high_recursion_limit):
    import threading

    result = []

    def work():
        try:
            brinery.dumps(_nested(200_000), 4)
            result.append("pickled")
        except RecursionError:
            result.append("RecursionError")

    old = threading.stack_size(2 * 1024 * 1024)
    try:
        t = threading.Thread(target=work)
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    assert result == ["RecursionError"]
