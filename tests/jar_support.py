"""Helpers shared by the jar tests (tests/test_jar_*.py): an isolated environment and small tools.

Every jar test runs with its own config directory (so the signing key is created fresh under the
test's tmp folder, never in the user's), no ``$BRINERY_JAR`` / ``$BRINERY_BRANCH`` from outside,
and progress bars off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def jar_env_vars(root: Path) -> dict[str, str]:
    """The environment a jar test (or its subprocesses) runs in, rooted at ``root``."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("BRINERY_JAR", "BRINERY_BRANCH", "BRINERY_KEY_FILE")
    }
    env["XDG_CONFIG_HOME"] = str(root / "config")
    env["BRINERY_PROGRESS"] = "off"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def cli() -> Path:
    """The release ``brinery`` command (scripts/setup.sh builds it); fails loudly when missing."""
    path = REPO / "target" / "release" / "brinery"
    if not path.is_file():
        pytest.fail(
            f"no brinery command at {path}: run `cargo build --release -p brinery-cli`", pytrace=False
        )
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``brinery ARGS`` and return the completed process (text output)."""
    return subprocess.run(
        [str(cli()), *args], capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )


def disk_usage(folder: Path) -> int:
    """Bytes of every regular file below ``folder`` (what the jar occupies on disk)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def python() -> str:
    """The interpreter running the tests (the project's .venv), for subprocesses."""
    return sys.executable
