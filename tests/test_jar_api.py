"""The jar's Python API (brinery.Jar): save/load by name, versions, tags, history, branches,
discovery, the manifest summary, trust and the safe loader, version warnings, progress bars, the
HTML views and the %jar magic. Real numpy/pandas/scikit-learn objects throughout."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import brinery
import numpy as np
import pandas as pd
import pytest
from brinery import Jar
from brinery import _jar as jarmod
from jar_support import jar_env_vars, run_cli
from sklearn.linear_model import LogisticRegression


def frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer": [f"c{i:05d}" for i in range(n)],
            "spend": rng.normal(50, 10, n),
            "visits": rng.integers(0, 20, n),
            "joined": pd.date_range("2024-01-01", periods=n, freq="h", tz="Europe/Paris"),
        }
    )


def type_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def run_script(path: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_save_load_versions_and_tags(jar_env: Path) -> None:
    jar = Jar(jar_env / "jar")
    df = frame()
    assert jar.save("df", df, note="raw export") == 1
    df2 = df[df.spend > 50].reset_index(drop=True)
    assert jar.save("df", df2) == 2
    pd.testing.assert_frame_equal(jar.load("df"), df2)
    pd.testing.assert_frame_equal(jar.load("df", 1), df)
    pd.testing.assert_frame_equal(jar.load("df", -2), df)
    pd.testing.assert_frame_equal(jar.load("df", -1), df2)
    jar.tag("df", 1, "raw")
    pd.testing.assert_frame_equal(jar.load("df", "raw"), df)
    pd.testing.assert_frame_equal(jar["df"], df2)
    jar["config"] = {"seed": 42, "features": ["spend", "visits"]}
    assert jar["config"] == {"seed": 42, "features": ["spend", "visits"]}
    assert "df" in jar and "config" in jar and "nope" not in jar
    assert jar.names() == ["config", "df"] == list(jar)
    with pytest.raises(KeyError, match="no object named 'nope' on branch 'main'"):
        jar.load("nope")
    with pytest.raises(KeyError, match=r"for a version, call jar.load\('df', 1\)"):
        jar.load("df@1")
    with pytest.raises(Exception, match="7"):
        jar.load("df", 7)
    with pytest.raises(TypeError, match="non-empty string"):
        jar.save("", 1)


def test_damage_and_deletion_are_described_not_fatal(jar_env: Path) -> None:
    # found by an exploratory review: one damaged version made `summary()` (the notebook
    # display) and `log` fail for the whole jar; `info` of a deleted name's version raised
    # KeyError while `load` of it worked; a project folder was silently made a jar
    jar = Jar(jar_env / "jar")
    jar.save("model", {"v": 1})
    jar.save("model", {"v": 2})
    jar.save("gone", [1])
    jar.delete("gone")
    assert jar.load("gone", 1) == [1] and jar.info("gone", 1).version == 1
    with pytest.raises(KeyError):
        jar.info("gone")
    mid = jar.info("model", 1).manifest["id"]
    path = jar_env / "jar" / "manifests" / mid[:2] / f"{mid}.json"
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 1
    path.unlink()
    path.write_bytes(bytes(damaged))
    assert "model" in jar.summary()
    first, second = jar.log("model")
    assert first.problem and "corrupt manifest" in first.problem and first.description.startswith("(damaged")
    assert second.problem is None and jar.load("model") == {"v": 2}
    with pytest.raises(
        brinery.JarError if hasattr(brinery, "JarError") else Exception, match="corrupt manifest"
    ):
        jar.load("model", 1)
    project = jar_env / "project"
    (project / "tmp").mkdir(parents=True)
    (project / "tmp" / "results.csv").write_text("a,b\n")
    with pytest.raises(Exception, match="not a jar and not empty"):
        Jar(project).save("x", 1)
    assert (project / "tmp" / "results.csv").exists() and not (project / "jar.json").exists()


def test_log_and_manifest_summary(jar_env: Path) -> None:
    jar = Jar(jar_env / "jar")
    df = frame()
    jar.save("df", df, note="raw export")
    jar.save("df", df.head(10))
    log = jar.log("df")
    assert [v.version for v in log] == [1, 2]
    v1, v2 = log
    assert v1.note == "raw export" and v2.note is None
    assert v1.type == type_name(df)
    assert v1.summary["shape"] == [1000, 4] and v2.summary["shape"] == [10, 4]
    assert v1.summary["columns"] == ["customer", "spend", "visits", "joined"]
    assert v1.summary["dtypes"]["spend"] == "float64"
    assert v1.summary["dtypes"]["joined"] == str(df["joined"].dtype) == "datetime64[us, Europe/Paris]"
    assert v1.description == "DataFrame 1000×4"
    assert v1.size > df["spend"].nbytes + df["visits"].nbytes  # pickle plus out-of-band buffers
    assert v1.time is not None and v1.time.tzinfo is not None
    assert v1.meta["libraries"]["pandas"] == pd.__version__
    assert v1.meta["libraries"]["numpy"] == np.__version__
    assert v1.meta["python"] == ".".join(map(str, sys.version_info[:3]))
    assert any(g.startswith("pandas.") for g in v1.globals)
    assert v1.signature == "trusted"  # signed with this user's key
    text = repr(log)
    assert "df on branch main: 2 versions" in text and "raw export" in text and "DataFrame 1000×4" in text
    html = log._repr_html_()
    assert html.startswith("<table") and "raw export" in html and "DataFrame 10×4" in html
    assert jar.info("df").version == 2 and jar.info("df", 1).note == "raw export"
    jar_html = jar._repr_html_()
    assert "<table" in jar_html and "df" in jar_html and "DataFrame 10×4" in jar_html
    assert "df" in jar.summary()


def test_source_is_the_saving_script(jar_env: Path) -> None:
    project = jar_env / "project"
    (project / "steps").mkdir(parents=True)
    script = project / "steps" / "clean.py"
    script.write_text(
        "import numpy as np\nfrom brinery import jar\n"
        "jar.save('weights', np.arange(10.0), note='from a script')\n"
    )
    env = jar_env_vars(jar_env)
    run_script(script, project, env)
    info = Jar(project / ".brinery").info("weights")
    assert info.source == "steps/clean.py" and info.meta["source"]["kind"] == "script"
    assert info.summary == {"shape": [10], "dtype": "float64"}


def test_loaded_arrays_are_writable_copies_on_write(jar_env: Path) -> None:
    """Large arrays come back memory-mapped but writable, copy-on-write: a write changes the
    loaded object only, never the jar (as numpy.load(mmap_mode='c')); a DataFrame over the
    mapping threshold can be modified in place like any other (an exploratory review found
    `df.iloc[0, 0] = ...` failing with 'read-only')."""
    jar = Jar(jar_env / "jar")
    arr = np.random.default_rng(1).random(2_000_000)  # 16 MB: a large out-of-band buffer
    jar.save("arr", arr)
    out = jar.load("arr")
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable and not out.flags.owndata  # still the mapping, not a copy
    out[0] = 1.0
    out[-1] = 2.0
    assert (out[0], out[-1]) == (1.0, 2.0)
    again = jar.load("arr")
    assert again[0] == arr[0] and again[-1] == arr[-1]  # the jar is unchanged
    assert jar.verify().ok  # every chunk file still hashes to its name
    mine = jar.load("arr", copy=True)  # read and re-hashed now, in memory of its own
    assert mine.flags.writeable and mine[0] == arr[0]
    df = pd.DataFrame(np.random.default_rng(2).random((40_000, 8)))  # 2.5 MB of floats
    jar.save("df", df)
    loaded = jar.load("df")
    loaded.iloc[0, 0] = 5.0
    loaded[3] = loaded[3].fillna(0.0) * 2
    assert loaded.iloc[0, 0] == 5.0
    pd.testing.assert_frame_equal(jar.load("df"), df)
    # an array saved read-only comes back read-only (the pickle says so)
    frozen = np.arange(300_000, dtype=np.int64)
    frozen.flags.writeable = False
    jar.save("frozen", frozen)
    assert not jar.load("frozen").flags.writeable


def test_fitted_model_roundtrip(jar_env: Path) -> None:
    jar = Jar(jar_env / "jar")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    jar.save("model", model, note="baseline")
    again = jar.load("model")
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    info = jar.info("model")
    assert info.summary["fitted"] is True and info.summary["params"]["C"] == "1.0"
    assert info.description == "LogisticRegression (fitted)"
    assert "sklearn" in info.meta["libraries"]


def test_delete_keeps_history_until_gc(jar_env: Path) -> None:
    path = jar_env / "jar"
    jar = Jar(path)
    jar.save("keep", np.arange(1000))
    jar.save("scratch", np.random.default_rng(3).random(500_000))
    jar.delete("scratch")
    assert "scratch" not in jar and jar.names() == ["keep"]
    with pytest.raises(KeyError, match="scratch"):
        jar.load("scratch")
    assert [v.deleted for v in jar.log("scratch")][-1] is True  # the history is still there
    with pytest.raises(KeyError):
        jar.delete("scratch")
    before = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    removed = jar.gc()
    after = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert removed["chunks"] >= 1 and after < before - 3_000_000
    np.testing.assert_array_equal(jar.load("keep"), np.arange(1000))
    assert jar.verify().ok


def test_branches_belong_to_the_jar_object(jar_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = jar_env / "jar"
    notebook_a = Jar(path)
    notebook_a.save("tokens", ["stem", "v1"])
    notebook_a.save("model", "kmeans")
    notebook_b = Jar(path)
    notebook_a.branch("lemmatize")
    assert notebook_a.current_branch == "lemmatize"
    notebook_a.save("tokens", ["lemma", "v1"])
    assert notebook_a.load("tokens") == ["lemma", "v1"]
    assert notebook_a.load("model") == "kmeans"  # the branch started from main's state
    assert notebook_b.current_branch == "main" and notebook_b.load("tokens") == ["stem", "v1"]
    assert Jar(path).load("tokens") == ["stem", "v1"]
    assert Jar(path, branch="lemmatize").load("tokens") == ["lemma", "v1"]
    monkeypatch.setenv("BRINERY_BRANCH", "lemmatize")
    assert Jar(path).current_branch == "lemmatize" and Jar(path).load("tokens") == ["lemma", "v1"]
    monkeypatch.delenv("BRINERY_BRANCH")
    assert [v.version for v in Jar(path).log("tokens")] == [1]
    assert len(notebook_a.log("tokens")) == 2
    assert notebook_a.branches() == ["lemmatize", "main"]
    notebook_a.switch("main")
    assert notebook_a.load("tokens") == ["stem", "v1"]
    with pytest.raises(jarmod.JarError, match="no branch"):
        notebook_a.switch("dbscan")
    with pytest.raises(jarmod.JarError, match="already exists"):
        notebook_a.branch("lemmatize")


def test_discovery_walks_up_and_creates_at_the_git_top(
    jar_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = jar_env / "project"
    (project / ".git").mkdir(parents=True)
    deep = project / "notebooks" / "eda"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    jar = Jar()
    assert not jar.exists and jar.path == project / ".brinery"
    assert jar.names() == [] and "x" not in jar
    assert not (project / ".brinery").exists()  # reading never creates
    jar.save("x", 1)
    assert (project / ".brinery").is_dir() and not (deep / ".brinery").exists()
    monkeypatch.chdir(project / "notebooks")
    assert Jar().load("x") == 1
    plain = jar_env / "plain" / "sub"
    plain.mkdir(parents=True)
    monkeypatch.chdir(plain)
    Jar().save("y", 2)
    assert (plain / ".brinery").is_dir()
    elsewhere = jar_env / "shared-jar"
    monkeypatch.setenv("BRINERY_JAR", str(elsewhere))
    assert Jar().path == elsewhere
    Jar().save("z", 3)
    monkeypatch.chdir(project)
    assert Jar().load("z") == 3 and "x" not in Jar()


def test_default_jar_is_shared_by_scripts(jar_env: Path) -> None:
    project = jar_env / "project"
    project.mkdir()
    env = jar_env_vars(jar_env)
    (project / "one.py").write_text("from brinery import jar\nprint(jar.save('n', 41))\n")
    (project / "two.py").write_text(
        "import brinery\nfrom brinery import jar\n"
        "assert brinery.jar is jar\nprint(jar.load('n') + 1, jar.path)\n"
    )
    assert run_script(project / "one.py", project, env).stdout.strip() == "1"
    out = run_script(project / "two.py", project, env).stdout.split()
    assert out == ["42", str(project.resolve() / ".brinery")]


def test_library_version_warning(jar_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = Jar(jar_env / "jar")
    jar.save("df", frame(10))
    real = jarmod.library_version
    monkeypatch.setattr(jarmod, "library_version", lambda top: "9.9.9" if top == "pandas" else real(top))
    with pytest.warns(
        jarmod.JarVersionWarning, match=rf"saved with pandas {pd.__version__}, loading with 9\.9\.9"
    ):
        jar.load("df")
    monkeypatch.setattr(jarmod, "library_version", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jar.load("df")


UNTRUSTED_SAVE = """
import sys
sys.path.insert(0, sys.argv[2])
import numpy as np
from brinery import Jar
from custom_model import Model
jar = Jar(sys.argv[1])
jar.save("custom", Model(np.arange(3)))
jar.save("plain", {"w": np.arange(3.0), "name": "weights"})
"""

UNTRUSTED_LOAD = """
import sys
sys.path.insert(0, sys.argv[2])
import brinery
from brinery import Jar
jar = Jar(sys.argv[1])
what, how = sys.argv[3], sys.argv[4]
try:
    allow = ["custom_model.Model"] if how == "allow" else None
    obj = jar.load(what, trust=(how == "trust"), allow=allow)
