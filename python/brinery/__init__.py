"""brinery: fast, safe pickling for Python, written in Rust.

A drop-in replacement for the standard library's :mod:`pickle`::

    import brinery as pickle

    data = pickle.dumps(obj, protocol=5)
    obj = pickle.loads(data)

Same names, signatures, defaults and output bytes as the running interpreter's ``pickle``. The
exception classes *are* the standard library's, so ``except pickle.UnpicklingError`` keeps working.

Safe mode for untrusted pickles (docs/security.md)::

    report = brinery.scan("model.pkl")          # nothing runs, nothing is imported
    obj = brinery.safe_load(f, allow=["mypkg.models.Model"])   # refuses with UnsafePickleError
"""

import pickle as _stdlib_pickle

# Every name of the standard library's module that brinery does not reimplement, as the
# stdlib's own objects: the opcode constants (`pickle.STOP`, in `pickle.__all__`), the helpers
# (`whichmodule`, `encode_long`, ...), and the pure-Python implementation that libraries
# subclass or call (`_Pickler`, as dill does; `_dumps`/`_loads`). The native `Pickler`,
# `Unpickler`, `dump(s)` and `load(s)` are imported below instead of the stdlib's.
from pickle import (  # noqa: F401
    ADDITEMS,
    APPEND,
    APPENDS,
    BINBYTES,
    BINBYTES8,
    BINFLOAT,
    BINGET,
    BININT,
    BININT1,
    BININT2,
    BINPERSID,
    BINPUT,
    BINSTRING,
    BINUNICODE,
    BINUNICODE8,
    BUILD,
    BYTEARRAY8,
    DEFAULT_PROTOCOL,
    DICT,
    DUP,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_SET,
    EMPTY_TUPLE,
    EXT1,
    EXT2,
    EXT4,
    FALSE,
    FLOAT,
    FRAME,
    FROZENSET,
    GET,
    GLOBAL,
    HIGHEST_PROTOCOL,
    INST,
    INT,
    LIST,
    LONG,
    LONG1,
    LONG4,
    LONG_BINGET,
    LONG_BINPUT,
    MARK,
    MEMOIZE,
    NEWFALSE,
    NEWOBJ,
    NEWOBJ_EX,
    NEWTRUE,
    NEXT_BUFFER,
    NONE,
    OBJ,
    PERSID,
    POP,
    POP_MARK,
    PROTO,
    PUT,
    READONLY_BUFFER,
    REDUCE,
    SETITEM,
    SETITEMS,
    SHORT_BINBYTES,
    SHORT_BINSTRING,
    SHORT_BINUNICODE,
    STACK_GLOBAL,
    STOP,
    STRING,
    TRUE,
    TUPLE,
    TUPLE1,
    TUPLE2,
    TUPLE3,
    UNICODE,
    PickleBuffer,
    PickleError,
    PicklingError,
    UnpicklingError,
    _Pickler,
    _Unpickler,
    bytes_types,
    decode_long,
    encode_long,
)
from typing import TYPE_CHECKING

from brinery._native import (
    SCAN_PROFILES,
    Finding,
    Pickler,
    Policy,
    ScanReport,
    Unpickler,
    _set_unsafe_error,
    dump,
    dumps,
    load,
    loads,
)
from brinery._safety import ClassRule, UnsafePickleError, safe_load, safe_loads, scan, subclasses_of

# What the stdlib module has but its type stubs (typeshed) do not declare: given at run time.
for _name in (
    "whichmodule",
    "format_version",
    "compatible_formats",
    "dispatch_table",
    "_dump",
    "_dumps",
    "_load",
    "_loads",
    "_getattribute",
    "_extension_registry",
    "_inverted_registry",
    "_extension_cache",
    "_compat_pickle",
):
    globals()[_name] = getattr(_stdlib_pickle, _name)
del _name

# the native policy enforcement raises the same exception class as the pre-load scan
_set_unsafe_error(UnsafePickleError)

if TYPE_CHECKING:  # the jar loads lazily (module __getattr__ below)
    from brinery._jar import Jar

    jar: Jar

__all__ = [
    "DEFAULT_PROTOCOL",
    "HIGHEST_PROTOCOL",
    "SCAN_PROFILES",
    "ClassRule",
    "Finding",
    "Jar",
    "PickleBuffer",
    "PickleError",
    "Pickler",
    "PicklingError",
    "Policy",
    "ScanReport",
    "Unpickler",
    "UnpicklingError",
    "UnsafePickleError",
    "dump",
    "dumps",
    "load",
    "load_ipython_extension",
    "loads",
    "safe_load",
    "safe_loads",
    "scan",
    "subclasses_of",
]
# ...and the rest of what `from pickle import *` gives: the opcode constants
__all__ += [
    "ADDITEMS",
    "APPEND",
    "APPENDS",
    "BINBYTES",
    "BINBYTES8",
    "BINFLOAT",
    "BINGET",
    "BININT",
    "BININT1",
    "BININT2",
    "BINPERSID",
    "BINPUT",
    "BINSTRING",
    "BINUNICODE",
    "BINUNICODE8",
    "BUILD",
    "BYTEARRAY8",
    "DICT",
    "DUP",
    "EMPTY_DICT",
    "EMPTY_LIST",
    "EMPTY_SET",
    "EMPTY_TUPLE",
    "EXT1",
    "EXT2",
    "EXT4",
    "FALSE",
    "FLOAT",
    "FRAME",
    "FROZENSET",
    "GET",
    "GLOBAL",
    "INST",
    "INT",
    "LIST",
    "LONG",
    "LONG1",
    "LONG4",
    "LONG_BINGET",
    "LONG_BINPUT",
    "MARK",
    "MEMOIZE",
    "NEWFALSE",
    "NEWOBJ",
    "NEWOBJ_EX",
    "NEWTRUE",
    "NEXT_BUFFER",
    "NONE",
    "OBJ",
    "PERSID",
    "POP",
    "POP_MARK",
    "PROTO",
    "PUT",
    "READONLY_BUFFER",
    "REDUCE",
    "SETITEM",
    "SETITEMS",
    "SHORT_BINBYTES",
    "SHORT_BINSTRING",
    "SHORT_BINUNICODE",
    "STACK_GLOBAL",
    "STOP",
    "STRING",
    "TRUE",
    "TUPLE",
    "TUPLE1",
    "TUPLE2",
    "TUPLE3",
    "UNICODE",
]


def __getattr__(name: str) -> object:
    # The jar loads lazily: `brinery.Jar`, and `from brinery import jar` (the project's default jar).
    if name == "Jar":
        from brinery._jar import Jar

        return Jar
    if name == "jar":
        from brinery._jar import default_jar

        return default_jar()
    raise AttributeError(f"module 'brinery' has no attribute {name!r}")


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext brinery``: the ``%jar`` magic (save, load, ls, log, branch, switch)."""
    from brinery.ipython import load_ipython_extension as load

    load(ipython)
