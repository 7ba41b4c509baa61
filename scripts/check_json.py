#!/usr/bin/env python3
"""Check brinery's JSON export against CPython: rebuild objects from the JSON, compare with pickle.loads.

Usage (run with the project's venv; `cargo test -p brinery --test json_python` drives it):

    .venv/bin/python scripts/check_json.py gen DIR
        write DIR/<case>.p<N>.pkl for every case and protocol 0-5 (plain data, tuples, sets, bytes,
        big ints, non-finite floats, non-str keys, shared references and cycles)
    .venv/bin/python scripts/check_json.py check DIR [--allow-unsupported]
        for every DIR/X.pkl with a DIR/X.json (and DIR/X.pretty.json, if present): rebuild the object
        from the JSON with `from_json` below and check it equals pickle.loads(X.pkl) exactly (same
        types, same float bits, same dict order, same sharing of mutable containers). With
        --allow-unsupported, documents holding tags the decoder does not rebuild (objects, globals
        outside a tiny allowlist, persistent ids, buffers) are counted and skipped rather than failed;
        DIR/manifest.json (as written by scripts/gen_corpus.py) is honoured for the load mode.

The decoder is the one documented in docs/json-mapping.md ("Reading it back in Python"), extended
with an allowlist of harmless callables so that protocol 0-2 pickles of bytes and sets (which CPython
writes as calls of `_codecs.encode`, `builtins.set`, ...) can be rebuilt too.
"""

from __future__ import annotations

import base64
import codecs
import json
import math
import pickle
import struct
import sys
from pathlib import Path

# Only these callables are ever called while rebuilding: nothing that can run code.
SAFE_CALLABLES = {
    ("_codecs", "encode"): codecs.encode,
    ("codecs", "encode"): codecs.encode,
}
for _module in ("builtins", "__builtin__"):
    for _name, _fn in [("set", set), ("frozenset", frozenset), ("bytearray", bytearray), ("bytes", bytes)]:
        SAFE_CALLABLES[(_module, _name)] = _fn


class Unsupported(Exception):
    """The document holds something this decoder does not rebuild."""


def from_json(doc, *, encoding="ASCII"):
    """Rebuild a Python object from brinery's JSON (already parsed with json.loads)."""
    ids = {}

    def register(node, obj):
        if "$id" in node:
            ids[node["$id"]] = obj
        return obj

    def dec(x):
        if isinstance(x, list):
            return [dec(i) for i in x]
        if not isinstance(x, dict):
            return x  # None, bool, int, float (JSON numbers with '.' or 'e' are floats), str
        if not any(k.startswith("$") for k in x):
            return {k: dec(v) for k, v in x.items()}
        if "$ref" in x:
            if x["$ref"] not in ids:
                # A cycle through a tuple or frozenset: Python builds those only after their items.
                raise Unsupported("cycle through an immutable value")
            return ids[x["$ref"]]
        tag = next(k for k in x if k.startswith("$") and k != "$id")
        v = x[tag]
        if tag == "$list":
            out = register(x, [])
            out.extend(dec(i) for i in v)
            return out
        if tag == "$dict":
            out = register(x, {})
            for k, val in v:
                key = dec(k)
                out[key] = dec(val)
            return out
        if tag == "$set":
            out = register(x, set())
            out.update(dec(i) for i in v)
            return out
        if tag == "$bytearray":
            return register(x, bytearray(base64.b64decode(v)))
        # Immutable values: children first, then the value (a cycle through one cannot be rebuilt).
        if tag == "$tuple":
            out = tuple(dec(i) for i in v)
        elif tag == "$frozenset":
            out = frozenset(dec(i) for i in v)
        elif tag == "$int":
            out = int(v, 0)
        elif tag == "$float":
            out = float(v)
        elif tag == "$str":
            out = v if isinstance(v, str) else "".join(v)
        elif tag == "$bytes":
            out = base64.b64decode(v)
        elif tag in ("$str2", "$bytes2"):
            raw = v.encode("ascii") if tag == "$str2" else base64.b64decode(v)
            out = raw if encoding == "bytes" else raw.decode(encoding)
        elif tag == "$global":
            fn = SAFE_CALLABLES.get(tuple(v))
            if fn is None:
                raise Unsupported(f"global {v[0]}.{v[1]}")
            out = fn
        elif tag == "$object":
            out = call(x)
        else:
            raise Unsupported(tag)
        return register(x, out)

    def call(x):
        if x["$object"] != "reduce" or any(k in x for k in ("kwargs", "state", "mutations")):
            raise Unsupported(f"object of kind {x['$object']}")
        fn = dec(x["callable"])
        args = x["args"]
        args = [dec(a) for a in args] if isinstance(args, list) else dec(args)
        if not callable(fn) or not isinstance(args, (list, tuple)):
            raise Unsupported("call of a non-callable")
        out = fn(*args)
        for item in x.get("listitems", ()):
            out.append(dec(item))
        for k, val in dec(x.get("dictitems", {})).items():
            out[k] = val
        return out

    return dec(doc)


