"""Re-entrancy: Python code that runs *during* a dump or a load (``__reduce__``, hooks,
``find_class``, ``persistent_load``, ``__setstate__``, ``__hash__``, ``__del__``, a list being
sorted) and changes what brinery's unsafe fast paths assume.

Each attack runs in a fresh interpreter (a crash is a signal there, not the end of the test run),
once with ``pickle`` and once with ``brinery`` as the module ``P``; the script prints what each
step gave (a value's repr, or the exception's type). brinery must exit cleanly and print what the
stdlib prints. Where the stdlib itself crashes or misbehaves on the attack, the test says so and
checks brinery's own outcome instead.
"""

from __future__ import annotations

import subprocess

import pytest

# Prepended to every attack script: argv[1] chooses the module under test.
HEADER = r"""
import gc, io, sys, types, pickle as stdpickle
if sys.argv[1] == "brinery":
    import brinery as P
else:
    import pickle as P

def show(label, f):
    try:
        r = f()
    except Exception as e:
        print(label, "raised", type(e).__name__)
    else:
        print(label, "gave", repr(r))

def module(name, **attrs):
    # a module the pickles can refer to by GLOBAL
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m
"""


def run_attack(run_python, code: str, module: str) -> subprocess.CompletedProcess[str]:
    return run_python(HEADER + code, module, timeout=60)


def same_as_stdlib(run_python, describe_proc, code: str) -> str:
    """Run `code` under both modules; brinery must exit 0 and print what the stdlib prints."""
    std = run_attack(run_python, code, "pickle")
    assert std.returncode == 0, "the stdlib run failed:\n" + describe_proc(std)
    ours = run_attack(run_python, code, "brinery")
    assert ours.returncode == 0, describe_proc(ours)
    assert ours.stdout == std.stdout, f"stdlib:\n{std.stdout}\nbrinery:\n{ours.stdout}"
    assert std.stdout.strip(), "the attack printed nothing"
    return ours.stdout


# ---------------------------------------------------------------------------------------------
# loads: the fast loop's raw list extension
# ---------------------------------------------------------------------------------------------

# While `list.sort` runs, the list's item array is detached (NULL items, `allocated == -1`,
# size 0); the sort's key function may load a pickle whose APPEND(S) target is that very list,
# reached by GLOBAL, persistent_load or a memo set from Python. CPython's own list code grows a
# fresh array, and the sort then raises "list modified during sort".
SORTED_LIST_TARGET = r"""
how = sys.argv[2]
lst = [3, 1, 2]
module("evilmod", lst=lst)
if how == "global":
    data = b"\x80\x02cevilmod\nlst\n(K\x07K\x08e."          # GLOBAL, MARK, 7, 8, APPENDS
    load = lambda: P.loads(data)
elif how == "global-append":
    data = b"\x80\x02cevilmod\nlst\nK\x07a."                 # GLOBAL, 7, APPEND
    load = lambda: P.loads(data)
elif how == "persistent":
    class U(P.Unpickler):
        def persistent_load(self, pid):
            return lst
    data = b"\x80\x02P0\n(K\x07K\x08K\x09e."                # PERSID, MARK, 7, 8, 9, APPENDS
    # a file with peek(), so the bytes are at hand for the fast loop
    load = lambda: U(io.BufferedReader(io.BytesIO(data))).load()
else:
    data = b"\x80\x02h\x00(K\x07K\x08e."                  # BINGET 0, MARK, 7, 8, APPENDS
    def load():
        u = P.Unpickler(io.BufferedReader(io.BytesIO(data)))
        u.memo = {0: lst}
        return u.load()
def key(x):
    show("load in key", load)
    return x
show("sort", lambda: lst.sort(key=key))
print("after", lst)
show("later load", lambda: P.loads(stdpickle.dumps([[1, 2], [3]] * 5, 2)))
"""


@pytest.mark.parametrize("how", ["global", "global-append", "persistent"])
def test_append_to_list_being_sorted(run_python, describe_proc, how):
    code = SORTED_LIST_TARGET.replace("sys.argv[2]", repr(how))
    out = same_as_stdlib(run_python, describe_proc, code)
    assert "sort raised ValueError" in out


def test_append_to_list_being_sorted_from_set_memo(run_python, describe_proc):
    # CPython 3.11's C memo setter leaves the new memo empty (its BINGET fails), so brinery's own
    # outcome is checked: the list gets the items, and the sort notices.
    code = SORTED_LIST_TARGET.replace("sys.argv[2]", repr("memo"))
    ours = run_attack(run_python, code, "brinery")
    assert ours.returncode == 0, describe_proc(ours)
    assert ours.stdout.splitlines()[:4] == [
        "load in key gave [7, 8]",
        "load in key gave [7, 8, 7, 8]",
        "load in key gave [7, 8, 7, 8, 7, 8]",
        "sort raised ValueError",
    ]


