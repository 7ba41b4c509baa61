"""Shared fixtures for the pytest suite.

The tests import the installed ``brinery`` (``maturin develop`` or ``pip install .``); the ones that
could crash the interpreter, or that need a fresh one, run Python code in a subprocess through
``run_python``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

RunPython = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The pickle corpus of scripts/gen_corpus.py ($BRINERY_CORPUS, default target/corpus)."""
    path = Path(os.environ.get("BRINERY_CORPUS", REPO / "target" / "corpus"))
    if not (path / "manifest.json").is_file():
        pytest.fail(
            f"no pickle corpus at {path}: run `.venv/bin/python scripts/gen_corpus.py {path}` "
            "(scripts/test.sh does) or point $BRINERY_CORPUS at one",
            pytrace=False,
        )
    return path


def _run_python(
    code: str, *args: str, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=full_env,
    )


@pytest.fixture(scope="session")
def run_python() -> RunPython:
    """``run_python(code, *argv, timeout=, cwd=, env=)``: run ``code`` in a fresh interpreter.

    Returns the CompletedProcess (text stdout/stderr). faulthandler is on, so a crash shows a
    traceback in stderr and a negative returncode (the signal).
    """
    return _run_python


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """A failure message for a subprocess: return code plus the tails of its output."""
    return (
        f"returncode {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )


@pytest.fixture(scope="session")
def describe_proc() -> Callable[[subprocess.CompletedProcess[str]], str]:
    return describe


@pytest.fixture
def jar_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated jar environment for tests/test_jar_*.py; returns the tmp folder.

    Own config dir (so a fresh signing key), no $BRINERY_JAR/$BRINERY_BRANCH, progress bars off,
    and the current directory is ``tmp/work``.
    """
    for key in ("BRINERY_JAR", "BRINERY_BRANCH", "BRINERY_KEY_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("BRINERY_PROGRESS", "off")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path