def same(a, b, pairs=None):
    """Exact structural equality: types, float bits, dict order, sharing of mutable containers."""
    if pairs is None:
        pairs = {}
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, dict, set, bytearray)):
        if id(a) in pairs:
            return pairs[id(a)] is b
        pairs[id(a)] = b
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, pairs) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb, pairs) and same(va, vb, pairs)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, (set, frozenset)):
        rest = list(b)
        for x in a:
            for i, y in enumerate(rest):
                if same(x, y, pairs):
                    del rest[i]
                    break
            else:
                return False
        return not rest
    return a == b


def cases():
    shared = [1, 2]
    cyc = []
    cyc.append(cyc)
    dcyc = {}
    dcyc["me"] = dcyc
    long_str = "y" * 200
    return {
        "none": None,
        "bools": [True, False],
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)],
        "bigints": [2**63, -(2**63) - 1, 2**64, 10**100, -(10**100), 2**20000, -(2**20000) + 1],
        "floats": [0.0, -0.0, 1.0, 0.1, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 123.456, -2.5],
        "nonfinite": [float("nan"), float("inf"), float("-inf"), -float("nan")],
        "strs": [
            "",
            "a",
            "h\u00e9llo",
            '\n\t"\\\x00\x1f\x7f',
            "\u2028",
            "\U0001f600",
            "\ud800",
            "a\udfffb",
            "\ud83d\ude00",
            "x\udbff\udfffy",
        ],
        "lists": [[], [[]], [1, [2, [3]]]],
        "dict": {"a": 1, "b": {"c": [None]}, "": 0, "\ud800": "lone"},
        "dollar_keys": {"$ref": 1, "$id": 2, "$x": {"$tuple": []}},
        "nonstr_keys": {1: "a", 2.5: "b", None: 1, (1, "x"): 3, b"k": 4, frozenset([1]): 5, 2**70: 6},
        "tuples": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((),)),
        "sets": [set(), {1, 2, 3}, frozenset(), frozenset({"a"}), {(1, 2)}],
        "bytes": [b"", b"\x00\xff", bytes(range(256)), bytearray(b"xyz"), bytearray()],
        "shared": [shared, shared, {"k": shared}, (shared,)],
        "cycle": cyc,
        "dict_cycle": dcyc,
        "shared_long_str": [long_str, long_str, {"k": long_str}],
        "records": {
            "records": [{"id": i, "name": f"n{i}", "score": i / 3, "tags": ("t", i)} for i in range(50)]
        },
    }


def gen(outdir: Path) -> None:
    sys.set_int_max_str_digits(0)  # protocol 0 writes big ints in decimal
    outdir.mkdir(parents=True, exist_ok=True)
    for name, obj in cases().items():
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            (outdir / f"{name}.p{proto}.pkl").write_bytes(pickle.dumps(obj, proto))


def check(directory: Path, allow_unsupported: bool) -> int:
    sys.set_int_max_str_digits(0)
    modes = {}
    manifest = directory / "manifest.json"
    if manifest.exists():
        modes = {e["file"]: e.get("load", "loads") for e in json.loads(manifest.read_text())}
    ok = skipped = failed = 0
    for pkl in sorted(directory.glob("*.pkl")):
        mode = modes.get(pkl.name, "loads")
        docs = [p for p in (pkl.with_suffix(".json"), pkl.with_suffix(".pretty.json")) if p.exists()]
        if not docs:
            continue
        if mode not in ("loads", "latin1", "int_max_str_digits=0"):
            skipped += 1
            continue
        encoding = "latin1" if mode == "latin1" else "ASCII"
        try:
            expected = pickle.loads(pkl.read_bytes(), encoding=encoding)
        except Exception:
            skipped += 1  # needs classes, buffers or a persistent_load: not this checker's business
            continue
        for doc in docs:
            try:
                got = from_json(json.loads(doc.read_text(encoding="utf-8")), encoding=encoding)
            except (Unsupported, RecursionError) as e:
                if allow_unsupported:
                    skipped += 1
                    break
                print(f"FAIL {doc.name}: unsupported {e}")
                failed += 1
                continue
            except Exception as e:  # noqa: BLE001 - report anything
                print(f"FAIL {doc.name}: {type(e).__name__}: {e}")
                failed += 1
                continue
            if same(expected, got):
                ok += 1
            else:
                print(f"FAIL {doc.name}: rebuilt {got!r:.300} != pickle.loads {expected!r:.300}")
                failed += 1
    print(f"check_json: {ok} documents equal, {skipped} skipped, {failed} failed")
    return 1 if failed or not ok else 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "gen":
        gen(Path(argv[1]))
        return 0
    if len(argv) >= 2 and argv[0] == "check":
        return check(Path(argv[1]), "--allow-unsupported" in argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
