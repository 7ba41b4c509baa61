"""Run Jupyter notebooks the way Jupyter does, and print what each cell shows.

Usage: python scripts/run_notebook.py PROJECT NOTEBOOK [NOTEBOOK ...]

Each notebook runs in a fresh ipykernel kernel (nbclient), in its own folder, with
``$JPY_SESSION_NAME`` set to its path relative to PROJECT (what Jupyter server tells a notebook's
kernel, and what the jar records as the saving notebook). The executed notebook is written back
with its outputs. Exits 1 if a cell fails.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def shown(cell: nbformat.NotebookNode) -> str:
    """The text a reader sees under a cell: streams and the plain-text form of results."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream" and "IPKernelApp" not in out.text:
            parts.append(out.text.rstrip("\n"))
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(str(out.data.get("text/plain", "")).rstrip("\n"))
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
    return "\n".join(p for p in parts if p)


def run(project: Path, path: Path) -> bool:
    book = nbformat.read(path, as_version=4)
    rel = path.resolve().relative_to(project.resolve()).as_posix()
    client = NotebookClient(
        book,
        timeout=600,
        kernel_name="python3",
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no start-up chatter
        resources={"metadata": {"path": str(path.parent)}},
    )
    ok = True
    try:
        client.execute(env={**os.environ, "JPY_SESSION_NAME": rel})
    except CellExecutionError:
        ok = False
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        print(textwrap.indent(cell.source, "  In  │ "))
        text = shown(cell)
        if text:
            print(textwrap.indent(text, "  Out │ "))
    nbformat.write(book, path)
    return ok


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    project = Path(sys.argv[1])
    for name in sys.argv[2:]:
        if not run(project, Path(name)):
            print(f"error: a cell of {name} failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
