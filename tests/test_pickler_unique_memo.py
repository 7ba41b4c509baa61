"""The pickler memoizes objects that are referenced only once without a memo table entry.

Such an object still gets its ``PUT``/``MEMOIZE``; it must go into the table before any Python
code runs, since that code could make it reachable again. Each case compares with the stdlib
at every protocol.
"""

from __future__ import annotations

import io
import pickle

import brinery
import pytest

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)

HOLDER: list = []


def _rebuild(x):
    return x


class ReExposes:
    """Its reduction returns the first item of ``HOLDER``: an object met before, whose only
    reference was the slot of ``HOLDER``."""

    def __reduce__(self):
        return (_rebuild, (HOLDER[0],))


class MovesItem:
    """Its reduction removes the first item of ``HOLDER`` (dropping the last reference to it)
    and returns a fresh list: the removed object must stay memoized and alive."""

    def __reduce__(self):
        item = HOLDER.pop(0)
        HOLDER.append(item)
        return (_rebuild, ([1, 2, 3],))


def _same(obj, proto):
    expected = pickle.dumps(obj, proto)
    assert brinery.dumps(obj, proto) == expected
    f = io.BytesIO()
    brinery.dump(obj, f, proto)
    assert f.getvalue() == expected


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_reduce_re_exposes_a_unique_object(proto):
    HOLDER[:] = [[1, "only-here", {"k": [2.5]}], ReExposes()]
    _same(HOLDER, proto)
    out = brinery.loads(brinery.dumps(HOLDER, proto))
    assert out[1] is out[0]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_reduce_drops_a_unique_object(proto):
    HOLDER[:] = [["gone" + str(i) for i in range(5)], MovesItem(), [0.5] * 3]
    expected = pickle.dumps(HOLDER, proto)
    HOLDER[:] = [["gone" + str(i) for i in range(5)], MovesItem(), [0.5] * 3]
    assert brinery.dumps(HOLDER, proto) == expected


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_unique_containers_and_strings(proto):
    obj = [{"name": "n" + str(i), "vals": [i, str(i) * 2, (i, "t" + str(i), [i])]} for i in range(300)]
    _same(obj, proto)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_recursive_tuple_through_a_unique_list(proto):
    inner: list = []
    t = (inner, "x" + str(proto))
    inner.append(t)
    del inner
    _same(t, proto)
    _same([t, t], proto)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_shared_object_inside_unique_containers(proto):
    shared = ["shared" + str(proto)]
    obj = [[{"a": shared}], ([shared],), {"b": (shared,)}]
    _same(obj, proto)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_pickler_memo_keeps_unique_objects_across_dumps(proto):
    outer = [["inner" + str(proto)], {"d": ["v"]}]
    streams = []
    for cls in (pickle.Pickler, brinery.Pickler):
        f = io.BytesIO()
        p = cls(f, proto)
        p.dump(outer)
        p.dump(outer[0])
        p.dump(outer[1]["d"])
        streams.append((f.getvalue(), len(p.memo.copy())))
    assert streams[0] == streams[1]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_large_payloads_between_small_opcodes(proto):
    """``dumps`` copies payloads of 1 MiB and more into the result at the end."""
    import numpy as np

    big = bytes(range(256)) * 8192
    obj = [
        "head",
        big,
        bytearray(big[: (1 << 20) + 3]),
        {"x": np.arange(300_000, dtype=np.float64), "y": [1.5] * 10},
        big,
        "tail" * 5000,
    ]
    if proto >= 5:
        obj.append(pickle.PickleBuffer(bytearray(b"z" * (3 << 20))))
        obj.append(pickle.PickleBuffer(b"r" * (2 << 20)))
    _same(obj, proto)


def _mixed(i):
    return [None, True, False, i, -i, 2**31 + i, -(2**40) - i, 2**70 + i, i / 7, "s" + str(i % 3)][i % 10]


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("n", [1, 2, 999, 1000, 1001, 2500, 12000])
def test_runs_of_scalars_in_lists_and_dicts(proto, n):
    """Scalars in lists and dicts are written in runs; batches and frames must not move."""
    obj = [
        [float(i) for i in range(n)],
        [_mixed(i) for i in range(n)],
        {i: _mixed(i) for i in range(n)},
        {_mixed(i): i for i in range(n) if _mixed(i).__hash__ is not None},
        {i: None for i in range(n)},
    ]
    _same(obj, proto)


class Fresh:
    """Its reduction returns new containers each time: temporaries that die after saving."""

    def __init__(self, i):
        self.i = i

    def __reduce__(self):
        return (_rebuild, ([["fresh", str(self.i)], {"k": [self.i, "v" + str(self.i)]}],))


class Yields:
    """Its list items come from a generator that yields the same unique object twice."""

    def __reduce__(self):
        items = [[["inner"]], [2.5]]

        def gen():
            yield items[0]
            yield items[1]
            yield items[0]
            yield items[0][0]

        return (list, (), None, gen())


class WithState:
    """A reduction with a fresh state dict whose values are unique, then a shared object."""

    shared = ["shared-state"]

    def __init__(self, i):
        self.i = i

    def __reduce__(self):
        return (WithState, (self.i,), {"a": [self.i], "b": ("t", [self.i]), "s": WithState.shared})

    def __setstate__(self, state):
        self.__dict__.update(state)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_unique_objects_inside_reductions(proto):
    obj = [Fresh(i) for i in range(300)] + [Yields(), Yields()] + [WithState(i) for i in range(50)]
    _same(obj, proto)
    out = brinery.loads(brinery.dumps(obj, proto))
    assert out[300][0] is out[300][2]


@pytest.mark.parametrize(
    "make",
    [
        lambda i: f"item-{i:07d}",  # 64-byte objects, allocated one after another
        lambda i: float(i) + 0.5,  # 32-byte objects: crowded neighbouring table slots
        lambda i: (i,),
        lambda i: [i],
    ],
)
@pytest.mark.parametrize("protocol", [2, 5])
def test_many_shared_objects_byte_identical(make, protocol):
    # Objects referenced twice are memoized in the table (the identity hash keeps neighbours in
    # neighbouring slots, and the table grows several times); the shuffled second references
    # look every one of them up again.
    import random

    objs = [make(i) for i in range(60_000)]
    again = objs[:]
    random.Random(5).shuffle(again)
    assert brinery.dumps(objs + again, protocol) == pickle.dumps(objs + again, protocol)
