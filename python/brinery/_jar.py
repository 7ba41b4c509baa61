"""The jar: save and load Python objects by name across notebooks, with history and branches.

``Jar`` is the user-facing face of the Rust jar store (``brinery._native.JarStore``, crate
``brinery-jar``; the on-disk format is documented in ``docs/jar-format.md``). This module owns what
is specific to Python: finding the project's jar, pickling at protocol 5 with the large buffers out
of band (so the store can chunk them and map them back without copying), the manifest summary
(type, shape, columns, the saving notebook or script, library versions, referenced globals),
loading through the safe loader unless the version is signed by a trusted key, library-version
warnings, progress bars, and the notebook HTML views.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import html
import os
import pickle
import platform
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import brinery

__all__ = [
    "Jar",
    "JarError",
    "JarTrustError",
    "JarVersionWarning",
    "Log",
    "VerifyReport",
    "VersionInfo",
    "default_jar",
]

JAR_DIRNAME = ".brinery"
"""The folder that holds a project's jar; every notebook below it shares the jar."""

DEFAULT_BRANCH = "main"
"""The branch a ``Jar`` starts on when neither ``branch=`` nor ``$BRINERY_BRANCH`` is given."""

PROGRESS_DELAY = 1.0
"""Seconds a save or load runs before a progress bar appears."""


def _safe_loader() -> tuple[Callable[..., Any] | None, type[Exception] | None]:
    """``(safe_loads, UnsafePickleError)`` of the safe loader, or ``(None, None)`` without one."""
    loads = getattr(brinery, "safe_loads", None)
    error = getattr(brinery, "UnsafePickleError", None)
    if loads is None or error is None:
        try:
            from brinery import _safety
        except ImportError:
            return None, None
        loads, error = _safety.safe_loads, _safety.UnsafePickleError
    return loads, error


_UnsafeBase: type[Exception] = _safe_loader()[1] or pickle.UnpicklingError


JarError: type[Exception] = getattr(brinery._native, "JarError", None) or type(
    "JarError", (Exception,), {"__doc__": "A jar operation failed.", "__module__": "brinery"}
)
"""A jar operation failed: unreadable or corrupt jar, unknown version, tag or branch, bad name."""


class JarTrustError(_UnsafeBase):  # type: ignore[misc, valid-type]
    """A version needs full pickle semantics but is not signed by a trusted key.

    A subclass of ``brinery.UnsafePickleError`` (and so of ``pickle.UnpicklingError``); the
    message says how to trust the version.
    """


class JarVersionWarning(UserWarning):
    """A version was saved under other library versions than the ones loading it."""


# --------------------------------------------------------------------------------------------
# Finding the jar