except brinery.UnpicklingError as exc:
    print("REFUSED", type(exc).__name__, exc)
else:
    print("LOADED", obj)
"""


def test_untrusted_versions_are_refused_with_how_to_trust(jar_env: Path) -> None:
    code = jar_env / "code"
    code.mkdir()
    (code / "custom_model.py").write_text(
        "class Model:\n    def __init__(self, w):\n        self.w = w\n"
        "    def __repr__(self):\n        return f'Model({[int(x) for x in self.w]})'\n"
    )
    path = jar_env / "jar"
    alice = jar_env_vars(jar_env / "alice")
    bob = jar_env_vars(jar_env / "bob")

    def run(code_text: str, env: dict[str, str], *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code_text), str(path), str(code), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.strip()

    run(UNTRUSTED_SAVE, alice)
    assert run(UNTRUSTED_LOAD, alice, "custom", "default") == "LOADED Model([0, 1, 2])"  # her own key
    refused = run(UNTRUSTED_LOAD, bob, "custom", "default")
    assert refused.startswith("REFUSED JarTrustError refusing to load 'custom' version 1")
    assert "signed by a key you do not hold" in refused
    assert "trust=True" in refused and "BRINERY_KEY_FILE" in refused
    assert run(UNTRUSTED_LOAD, bob, "custom", "trust") == "LOADED Model([0, 1, 2])"
    shared = {**bob, "BRINERY_KEY_FILE": str(jar_env / "alice" / "config" / "brinery" / "key")}
    assert run(UNTRUSTED_LOAD, shared, "custom", "default") == "LOADED Model([0, 1, 2])"
    # plain data needs no trust: the safe loader's data-science profiles cover it
    plain = run(UNTRUSTED_LOAD, bob, "plain", "default")
    if jarmod._safe_loader()[0] is not None:
        assert "it needs custom_model.Model" in refused
        assert "allow=['custom_model.Model']" in refused
        assert run(UNTRUSTED_LOAD, bob, "custom", "allow") == "LOADED Model([0, 1, 2])"
        assert plain == "LOADED {'w': array([0., 1., 2.]), 'name': 'weights'}"
    else:  # until the safe loader lands (branch scan), untrusted versions are refused outright
        assert plain.startswith("REFUSED JarTrustError") and "no safe loader" in plain


def test_imported_pickles_go_through_the_safe_loader(
    jar_env: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`brinery jar import` stores a file from outside the jar unsigned, even for the key's
    holder: loading it runs the safe loader (a payload is refused before it runs; plain data
    loads), where a signed version would have full pickle semantics."""
    payload = jar_env / "downloaded.pkl"  # print('PAYLOAD RAN') when unpickled
    payload.write_bytes(b"\x80\x02cbuiltins\nprint\nX\x0b\x00\x00\x00PAYLOAD RAN\x85R.")
    weights = jar_env / "weights.pkl"
    weights.write_bytes(brinery.dumps({"w": np.arange(3.0)}, protocol=5))
    path = jar_env / "jar"
    jar = Jar(path)
    jar.save("own", {"w": 1})  # the jar and this user's key exist: own saves are signed
    env = jar_env_vars(jar_env)
    for name, file in (("downloaded", payload), ("weights", weights)):
        proc = run_cli("jar", "--jar", str(path), "import", name, str(file), env=env)
        assert proc.returncode == 0, proc.stderr
    shown = run_cli("jar", "--jar", str(path), "show", "downloaded", env=env).stdout
    assert "unsigned" in shown, shown
    assert "trusted" in run_cli("jar", "--jar", str(path), "show", "own", env=env).stdout
    jar = Jar(path)
    assert np.array_equal(jar.load("weights")["w"], np.arange(3.0))
    with pytest.raises(brinery.UnpicklingError, match="builtins.print"):
        jar.load("downloaded")
    assert "PAYLOAD RAN" not in capfd.readouterr().out