# A read-only memoryview of a bytearray is read in place (by `_pickle` too), so a REDUCE
# callable can rewrite bytes the load has not reached yet: here two NONEs become `BINGET 1`,
# fetching a string that was stored with `BINPUT 1` before. A load of 64 KiB or more must not
# have skipped that store on the strength of a scan of the bytes as they were.
MUTATED_INPUT = r"""
import __main__
N = 70000
ba = bytearray(b"\x80\x02(X" + N.to_bytes(4, "little") + b"a" * N
               + b"q\x01c__main__\nmut\n)RNNl.")
at = len(ba) - 4
def mut():
    ba[at:at + 2] = b"h\x01"
    return "mutated"
__main__.mut = mut
def go():
    r = P.loads(memoryview(ba).toreadonly())
    return [x if len(x) < 20 else len(x) for x in r]
show("loads", go)
ba[at:at + 2] = b"NN"
show("unchanged bytes", lambda: P.loads(bytes(ba))[1:])
"""


def test_input_rewritten_during_load(run_python, describe_proc):
    out = same_as_stdlib(run_python, describe_proc, MUTATED_INPUT)
    assert "loads gave [70000, 'mutated', 70000]" in out


# ---------------------------------------------------------------------------------------------
# loads: callbacks that re-enter, clear the memo, read the file, collect garbage, raise
# ---------------------------------------------------------------------------------------------

# A dict key's `__hash__` runs inside the fast loop's SETITEMS (PyDict_SetItem): it collects
# garbage, clears the running Unpickler's memo and loads other pickles (module-level and with a
# fresh Unpickler; re-entering the running one is test_reduce_reenters_running_unpickler's).
HASH_REENTERS = r"""
CUR = [None]
class K:
    calls = 0
    def __init__(self, n): self.n = n
    def __reduce__(self): return (K, (self.n,))
    def __eq__(self, o): return isinstance(o, K) and o.n == self.n
    def __hash__(self):
        K.calls += 1
        gc.collect()
        u = CUR[0]
        if u is not None and K.calls < 4:
            u.memo.clear()
            show("nested loads", lambda: P.loads(stdpickle.dumps({"a": [1, 2], "b": "xyz"}, 2)))
            show("nested Unpickler", lambda: P.Unpickler(io.BytesIO(tail)).load())
        return hash(self.n)
import __main__; __main__.K = K
data = stdpickle.dumps([{K(1): "v1", K(2): "v2"}, {K(3): [K(1)]}], 2)
tail = stdpickle.dumps({"second": 2}, 2)
K.calls = 0
def go():
    u = P.Unpickler(io.BufferedReader(io.BytesIO(data)))  # peekable: the fast loop runs
    CUR[0] = u
    r = u.load()
    CUR[0] = None
    return sorted((k.n, repr(v)[:12]) for d in r for k, v in d.items())
show("outer", go)
print("hash calls", K.calls)
"""

# The old value of a memo slot written twice has a `__del__` that reads, replaces and clears the
# running Unpickler's memo and collects garbage; the next BINGET then finds nothing.
MEMO_DEL = r"""
CUR = [None]
class D:
    def __del__(self):
        u = CUR[0]
        print("memo in __del__", sorted(u.memo.copy()))
        u.memo = {5: "x"}
        u.memo.clear()
        gc.collect()
module("evm", mk=D)
data = b"\x80\x02cevm\nmk\n)Rq\x000K\x05q\x00h\x00."
u = P.Unpickler(io.BufferedReader(io.BytesIO(data)))
CUR[0] = u
show("load", u.load)
show("fresh", lambda: P.loads(stdpickle.dumps([1, "ab", {"c": (2,)}], 4)))
"""

# `find_class` reads from the file being loaded, with and without `peek` (BufferedReader).
FIND_CLASS_READS = r"""
import collections
FILE = [None]
class U(P.Unpickler):
    def find_class(self, mod, name):
        print("read in find_class", FILE[0].read(3))
        return super().find_class(mod, name)
obj = [1, "abc", collections.OrderedDict(a=1), {"k": list(range(5))}]
data = stdpickle.dumps(obj, 2) + stdpickle.dumps("tail", 2)
for wrap in ("bytesio", "buffered"):
    f0 = io.BytesIO(data)
    FILE[0] = io.BufferedReader(f0) if wrap == "buffered" else f0
    u = U(FILE[0])
    show(wrap + " first", u.load)
    show(wrap + " second", u.load)
"""

