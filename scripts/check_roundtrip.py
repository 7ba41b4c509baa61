#!/usr/bin/env python3
"""Check pickles rewritten by brinery against their originals, with CPython.

Usage: PYTHONPATH=scripts .venv/bin/python scripts/check_roundtrip.py JOB.json

``JOB.json`` is a list of entries::

    {"original": "/path/case.p2.pkl", "load": "loads", "buffers": ["/path/case.p5.buf0"],
     "rewritten": [{"path": "/tmp/x/case.p2.to0.pkl", "protocol": 0}, ...]}

``load`` is the manifest's loading mode (see ``scripts/gen_corpus.py``). For every rewritten file
this checks that

- it only uses opcodes of its protocol (``pickletools.genops``), starts with ``PROTO n`` exactly
  when ``n >= 2``, and has no ``FRAME`` below protocol 4;
- ``pickle.loads`` of it equals ``pickle.loads`` of the original: both loaded objects are pickled
  again with ``pickle.dumps(obj, 5)`` and the bytes compared (which also compares sharing and
  cycles and treats NaN as equal to itself); if that raises, ``==`` decides.

Prints one line per failure and a summary ``checked N rewritten pickles, F failed``; exits 1 if
anything failed, 2 on a usage error.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import pickletools
import sys
import threading
import traceback

import corpus_classes as cc  # beside this script, so always on sys.path


def ops(data: bytes):
    """Yield (opcode, raw argument bytes, position) like ``pickletools.genops``, without decoding
    arguments (genops cannot decode a protocol-0 ``STRING`` holding non-ASCII bytes)."""
    pos = 0
    while pos < len(data):
        op = pickletools.code2op.get(chr(data[pos]))
        if op is None:
            raise ValueError(f"unknown opcode byte {data[pos]:#x} at byte {pos}")
        start = pos
        pos += 1
        arg = op.arg
        if arg is None:
            raw = b""
        elif arg.n >= 0:
            raw = data[pos : pos + arg.n]
            pos += arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            lines = 2 if arg.name == "stringnl_noescape_pair" else 1
            end = pos
            for _ in range(lines):
                end = data.index(b"\n", end) + 1
            raw, pos = data[pos:end], end
        else:
            width = {
                pickletools.TAKEN_FROM_ARGUMENT1: 1,
                pickletools.TAKEN_FROM_ARGUMENT4: 4,
                pickletools.TAKEN_FROM_ARGUMENT4U: 4,
                pickletools.TAKEN_FROM_ARGUMENT8U: 8,
            }[arg.n]
            n = int.from_bytes(data[pos : pos + width], "little", signed=False)
            raw = data[pos + width : pos + width + n]
            pos += width + n
        yield op, raw, start
        if op.name == "STOP":
            return
    raise ValueError("no STOP opcode")


def check_opcodes(data: bytes, protocol: int) -> str | None:
    first = True
    for op, raw, pos in ops(data):
        if op.proto > protocol:
            return f"opcode {op.name} (protocol {op.proto}) at byte {pos}"
        if first:
            first = False
            if protocol >= 2 and (op.name != "PROTO" or raw != bytes([protocol])):
                return f"does not start with PROTO {protocol}"
        if op.name == "PROTO" and pos != 0:
            return f"PROTO at byte {pos}"
    return None


class _NoStrMemo(pickle._Pickler):  # type: ignore[misc, name-defined]
    """The pure-Python pickler, without memoizing str: equal values whose strings are shared
    differently (interning while loading is not deterministic) pickle the same."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_str(self, obj: str) -> None:
        encoded = obj.encode("utf-8", "surrogatepass")
        self.write(pickle.BINUNICODE + len(encoded).to_bytes(4, "little") + encoded)

    dispatch[str] = save_str


def dumps_no_str_memo(obj: object) -> bytes:
    f = io.BytesIO()
    _NoStrMemo(f, 5).dump(obj)
    return f.getvalue()


def dumps5(obj: object) -> bytes:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return pickle.dumps(obj, 5)
    finally:
        sys.set_int_max_str_digits(old)


def same(a: object, b: object, reload) -> str | None:
    try:
        da, db = dumps5(a), dumps5(b)
    except Exception as e:  # noqa: BLE001 - unpicklable: fall back to ==
        try:
            return None if a == b else f"values differ (== after dumps failed: {e!r})"
        except Exception as e2:  # noqa: BLE001
            return f"cannot compare: dumps raised {e!r}, == raised {e2!r}"
    if da == db:
        return None
    # Loading the original twice may itself not give the same bytes (str interning): then only
    # compare what does not depend on how strings are shared.
    if dumps5(reload()) != da and dumps_no_str_memo(a) == dumps_no_str_memo(b):
        return None
    return "pickle.dumps(obj, 5) of the loaded values differ"


def run(job: list[dict]) -> tuple[int, list[str]]:
    checked = 0
    failures: list[str] = []
    for entry in job:
        original = entry["original"]
        how = entry.get("load", "loads")
        buffers = [open(p, "rb").read() for p in entry.get("buffers", [])]
        try:
            with open(original, "rb") as f:
                original_data = f.read()
            want = cc.load_pickle(original_data, how, buffers)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{original}: the original does not load: {e!r}")
            checked += len(entry["rewritten"])
            continue
        for rw in entry["rewritten"]:
            checked += 1
            path, protocol = rw["path"], rw["protocol"]
            try:
                with open(path, "rb") as f:
                    data = f.read()
                bad = check_opcodes(data, protocol)
                if bad is None:
                    got = cc.load_pickle(data, how, buffers if protocol >= 5 else None)
                    bad = same(
                        want,
                        got,
                        functools.partial(cc.load_pickle, original_data, how, buffers),
                    )
            except Exception as e:  # noqa: BLE001
                bad = "".join(traceback.format_exception_only(type(e), e)).strip()
            if bad is not None:
                failures.append(f"{path} (protocol {protocol}): {bad}")
    return checked, failures


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    result: list[tuple[int, list[str]]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(run(job))
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    # Protocols 0 and 1 write big ints as decimal text, which CPython only reads back with the
    # int/str digit limit lifted (its own pickler refuses to write them at all).
    sys.set_int_max_str_digits(0)
    # Deeply nested values need a big stack and recursion limit to be pickled again.
    sys.setrecursionlimit(1_000_000)
    threading.stack_size(1 << 30)
    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    checked, failures = result[0]
    for line in failures:
        print(line)
    print(f"checked {checked} rewritten pickles, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