def test_summaries() -> None:
    assert jarmod.summarize(np.zeros((3, 4), dtype=np.int32)) == {"shape": [3, 4], "dtype": "int32"}
    s = pd.Series([1.5, 2.5], name="price")
    assert jarmod.summarize(s) == {"shape": [2], "dtype": "float64", "name": "price"}
    wide = pd.DataFrame(np.zeros((2, 60)), columns=[f"f{i}" for i in range(60)])
    summary = jarmod.summarize(wide)
    assert len(summary["columns"]) == 50 and summary["more_columns"] == 10
    assert jarmod.summarize({"a": 1}) == {"len": 1} and jarmod.summarize(object()) == {}
    assert jarmod.describe("numpy.ndarray", {"shape": [3, 4], "dtype": "int32"}) == "ndarray 3×4 int32"
    assert jarmod.describe("builtins.dict", {"len": 2}) == "dict len 2"


def test_progress_bar_on_a_terminal() -> None:
    out = io.StringIO()
    bar = jarmod.Progress("saving df", 2_000_000, delay=0, mode="terminal", stream=out)
    bar.update(1_000_000)
    assert bar.drawn.wait(60)
    bar.close()
    text = out.getvalue()
    assert "saving df [" in text and "100%" in text and "2.0 MB/2.0 MB" in text and text.endswith("\n")
    quiet = io.StringIO()
    jarmod.Progress("loading df", 10, delay=0, mode="none", stream=quiet).close()
    assert quiet.getvalue() == ""