def find_jar(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest ``.brinery/`` folder at ``start`` (default: the current directory) or above it."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / JAR_DIRNAME
        if candidate.is_dir():
            return candidate
    return None


def default_location(start: str | os.PathLike[str] | None = None) -> Path:
    """Where a new jar goes: at the top of the enclosing git repository, else in ``start``."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder / JAR_DIRNAME
    return here / JAR_DIRNAME


# --------------------------------------------------------------------------------------------
# What the manifest records about an object


def _qualified_type(obj: Any) -> str:
    t = type(obj)
    module = t.__module__
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


def summarize(obj: Any, max_columns: int = 50) -> dict[str, Any]:
    """A JSON-ready summary of ``obj`` that can be shown without unpickling it.

    Arrays: shape and dtype; DataFrames: shape, columns and dtypes (the first ``max_columns``);
    Series: length, dtype and name; estimators: their parameters' names and whether they look
    fitted; containers and strings: their length.
    """
    out: dict[str, Any] = {}
    module = type(obj).__module__ or ""
    root = module.split(".", 1)[0]
    try:
        if root == "pandas" and hasattr(obj, "columns") and hasattr(obj, "dtypes"):
            out["shape"] = [int(n) for n in obj.shape]
            cols = [str(c) for c in list(obj.columns[:max_columns])]
            out["columns"] = cols
            out["dtypes"] = {c: str(d) for c, d in zip(cols, list(obj.dtypes[:max_columns]), strict=False)}
            if obj.shape[1] > max_columns:
                out["more_columns"] = int(obj.shape[1] - max_columns)
        elif root == "pandas" and hasattr(obj, "dtype") and hasattr(obj, "shape"):
            out["shape"] = [int(n) for n in obj.shape]
            out["dtype"] = str(obj.dtype)
            if getattr(obj, "name", None) is not None:
                out["name"] = str(obj.name)
        elif root == "numpy" and hasattr(obj, "shape") and hasattr(obj, "dtype"):
            out["shape"] = [int(n) for n in obj.shape]
            out["dtype"] = str(obj.dtype)
        elif hasattr(obj, "get_params") and hasattr(obj, "fit"):
            params = obj.get_params(deep=False)
            out["params"] = {k: _short_repr(v) for k, v in list(params.items())[:max_columns]}
            out["fitted"] = _is_fitted(obj)
        elif isinstance(obj, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
            out["len"] = len(obj)
    except Exception as exc:  # a summary never stops a save
        out["summary_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _is_fitted(estimator: Any) -> bool:
    """Whether a scikit-learn style estimator has been fitted (sklearn's own check when it applies)."""
    if type(estimator).__module__.split(".", 1)[0] == "sklearn":
        try:
            from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped, unused-ignore]
            from sklearn.utils.validation import check_is_fitted  # type: ignore[import-untyped, unused-ignore]

            check_is_fitted(estimator)
            return True
        except NotFittedError:
            return False
        except Exception:
            pass
    return any(k.endswith("_") and not k.startswith("_") for k in vars(estimator))


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(type_name: str, summary: dict[str, Any]) -> str:
    """One short line for a type and its summary: ``DataFrame 1000×5``, ``ndarray (3, 4) float64``."""
    short = type_name.rsplit(".", 1)[-1]
    if "columns" in summary and "shape" in summary:
        return f"{short} {'×'.join(str(n) for n in summary['shape'])}"
    if "shape" in summary:
        shape = "×".join(str(n) for n in summary["shape"]) or "scalar"
        return f"{short} {shape} {summary.get('dtype', '')}".rstrip()
    if "params" in summary:
        return f"{short} ({'fitted' if summary.get('fitted') else 'not fitted'})"
    if "len" in summary:
        return f"{short} len {summary['len']}"
    return short


def detect_source() -> dict[str, str]:
    """The notebook or script that is running: ``{"kind": "notebook"|"script"|"interactive", "path": ...}``.

    In Jupyter: VS Code's ``__vsc_ipynb_file__``, else ``$JPY_SESSION_NAME`` (set by Jupyter
    server for the kernel of a notebook), else the kernel's connection file name. Elsewhere:
    ``sys.argv[0]``.
    """
    shell = _ipython_shell()
    if shell is not None:
        vsc = shell.user_ns.get("__vsc_ipynb_file__")
        if isinstance(vsc, str) and vsc:
            return {"kind": "notebook", "path": _nice_path(vsc)}
        session = os.environ.get("JPY_SESSION_NAME")
        if session:
            return {"kind": "notebook", "path": _nice_path(session)}
        if type(shell).__name__ == "ZMQInteractiveShell":
            kernel = getattr(shell, "kernel", None)
            conn = getattr(getattr(kernel, "parent", None), "connection_file", None) or ""
            return {"kind": "notebook", "path": f"kernel {Path(conn).stem}" if conn else "notebook"}
        return {"kind": "interactive", "path": "ipython"}
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    if script and script not in ("-c", "-m"):
        return {"kind": "script", "path": _nice_path(script)}
    return {"kind": "interactive", "path": "python -c" if sys.argv[:1] == ["-c"] else "python"}


def _ipython_shell() -> Any:
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _nice_path(path: str) -> str:
    """``path`` relative to the current directory when it is below it, else as given."""
    try:
        p = Path(path)
        if p.is_absolute():
            return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        pass
    return path


def referenced_libraries(data: bytes | memoryview) -> list[str]:
    """The top-level packages (not the standard library) whose globals a pickle references.

    With the scanner (``brinery._native.scan_bytes``) this reads the globals exactly; otherwise it
    looks for the names of the imported packages in the pickle's bytes (a global's module name is
    stored as plain text), which may add a package whose name only appears in string data.
    """
    scan = getattr(brinery._native, "scan_bytes", None)
    if scan is not None:
        return _top_modules(scan(data).globals)
    view = bytes(data) if not isinstance(data, bytes) else data
    found = []
    for top in _top_modules(list(sys.modules)):
        if top.startswith("_") or "." in top:
            continue
        word = top.encode()
        # a dotted module path ("pandas.core.frame"), or the bare module string of a
        # STACK_GLOBAL: SHORT_BINUNICODE, MEMOIZE, then the name's SHORT_BINUNICODE
        if word + b"." in view or b"\x8c" + bytes([len(word)]) + word + b"\x94\x8c" in view:
            found.append(top)
    return found


def _top_modules(globals_: Sequence[str]) -> list[str]:
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    tops = dict.fromkeys(name.split(".", 1)[0] for name in globals_)
    return [t for t in tops if t and t not in stdlib and t not in ("builtins", "__main__", "copyreg")]


_DISTRIBUTIONS: dict[str, list[str]] | None = None


def library_version(top: str) -> str | None:
    """The installed version of the package whose top-level module is ``top``, or None."""
    mod = sys.modules.get(top)
    version = getattr(mod, "__version__", None)
    if isinstance(version, str):
        return version
    from importlib import metadata

    global _DISTRIBUTIONS
    if _DISTRIBUTIONS is None:
        _DISTRIBUTIONS = dict(metadata.packages_distributions())
    for dist in _DISTRIBUTIONS.get(top, [top]):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def build_meta(obj: Any, data: bytes, buffers: Sequence[memoryview], note: str | None) -> dict[str, Any]:
    """The Python side's part of a version's manifest (stored by the jar as its ``meta``)."""
    libraries = {top: v for top in referenced_libraries(data) if (v := library_version(top)) is not None}
    source = detect_source()
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return {
        "type": _qualified_type(obj),
        "summary": summarize(obj),
        "size": len(data) + sum(b.nbytes for b in buffers),
        "pickle_size": len(data),
        "buffers": len(buffers),
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": source,
        "saved_by": source["path"],
        "user": f"{user}@{socket.gethostname()}",
        "python": platform.python_version(),
        "libraries": libraries,
        "protocol": 5,
        "brinery": _brinery_version(),
        "note": note,
    }


def _brinery_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("brinery")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_warnings(meta: dict[str, Any]) -> list[str]:
    """Messages for every library (and Python minor version) that differs from the saving one."""
    out = []
    for top, saved in sorted((meta.get("libraries") or {}).items()):
        now = library_version(top)
        if now is None:
            out.append(f"saved with {top} {saved}, which is not installed here")
        elif now != saved:
            out.append(f"saved with {top} {saved}, loading with {now}")
    saved_py = str(meta.get("python") or "")
    now_py = platform.python_version()
    if saved_py and saved_py.split(".")[:2] != now_py.split(".")[:2]:
        out.append(f"saved with Python {saved_py}, loading with {now_py}")
    return out


# --------------------------------------------------------------------------------------------
# Progress bars


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


def _progress_mode() -> str:
    """``notebook`` (tqdm in a Jupyter kernel), ``terminal`` (stderr is a tty) or ``none``."""
    if os.environ.get("BRINERY_PROGRESS") in ("0", "off", "none"):
        return "none"
    shell = _ipython_shell()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        try:
            import tqdm  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
        except ImportError:
            return "none"
        return "notebook"
    stream = sys.stderr
    if stream is not None and hasattr(stream, "isatty") and stream.isatty():
        return "terminal"
    return "none"


def _notebook_bar(total: int, label: str) -> Any:
    """A tqdm bar for Jupyter: the widget when ipywidgets is installed, else tqdm's text bar."""
    try:
        import ipywidgets  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        from tqdm.notebook import tqdm  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        from tqdm.std import tqdm  # type: ignore[import-untyped, unused-ignore]
    return tqdm(total=total or None, desc=label, unit="B", unit_scale=True)


class Progress:
    """A progress bar that appears only when its work lasts longer than ``delay`` seconds.

    ``update(done)`` reports bytes done out of ``total``; ``phase(text)`` names what is happening
    when bytes are not known. Shown with tqdm in notebooks, as a one-line bar on stderr in
    terminals, not at all otherwise (``mode``).
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        delay: float | None = None,
        mode: str | None = None,
        stream: Any = None,
    ) -> None:
        self.label = label
        self.total = max(int(total), 0)
        self.done = 0
        self.text = ""
        self.mode = _progress_mode() if mode is None else mode
        self.stream = stream
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._shown = False
        self._bar: Any = None
        self._thread: threading.Thread | None = None
        self.drawn = threading.Event()
        """Set once the bar has been drawn (for tests and callers that wait for it)."""
        if self.mode != "none":
            wait = PROGRESS_DELAY if delay is None else delay
            self._thread = threading.Thread(target=self._run, args=(wait,), daemon=True)
            self._thread.start()

    def update(self, done: int, total: int | None = None) -> None:
        """Report progress in bytes (callable from any thread)."""
        if total is not None:
            self.total = int(total)
        self.done = int(done)

    def phase(self, text: str) -> None:
        """Name the current step (``pickling``, ``storing``, ``unpickling``)."""
        self.text = text

    def _run(self, delay: float) -> None:
        if self._stop.wait(delay):
            return
        self._shown = True
        try:
            while True:
                self._draw()
                self.drawn.set()
                if self._stop.wait(0.1):
                    break
        except Exception:  # a progress bar never breaks a save or a load
            self._shown = False
            self.drawn.set()

    def _draw(self, final: bool = False) -> None:
        if self.mode == "notebook":
            if self._bar is None:
                self._bar = _notebook_bar(self.total, self.label)
            if self.total and self._bar.total != self.total:
                self._bar.total = self.total
            self._bar.n = self.total if final and self.total else self.done
            self._bar.set_postfix_str(self.text, refresh=False)
            self._bar.refresh()
            return
        stream = self.stream if self.stream is not None else sys.stderr
        elapsed = time.monotonic() - self._start
        done = self.total if final else self.done
        if self.total and (done or final):
            frac = min(done / self.total, 1.0)
            filled = int(frac * 30)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"\r{self.label} [{bar}] {frac:4.0%} {_human(done)}/{_human(self.total)} {elapsed:.1f}s"
        else:  # no byte count from this step: a block moving back and forth, the size and the step
            pos = int(elapsed * 10) % 50
            pos = pos if pos < 25 else 49 - pos
            bar = " " * pos + "=====" + " " * (25 - pos)
            size = f" {_human(self.total)}" if self.total else ""
            line = f"\r{self.label}{size} [{bar}] {elapsed:.1f}s {self.text}"
        stream.write(line.ljust(79) + ("\n" if final else ""))
        stream.flush()

    def close(self) -> None:
        """Stop the bar; finish its line if it was shown."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._shown:
            try:
                self._draw(final=True)
                if self._bar is not None:
                    self._bar.close()
            except Exception:  # a progress bar never breaks a save or a load
                pass

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Log entries and reports


@dataclass(frozen=True)
class VersionInfo:
    """One version of a name: what ``jar.log(name)`` lists."""

    name: str
    version: int
    """The version number on the branch (1 is the first save; 0 for a deletion entry)."""
    time: _dt.datetime | None
    size: int
    type: str
    summary: dict[str, Any]
    note: str | None
    source: str
    tags: tuple[str, ...] = ()
    stored: int | None = None
    signature: str = "unsigned"
    deleted: bool = False
    globals: tuple[str, ...] = ()
    manifest: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    problem: str | None = None
    """Why this version cannot be read (a damaged manifest; ``jar.verify()`` says more), or None."""

    @property
    def meta(self) -> dict[str, Any]:
        """The Python side's manifest part (type, summary, source, versions, globals)."""
        meta = self.manifest.get("meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def description(self) -> str:
        """``DataFrame 1000×5`` and the like."""
        if self.deleted:
            return "(deleted)"
        if self.problem:
            return "(damaged: see jar.verify())"
        return describe(self.type, self.summary)

    def _row(self) -> list[str]:
        when = self.time.astimezone().strftime("%Y-%m-%d %H:%M:%S") if self.time else ""
        return [
            str(self.version) if not self.deleted else "-",
            ", ".join(self.tags),
            when,
            _human(self.size),
            self.description,
            self.note or "",
            self.source,
        ]


_COLUMNS = ["version", "tags", "saved", "size", "what", "note", "saved by"]


def _printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``): a note or a column name
    must not add lines to a table or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    rows = [[_printable(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _html_table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return (
        f"<table><caption style='text-align:left'>{html.escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


class Log(list[VersionInfo]):
    """The versions of one name, oldest first; renders as a table (HTML in notebooks)."""

    def __init__(self, name: str, branch: str, entries: Sequence[VersionInfo]) -> None:
        super().__init__(entries)
        self.name = name
        self.branch = branch

    def __repr__(self) -> str:
        if not self:
            return f"no versions of {self.name!r} on branch {self.branch!r}"
        head = f"{self.name} on branch {self.branch}: {len(self)} version{'s' if len(self) != 1 else ''}"
        return head + "\n" + _text_table(_COLUMNS, [v._row() for v in self])

    def _repr_html_(self) -> str:
        caption = f"{self.name} on branch {self.branch}: {len(self)} version{'s' if len(self) != 1 else ''}"
        return _html_table(caption, _COLUMNS, [v._row() for v in self])


@dataclass(frozen=True)
class VerifyReport:
    """What ``jar.verify()`` found: every chunk re-hashed; problems name the affected versions."""

    ok: bool
    checked: int
    problems: list[dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"jar ok: {self.checked} chunks checked"
        lines = [f"jar damaged: {len(self.problems)} problem(s) in {self.checked} chunks checked"]
        for p in self.problems:
            versions = ", ".join(p.get("versions") or []) or "no version"
            lines.append(f"  {p.get('path')}: {p.get('problem')} (affects {versions})")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The store adapter: the one place that calls brinery._native.JarStore


def _parse_time(value: Any) -> _dt.datetime | None:
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, _dt.UTC)
    if isinstance(value, str) and value:
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _info(name: str, entry: dict[str, Any]) -> VersionInfo:
    """A ``VersionInfo`` from the store's version info dict (see ``_native.pyi``)."""
    raw_meta = entry.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    source = meta.get("source") or {}
    return VersionInfo(
        name=name,
        version=int(entry.get("version") or 0),  # a deletion has no version number
        time=_parse_time(entry.get("time") or meta.get("time")),
        size=int(entry.get("size") or meta.get("size") or 0),
        type=str(meta.get("type", "?")),
        summary=dict(meta.get("summary") or {}),
        note=entry.get("note"),
        source=str(source.get("path", "")) if isinstance(source, dict) else str(source),
        tags=tuple(entry.get("tags") or ()),
        stored=entry.get("stored"),
        signature=str(entry.get("signature") or "unsigned"),
        deleted=bool(entry.get("deleted")),
        globals=tuple(entry.get("globals") or ()),
        manifest=entry,
        problem=entry.get("problem"),
    )


def _native_store_class() -> Any:
    cls = getattr(brinery._native, "JarStore", None)
    if cls is None:
        raise RuntimeError("this build of brinery has no jar store (brinery._native.JarStore is missing)")
    return cls


# --------------------------------------------------------------------------------------------
# The Jar


class Jar:
    """A project's jar of named, versioned objects.

    ``Jar()`` finds the project's jar: ``$BRINERY_JAR`` if set, else the nearest ``.brinery/``
    folder at or above the current directory; if there is none, the jar is created on the first
    save at the top of the enclosing git repository (else in the current directory). ``Jar(path)``
    opens or creates the jar in the folder ``path``.

    The current branch belongs to this object (``branch=``, default ``$BRINERY_BRANCH``, else
    ``main``): switching here never changes what another notebook loads.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, branch: str | None = None) -> None:
        env = os.environ.get("BRINERY_JAR")
        self._explicit: Path | None = (
            Path(path).resolve() if path is not None else (Path(env).resolve() if env else None)
        )
        self.current_branch: str = branch or os.environ.get("BRINERY_BRANCH") or DEFAULT_BRANCH
        """This object's branch: saves and loads go there (``branch()`` and ``switch()`` change it)."""
        self._store: Any = None
        self._path: Path | None = self._explicit

    # -- where the jar is

    @property
    def path(self) -> Path:
        """The jar's folder (where it is, or where the first save will create it)."""
        if self._path is not None:
            return self._path
        return find_jar() or default_location()

    @property
    def exists(self) -> bool:
        """Whether the jar has been created on disk."""
        return self._resolve(create=False) is not None

    def _resolve(self, create: bool) -> Any:
        """The native store, opened (or created when ``create``) on first need; None if absent."""
        if self._store is not None:
            return self._store
        if self._explicit is not None:
            path = self._explicit
            if not create and not path.exists():
                return None
        else:
            found = find_jar()
            if found is None and not create:
                return None
            path = found or default_location()
        self._store = _native_store_class()(str(path), create=create)
        self._path = path
        return self._store

    def _reader(self) -> Any:
        return self._resolve(create=False)

    def _writer(self) -> Any:
        return self._resolve(create=True)

    # -- saving

    def save(self, name: str, obj: Any, note: str | None = None) -> int:
        """Save ``obj`` as a new version of ``name`` on the current branch; returns the version number.

        The object is pickled at protocol 5 with its large buffers (numpy arrays, DataFrame
        blocks) out of band; the jar stores them in content-addressed chunks, so parts that did not
        change since an earlier version are stored once. A save is atomic: killed at any moment it
        leaves the previous versions intact.
        """
        _check_name(name)
        store = self._writer()
        buffers: list[pickle.PickleBuffer] = []
        with Progress(f"saving {name}", 0) as bar:
            bar.phase("pickling")
            data = brinery.dumps(_consolidated(obj), protocol=5, buffer_callback=buffers.append)
            raws = [b.raw() for b in buffers]
            meta = build_meta(obj, data, raws, note)
            bar.update(0, meta["size"])
            bar.phase("storing")
            try:
                info = store.save(self.current_branch, name, data, raws, meta, note)
            finally:
                for raw in raws:
                    raw.release()
                for b in buffers:
                    b.release()
        return int(info["version"])

    def __setitem__(self, name: str, obj: Any) -> None:
        self.save(name, obj)

    # -- loading

    def load(
        self,
        name: str,
        version: int | str | None = None,
        *,
        copy: bool = False,
        allow: Sequence[Any] | None = None,
        trust: bool = False,
        encoding: str = "ASCII",
        errors: str = "strict",
    ) -> Any:
        """Load ``name`` (the latest version on the current branch, or ``version``).

        ``version`` is a number counting from 1, negative from the end (-1 is the latest), or a
        tag. Large arrays are memory-mapped from the jar, writable copy-on-write (a write changes
        the loaded object, never the jar); ``copy=True`` reads (and re-hashes) them into memory
        of their own up front. Loading goes through the safe loader (data-science profiles,
        plus the dotted names or rules in ``allow``); a version whose classes fall outside it
        loads with full pickle semantics only if it is signed by a trusted key (your own saves
        are), or with ``trust=True``. ``encoding`` and ``errors`` decode Python 2 ``str``
        objects of an imported Python 2 pickle, as for ``pickle.load`` (``"latin1"`` for numpy
        arrays and datetimes pickled by Python 2).
        """
        store = self._reader()
        if store is None:
            raise KeyError(self._missing(name))
        with Progress(f"loading {name}", 0) as bar:
            bar.phase("reading")
            if version is None and not store.contains(self.current_branch, name):
                raise KeyError(self._missing(name))
            data, buffers, manifest = store.load(self.current_branch, name, version, copy=copy)
            meta = manifest.get("meta") or {}
            bar.update(0, int(meta.get("size") or 0))
            for message in version_warnings(meta):
                warnings.warn(
                    f"{name} v{manifest.get('version')}: {message}", JarVersionWarning, stacklevel=2
                )
            bar.phase("unpickling")
            obj = _unpickle(
                data,
                buffers,
                name=name,
                manifest=manifest,
                allow=allow,
                trust=trust or manifest.get("signature") == "trusted",
                encoding=encoding,
                errors=errors,
            )
            bar.update(int(meta.get("size") or 0))
        return obj

    def __getitem__(self, name: str) -> Any:
        return self.load(name)

    def __contains__(self, name: object) -> bool:
        store = self._reader()
        if not isinstance(name, str) or store is None:
            return False
        try:
            return bool(store.contains(self.current_branch, name))
        except KeyError:  # the current branch does not exist (yet): nothing is in it
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _missing(self, name: str, version: int | str | None = None) -> str:
        where = f"on branch {self.current_branch!r} of the jar at {self.path}"
        if version is None:
            base, at, spec = name.rpartition("@")
            if at and base and spec:  # `name@version` is the CLI's and the magic's spelling
                hint = int(spec) if spec.lstrip("-").isdigit() else spec
                return f"no object named {name!r} {where} (for a version, call jar.load({base!r}, {hint!r}))"
            return f"no object named {name!r} {where}"
        return f"no version {version!r} of {name!r} {where}"

    # -- history

    def names(self) -> list[str]:
        """The names on the current branch, sorted (none on a branch not created yet)."""
        store = self._reader()
        if store is None:
            return []
        try:
            return sorted(store.names(self.current_branch))
        except KeyError:  # the current branch does not exist (yet), as for `in`
            return []

    def log(self, name: str) -> Log:
        """The versions of ``name`` on the current branch, oldest first."""
        store = self._reader()
        if store is None:
            raise KeyError(self._missing(name))
        entries = store.log(self.current_branch, name)
        if not entries:
            raise KeyError(self._missing(name))
        return Log(name, self.current_branch, [_info(name, e) for e in entries])

    def info(self, name: str, version: int | str | None = None) -> VersionInfo:
        """What the manifest says about one version (default: the latest), without loading it."""
        store = self._reader()
        # an explicit version of a deleted name is still there until gc, as for `load`
        if store is None or (version is None and not store.contains(self.current_branch, name)):
            raise KeyError(self._missing(name))
        return _info(name, store.info(self.current_branch, name, version))

    def tag(self, name: str, version: int | str, tag: str) -> None:
        """Give ``version`` of ``name`` the name ``tag`` (usable as ``jar.load(name, tag)``)."""
        _check_name(tag, what="tag")
        self._writer().tag(self.current_branch, name, version, tag)

    def delete(self, name: str) -> None:
        """Remove ``name`` from the current branch; its history is kept until ``gc()``."""
        store = self._reader()
        if store is None or not store.contains(self.current_branch, name):
            raise KeyError(self._missing(name))
        store.delete(self.current_branch, name)

    def __delitem__(self, name: str) -> None:
        self.delete(name)

    # -- branches

    def branches(self) -> list[str]:
        """Every branch of the jar (``main`` always)."""
        store = self._reader()
        names = set() if store is None else set(store.branches())
        return sorted(names | {DEFAULT_BRANCH, self.current_branch})

    def branch(self, name: str) -> None:
        """Make branch ``name`` from the current branch's state and switch this ``Jar`` to it."""
        _check_name(name, what="branch")
        store = self._writer()
        if name in store.branches():
            raise JarError(
                f"branch {name!r} already exists in the jar at {self.path} (use jar.switch({name!r}))"
            )
        store.create_branch(name, self.current_branch)
        self.current_branch = name

    def switch(self, name: str) -> None:
        """Make ``name`` this ``Jar``'s current branch (other ``Jar`` objects are not affected)."""
        if name not in self.branches():
            raise JarError(
                f"no branch {name!r} in the jar at {self.path}; branches: {', '.join(self.branches())}"
            )
        self.current_branch = name

    # -- maintenance

    def gc(self) -> dict[str, Any]:
        """Delete chunks no branch, tag or kept history reaches (deleted names' history goes here)."""
        store = self._reader()
        return {} if store is None else dict(store.gc())

    def verify(self) -> VerifyReport:
        """Re-hash every chunk and check every manifest; the report names the affected versions."""
        store = self._reader()
        if store is None:
            return VerifyReport(ok=True, checked=0, problems=[])
        raw = dict(store.verify())
        problems = list(raw.get("problems") or [])
        return VerifyReport(
            ok=bool(raw.get("ok")) and not problems,
            checked=int(raw.get("chunks", 0)),
            problems=problems,
            raw=raw,
        )

    # -- display

    def __repr__(self) -> str:
        state = "" if self.exists else ", not created yet"
        return f"Jar({str(self.path)!r}, branch={self.current_branch!r}{state})"

    def _rows(self) -> list[list[str]]:
        rows = []
        for name in self.names():
            latest = self.log(name)[-1]
            row = latest._row()
            rows.append([name, row[0], row[2], row[3], row[4], row[5], row[6]])
        return rows

    _HEADER = ["name", "versions", "saved", "size", "what", "note", "saved by"]

    def summary(self) -> str:
        """A text table of the names on the current branch and their latest versions."""
        rows = self._rows()
        head = (
            f"jar {self.path} (branch {self.current_branch}): {len(rows)} name{'s' if len(rows) != 1 else ''}"
        )
        return head + ("\n" + _text_table(self._HEADER, rows) if rows else "")

    def _repr_html_(self) -> str:
        rows = self._rows()
        caption = (
            f"jar {self.path} (branch {self.current_branch}): {len(rows)} name{'s' if len(rows) != 1 else ''}"
        )
        return _html_table(caption, self._HEADER, rows)


def _consolidated(obj: Any) -> Any:
    """``obj`` with its DataFrames' blocks consolidated (at the top level and one level down).

    Replacing a column (``df["x"] = ...``) splits a pandas block into pieces that start at new
    offsets, so the store's fixed-size zero-copy chunks of the pieces would not match the
    previous version's. A consolidated frame has the same layout as before except the changed
    column, so only the chunks around it are new. Consolidating copies the frame, so it happens
    only for frames that are not consolidated already; the caller's object is never changed.
    """

    def fix(value: Any) -> Any:
        mgr = getattr(value, "_mgr", None)
        check = getattr(mgr, "is_consolidated", None)
        if type(value).__module__.split(".", 1)[0] == "pandas" and callable(check) and not check():
            return value.copy()
        return value

    top = fix(obj)
    if top is not obj:
        return top
    if type(obj) is dict:
        fixed = {k: fix(v) for k, v in obj.items()}
        return fixed if any(fixed[k] is not v for k, v in obj.items()) else obj
    if type(obj) in (list, tuple):
        items = [fix(v) for v in obj]
        return type(obj)(items) if any(a is not b for a, b in zip(items, obj, strict=True)) else obj
    return obj


def _check_name(name: Any, what: str = "name") -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a jar {what} must be a non-empty string, not {name!r}")


def _unpickle(
    data: Any,
    buffers: Sequence[Any],
    *,
    name: str,
    manifest: dict[str, Any],
    allow: Sequence[Any] | None,
    trust: bool,
    encoding: str = "ASCII",
    errors: str = "strict",
) -> Any:
    """Safe loader first; full semantics only for a trusted version; else a refusal that says why."""
    safe_loads, unsafe_error = _safe_loader()
    if safe_loads is not None and unsafe_error is not None:
        try:
            return safe_loads(data, allow=allow, buffers=buffers, encoding=encoding, errors=errors)
        except unsafe_error as exc:
            if not trust:
                findings = list(getattr(exc, "findings", None) or [])
                names = sorted({g for f in findings if (g := getattr(f, "global_name", None))})
                why = f"it needs {', '.join(names)}" if names else str(exc).splitlines()[0]
                raise JarTrustError(_refusal(name, manifest, why, findings)) from exc
    elif not trust:
        raise JarTrustError(_refusal(name, manifest, "this build of brinery has no safe loader"))
    return brinery.loads(data, buffers=buffers, encoding=encoding, errors=errors)


def _refusal(name: str, manifest: dict[str, Any], why: str, findings: Sequence[Any] = ()) -> str:
    meta = manifest.get("meta") or {}
    version = manifest.get("version", "?")
    source = (meta.get("source") or {}).get("path", "an unknown notebook or script")
    who = meta.get("user", "someone")
    signature = manifest.get("signature")
    if signature == "invalid":
        signed = "its signature does not match its contents (changed or damaged after it was saved)"
    elif signature == "untrusted":
        signed = f"it is signed by a key you do not hold (key {manifest.get('key_id')})"
    else:
        signed = "it is not signed"
    # `allow_name`: the spelling `allow=` accepts (`module:Outer.Inner` for a nested class)
    names = sorted({g for f in findings if (g := getattr(f, "allow_name", None))})
    allowable = bool(names) and all(getattr(f, "rule", "") == "BRS001" for f in findings)
    how = []
    if allowable:
        how.append(f"jar.load({name!r}, allow={names!r}) if you trust those classes")
    how.append(f"jar.load({name!r}, trust=True) if you trust where it came from")
    how.append(
        "or share one key file with whoever saved it and point BRINERY_KEY_FILE at it "
        "(see docs/jar-format.md)"
    )
    return (
        f"refusing to load {name!r} version {version} (saved by {who} from {source}): {why}; "
        f"the safe loader does not allow that, and {signed}. To load it: " + "; ".join(how)
    )


_DEFAULT: Jar | None = None
_DEFAULT_LOCK = threading.Lock()


def default_jar() -> Jar:
    """The process's default jar (``from brinery import jar``), created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Jar()
        return _DEFAULT
