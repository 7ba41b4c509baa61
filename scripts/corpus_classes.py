"""Classes and helpers the test corpus pickles refer to (module ``corpus_classes``).

``scripts/gen_corpus.py`` pickles instances of these classes; anything that loads the corpus with
CPython needs this module importable (``PYTHONPATH=scripts``). Importing it also registers the
``copyreg`` extension codes the EXT1/EXT2/EXT4 cases use.

Everything here is deterministic: no time, no randomness, no ids in reprs.
"""

from __future__ import annotations

import copyreg
import enum
import io
import pickle
import sys
from collections import namedtuple
from typing import Self

# --------------------------------------------------------------------------------------------
# Plain classes and the __reduce__ family


class Plain:
    """An ordinary class: pickled through ``copyreg.__reduce_ex__`` / ``__newobj__`` + BUILD."""

    def __init__(self, **attrs: object) -> None:
        self.__dict__.update(attrs)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]


class Node:
    """A graph node for cyclic object graphs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.edges: list[Node] = []


class Reduce2:
    """``__reduce__`` returning ``(callable, args)``."""

    def __init__(self, a: object, b: object) -> None:
        self.a = a
        self.b = b

    def __reduce__(self) -> tuple:
        return (Reduce2, (self.a, self.b))


class Reduce3:
    """``__reduce__`` returning ``(callable, args, state)``."""

    def __init__(self, a: object) -> None:
        self.a = a
        self.extra: object = None

    def __reduce__(self) -> tuple:
        return (Reduce3, (self.a,), {"extra": self.extra})


class Reduce4(list):
    """``__reduce__`` returning ``(callable, args, state, listitems)``; a list subclass."""

    def __reduce__(self) -> tuple:
        return (Reduce4, (), {"tag": getattr(self, "tag", None)}, iter(list(self)))


class Reduce5(dict):
    """``__reduce__`` returning ``(callable, args, None, None, dictitems)``; a dict subclass."""

    def __reduce__(self) -> tuple:
        return (Reduce5, (), None, None, iter(list(self.items())))


def set_state_via_setter(obj: object, state: object) -> None:
    """The ``state_setter`` of :class:`Reduce6`."""
    obj.__dict__["via_setter"] = state  # type: ignore[attr-defined]


class Reduce6:
    """``__reduce__`` returning the full 6-tuple with a ``state_setter``."""

    def __init__(self, a: object) -> None:
        self.a = a

    def __reduce__(self) -> tuple:
        return (Reduce6, (self.a,), {"a": self.a}, None, None, set_state_via_setter)


class ReduceString:
    """``__reduce__`` returning a string: pickled as the module global of that name."""

    def __reduce__(self) -> str:
        return "SINGLETON"


SINGLETON = ReduceString()


class NewArgs:
    """``__getnewargs__`` with a ``__new__`` that needs its arguments."""

    def __new__(cls, x: int, y: int) -> Self:
        self = super().__new__(cls)
        self.x = x
        self.y = y
        return self

    def __getnewargs__(self) -> tuple:
        return (self.x, self.y)


class NewArgsEx:
    """``__getnewargs_ex__`` with keyword arguments (NEWOBJ_EX at protocol 4+)."""

    def __new__(cls, x: int, *, label: str = "") -> Self:
        self = super().__new__(cls)
        self.x = x
        self.label = label
        return self

    def __getnewargs_ex__(self) -> tuple:
        return ((self.x,), {"label": self.label})


class WithState:
    """``__getstate__`` / ``__setstate__`` with a non-dict state."""

    def __init__(self, a: int, b: str) -> None:
        self.a = a
        self.b = b

    def __getstate__(self) -> tuple:
        return (self.a, self.b)

    def __setstate__(self, state: tuple) -> None:
        self.a, self.b = state


class Slots:
    """``__slots__`` without ``__dict__`` (state is ``(None, {slots})``; protocol 2+ only)."""

    __slots__ = ("x", "y")

    def __init__(self, x: object, y: object) -> None:
        self.x = x
        self.y = y


class SlotsDict:
    """``__slots__`` plus ``__dict__`` (state is ``({dict}, {slots})``)."""

    __slots__ = ("__dict__", "x")

    def __init__(self, x: object) -> None:
        self.x = x


class SlotsState:
    """``__slots__`` with an explicit ``__getstate__``, so protocols 0 and 1 work too."""

    __slots__ = ("x",)

    def __init__(self, x: object) -> None:
        self.x = x

    def __getstate__(self) -> dict:
        return {"x": self.x}

    def __setstate__(self, state: dict) -> None:
        self.x = state["x"]


class MyList(list):
    """A list subclass with an attribute."""


class MyDict(dict):
    """A dict subclass with an attribute."""


# --------------------------------------------------------------------------------------------
# Enums, namedtuples, functions


class Color(enum.Enum):
    """A plain Enum."""

    RED = 1
    GREEN = "green"


class Level(enum.IntEnum):
    """An IntEnum."""

    LOW = 1
    HIGH = 10


Point = namedtuple("Point", ["x", "y"])


def module_function(x: int) -> int:
    """A module-level function, pickled by reference."""
    return x + 1


# --------------------------------------------------------------------------------------------
# copyreg extension codes (EXT1, EXT2, EXT4 at protocol 2+)


class Ext1Target:
    """Registered with extension code 0xF0 (EXT1)."""


class Ext2Target:
    """Registered with extension code 0x1234 (EXT2)."""


class Ext4Target:
    """Registered with extension code 0x12345678 (EXT4)."""


EXTENSION_CODES = {
    "Ext1Target": 0xF0,
    "Ext2Target": 0x1234,
    "Ext4Target": 0x12345678,
}

for _name, _code in EXTENSION_CODES.items():
    copyreg.add_extension(__name__, _name, _code)


# --------------------------------------------------------------------------------------------
# Persistent ids


class External:
    """An object stored outside the pickle, referred to by a persistent id."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, External) and other.key == self.key

    __hash__ = None  # type: ignore[assignment]


class PersistentPickler(pickle.Pickler):
    """Writes :class:`External` objects as PERSID (protocol 0) / BINPERSID (1+)."""

    def persistent_id(self, obj: object) -> str | None:
        if isinstance(obj, External):
            return "ext:" + obj.key
        return None


class PersistentUnpickler(pickle.Unpickler):
    """Resolves the persistent ids written by :class:`PersistentPickler`."""

    def persistent_load(self, pid: object) -> External:
        if isinstance(pid, str) and pid.startswith("ext:"):
            return External(pid[4:])
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def load_pickle(data: bytes, how: str, buffers: list[bytes] | None = None) -> object:
    """Load a corpus pickle the way its manifest entry says CPython must (``load``): with the
    persistent-id unpickler, ``encoding="latin1"``, out-of-band ``buffers``, the int-digits limit
    lifted, or plain ``pickle.loads``. Shared by gen_corpus.py and check_roundtrip.py."""
    if how == "persistent":
        return PersistentUnpickler(io.BytesIO(data)).load()
    if how == "latin1":
        return pickle.loads(data, encoding="latin1")
    if how == "buffers":
        return pickle.loads(data, buffers=buffers)
    if how == "int_max_str_digits=0":
        old = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)
        try:
            return pickle.loads(data)
        finally:
            sys.set_int_max_str_digits(old)
    return pickle.loads(data)
