"""End to end: real Jupyter notebooks, run by nbclient in a real ipykernel kernel, share objects
through the project's jar. The notebooks are the demo project's (demo/, also run by
scripts/demo.sh), copied to a temporary git repository:

1. notebooks/01_clean.ipynb cleans raw data and saves the DataFrame (`%jar save df`);
2. notebooks/02_model.ipynb loads it (`%jar load df`), fits a model and saves it;
3. 03_compare.ipynb (one folder up: the same jar) branches, saves another kind of model on the
   branch and compares both branches' models.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from brinery import Jar
from jar_support import REPO, jar_env_vars
from nbclient import NotebookClient


def run_notebook(path: Path, project: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    """Execute ``path`` in a fresh kernel, in its own folder, as Jupyter server would start it."""
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book,
        timeout=300,
        kernel_name="python3",
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(path.parent)}},
    )
    # Jupyter server tells a notebook's kernel its path in $JPY_SESSION_NAME; the jar records it
    client.execute(env={**env, "JPY_SESSION_NAME": path.relative_to(project).as_posix()})
    return book


def texts(book: nbformat.NotebookNode, mime: str = "text/plain") -> list[str]:
    """Every output of the notebook as text: streams, and results/displays in ``mime``."""
    out = []
    for cell in book.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif o.output_type in ("execute_result", "display_data") and mime in o.data:
                out.append(o.data[mime])
    return out


@pytest.fixture
def project(jar_env: Path) -> Path:
    dest = jar_env / "churn-project"
    shutil.copytree(
        REPO / "demo", dest, ignore=shutil.ignore_patterns("data", ".brinery", ".ipynb_checkpoints")
    )
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    subprocess.run([sys.executable, str(dest / "make_raw_data.py")], check=True, capture_output=True)
    return dest


def test_three_notebooks_share_one_jar(project: Path, jar_env: Path) -> None:
    env = jar_env_vars(jar_env)
    env.pop("BRINERY_PROGRESS")  # let the kernel decide (notebook mode)

    clean = run_notebook(project / "notebooks" / "01_clean.ipynb", project, env)
    plain = "\n".join(texts(clean))
    assert "saved df v1 (DataFrame " in plain and "on main" in plain
    assert any("<table" in h and "dropped missing rows" in h for h in texts(clean, "text/html"))

    model = run_notebook(project / "notebooks" / "02_model.ipynb", project, env)
    assert "loaded df v1 (DataFrame " in "\n".join(texts(model))
    assert any("<table" in h and "logistic regression" in h for h in texts(model, "text/html"))

    compare = run_notebook(project / "03_compare.ipynb", project, env)
    scores = json.loads(next(t for t in texts(compare) if t.startswith("{")))
    assert set(scores) == {"main", "forest"} and all(0.5 < s <= 1.0 for s in scores.values())

    # one jar, at the top of the repository, holds everything with its history
    assert (project / ".brinery").is_dir() and not (project / "notebooks" / ".brinery").exists()
    jar = Jar(project / ".brinery")
    (df_v1,) = jar.log("df")
    assert df_v1.source == "notebooks/01_clean.ipynb" and df_v1.meta["source"]["kind"] == "notebook"
    assert df_v1.note == "dropped missing rows and spend above quantile 0.99"
    assert df_v1.summary["dtypes"]["joined"].endswith(", Europe/Paris]")
    assert df_v1.summary["dtypes"]["plan"] == "category"
    (model_v1,) = jar.log("model")
    assert model_v1.source == "notebooks/02_model.ipynb" and model_v1.type.endswith("LogisticRegression")
    forest = Jar(project / ".brinery", branch="forest").log("model")
    assert [v.version for v in forest] == [1, 2] and forest[0] == model_v1
    assert forest[1].source == "03_compare.ipynb" and forest[1].type.endswith("RandomForestClassifier")
    assert forest[1].summary["fitted"] is True and forest[1].summary["params"]["max_depth"] == "5"
    assert jar.branches() == ["forest", "main"]
    # the objects themselves, in this process
    df = jar.load("df")
    trees = Jar(project / ".brinery", branch="forest").load("model")
    accuracy = trees.score(df[["spend", "visits", "tenure"]], df["churned"])
    assert abs(accuracy - scores["forest"]) < 0.1
    assert jar.verify().ok