def test_progress_mode_off_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRINERY_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert jarmod._progress_mode() == "none"


def test_jar_magic(jar_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("BRINERY_JAR", str(jar_env / "jar"))
    monkeypatch.setattr(jarmod, "_DEFAULT", None)
    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "brinery")
        df, model = frame(50), LogisticRegression(C=0.5)
        shell.user_ns.update(df=df, model=model)
        saved = shell.run_line_magic("jar", 'save df model -m "first cut"')
        assert "saved df v1 (DataFrame 50×4" in saved and "saved model v1 (LogisticRegression" in saved
        shell.run_line_magic("jar", "save df")
        del shell.user_ns["df"]
        assert "loaded df v2" in shell.run_line_magic("jar", "load df")
        pd.testing.assert_frame_equal(shell.user_ns["df"], df)
        shell.run_line_magic("jar", "tag df 1 first")
        assert "loaded df v1" in shell.run_line_magic("jar", "load df@first")
        listing = shell.run_line_magic("jar", "ls")
        assert "df" in repr(listing) and "<table" in listing._repr_html_()  # text and HTML
        log = shell.run_line_magic("jar", "log df")
        assert [v.version for v in log] == [1, 2] and log[0].note == "first cut" and log[0].tags == ("first",)
        assert shell.run_line_magic("jar", "branch scaled") == "on new branch scaled"
        assert brinery.jar.current_branch == "scaled"
        assert "* scaled" in shell.run_line_magic("jar", "branches")
        assert shell.run_line_magic("jar", "switch main") == "on branch main"
        assert shell.run_line_magic("jar", "verify").startswith("jar ok")
        # every failure fails the cell with one short message (no traceback, no printed line
        # the run goes past)
        from IPython.core.error import UsageError

        for line, message in [
            ("save nothing_here", "no variable named nothing_here"),
            ("load df@9", "has no version 9"),
            ("load df@", "no version after '@'"),
            ("switch nowhere", "no branch 'nowhere'"),
        ]:
            with pytest.raises(UsageError, match=message):
                shell.run_line_magic("jar", line)
    finally:
        InteractiveShell.clear_instance()
        monkeypatch.setattr(jarmod, "_DEFAULT", None)


