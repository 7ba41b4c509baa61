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
else:
    class U(P.Unpickler):
        def persistent_load(self, pid):
            return lst
    data = b"\x80\x02P0\n(K\x07K\x08K\x09e."                # PERSID, MARK, 7, 8, 9, APPENDS
    load = lambda: U(io.BytesIO(data)).load()
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