# list/dict subclasses whose extend/append/__setitem__ (APPENDS/SETITEMS on a non-exact target)
# collect garbage, clear the memo or raise; later loads on the thread must be clean.
SUBCLASS_MUTATORS = r"""
import __main__
CUR = [None]
class L(list):
    def extend(self, items):
        CUR[0].memo.clear(); gc.collect(); super().extend(items)
    def append(self, x):
        gc.collect(); super().append(x)
class D(dict):
    def __setitem__(self, k, v):
        gc.collect()
        if k == "boom": raise KeyError("boom")
        super().__setitem__(k, v)
__main__.L = L; __main__.D = D
l = L([1, 2, 3, "xxxxx"]); d = D(a=1, b=[2]); d2 = D(a=1, boom=2, c=3)
def go(data):
    u = P.Unpickler(io.BytesIO(data))
    CUR[0] = u
    r = u.load()
    return [(type(x).__name__, sorted(x.items()) if isinstance(x, dict) else list(x)) for x in r]
for proto in (1, 2, 4):
    show("shared", lambda: go(stdpickle.dumps([l, d, l, d], proto)))
    show("raises", lambda: go(stdpickle.dumps([d2, l], proto)))
    show("clean", lambda: P.loads(stdpickle.dumps([{"a": 1}, [1, 2]] * 3, proto)))
"""

# persistent_load / REDUCE raise in the middle of a big load (marks, a deep stack, half-filled
# containers); loads after it on the same thread must be right.
RAISE_MIDWAY = r"""
class U(P.Unpickler):
    def persistent_load(self, pid):
        if pid == "boom": raise ValueError("pl boom")
        return pid
class Pk(stdpickle.Pickler):
    def persistent_id(self, o):
        return o if isinstance(o, str) and o in ("pa", "boom") else None
def pdumps(o):
    b = io.BytesIO(); Pk(b, 2).dump(o); return b.getvalue()
big = [list(range(300)), {str(i): i for i in range(300)}, "pa", ("x", "y")]
show("boom", lambda: U(io.BytesIO(pdumps([big, [1, 2, ["boom", 3]]]))).load())
for i in range(2):
    show("after", lambda: P.loads(stdpickle.dumps(big, 4)) == big)
    show("after pl", lambda: U(io.BytesIO(pdumps(big))).load() == big)
show("reduce raises", lambda: P.loads(b"\x80\x02(](K\x01K\x02cbuiltins\nint\n(X\x03\x00\x00\x00zzzK\x10tR"))
show("after reduce", lambda: P.loads(stdpickle.dumps(big, 2)) == big)
"""

# Callbacks of every kind collect garbage and walk every object the collector tracks (length,
# iteration) while the loader holds half-filled lists and dicts, marks and a deep stack.
GC_WALK_LOADS = r"""
import __main__
def touch():
    gc.collect()
    n = 0
    for o in gc.get_objects():
        if type(o) in (list, dict, tuple):
            n += len(o)
            for _ in (o.items() if type(o) is dict else o):
                n += 1
    return n
def mk(*a):
    touch(); return ("mk", len(a))
class St:
    def __setstate__(self, s):
        touch(); self.s = s
    def __repr__(self): return "St(%r)" % (self.s,)
class Mk:
    def __init__(self, *a): self.a = a
    def __reduce__(self): return (mk, self.a)
class U(P.Unpickler):
    def find_class(self, m, n):
        touch(); return super().find_class(m, n)
__main__.mk = mk; __main__.St = St; __main__.Mk = Mk
def mkst(i):
    s = St.__new__(St); s.s = i; return s
obj = [list(range(1500)) + [Mk(1, 2)] + list(range(1500)),
       {i: (Mk(i), [mkst(i)]) if i % 400 == 0 else str(i) for i in range(2500)},
       tuple([Mk()] * 3), [[[[[Mk("deep")]]]]]]
for proto in (2, 4):
    data = stdpickle.dumps(obj, proto)
    expect = repr(stdpickle.loads(data))
    show("loads", lambda: repr(P.loads(data)) == expect)
    show("Unpickler", lambda: repr(U(io.BytesIO(data)).load()) == expect)
    show("peekable", lambda: repr(U(io.BufferedReader(io.BytesIO(data))).load()) == expect)
"""


@pytest.mark.parametrize(
    "code",
    [HASH_REENTERS, MEMO_DEL, FIND_CLASS_READS, SUBCLASS_MUTATORS, RAISE_MIDWAY, GC_WALK_LOADS],
    ids=["hash-reenters", "memo-del", "find-class-reads", "subclass-mutators", "raise-midway", "gc-walk"],
)
def test_load_callbacks_as_stdlib(run_python, describe_proc, code):
    out = same_as_stdlib(run_python, describe_proc, code)
    assert "raised SystemError" not in out


