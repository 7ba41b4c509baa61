"""The memo filter of large in-memory loads (`loads` of 64 KiB and more): stores that nothing
fetches are skipped, so an object referenced once is freed as soon as its consumer drops it;
shared and cyclic references, explicit PUT indices and odd streams load exactly as with the
stdlib; an Unpickler's visible memo keeps everything."""

import io
import pickle
import weakref

import brinery
import numpy as np
import pytest

PAD = b"x" * (80 << 10)  # makes every pickle below large enough for the filter


class Token:
    pass


SEEN = []


def note(obj):
    SEEN.append(weakref.ref(obj))
    return "noted"


def check():
    return [r() is None for r in SEEN]


class Note:
    def __reduce__(self):
        return (note, (Token(),))


class Check:
    def __reduce__(self):
        return (check, ())


@pytest.mark.parametrize("proto", [2, 4, 5])
def test_object_referenced_once_is_freed_during_the_load(proto):
    data = pickle.dumps([Note(), Check(), PAD], proto)
    SEEN.clear()
    assert brinery.loads(data) == ["noted", [True], PAD]
    # The stdlib (and an Unpickler, whose memo Python code can read) keeps it until the end.
    SEEN.clear()
    assert pickle.loads(data) == ["noted", [False], PAD]
    SEEN.clear()
    u = brinery.Unpickler(io.BytesIO(data))
    assert u.load() == ["noted", [False], PAD]
    # Small pickles are loaded without the extra pass.
    SEEN.clear()
    assert brinery.loads(pickle.dumps([Note(), Check()], proto)) == ["noted", [False]]


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_shared_and_cyclic_references(proto):
    shared = {"k": [1, 2, 3]}
    cyc = []
    cyc.append(cyc)
    obj = [shared, shared, cyc, (shared, "s"), PAD, [shared] * 3, "tail"]
    data = pickle.dumps(obj, proto)
    assert brinery.dumps(obj, proto) == data
    out = brinery.loads(data)
    assert out[0] == shared and out[0] is out[1] is out[3][0] is out[5][2]
    assert out[2][0] is out[2]
    assert out[4] == PAD and out[6] == "tail"


def test_numpy_arrays_and_views():
    a = np.arange(100_000, dtype=np.float64)
    obj = {"a": a, "same": a, "many": [np.full(3000, i) for i in range(20)]}
    out = brinery.loads(pickle.dumps(obj, 5))
    assert out["a"] is out["same"]
    np.testing.assert_array_equal(out["a"], a)
    assert all((m == i).all() for i, m in enumerate(out["many"]))
    out["a"][0] = 7.0  # in-band buffers load writable, as with the stdlib
    assert out["same"][0] == 7.0


def big_str_op(n):
    return b"X" + n.to_bytes(4, "little") + b"s" * n


@pytest.mark.parametrize(
    "stream",
    [
        # MEMOIZE and an explicit BINPUT mixed: no filter, same result as the stdlib
        b"\x80\x04]\x94" + big_str_op(70_000) + b"\x94aq\x05h\x05h\x00\x86.",
        # text GET with leading zeros; PUT-only stream
        b"(" + big_str_op(70_000) + b"p7\ng07\nh\x07l.",
        # text GET the filter does not parse (whitespace): no filter
        b"(" + big_str_op(70_000) + b"p7\ng 7\nl.",
        # LONG_BINPUT/LONG_BINGET
        b"\x80\x02]r\x00\x00\x01\x00" + big_str_op(70_000) + b"r\x01\x00\x01\x00aj\x01\x00\x01\x00a.",
    ],
)
def test_odd_streams_like_the_stdlib(stream):
    expected = pickle.loads(stream)
    out = brinery.loads(stream)
    assert out == expected
    if isinstance(out, tuple):
        assert out[0] is out[1]


def test_missing_memo_entry_still_an_error():
    # BINGET of an index nothing stored: the same error as without the filter
    stream = b"\x80\x04]\x94" + big_str_op(70_000) + b"h\x05."
    with pytest.raises(pickle.UnpicklingError, match="Memo value not found at index 5"):
        brinery.loads(stream)
    with pytest.raises(pickle.UnpicklingError, match="Memo value not found at index 5"):
        pickle.loads(stream)


