"""Safe mode: scan a pickle before anything runs, then load it with the policy enforced.

``scan`` reports what a pickle would import and call without running or importing anything;
``safe_load``/``safe_loads`` refuse (``UnsafePickleError``) unless the scan is clean, then load
from memory with the native policy enforcement (that of ``Unpickler(..., policy=...)``), which
enforces the same policy a second time while loading (defence in depth). See docs/security.md
for the threat model.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from brinery import _native
from brinery._native import Finding, Policy, ScanReport

__all__ = [
    "ClassRule",
    "UnsafePickleError",
    "safe_load",
    "safe_loads",
    "scan",
    "subclasses_of",
]

# the single compressed streams safe_load decompresses (the member names the scan reports)
_DECOMPRESS = {"(gzip)": "gzip", "(bz2)": "bz2", "(xz)": "lzma", "(zlib)": "zlib"}

# rules whose global can be allowed by name (the others are structural or on the deny-list)
_ALLOWABLE = {"BRS001", "BRS002"}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle was refused by safe mode.

    ``findings`` is the list of :class:`brinery.Finding` (rule code, byte offset, opcode, global)
    that made it unsafe. A subclass of :class:`pickle.UnpicklingError`, so existing
    ``except pickle.UnpicklingError`` handlers keep working.
    """

    findings: list[Finding]

    def __init__(self, message: str = "", findings: Iterable[Finding] | None = None) -> None:
        super().__init__(message)
        self.findings = list(findings) if findings is not None else []


class ClassRule:
    """Allow the classes under ``package`` that subclass ``base`` (see :func:`subclasses_of`)."""

    __slots__ = ("base", "package")

    def __init__(self, package: str, base: str) -> None:
        if not package or not isinstance(package, str) or package.startswith(".") or package.endswith("."):
            raise ValueError(f"package must be an absolute dotted module name, not {package!r}")
        if not isinstance(base, str) or "." not in base:
            raise ValueError(
                f"base must be a dotted class name like 'sklearn.base.BaseEstimator', not {base!r}"
            )
        self.package = package
        self.base = base

    def __repr__(self) -> str:
        return f"subclasses_of({self.package!r}, {self.base!r})"

    def covers(self, dotted: str) -> bool:
        """Whether ``dotted`` names something inside the rule's package."""
        return dotted.startswith(self.package + ".")

    def verify(self, dotted: str) -> bool:
        """Check that ``dotted`` is a class defined under the rule's package that subclasses ``base``.

        Only modules that are already imported are looked at: the pickle never makes this process
        import anything (a module's import can run code: plugins, ``conftest``, ``experimental``
        switches). Import your package before loading its pickles.
        """
        if not self.covers(dotted) or _SKIPPED_PART.search(dotted):
            return False
        cls = _resolve(dotted, self.package)
        base = _resolve(self.base, None)
        return (
            isinstance(cls, type)
            and isinstance(base, type)
            and issubclass(cls, base)
            and self.covers(f"{cls.__module__}.{cls.__qualname__}")  # defined there, not re-exported
        )


def subclasses_of(package: str, base: str) -> ClassRule:
    """A class rule for ``allow=``: classes under ``package`` that subclass ``base``.

    ``brinery.safe_load(f, allow=[brinery.subclasses_of("mypkg", "sklearn.base.BaseEstimator")])``
    lets the pickle call (construct) any class defined under ``mypkg`` that is a subclass of
    ``sklearn.base.BaseEstimator``. The check runs in this process and imports nothing the pickle
    names: import ``mypkg`` (the modules defining your classes) before loading. Each global under
    ``mypkg`` is allowed only if its module is already imported, it is a class defined under
    ``mypkg`` (not a re-export) and a subclass of ``base``; ``__main__``, test, ``conftest`` and
    ``experimental`` modules are never used. Functions and other objects in ``mypkg`` stay refused.
    """
    return ClassRule(package, base)


# module path parts a class rule never resolves, even when imported: entry points, test modules,
# pytest configuration, feature switches that patch other modules when imported
_SKIPPED_PART = re.compile(r"(^|\.)(__main__|conftest|tests?|test_\w*|\w*_tests?|experimental)(\.|$)")