# A REDUCE callable re-enters `load()` on the running Unpickler. `_pickle` clears the outer load's
# stack for the nested one (the outer list is lost: the outer load returns the REDUCE result),
# so only the nested call's outcome is compared: both raise UnpicklingError. brinery's outer load
# must still return the whole first pickle, and the next load the second one.
REDUCE_REENTERS = r"""
CUR = [None]
def f(*a):
    show("nested", lambda: CUR[0].load())
    return ("f", a)
module("evm", f=f)
one = b"\x80\x02]q\x00(K\x01K\x02cevm\nf\n(K\x03K\x04tRK\x05e."
two = stdpickle.dumps({"x": [1, 2, 3]}, 2)
for wrap in ("bytesio", "buffered"):
    f0 = io.BytesIO(one + two)
    u = P.Unpickler(io.BufferedReader(f0) if wrap == "buffered" else f0)
    CUR[0] = u
    show(wrap + " outer", u.load)
    show(wrap + " next", u.load)
"""


def test_reduce_reenters_running_unpickler(run_python, describe_proc):
    std = run_attack(run_python, REDUCE_REENTERS, "pickle")
    ours = run_attack(run_python, REDUCE_REENTERS, "brinery")
    assert ours.returncode == 0, describe_proc(ours)
    nested = [line for line in std.stdout.splitlines() if line.startswith("nested")]
    assert nested == ["nested raised UnpicklingError"] * 2, describe_proc(std)
    assert ours.stdout.splitlines() == [
        "nested raised UnpicklingError",
        "bytesio outer gave [1, 2, ('f', (3, 4)), 5]",
        "bytesio next gave {'x': [1, 2, 3]}",
        "nested raised UnpicklingError",
        "buffered outer gave [1, 2, ('f', (3, 4)), 5]",
        "buffered next gave {'x': [1, 2, 3]}",
    ]


# `__setstate__` calls `__init__` on the running Unpickler with another file and clears its
# memo. `_pickle` frees the input buffer it is reading and crashes (SIGSEGV in 3.11); brinery
# finishes the load from the bytes it holds, raises for the memo entry that is gone, and the
# re-initialised Unpickler then loads the new file.
SETSTATE_REINITS = r"""
CUR = [None]
class S:
    def __setstate__(self, st):
        u = CUR[0]
        u.__init__(io.BytesIO(stdpickle.dumps(["other", 1], 2)))
        u.memo.clear()
        gc.collect()
        self.st = st
    def __repr__(self): return f"S({self.st!r})"
import __main__; __main__.S = S
s = S(); s.__dict__["st"] = 0
u = P.Unpickler(io.BytesIO(stdpickle.dumps([s, "after"], 2) + stdpickle.dumps("tail", 2)))
CUR[0] = u
show("no memo reference", u.load)
show("next", u.load)
u = P.Unpickler(io.BytesIO(stdpickle.dumps([s, "after", [s]], 2)))
CUR[0] = u
show("memo reference", u.load)
"""


def test_setstate_reinitialises_running_unpickler(run_python, describe_proc):
    ours = run_attack(run_python, SETSTATE_REINITS, "brinery")
    assert ours.returncode == 0, describe_proc(ours)
    assert ours.stdout.splitlines() == [
        "no memo reference gave [S({'st': 0}), 'after']",
        "next gave ['other', 1]",
        "memo reference raised UnpicklingError",
    ]


# ---------------------------------------------------------------------------------------------
# dumps: Python code that changes the containers being walked, re-enters, raises
# ---------------------------------------------------------------------------------------------

# Each script makes its objects afresh for each module and prints the pickle's bytes: they must
# be the bytes `_pickle` writes (or the same exception type).

# An element's __reduce__ clears, extends or replaces the items of the list being pickled (the
# items already walked lose their last reference), then collects garbage.
LIST_MUTATED = r"""
import __main__
TARGET = [None]
class C:
    def __init__(self, how): self.how = how
    def __reduce__(self):
        L = TARGET[0]
        if self.how == "clear": L.clear()
        elif self.how == "extend": L.extend([[i] for i in range(50)])
        else:
            for i in range(len(L)): L[i] = [i, "new"]
        gc.collect()
        return (str, ("c-" + self.how,))
__main__.C = C
for how in ("clear", "extend", "replace"):
    for proto in (0, 2, 4, 5):
        L = [[0], "str0", C(how), [1], ("t",), 2.5, [2], "str1", {"k": [3]}]
        TARGET[0] = L
        show((how, proto), lambda: P.dumps(L, proto))
"""