def memoized_text(s):
    return b"\x8c" + bytes([len(s)]) + s.encode() + b"\x94"


def load_with_note_and_check(head):
    """Load `head` (a protocol-4 stream that leaves two values on the stack) followed by a
    call that makes a Note and one that checks whether it is already freed, with the stdlib and
    with brinery; returns both results. The Note is freed during the load only when the memo
    filter understood the whole stream."""

    def global_(name):
        return memoized_text(__name__) + memoized_text(name) + b"\x93\x94"

    note_call = global_("note") + global_("Token") + b")\x81\x94\x85\x94R\x94"
    check_call = global_("check") + b")R\x94"
    stream = head + note_call + check_call + b"\x86\x87."
    SEEN.clear()
    expected = pickle.loads(stream)
    assert expected[2] == ("noted", [False])
    SEEN.clear()
    out = brinery.loads(stream)
    assert out[:2] == expected[:2]
    assert out[2] == ("noted", [True])
    return out


def test_memoize_after_each_common_opcode_keeps_its_index():
    # The filter steps over SHORT_BINUNICODE, SHORT_BINBYTES, BINUNICODE, BINFLOAT, BININT,
    # BININT2 and BININT1 together with the MEMOIZE that follows. Each index must still count
    # (the fetches at the end find the same objects), and the filter must have understood the
    # whole stream: the Note made after them is freed during the load, which only a filtered
    # load does.
    import struct

    items = [
        b"\x8c\x03abc",
        b"C\x02hi",
        big_str_op(70_000),
        b"G" + struct.pack(">d", 1.5),
        b"J" + (-7).to_bytes(4, "little", signed=True),
        b"M" + (515).to_bytes(2, "little"),
        b"K\x09",
    ]
    body = b"".join(op + b"\x94a" for op in items)
    fetch = b"(" + b"".join(b"h" + bytes([i]) for i in range(1, len(items) + 1)) + b"t"

    out = load_with_note_and_check(b"\x80\x04]\x94" + body + fetch)
    assert all(a is b for a, b in zip(out[0][:3], out[1][:3], strict=True))


def test_runs_of_same_length_strings_keep_every_index():
    # The filter steps over a run of memoized strings of one length (a column of fixed-width
    # labels) at once. Runs broken by another length, by a string without MEMOIZE and by other
    # opcodes must still count every index: fetches at the start, middle and end of each run
    # find the same objects, and the Note after them is freed during the load (the filter
    # understood the whole stream).
    ops, index = [], [0]  # index 0 is the outer list

    def memoized(op):
        ops.append((op + b"\x94", 1))
        index[0] += 1
        return index[0]

    def text(s):
        return b"\x8c" + bytes([len(s)]) + s.encode()

    first = memoized(big_str_op(70_000))
    run_a = [memoized(text(f"lbl{i:03d}")) for i in range(50)]
    longer = memoized(text("label-7"))
    run_b = [memoized(text(f"lbl{i:03d}")) for i in range(20)]
    ops.append((text("nomemo"), 1))  # same length, no MEMOIZE: ends the run
    run_c = [memoized(text(f"lbl{i:03d}")) for i in range(10)]
    ops.append((b"K\x07", 1))
    run_d = [memoized(text(f"lbl{i:03d}")) for i in range(3)]
    wanted = [first, run_a[0], run_a[24], run_a[-1], longer, run_b[0], run_b[-1]]
    wanted += [run_c[0], run_c[-1], run_d[0], run_d[-1]]
    fetch = b"(" + b"".join(b"h" + bytes([i]) for i in wanted) + b"t"

    body = b"".join(op for op, _ in ops)
    out = load_with_note_and_check(b"\x80\x04]\x94(" + body + b"e" + fetch)
    # Each fetched object is the very item stored at its memo index.
    position, k = {}, 0
    for op, pushes in ops:
        if op.endswith(b"\x94"):
            position[len(position) + 1] = k
        k += pushes
    assert len(out[0]) == k
    assert all(out[1][j] is out[0][position[i]] for j, i in enumerate(wanted))