def _resolve(dotted: str, only_under: str | None) -> object | None:
    """The object ``dotted`` names, looking in the longest module prefix that resolves.

    With ``only_under`` (a class rule checking a name from the pickle), only modules inside that
    package that are *already imported* (in ``sys.modules``) are looked at: nothing is imported.
    Without it (the rule's own base class, named by the caller), the module is imported.
    Returns None when nothing resolves.
    """
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        if only_under is not None:
            if not (module == only_under or module.startswith(only_under + ".")):
                continue
            found = sys.modules.get(module)
            if found is None:
                continue
            obj: object = found
        else:
            try:
                obj = importlib.import_module(module)
            except ImportError:
                continue
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


AllowEntry = str | ClassRule
PolicyArg = Policy | str | Sequence[str] | None


def _split_allow(allow: Iterable[AllowEntry] | str | None) -> tuple[list[str], list[ClassRule]]:
    if allow is None:
        return [], []
    if isinstance(allow, (str, ClassRule)):
        allow = [allow]
    names: list[str] = []
    rules: list[ClassRule] = []
    for entry in allow:
        if isinstance(entry, ClassRule):
            rules.append(entry)
        elif isinstance(entry, str):
            names.append(entry)
        else:
            raise TypeError(
                "allow entries must be dotted names or brinery.subclasses_of(...) rules, "
                f"not {type(entry).__name__}"
            )
    return names, rules


# Compiled policies by (profiles, allow names): a Policy is immutable, and building one (the
# profiles' tables) costs more than scanning and loading a small pickle.
_POLICY_CACHE: dict[tuple[tuple[str, ...] | None, tuple[str, ...]], Policy] = {}
_POLICY_CACHE_SIZE = 64


def _make_policy(policy: PolicyArg, names: list[str]) -> Policy:
    if isinstance(policy, Policy):
        if names:
            raise ValueError(
                "allow= cannot extend a brinery.Policy object: pass allow= to Policy(...) instead, "
                "or pass the profile names as policy="
            )
        return policy
    if isinstance(policy, str):
        profiles: list[str] | None = [policy]
    elif policy is None:
        profiles = None
    else:
        try:
            profiles = list(policy)
        except TypeError:
            raise TypeError(
                "policy must be a brinery.Policy, a profile name or a sequence of profile names, "
                f"not '{type(policy).__name__}'"
            ) from None
    if not all(isinstance(p, str) for p in profiles or ()) or not all(isinstance(n, str) for n in names):
        return Policy(profiles, allow=names)  # raises the Policy's own TypeError
    if profiles is not None:
        # "none": no built-in profile, as `brinery scan --policy none` (only allow= names)
        profiles = [p for p in profiles if p != "none"]
    key = (None if profiles is None else tuple(profiles), tuple(names))
    cached = _POLICY_CACHE.get(key)
    if cached is None:
        cached = Policy(profiles, allow=names)
        if len(_POLICY_CACHE) >= _POLICY_CACHE_SIZE:
            _POLICY_CACHE.pop(next(iter(_POLICY_CACHE)))
        _POLICY_CACHE[key] = cached
    return cached


Data = bytes | bytearray | memoryview


def _read_bytes(source: Any) -> Data:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    read = getattr(source, "read", None)
    if read is None:
        raise TypeError(f"expected a path, a bytes-like object or a binary file, not {type(source).__name__}")
    data = read()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(
            f"file.read() returned {type(data).__name__}, expected bytes (open the file in 'rb' mode)"
        )
    return data


# The first read of `_read_one_pickle`: a few small pickles' worth; a pickle that needs more
# than `_READ_REST` bytes beyond what was read has its file read to the end at once.
_FIRST_READ = 1 << 13
_READ_REST = 1 << 20


def _read_one_pickle(file: Any) -> Data:
    """The bytes of the next pickle in a binary file, the file left right after its STOP.

    A file that cannot seek gives all its remaining bytes (as before pickles were taken one at
    a time). Otherwise the pickle's extent is found from its opcodes' lengths
    (``_native._pickle_extent``), reading from where the file stood: a small first read, then
    (re-reading from the start) twice as much or what the extent asks for, or the whole rest for
    a large pickle, so that a big array is read once, into one ``bytes``. A file that ends
    inside the pickle gives what it has (the scan names the truncation).
    """
    read = getattr(file, "read", None)
    if read is None:
        raise TypeError(f"expected a path, a bytes-like object or a binary file, not {type(file).__name__}")
    try:
        start = file.tell() if file.seekable() else None
    except (AttributeError, OSError, ValueError):
        start = None
    if start is None:
        return _read_bytes(file)
    size: int | None = _FIRST_READ
    while True:
        data = read() if size is None else read(size)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(
                f"file.read() returned {type(data).__name__}, expected bytes (open the file in 'rb' mode)"
            )
        data = bytes(data)
        status, n = _native._pickle_extent(data)
        if status == "complete":
            if n < len(data):
                file.seek(start + n)
                return memoryview(data)[:n]
            return data
        if status == "invalid" or size is None or len(data) < size:
            return data  # not a pickle, or the file ends inside it: the scan says what is wrong
        size = None if n - len(data) > _READ_REST else max(n, 2 * size)
        file.seek(start)