def test_membership_on_a_branch_not_created_yet_is_false(jar_env: Path) -> None:
    Jar(jar_env / "jar").save("x", 1)
    ghost = Jar(jar_env / "jar", branch="ghost")
    assert "x" not in ghost and "y" not in ghost
    # listing it agrees: no names (and its summary says so), not an error
    assert ghost.names() == [] and len(ghost) == 0 and "0 names" in ghost.summary()


def test_a_name_too_long_on_disk_is_refused_with_the_reason(jar_env: Path) -> None:
    jar = Jar(jar_env / "jar")
    with pytest.raises(jarmod.JarError, match="longer than 255 bytes"):
        jar.save("é" * 100, 1)
    jar.save("é" * 40, 1)
    assert jar.load("é" * 40) == 1


def test_python2_pickles_load_with_an_encoding(jar_env: Path) -> None:
    """An imported Python 2 pickle of a numpy array (the bytes numpy on Python 2.7 writes at
    protocol 2: the data is a Python 2 `str`) loads with ``encoding="latin1"``, as with
    ``pickle.load``; without it, the same UnicodeDecodeError as the stdlib's."""
    data = np.arange(3.0).tobytes()
    py2 = (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b"
        b"\x87Rq\x03(K\x01K\x03\x85cnumpy\ndtype\nq\x04U\x02f8K\x00K\x01\x87Rq\x05(K\x03U\x01<NNN"
        b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U" + bytes([len(data)]) + data + b"tb."
    )
    old = jar_env / "old.pkl"
    old.write_bytes(py2)
    path = jar_env / "jar"
    Jar(path).save("own", 1)
    proc = run_cli("jar", "--jar", str(path), "import", "old", str(old), env=jar_env_vars(jar_env))
    assert proc.returncode == 0, proc.stderr
    jar = Jar(path)
    loaded = jar.load("old", encoding="latin1")
    assert np.array_equal(loaded, np.arange(3.0)) and loaded.dtype == np.float64
    with pytest.raises(UnicodeDecodeError, match="'ascii' codec"):
        jar.load("old")
    # encoding="bytes" gives numpy the dtype's byte order as b"<", which it takes too
    as_bytes = jar.load("old", encoding="bytes")
    assert np.array_equal(as_bytes, pickle.loads(py2, encoding="bytes"))
    assert as_bytes.dtype == np.float64


def test_text_tables_escape_control_characters(jar_env: Path) -> None:
    """A note (or any metadata) holding a newline or an escape sequence cannot add lines to
    the text tables of ``jar.log`` and ``jar.summary`` or drive the terminal."""
    jar = Jar(jar_env / "jar")
    jar.save("x", 1, note="fine\nversion  tags  saved FORGED\x1b[2J")
    for text in (repr(jar.log("x")), jar.summary()):
        lines = text.splitlines()
        assert len(lines) == 3, text  # the caption, the header, one row
        assert not any(not c.isprintable() for line in lines for c in line), text
        assert "fine\\nversion  tags  saved FORGED\\x1b[2J" in lines[2], text