# A value's __reduce__ deletes, clears, adds or replaces entries of the dict being pickled.
DICT_MUTATED = r"""
import __main__
TARGET = [None]
class C:
    def __init__(self, how): self.how = how
    def __reduce__(self):
        d = TARGET[0]
        if self.how == "clear": d.clear()
        elif self.how == "del": del d["z"]
        elif self.how == "add": d["new"] = [1]
        else:
            for k in list(d): d[k] = ["fresh", k]
        gc.collect()
        return (str, ("c-" + self.how,))
__main__.C = C
for how in ("clear", "del", "add", "replace"):
    for proto in (0, 2, 4):
        d = {"a": [1], "b": "bee", "c": C(how), "y": (1, [2]), "z": [3]}
        TARGET[0] = d
        show((how, proto), lambda: P.dumps(d, proto))
"""

# persistent_id, reducer_override and dispatch_table entries that clear or refill the container.
HOOKS_MUTATE = r"""
import __main__
TARGET = [None]
class T:
    def __init__(self, n): self.n = n
__main__.T = T
def pickler(kind):
    class Pk(P.Pickler):
        if kind == "pid":
            def persistent_id(self, o):
                if isinstance(o, T):
                    TARGET[0].clear(); gc.collect(); return "pid%d" % o.n
                return None
        elif kind == "ro":
            def reducer_override(self, o):
                if isinstance(o, T):
                    L = TARGET[0]
                    if isinstance(L, dict): L["x"] = [9]
                    else: L[:] = [[9]] * 3
                    gc.collect(); return (str, ("t%d" % o.n,))
                return NotImplemented
    return Pk
def red(o):
    TARGET[0].clear(); gc.collect()
    return (str, ("dt%d" % o.n,))
for kind in ("pid", "ro", "dt"):
    for shape in ("list", "dict"):
        obj = ([[1], "a", T(1), [2], T(2), "b"] if shape == "list"
               else {"a": [1], "b": T(1), "c": "cc", "d": T(2)})
        TARGET[0] = obj
        b = io.BytesIO(); p = pickler(kind)(b, 4)
        if kind == "dt": p.dispatch_table = {T: red}
        show((kind, shape), lambda: (p.dump(obj), b.getvalue()))
"""

# Unique items (reference count 1, memoized without a table reference) are freed by a
# temporary's __del__, which then appends look-alike objects that may reuse their addresses.
ADDRESS_REUSE = r"""
import __main__
TARGET = [None]
class F:
    def __del__(self):
        L = TARGET[0]
        for i in range(4): L[i] = None
        L.extend([[i] for i in range(8)] + [(i, "x") for i in range(8)] + ["s%d" % i for i in range(8)])
def mkf(*a): return "made"
class R:
    def __reduce__(self): return (mkf, (F(),))
__main__.F = F; __main__.mkf = mkf; __main__.R = R
for proto in (2, 4):
    L = [[0], ("t", 0), [1], "s-zero", R(), [5], R(), [6]]
    TARGET[0] = L
    show(proto, lambda: P.dumps(L, proto))
"""

# A __reduce__ raises in the middle of a big dumps; later dumps on the thread (which reuse its
# buffer and memo) must be right, also a dumps that fails inside another dumps.
DUMPS_RAISES = r"""
import __main__
class Boom:
    def __reduce__(self): raise ValueError("boom")
big = {"k%d" % i: [i, "v%d" % i, (i, i + 0.5)] for i in range(2000)}
bad = [big, "x" * 100, Boom()]
class N:
    def __reduce__(self):
        try: P.dumps(bad)
        except ValueError: print("nested failed")
        return (str, ("n",))
__main__.Boom = Boom; __main__.N = N
for proto in (0, 2, 4, 5):
    show(("bad", proto), lambda: P.dumps(bad, proto))
    show(("big", proto), lambda: P.dumps(big, proto))
    show(("nested", proto), lambda: P.dumps([big, N(), [1, 2]], proto))
"""

# The list being sorted, pickled from the sort's key function (its items are detached).
SORTING_LIST = r"""
lst = [[3], [1], "two", (4,)]
def key(x):
    for proto in (0, 2, 4):
        show(proto, lambda: P.dumps([lst, x, lst], proto))
    return repr(x)
show("sort", lambda: lst.sort(key=key))
"""