def _byte_view(data: Any) -> memoryview:
    """Any contiguous buffer (an ``mmap``, a numpy ``uint8`` array, ``array.array``, a
    ``PickleBuffer``) as a view of its bytes, as ``pickle.loads`` takes it."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if not view.c_contiguous:
        raise BufferError("the pickle data is a buffer that is not contiguous")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _scan_with_rules(data: Data, policy: PolicyArg, allow: Any) -> tuple[ScanReport, Policy]:
    names, rules = _split_allow(allow)
    pol = _make_policy(policy, names)
    report = _native.scan_bytes(data, pol)
    if rules and not report.ok:
        extra = []
        for finding in report.findings:
            dotted = finding.global_name
            if (
                finding.rule in _ALLOWABLE
                and dotted
                and any(r.covers(dotted) and r.verify(dotted) for r in rules)
            ):
                extra.append(finding.allow_name or dotted)
        if extra:
            pol = _make_policy(policy, names + sorted(set(extra)))
            report = _native.scan_bytes(data, pol)
    return report, pol


def scan(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes],
    *,
    policy: PolicyArg = None,
    allow: Iterable[AllowEntry] | str | None = None,
) -> ScanReport:
    """Scan a pickle (or a zip/gzip/bz2/xz/zlib/joblib/npy/npz container of pickles).

    Nothing is run or imported (class rules in ``allow`` only look at already-imported modules). Returns
    a :class:`brinery.ScanReport`: ``.ok``, ``.findings`` (rule code, byte offset, opcode, global,
    message), ``.globals`` (every global referenced) and ``.opcodes``.

    ``policy``: profile names (``"numpy"``, ``["stdlib-data", "pandas"]``; default: all of
    ``brinery.SCAN_PROFILES``) or a :class:`brinery.Policy`. ``allow``: extra dotted names
    (``"mypkg.models.Model"``) and class rules (:func:`subclasses_of`).
    """
    data = _read_bytes(path_or_bytes)
    report, _ = _scan_with_rules(data, policy, allow)
    return report


def _describe(findings: list[Finding], limit: int = 8) -> str:
    lines = []
    for f in findings[:limit]:
        where = f"byte {f.offset}" + (f" ({f.opcode})" if f.opcode else "")
        if f.member:
            where += f" in {f.member}"
        lines.append(f"  {f.rule} {f.name}: {f.message}" if f.message else f"  {f.rule} {f.name} at {where}")
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more (see .findings or `brinery scan FILE`)")
    return "\n".join(lines)


def _refusal(findings: list[Finding]) -> UnsafePickleError:
    # `allow_name`: the spelling `allow=` accepts (`module:Outer.Inner` for a nested class)
    allowable = sorted({f.allow_name for f in findings if f.rule in _ALLOWABLE and f.allow_name})
    denied = sorted({f.global_name for f in findings if f.rule not in _ALLOWABLE and f.global_name})
    head = "refusing to load an unsafe pickle"
    if allowable or denied:
        head += ": it references " + ", ".join(allowable + [d for d in denied if d not in allowable])
    msg = [head, _describe(findings)]
    if allowable:
        example = ", ".join(repr(n) for n in allowable[:3])
        msg.append(
            f"if you trust this file, allow them: brinery.safe_load(f, allow=[{example}]) "
            "(or, for classes, a class rule: brinery.subclasses_of('mypkg', 'sklearn.base.BaseEstimator'))"
        )
    others = [f for f in findings if not (f.rule in _ALLOWABLE and f.allow_name)]
    if others:
        msg.append(
            f"{'the other findings' if allowable else 'these findings'} cannot be allowed by name: they are "
            "dangerous functions or structural tricks; only plain pickle.load (which runs any code) would "
            "load this file"
        )
    msg.append("run `brinery scan FILE` (or brinery.scan(data)) to inspect it")
    return UnsafePickleError("\n".join(msg), findings)


# What `_native._safe_loads` returns when safe_loads has more to do than scan and load.
_CLEAN_PATH_DECLINED = object()


def _safe_loads_py(
    data: Any,
    allow: Iterable[AllowEntry] | str | None,
    policy: PolicyArg,
    buffers: Iterable[Any] | None,
    fix_imports: bool,
    encoding: str,
    errors: str,
    clean_path_tried: bool,
) -> Any:
    """Everything of :func:`safe_loads` but its native clean path.

    ``safe_loads`` (native) runs the clean path itself for the default policy or a
    :class:`Policy` with nothing allowed by name, and calls this with ``clean_path_tried`` true
    when it declined (findings, a container, a joblib wrapper: nothing imported or run); with
    any other arguments it calls this with ``clean_path_tried`` false.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        data = _byte_view(data)
    if not clean_path_tried:
        # The clean path in one native call: the scan of the whole stream, then (only if it
        # is clean) the load with the policy enforced. Anything else (findings, class rules to
        # apply, compressed streams, joblib files) comes back as _CLEAN_PATH_DECLINED, with
        # nothing imported or run, and takes the full path below.
        names, _ = _split_allow(allow)
        pol = _make_policy(policy, names)
        result = _native._safe_loads(
            data,
            pol,
            _CLEAN_PATH_DECLINED,
            fix_imports=fix_imports,
            encoding=encoding,
            errors=errors,
            buffers=buffers,
        )
        if result is not _CLEAN_PATH_DECLINED:
            return result
    report, pol = _scan_with_rules(data, policy, allow)
    if not report.ok:
        raise _refusal(report.findings)
    if report.members:
        # A compressed pickle (pandas' `to_pickle("x.pkl.gz")`): the scan above read it within
        # the decompression limit; the decompressed stream is scanned again before it loads.
        codec = _DECOMPRESS.get(report.members[0]) if len(report.members) == 1 else None
        if codec is None:
            raise UnsafePickleError(
                "refusing to load a container (" + ", ".join(report.members[:4]) + "): safe_load reads "
                "one pickle stream, plain or gzip/bz2/xz/zlib-compressed; extract the member and load "
                "it, or inspect it with `brinery scan FILE`",
                [],
            )
        data = importlib.import_module(codec).decompress(bytes(data))
        report = _native.scan_bytes(data, pol)
        if not report.ok or report.members:
            raise (
                _refusal(report.findings)
                if not report.ok
                else UnsafePickleError("refusing to load a container nested in a compressed stream", [])
            )
    if any(g.endswith("numpy_pickle.NumpyArrayWrapper") for g in report.globals):
        # joblib writes raw array bytes between the opcodes; the scan steps over them, but a
        # pickle loader would read them as opcodes. Never hand such a stream to the loader.
        raise UnsafePickleError(
            "refusing to load a joblib file: its array data sits between the pickle opcodes, which "
            "only joblib.load can read; `brinery scan FILE` checks it, and if it is clean and you "
            "trust it, load it with joblib",
            [],
        )
    # the in-memory load of `loads`, with the policy enforced again during the load
    return _native._loads_with_policy(
        data,
        pol,
        fix_imports=fix_imports,
        encoding=encoding,
        errors=errors,
        buffers=buffers,
    )


