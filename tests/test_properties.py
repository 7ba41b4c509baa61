"""Property tests against the stdlib: for generated nested values and every protocol,

- byte identity: ``brinery.dumps(x, p) == pickle.dumps(x, p)`` (or both raise the same error);
- brinery loads what the stdlib writes, equal to what ``pickle.loads`` builds;
- the stdlib loads what brinery writes, equal to the original round trip.

"Equal" is ``pickle.dumps(value, 5)`` of both results: that compares NaNs (payload included),
-0.0, exact types, shared references and cycles, which ``==`` does not.
"""

from __future__ import annotations

import math
import pickle
import struct
import sys

import brinery
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)

# The strategies hold 4300-digit ints, whose reprs hypothesis warns about when it describes them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

BOUNDARY_INTS = [
    b + d
    for b in (0, 1 << 7, 1 << 8, 1 << 15, 1 << 16, 1 << 31, 1 << 32, 1 << 63, 1 << 64, 1 << 2040, 1 << 2048)
    for d in (-1, 0, 1)
] + [-(1 << 31) - 1, -(1 << 31), -(1 << 63), -(1 << 64), -(10**4300 - 1)]

ints = st.one_of(
    st.integers(),
    st.sampled_from(BOUNDARY_INTS),
    st.integers(min_value=-(1 << 9000), max_value=1 << 9000),  # LONG4; > 4300 digits raise at p0/1
)

NAN_PAYLOAD = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
SPECIAL_FLOATS = [
    math.nan,
    -math.nan,
    NAN_PAYLOAD,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    5e-324,
    sys.float_info.max,
]
floats = st.one_of(st.floats(), st.sampled_from(SPECIAL_FLOATS))
# Set members and dict keys: no NaN. hash(nan) is its id(), so a set holding NaN (or a frozenset
# of one) iterates in a different order after every load, and the canonical form would differ.
hashable_floats = st.one_of(st.floats(allow_nan=False), st.sampled_from(SPECIAL_FLOATS[3:]))

# All of Unicode, lone surrogates included (they need surrogatepass / raw-unicode-escape).
texts = st.text(st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    ["", "\ud800", "a\udfffb", "\\u0041", "\n", "\\", "\x00", "\u20ac", "\U0001f600", "x" * 300]
)
binaries = st.binary(max_size=300)

hashable_atoms = st.one_of(st.none(), st.booleans(), ints, hashable_floats, texts, binaries)
hashables = st.recursive(
    hashable_atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner), st.lists(inner, max_size=4).map(tuple), st.frozensets(inner)
    ),
    max_leaves=8,
)
bytearrays = binaries.map(bytearray) | st.sampled_from([b"a", b"\x00", b"\xff"]).map(bytearray)
atoms = st.one_of(hashable_atoms, floats, bytearrays)


def containers(children):
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashables, children, max_size=5),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
    )


trees = st.recursive(atoms, containers, max_leaves=25)


@st.composite
def shared_and_recursive(draw):
    """A value whose parts are referenced more than once, often with a cycle through a list,
    dict or tuple, built deliberately (hypothesis does not make aliases on its own)."""
    pool = draw(st.lists(trees | containers(atoms), min_size=1, max_size=4))
    refs = st.sampled_from(range(len(pool))).map(lambda i: pool[i])
    outer: list = draw(st.lists(refs, min_size=1, max_size=6))
    kind = draw(st.sampled_from(["none", "list", "dict", "tuple", "mutual", "deep", "set"]))
    if kind == "list":
        outer.append(outer)
    elif kind == "dict":
        d: dict = {"self": None, 1: outer}
        d["self"] = d
        outer.append(d)
    elif kind == "tuple":  # recursion through an immutable: POP_MARK/POP + GET at load time
        t = (outer, draw(refs))
        outer.append(t)
        outer.insert(0, (t,))
    elif kind == "mutual":
        a: list = [draw(refs)]
        b = {"a": a}
        a.append(b)
        outer.extend([a, b, (a, b)])
    elif kind == "deep":
        inner: list = outer
        for _ in range(draw(st.integers(1, 12))):
            inner = [inner, outer]
        outer = inner
    elif kind == "set":  # a frozenset shared between a set, a dict key and a tuple
        f = frozenset(draw(st.lists(hashables, max_size=3)))
        outer.extend([f, {f, None}, {f: outer}, (f, f)])
    return draw(st.sampled_from([outer, tuple(outer), {"v": outer, "w": outer}]))


values = trees | shared_and_recursive()


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def canon(value) -> bytes:
    return pickle.dumps(value, 5)


def dumps_or_error(module, value, protocol):
    try:
        return module.dumps(value, protocol)
    except (ValueError, pickle.PicklingError, RecursionError, OverflowError) as exc:
        return type(exc)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@SETTINGS
@given(values)
@example([math.nan, -0.0, "\udc80", 1 << 5000, ()])
def test_dumps_is_byte_identical(value):
    for protocol in PROTOCOLS:
        assert dumps_or_error(brinery, value, protocol) == dumps_or_error(pickle, value, protocol), protocol


@SETTINGS
@given(values)
def test_brinery_loads_stdlib_pickles(value):
    for protocol in PROTOCOLS:
        data = dumps_or_error(pickle, value, protocol)
        if isinstance(data, type):
            continue
        assert canon(brinery.loads(data)) == canon(pickle.loads(data)), protocol


@SETTINGS
@given(values)
def test_stdlib_loads_brinery_pickles(value):
    for protocol in PROTOCOLS:
        data = dumps_or_error(brinery, value, protocol)
        if isinstance(data, type):
            continue
        expected = pickle.loads(pickle.dumps(value, protocol))
        assert canon(pickle.loads(data)) == canon(expected), protocol


@SETTINGS
@given(values)
def test_brinery_round_trip_is_stdlib_round_trip(value):
    for protocol in PROTOCOLS:
        data = dumps_or_error(brinery, value, protocol)
        if isinstance(data, type):
            continue
        assert canon(brinery.loads(data)) == canon(pickle.loads(data)), protocol


@settings(max_examples=100, deadline=None)
@given(st.lists(values, min_size=1, max_size=4), st.sampled_from(PROTOCOLS))
def test_pickler_memo_across_dumps(items, protocol):
    """One Pickler dumping several objects reuses its memo: the stream equals the stdlib's, and
    one Unpickler reads it back (shared references across the loads included)."""
    import io

    streams = []
    for module in (pickle, brinery):
        f = io.BytesIO()
        pickler = module.Pickler(f, protocol)
        try:
            for item in items:
                pickler.dump(item)
        except ValueError:  # > 4300-digit ints at protocols 0 and 1
            streams.append(ValueError)
            continue
        streams.append(f.getvalue())
    assert streams[0] == streams[1]
    if streams[0] is ValueError:
        return
    loaded = []
    for module in (pickle, brinery):
        unpickler = module.Unpickler(io.BytesIO(streams[0]))
        loaded.append(canon([unpickler.load() for _ in items]))
    assert loaded[0] == loaded[1]


def test_single_byte_bytearray_is_not_shared():
    """Below protocol 5 a bytearray pickles as ``bytearray(bytes(...))``, the bytes object a fresh
    one (PyBytes_FromObject), memoized. Regression: brinery used CPython's cached one-byte bytes
    singleton, so a later equal one-byte bytearray or bytes object became a memo GET of it."""
    value = [bytearray(b"a"), bytearray(b"a"), bytearray(b"\xff"), b"\xff"]
    mismatched = [p for p in range(5) if brinery.dumps(value, p) != pickle.dumps(value, p)]
    assert not mismatched, f"not byte-identical at protocols {mismatched}"