# __reduce__, reducer_override and persistent_id collect garbage and walk every tracked object
# while the pickler is inside lists, dicts and tuples.
GC_WALK_DUMPS = r"""
import __main__, hashlib
def digest(b): return hashlib.sha256(b).hexdigest()
def touch():
    gc.collect()
    n = 0
    for o in gc.get_objects():
        if type(o) in (list, dict, tuple):
            n += len(o)
            for _ in (o.items() if type(o) is dict else o): n += 1
    return n
class Mk:
    def __init__(self, *a): self.a = a
    def __reduce__(self): touch(); return (Mk, self.a)
__main__.Mk = Mk
obj = [list(range(1500)) + [Mk(1, 2)] + list(range(1500)),
       {i: (Mk(i), [i]) if i % 400 == 0 else str(i) for i in range(2500)},
       tuple([Mk()] * 3), [[[[[Mk("deep")]]]]]]
class Pk(P.Pickler):
    def reducer_override(self, o):
        if type(o) is Mk: touch()
        return NotImplemented
    def persistent_id(self, o):
        if type(o) is Mk: touch()
        return None
for proto in (2, 5):
    show(("dumps", proto), lambda: digest(P.dumps(obj, proto)))
    def go():
        b = io.BytesIO(); Pk(b, proto).dump(obj); return digest(b.getvalue())
    show(("Pickler", proto), go)
"""


@pytest.mark.parametrize(
    "code",
    [LIST_MUTATED, DICT_MUTATED, HOOKS_MUTATE, ADDRESS_REUSE, DUMPS_RAISES, SORTING_LIST, GC_WALK_DUMPS],
    ids=[
        "list-mutated",
        "dict-mutated",
        "hooks-mutate",
        "address-reuse",
        "raises",
        "sorting-list",
        "gc-walk",
    ],
)
def test_dump_callbacks_as_stdlib(run_python, describe_proc, code):
    same_as_stdlib(run_python, describe_proc, code)


# A __reduce__ calls dumps re-entrantly: module-level (the thread's buffer and memo are in use),
# on another Pickler, and `dump` on the running Pickler itself. The first two must give the
# stdlib's bytes, inside and outside; re-entering the running Pickler crashes `_pickle` (it
# replaces the output buffer under the outer dump), so there brinery must only not crash and
# leave both pickles loadable.
REENTRANT_DUMPS = r"""
import __main__
OUT = []; PK = [None]
class R:
    def __reduce__(self):
        OUT.append(P.dumps([{"in": 1}, "inner", [1, 2]], 4))
        b = io.BytesIO(); P.Pickler(b, 2).dump({"other": [3]}); OUT.append(b.getvalue())
        if PK[0] is not None:
            PK[0].dump(["same", "pickler"])
        return (str, ("r",))
__main__.R = R
obj = [[0], "shared", R(), {"k": "shared"}, [0]]
if sys.argv[2] == "modules":
    for proto in (2, 4, 5):
        OUT.clear()
        show(proto, lambda: P.dumps(obj, proto))
        print("nested", OUT)
else:
    b = io.BytesIO(); PK[0] = P.Pickler(b, 4)
    show("dump", lambda: PK[0].dump(obj))
    b.seek(0)
    print("loaded", stdpickle.load(b), stdpickle.load(b))
"""


def test_reentrant_dumps(run_python, describe_proc):
    same_as_stdlib(run_python, describe_proc, REENTRANT_DUMPS.replace("sys.argv[2]", '"modules"'))
    ours = run_attack(run_python, REENTRANT_DUMPS.replace("sys.argv[2]", '"same"'), "brinery")
    assert ours.returncode == 0, describe_proc(ours)
    assert ours.stdout.splitlines() == [
        "dump gave None",
        "loaded ['same', 'pickler'] [[0], 'shared', 'r', {'k': 'shared'}, [0]]",
    ]


# A callback calls `clear_memo()` on the running Pickler (from __reduce__, persistent_id and
# reducer_override): objects memoized before the call are written again after it, the memo
# indices start again at 0, and the next dump() does not refer to what was cleared.
CLEAR_MEMO_MIDDUMP = r"""
import __main__
PK = [None]
class R:
    def __reduce__(self):
        PK[0].clear_memo()
        return (str, ("r",))
class T:
    pass
__main__.R = R; __main__.T = T
def pickler(kind):
    class Pk(P.Pickler):
        if kind == "pid":
            def persistent_id(self, o):
                if type(o) is T: self.clear_memo(); return "T"
                return None
        elif kind == "ro":
            def reducer_override(self, o):
                if type(o) is T: self.clear_memo(); return (str, ("t",))
                return NotImplemented
    return Pk
for kind in ("reduce", "pid", "ro"):
    for proto in (0, 2, 4):
        shared = ["shared", (1, "s")]
        mid = R() if kind == "reduce" else T()
        obj = [shared, "txt", shared, mid, shared, "txt", (shared, mid)]
        b = io.BytesIO(); PK[0] = p = pickler(kind)(b, proto)
        show((kind, proto), lambda: (p.dump(obj), p.dump([shared, "txt"]), b.getvalue()))
"""


def test_clear_memo_while_dumping(run_python, describe_proc):
    same_as_stdlib(run_python, describe_proc, CLEAR_MEMO_MIDDUMP)


