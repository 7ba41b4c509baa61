"""``%load_ext brinery``: the ``%jar`` line magic for notebooks.

::

    %jar save df model -m "after outlier removal"   # save variables under their names
    %jar load df                                     # latest version into the variable df
    %jar load df@3 model@best                        # a version number or a tag
    %jar ls                                          # the names in the jar (a table)
    %jar log df                                      # the history of df
    %jar branch lemmatize                            # new branch from here, and switch to it
    %jar switch main
    %jar tag df 3 clean                              # name a version
    %jar rm df                                       # delete (history kept until gc)
    %jar branches | gc | verify

The magic uses the kernel's default jar (``from brinery import jar``), so ``%jar switch`` and
``jar.switch`` move the same current branch, in this notebook only.
"""

from __future__ import annotations

import shlex
from typing import Any

from brinery._jar import Jar, JarError, JarTrustError, _human, default_jar

_USAGE = """usage:
  %jar save NAME [NAME ...] [-m NOTE]   save variables under their names
  %jar load NAME[@VERSION|@TAG] ...     load into variables of the same names
  %jar ls                               the names on the current branch
  %jar log NAME                         the history of NAME
  %jar branch NAME | switch NAME | branches
  %jar tag NAME VERSION TAG | rm NAME | gc | verify"""


class JarMagicError(Exception):
    """A ``%jar`` line that cannot be carried out (bad arguments, unknown variable)."""


def _split_version(arg: str) -> tuple[str, int | str | None]:
    name, sep, version = arg.partition("@")
    if not sep:
        return name, None
    if not version:
        raise JarMagicError(
            f"%jar: no version after '@' in {arg!r} (write {name}@1, {name}@-1 or {name}@TAG)"
        )
    try:
        return name, int(version)
    except ValueError:
        return name, version


def run_jar_command(line: str, user_ns: dict[str, Any], jar: Jar | None = None) -> Any:
    """Carry out one ``%jar`` line against ``user_ns``; returns what the magic displays."""
    jar = jar if jar is not None else default_jar()
    args = shlex.split(line)
    if not args:
        raise JarMagicError(_USAGE)
    command, rest = args[0], args[1:]
    if command == "save":
        note = None
        if "-m" in rest:
            i = rest.index("-m")
            if i + 1 >= len(rest):
                raise JarMagicError("%jar save: -m needs a note")
            note = rest[i + 1]
            rest = rest[:i] + rest[i + 2 :]
        if not rest:
            raise JarMagicError("%jar save: name the variables to save")
        missing = [n for n in rest if n not in user_ns]
        if missing:
            raise JarMagicError(f"%jar save: no variable named {', '.join(missing)}")
        lines = []
        for name in rest:
            version = jar.save(name, user_ns[name], note=note)
            info = jar.info(name, version)
            lines.append(
                f"saved {name} v{version} ({info.description}, {_human(info.size)}) on {jar.current_branch}"
            )
        return _Text("\n".join(lines))
    if command == "load":
        if not rest:
            raise JarMagicError("%jar load: name the objects to load")
        lines = []
        for arg in rest:
            name, spec = _split_version(arg)
            user_ns[name] = jar.load(name, spec)
            info = jar.info(name, spec)
            lines.append(f"loaded {name} v{info.version} ({info.description}) from {jar.current_branch}")
        return _Text("\n".join(lines))
    if command == "ls" and not rest:
        return _Listing(jar)
    if command == "log" and len(rest) == 1:
        return jar.log(rest[0])
    if command == "branch" and len(rest) == 1:
        jar.branch(rest[0])
        return _Text(f"on new branch {jar.current_branch}")
    if command == "switch" and len(rest) == 1:
        jar.switch(rest[0])
        return _Text(f"on branch {jar.current_branch}")
    if command == "branches" and not rest:
        return _Text("\n".join(("* " if b == jar.current_branch else "  ") + b for b in jar.branches()))
    if command == "tag" and len(rest) == 3:
        name, which, tag = rest
        spec = _split_version(f"{name}@{which}")[1]
        jar.tag(name, which if spec is None else spec, tag)
        return _Text(f"tagged {name}@{which} as {tag}")
    if command == "rm" and len(rest) == 1:
        jar.delete(rest[0])
        return _Text(f"deleted {rest[0]} on {jar.current_branch} (history kept until %jar gc)")
    if command == "gc" and not rest:
        return _Text(f"gc: {jar.gc()}")
    if command == "verify" and not rest:
        return _Text(str(jar.verify()))
    raise JarMagicError(_USAGE)


class _Listing:
    """``%jar ls``: the jar's table, as HTML in notebooks and as text in terminals."""

    def __init__(self, jar: Jar) -> None:
        self._jar = jar

    def _repr_html_(self) -> str:
        return self._jar._repr_html_()

    def __repr__(self) -> str:
        return self._jar.summary()


class _Text(str):
    """Magic output shown as plain text (no quotes) in notebooks and terminals."""

    def __repr__(self) -> str:
        return str(self)


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%jar`` magic with ``ipython`` (called by ``%load_ext brinery``)."""

    from IPython.core.error import UsageError

    def jar_magic(line: str) -> Any:
        # Every failure is one short error that fails the cell (so "Run all", nbclient and
        # papermill stop there), never a printed line the run goes past.
        try:
            return run_jar_command(line, ipython.user_ns)
        except (JarMagicError, JarError, JarTrustError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise UsageError(str(message)) from exc

    jar_magic.__doc__ = __doc__
    ipython.register_magic_function(jar_magic, magic_kind="line", magic_name="jar")


__all__ = ["JarMagicError", "load_ipython_extension", "run_jar_command"]
