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

from pickle import (
    DEFAULT_PROTOCOL,
    HIGHEST_PROTOCOL,
    PickleBuffer,
    PickleError,
    PicklingError,
    UnpicklingError,
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