# buffer_callback releases the PickleBuffer it is given, then resizes or rewrites the bytearray
# behind it, and asks for the buffer in-band. `_pickle` then reads the released view (SIGSEGV
# in 3.11 after the resize); brinery holds an export of its own from before the callback: the
# resize raises BufferError, and the rewrite is pickled (the bytes as they are after the
# callback, which is when `_pickle` reads them too).
PICKLEBUFFER_RELEASED = r"""
for how in ("resize", "write"):
    ba = bytearray(b"q" * 70000)
    pb = stdpickle.PickleBuffer(ba)
    def cb(b):
        b.release()
        if how == "resize":
            ba.extend(b"x" * 1000000)
        else:
            ba[:3] = b"abc"
        return True
    def go():
        v = stdpickle.loads(P.dumps([pb, "after"], 5, buffer_callback=cb))
        return bytes(v[0][:5]), len(v[0]), v[1]
    show(how, go)
show("later", lambda: P.dumps([bytearray(b"z" * 70000)], 5) == stdpickle.dumps([bytearray(b"z" * 70000)], 5))
"""


def test_buffer_callback_releases_picklebuffer(run_python, describe_proc):
    ours = run_attack(run_python, PICKLEBUFFER_RELEASED, "brinery")
    assert ours.returncode == 0, describe_proc(ours)
    assert ours.stdout.splitlines() == [
        "resize raised BufferError",
        "write gave (b'abcqq', 70000, 'after')",
        "later gave True",
    ]


# ---------------------------------------------------------------------------------------------
# dumps: objects taken for unique (reference count 1) while Python code changes the graph
# ---------------------------------------------------------------------------------------------

# The pickler keeps an object met only once (reference count 1: the slot of the container being
# walked) out of its memo table. A `__reduce__` run while such an object's items are saved can
# let go of the container's reference (then our own reference was the last one: the object was
# freed after its save, and its pending memo entry pointed at freed memory: a segfault, or a
# wrong GET for the next object at that address), or give it a second reference (then it was
# written twice where the stdlib writes a GET). Run with the debug allocator, which makes a use
# after free crash at once.
UNIQUE_THEN_CHANGED = r"""
class R:
    def __reduce__(self):
        HOLDER[0] = None                      # drops the tuple being saved
        return (int, ())
class DropValue:
    def __reduce__(self):
        D["k"] = None                         # drops the dict value being saved
        return (int, ())
class Flush:
    def __reduce__(self):
        return (int, ())                      # more Python code after the freed object
class MoveValue:
    def __reduce__(self):
        v = D2[self]; D2[self] = 0; LATER.append(v)   # the value gets a reference elsewhere
        return (MoveValue, ())
class Again:
    def __reduce__(self):
        L3.append(L3[0])                      # the enclosing tuple becomes reachable twice
        return (int, ())
for proto in (2, 4, 5):
    for _ in range(20):
        HOLDER = [(R(), [1], "x" * 3), Flush(), (5, 6)]
        show(("tuple freed", proto), lambda: stdpickle.loads(P.dumps(HOLDER, proto)))
        HOLDER = [((R(), [1]), ("y" * 3, [4])), Flush(), (5, 6)]
        show(("nested tuple freed", proto), lambda: stdpickle.loads(P.dumps(HOLDER, proto)))
        HOLDER = [[R(), [1], "x" * 3], Flush(), (5, 6)]
        show(("list freed", proto), lambda: stdpickle.loads(P.dumps(HOLDER, proto)))
        HOLDER = [{"a": R(), "b": [1], "c": ("z" * 3,)}, Flush(), (5, 6)]
        show(("dict freed", proto), lambda: stdpickle.loads(P.dumps(HOLDER, proto)))
        D = {"k": ((DropValue(),), [2]), "z": Flush()}
        show(("dict value freed", proto), lambda: stdpickle.loads(P.dumps(D, proto)))
        gc.collect()
    D2 = {MoveValue(): [1, 2]}
    LATER = []
    r = stdpickle.loads(P.dumps([D2, LATER], proto))
    show(("moved value shared", proto), lambda: list(r[0].values())[0] is r[1][0])
    L3 = [(Again(), [3]), 0]
    r = stdpickle.loads(P.dumps(L3, proto))
    show(("tuple shared", proto), lambda: (r[0] is r[2], r))
"""


def test_objects_taken_for_unique_then_changed(run_python, describe_proc):
    env = {"PYTHONMALLOC": "debug"}
    std = run_python(HEADER + UNIQUE_THEN_CHANGED, "pickle", timeout=120, env=env)
    assert std.returncode == 0, describe_proc(std)
    ours = run_python(HEADER + UNIQUE_THEN_CHANGED, "brinery", timeout=120, env=env)
    assert ours.returncode == 0, describe_proc(ours)
    assert ours.stdout == std.stdout, f"stdlib:\n{std.stdout}\nbrinery:\n{ours.stdout}"
    assert "tuple shared', 5) gave (True" in ours.stdout


