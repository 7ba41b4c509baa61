# Type stubs for brinery's Rust extension module (crates/brinery-py).
#
# The signatures follow typeshed's stubs of the standard library's `_pickle`/`pickle`, which
# brinery mirrors name for name: `import brinery as pickle` type-checks like the stdlib.
# `python -m mypy.stubtest brinery` checks this file against the built module (tests/test_typing.py).

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pickle import PickleBuffer
from typing import Any, Final, Literal, Protocol, TypeAlias, final, type_check_only

from _typeshed import ReadableBuffer, SupportsWrite
from typing_extensions import disjoint_base

__all__ = [
    "HIGHEST_PROTOCOL",
    "DEFAULT_PROTOCOL",
    "Pickler",
    "PicklerMemoProxy",
    "dump",
    "dumps",
    "Unpickler",
    "UnpicklerMemoProxy",
    "load",
    "loads",
    "JarStore",
    "JarError",
    "Policy",
    "ScanReport",
    "Finding",
    "scan_bytes",
    "_pickle_extent",
    "SCAN_PROFILES",
    "_set_unsafe_error",
    "_loads_with_policy",
    "_safe_loads",
    "safe_loads",
    "_set_safe_loads_fallback",
]

@type_check_only
class _ReadableFileobj(Protocol):
    def read(self, n: int, /) -> bytes: ...
    def readline(self) -> bytes: ...

_BufferCallback: TypeAlias = Callable[[PickleBuffer], Any] | None

_ReducedType: TypeAlias = (
    str
    | tuple[Callable[..., Any], tuple[Any, ...]]
    | tuple[Callable[..., Any], tuple[Any, ...], Any]
    | tuple[Callable[..., Any], tuple[Any, ...], Any, Iterator[Any] | None]
    | tuple[Callable[..., Any], tuple[Any, ...], Any, Iterator[Any] | None, Iterator[Any] | None]
)

HIGHEST_PROTOCOL: Final[int]
DEFAULT_PROTOCOL: Final[int]

def dump(
    obj: Any,
    file: SupportsWrite[bytes],
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: _BufferCallback = None,
) -> None: ...
def dumps(
    obj: Any,
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: _BufferCallback = None,
) -> bytes: ...
def load(
    file: _ReadableFileobj,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = (),
) -> Any: ...
def loads(
    data: ReadableBuffer,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = (),
) -> Any: ...
def _loads_with_policy(
    data: ReadableBuffer,
    policy: Policy,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = (),
) -> Any: ...
def _safe_loads(
    data: ReadableBuffer,
    policy: Policy,
    fallback: object,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = (),
) -> Any: ...

@final
class PicklerMemoProxy:
    def clear(self) -> None: ...
    def copy(self) -> dict[int, tuple[int, Any]]: ...

@disjoint_base
class Pickler:
    fast: bool
    dispatch_table: Mapping[type, Callable[[Any], _ReducedType]]
    bin: bool
    def __init__(
        self,
        file: SupportsWrite[bytes],
        protocol: int | None = None,
        fix_imports: bool = True,
        buffer_callback: _BufferCallback = None,
    ) -> None: ...
    @property
    def memo(self) -> PicklerMemoProxy: ...
    @memo.setter
    def memo(self, value: PicklerMemoProxy | dict[int, tuple[int, Any]]) -> None: ...
    def dump(self, obj: Any, /) -> None: ...
    def clear_memo(self) -> None: ...
    # A hook, as in CPython's `_pickle`: unset by default (reading it raises AttributeError); set
    # it on an instance or define a method of that name in a subclass. Declared as an attribute
    # (it is a data descriptor at runtime) so that both type-check. `reducer_override(self, obj)`
    # is the same kind of hook but has no descriptor: a subclass may define it.
    persistent_id: Callable[[Any], Any]

@final
class UnpicklerMemoProxy:
    def clear(self) -> None: ...
    def copy(self) -> dict[int, tuple[int, Any]]: ...