# `brinery.safe_loads`: native, with the clean path for the default policy or a Policy object in
# native code (no Python frame on the common call); the rest is `_safe_loads_py`'s.
safe_loads = _native.safe_loads
_native._set_safe_loads_fallback(_safe_loads_py)


def safe_load(
    file: IO[bytes] | str | os.PathLike[str],
    /,
    *,
    allow: Iterable[AllowEntry] | str | None = None,
    policy: PolicyArg = None,
    buffers: Iterable[Any] | None = None,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
) -> Any:
    """Like :func:`safe_loads`, reading one pickle from a binary file (or the file at a path).

    From a file object that can seek, one pickle is read, as ``pickle.load`` reads it: the file
    is left right after its STOP, so several pickles written one after another load by calling
    ``safe_load`` again (each one scanned before it loads). From a path, or a stream that cannot
    seek back (a pipe, a socket), the whole rest is one pickle: bytes after its STOP are a
    finding, since safe mode cannot vouch for what it did not scan and cannot put them back.
    """
    if isinstance(file, (str, os.PathLike)):
        data: Data = _read_bytes(file)
    else:
        data = _read_one_pickle(file)
    return safe_loads(
        data,
        allow=allow,
        policy=policy,
        buffers=buffers,
        fix_imports=fix_imports,
        encoding=encoding,
        errors=errors,
    )