# Python code run while the pickler or unpickler walks a dict it does not own (a BUILD state,
# a memo assigned from a dict) may change that dict: PyO3's dict iterator panicked there
# ("dictionary changed size during iteration" as a PanicException); `_pickle` walks with
# PyDict_Next and goes on. A protocol's `__index__` run by `Pickler.__init__` that uses the
# pickler got a borrow panic (`_pickle` crashes).
DICTS_CHANGED_DURING_WALKS = r"""
class Obj:
    def __setattr__(self, k, v):
        if isinstance(v, dict):
            v["n%d" % len(v)] = 1             # grows the state dict being walked
        object.__setattr__(self, k, v)
class Red:
    def __reduce__(self):
        d = {}
        d["a"] = d
        return (Obj, (), (None, d))
module("rmod", Obj=Obj, Red=Red)
Red.__module__ = Obj.__module__ = "rmod"
data = stdpickle.dumps(Red(), 2)
show("slot state grows", lambda: sorted(vars(P.loads(data)).keys())[:3])
class Idx:
    def __index__(self):
        MEMO["x%d" % len(MEMO)] = (0, "q")
        return 0
MEMO = {1: (Idx(), "a")}
def set_memo():
    P.Pickler(io.BytesIO()).memo = MEMO
show("memo index", set_memo)
LONG = type("a" * 199 + "\u00e9", (), {"__reduce__": lambda s: 1})
show("long non-ascii class name", lambda: P.dumps(LONG()))
def bad_name_load():
    cls = type("a" * 199 + "\u00e9", (), {})
    module("rmod3", C=cls)
    cls.__module__, cls.__qualname__ = "rmod3", "C"
    return P.loads(b"\x80\x02crmod3\nC\nK\x01\x85R.")
show("long non-ascii class name load", bad_name_load)
"""


def test_dicts_changed_during_walks(run_python, describe_proc):
    out = same_as_stdlib(run_python, describe_proc, DICTS_CHANGED_DURING_WALKS)
    assert "PanicException" not in out


def test_protocol_index_reenters_pickler_init(run_python, describe_proc):
    # `_pickle` crashes here (it reads the memo being cleared): brinery raises RuntimeError
    code = (
        HEADER
        + r"""
class Proto:
    def __index__(self):
        show("memo copy inside __init__", lambda: p.memo.copy())
        show("dump inside __init__", lambda: p.dump([1]))
        return 2
p = P.Pickler(io.BytesIO(), 2)
p.dump([0])
show("init", lambda: p.__init__(io.BytesIO(), Proto()))
show("dump after", lambda: p.dump([2]))
"""
    )
    proc = run_python(code, "brinery", timeout=60)
    assert proc.returncode == 0, describe_proc(proc)
    assert "PanicException" not in proc.stdout + proc.stderr, proc.stdout
    assert proc.stdout.splitlines()[-2:] == ["init gave None", "dump after gave None"], proc.stdout


# Two more ways an object taken for met once was met twice, both writing it twice and then, when
# the memo moved the two entries for one address into its table, giving a later object the index
# of an earlier one (a GET then loaded the wrong object): a key shared by the instance dicts of
# one class (a split dict's keys table holds one reference for all of them), and Python code run
# late in a reduction (the reduce value's finalizer) that gives an object the reduction saved a
# second reference.
MET_TWICE = r"""
import fractions, hashlib
def digest(b): return hashlib.sha256(b).hexdigest()[:16]
class C: pass
a = C(); a.__dict__["".join(["dyn", "key"])] = 1
d1 = a.__dict__; d2 = d1.copy(); X = ["shared"]; Y = {"y": 1}
for proto in (2, 4, 5):
    data = P.dumps([d1, d2, fractions.Fraction(1, 2), X, Y, X, Y], proto)
    show(("split-dict key", proto), lambda: (digest(data), stdpickle.loads(data)[2:]))
target = []
class B: pass
class RV(tuple):
    def __del__(self): target.append(self[2]["x"])
class A:
    def __reduce__(self): return RV((B, (), {"x": ["payload"]}))
for proto in (2, 4, 5):
    target.clear()
    data = P.dumps([A(), target, fractions.Fraction(1, 3), X, X], proto)
    r = stdpickle.loads(data)
    show(("finalizer shares", proto), lambda: (digest(data), r[0].x is r[1][0], r[2:]))
"""


def test_objects_met_twice_are_written_once(run_python, describe_proc):
    out = same_as_stdlib(run_python, describe_proc, MET_TWICE)
    assert "('finalizer shares', 4) gave" in out and "True" in out, out