@disjoint_base
class Unpickler:
    def __init__(
        self,
        file: _ReadableFileobj,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Iterable[Any] | None = (),
        policy: Policy | None = None,
    ) -> None: ...
    @property
    def memo(self) -> UnpicklerMemoProxy: ...
    @memo.setter
    def memo(self, value: UnpicklerMemoProxy | dict[int, tuple[int, Any]]) -> None: ...
    def load(self) -> Any: ...
    def find_class(self, module_name: str, global_name: str, /) -> Any: ...
    # A hook like `Pickler.persistent_id`: unset by default, set per instance or by a subclass.
    persistent_load: Callable[[Any], Any]

# --------------------------------------------------------------------------------------------
# The jar (crates/brinery-jar, binding in crates/brinery-py/src/jar.rs, format in docs/jar-format.md)
# --------------------------------------------------------------------------------------------

class JarError(Exception):
    """A jar operation failed: corrupt or unreadable jar, bad name, bad pickle. (An unknown
    name, version, tag or branch raises ``KeyError`` instead.)"""

_Version: TypeAlias = int | str | None
"""None = newest; int = 1-based version number (negative counts from the end); str = a tag."""

@final
class JarStore:
    """A jar folder on disk (usually ``.brinery``). Thread-safe; the GIL is released during I/O.

    Version info dicts (returned by ``save``, ``info``, ``log``, ``tag``, ``import_pickle`` and
    as the third item of ``load``) have the keys: ``name``, ``branch`` (the branch whose log holds
    the entry), ``version`` (1-based int on the asked branch), ``id`` (manifest hash), ``time``
    (RFC 3339 UTC string), ``note`` (str or None), ``size`` (logical bytes: pickle + buffers),
    ``stored`` (bytes this save added to the jar), ``meta`` (the dict given to ``save``),
    ``globals`` (list of ``"module.name"`` the pickle references), ``buffers`` (list of buffer
    sizes), ``tags`` (list of str), ``signature`` (``"trusted"`` = signed with the current user's
    key, ``"untrusted"`` = signed with another key, ``"invalid"`` = signed with the current key but
    tampered, ``"unsigned"``) and ``key_id`` (str or None); ``log`` entries of deletions have
    ``deleted`` = True (other entries False).
    """

    def __new__(cls, path: str | PathLike[str], *, create: bool = True) -> JarStore:
        """Open the jar whose root folder is ``path``; create it if missing and ``create``."""
    @property
    def path(self) -> str: ...
    def save(
        self,
        branch: str,
        name: str,
        pickle: ReadableBuffer,
        buffers: Sequence[ReadableBuffer] | None = None,
        meta: Mapping[str, Any] | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Store a protocol-5 pickle and its out-of-band buffers as a new version; returns its info.
        ``meta`` is stored as JSON (values JSON cannot hold are stored as their ``repr``)."""
    def load(
        self, branch: str, name: str, version: _Version = None, *, copy: bool = False
    ) -> tuple[bytes, list[memoryview], dict[str, Any]]:
        """``(pickle, buffers, info)``. Large buffers are read-only memoryviews over memory-mapped
        chunks (zero-copy) unless ``copy``; with ``copy`` every buffer is writable."""
    def info(self, branch: str, name: str, version: _Version = None) -> dict[str, Any]:
        """The version info, without reading the data."""
    def log(self, branch: str, name: str) -> list[dict[str, Any]]:
        """Every entry of the name's history on ``branch`` (oldest first), deletions included."""
    def names(self, branch: str) -> list[str]:
        """Names that currently exist (not deleted) on ``branch``, sorted."""
    def contains(self, branch: str, name: str) -> bool: ...
    def tag(self, branch: str, name: str, version: _Version, tag: str) -> dict[str, Any]:
        """Give a version a name; tags are per object name and never move (create-only)."""
    def delete(self, branch: str, name: str) -> None:
        """Delete a name on ``branch`` (history is kept until ``gc``)."""
    def branches(self) -> list[str]:
        """All branches, ``"main"`` included, sorted."""
    def create_branch(self, name: str, from_branch: str) -> None:
        """A new branch whose state starts as ``from_branch``'s current state."""
    def gc(self) -> dict[str, Any]:
        """Remove what no branch, tag or undeleted history needs: ``{"chunks": n, "manifests": n,
        "entries": n, "bytes": n}`` removed."""
    def verify(self) -> dict[str, Any]:
        """Re-hash every chunk and check every file: ``{"ok": bool, "chunks": n, "manifests": n,
        "problems": [{"path": str, "problem": str, "versions": [str, ...]}]}`` where versions are
        ``"branch:name@N"``."""
    def export_pickle(self, branch: str, name: str, version: _Version, path: str | PathLike[str]) -> int:
        """Write a plain pickle file (buffers in-band) that stock ``pickle.load`` reads; returns its size."""
    def import_pickle(
        self, branch: str, name: str, path: str | PathLike[str], note: str | None = None
    ) -> dict[str, Any]:
        """Store a pickle file as a new version of ``name``; returns its info."""
    @staticmethod
    def find(start: str | PathLike[str] | None = None) -> str | None:
        """``$BRINERY_JAR``, else the nearest ``.brinery`` folder at or above ``start`` (default:
        the current directory), else None."""
    @staticmethod
    def key_id() -> str:
        """The id of the current user's signing key (``$BRINERY_KEY_FILE`` or
        ``$XDG_CONFIG_HOME/brinery/key``), created on first use."""

# --- static scanning and the safe-load policy (crates/brinery-py/src/scan.rs) ---

# The names of the built-in profiles, in order: "stdlib-data", "numpy", "pandas", "sklearn".
SCAN_PROFILES: Final[tuple[str, ...]]

@final
class Policy:
    # `profiles=None` means all built-in profiles, `[]` none. `allow` takes dotted names that may be
    # called (classes and functions, e.g. "mypkg.models.Model"); `allow_refs` dotted names that may
    # only be referenced as values. Raises ValueError for an unknown profile or a malformed name.
    def __new__(
        cls,
        profiles: Iterable[str] | None = None,
        allow: Iterable[str] | None = None,
        allow_refs: Iterable[str] | None = None,
    ) -> Policy: ...
    @property
    def profiles(self) -> list[str]: ...
    # Whether `module.qualname` may be referenced (call=False) or called (call=True) under this
    # policy, after the built-in deny-list.
    def allows(self, module: str, qualname: str, /, call: bool = True) -> bool: ...

@final
class Finding:
    @property
    def rule(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def opcode(self) -> str | None: ...
    @property
    def global_name(self) -> str | None: ...
    @property
    def allow_name(self) -> str | None: ...
    @property
    def member(self) -> str | None: ...
    @property
    def message(self) -> str: ...

@final
class ScanReport:
    @property
    def ok(self) -> bool: ...
    @property
    def findings(self) -> list[Finding]: ...
    @property
    def globals(self) -> list[str]: ...
    @property
    def opcodes(self) -> int: ...
    @property
    def members(self) -> list[str]: ...
    def __bool__(self) -> bool: ...

# Scan a pickle, or a container holding pickles (zip incl. PyTorch, gzip, bz2, xz, zlib, joblib,
# .npy/.npz), without running or importing anything. `policy=None` uses all built-in profiles.
def scan_bytes(data: ReadableBuffer, policy: Policy | None = None) -> ScanReport: ...

# Where the first pickle in `data` ends by its opcodes' lengths alone: ("complete", end),
# ("incomplete", bytes needed in all) or ("invalid", offset). safe_load takes one pickle with it.
def _pickle_extent(data: bytes) -> tuple[Literal["complete", "incomplete", "invalid"], int]: ...

# Called once by `brinery/__init__.py`: the exception class (a subclass of
# pickle.UnpicklingError with a `.findings` attribute) that policy enforcement raises.
def _set_unsafe_error(cls: type[Exception], /) -> None: ...

# `brinery.safe_loads` (re-exported by `brinery/_safety.py`): the clean path in native code,
# the rest through the function `_set_safe_loads_fallback` registered (`_safety._safe_loads_py`).
def safe_loads(
    data: ReadableBuffer,
    /,
    *,
    allow: Iterable[Any] | str | None = None,
    policy: Policy | str | Sequence[str] | None = None,
    buffers: Iterable[Any] | None = None,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
) -> Any: ...
def _set_safe_loads_fallback(func: Callable[..., Any], /) -> None: ...
