"""Safe mode: ``brinery.scan``, ``brinery scan``, ``safe_load``/``safe_loads`` and the policy.

The corpus comes from ``scripts/gen_safety_corpus.py`` (run once per session into a temporary
directory): malicious pickles and containers covering every evasion class of issue 4 with inert
payloads (they would ``touch`` a file under ``<corpus>/markers`` or print ``BRINERY-MARKER``), and
real numpy/pandas/scikit-learn/stdlib objects at protocols 2, 4 and 5 (with and without
out-of-band buffers).

- every malicious file is flagged by ``brinery.scan`` and by ``brinery scan --json``, and refused
  by ``safe_load`` and by the native ``Unpickler(policy=...)`` with no payload running: an audit
  hook in the loading process records every import, exec, os.system, subprocess, open and
  find_class event, and the marker directory stays empty;
- a live check proves the payloads are real: the standard library's ``pickle`` does run them;
- every benign file scans clean and safe-loads equal to the standard library's result;
- ``allow=`` names and ``subclasses_of`` class rules extend the policy, and only as far as asked.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap
from pathlib import Path

import brinery
import pytest

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "scripts" / "gen_safety_corpus.py"
PROFILES = REPO / "crates" / "brinery" / "src" / "scan" / "profiles"
CLI = Path(os.environ.get("BRINERY_CLI", REPO / "target" / "release" / "brinery"))


def _generate(root: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(GEN), str(root), *extra], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((root / "manifest.json").read_text())


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("safety-corpus")
    return root, _generate(root)


def _buffers(root: Path, entry: dict) -> list[bytes]:
    return [(root / "benign" / b).read_bytes() for b in entry["buffers"]]


# --------------------------------------------------------------------------------------------
# the corpus itself
# --------------------------------------------------------------------------------------------


def test_corpus_size_and_coverage(corpus):
    root, manifest = corpus
    kinds = {e["kind"] for e in manifest["benign"]}
    assert len(kinds) >= 60
    assert {e["protocol"] for e in manifest["benign"]} == {2, 4, 5}
    assert any(e["buffers"] for e in manifest["benign"]), "no protocol-5 out-of-band case"
    for prefix in ("std_", "np_", "pd_", "sk_"):
        assert sum(k.startswith(prefix) for k in kinds) >= 10, prefix
    evasions = {e["evasion"] for e in manifest["malicious"]}
    for needed in (
        "direct", "alias", "dotted name", "inside allowed library", "computed name", "call result called",
        "BUILD on a global", "BUILD on a module", "memo", "payload then crash", "stacked pickles",
        "import side effect", "EXT code", "persistent id", "nested pickle", "container", "ref called",
    ):  # fmt: skip
        assert needed in evasions, needed
    exts = {e["file"].rsplit(".", 1)[1] for e in manifest["malicious"]}
    assert {"pkl", "bin", "dat", "model", "npy", "npz", "gz"} <= exts
    assert not list((root / "markers").iterdir())


LIVE = [
    "os_system_p0.pkl", "os_system_p2.pkl", "os_system_p5.pkl", "dotted_pathlib_os_system.pkl",
    "computed_codecs_module.pkl", "memo_overwrite.pkl", "crash_truncated.pkl", "crash_underflow.pkl",
    "call_methodcaller.pkl", "numpy_testing_runstring.pkl", "alias_builtin_eval_p2.pkl",
    "trailing_stacked_pickle.pkl", "gzip.model", "builtins_print.pkl", "call_getattr_nonconstant.pkl",
    "scipy_rv_setstate_exec.pkl",
]  # fmt: skip


def test_the_payloads_are_live(tmp_path, run_python, describe_proc):
    """The standard library's pickle does run these payloads: the corpus is not vacuous."""
    root = tmp_path / "live"
    manifest = _generate(root, "--malicious-only")
    code = """
        import gzip, io, pickle, sys
        root = sys.argv[1]
        for name in sys.argv[2:]:
            data = open(f"{root}/malicious/{name}", "rb").read()
            if name.endswith(".model"):
                data = gzip.decompress(data)
            up = pickle.Unpickler(io.BytesIO(data))
            try:
                up.load()
                up.load()
            except Exception:
                pass
    """
    proc = run_python(code, str(root), *LIVE, cwd=tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    markers = {e["file"]: Path(e["marker"]) for e in manifest["malicious"]}
    for name in LIVE:
        if name == "builtins_print.pkl":
            assert "BRINERY-MARKER builtins_print" in proc.stdout
        else:
            assert markers[name].exists(), f"{name}: the stdlib did not run the payload"


# --------------------------------------------------------------------------------------------
# profiles
# --------------------------------------------------------------------------------------------

FORBIDDEN_MODULES = ("os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pickle",
                     "_pickle", "marshal", "ctypes", "operator", "functools", "io", "_io")  # fmt: skip
# the one name of a forbidden module a profile lists: its function is checked (ArgRule::AllowedFunction)
FORBIDDEN_MODULE_EXCEPTIONS = {("functools", "partial")}


def _profile_entries() -> dict[str, list[tuple[str, str, str]]]:
    out = {}
    for path in sorted(PROFILES.glob("*.txt")):
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            assert len(parts) == 3, f"{path.name}:{n}: {line!r}"
            assert parts[2] in ("call", "ref"), f"{path.name}:{n}"
            rows.append((parts[0], parts[1], parts[2]))
        out[path.stem] = rows
    return out


def test_profile_files_parse_and_match_the_native_profiles():
    entries = _profile_entries()
    assert set(entries) == {"stdlib-data", "numpy", "pandas", "sklearn"} == set(brinery.SCAN_PROFILES)
    for name, rows in entries.items():
        assert len(rows) >= 40, name
        pol = brinery.Policy([name])
        for module, qual, mode in rows:
            assert module not in FORBIDDEN_MODULES or (module, qual) in FORBIDDEN_MODULE_EXCEPTIONS, (
                name,
                module,
                qual,
            )
            assert not module.startswith(("numpy.testing", "pandas.io", "sklearn.datasets")), (module, qual)
            assert not qual.startswith(("read_", "load", "save", "eval", "to_pickle")), (module, qual)
            assert pol.allows(module, qual, call=False), (name, module, qual)
            assert pol.allows(module, qual, call=True) == (mode == "call"), (name, module, qual, mode)


def test_profiles_cover_the_library_inventories():
    import numpy as np
    import pandas as pd
    from sklearn.utils import all_estimators

    pol = brinery.Policy()
    for _, cls in all_estimators():
        assert pol.allows(cls.__module__, cls.__qualname__), cls
    for t in set(np.sctypeDict.values()):
        assert pol.allows(t.__module__, t.__qualname__, call=False), t
    for name in ("DataFrame", "Series", "Index", "MultiIndex", "DatetimeTZDtype", "CategoricalDtype",
                 "Categorical", "Timestamp", "Period", "Interval"):  # fmt: skip
        cls = getattr(pd, name)
        assert pol.allows(cls.__module__, cls.__qualname__), name
    for module, qual in [
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"), ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"), ("pandas.core.indexes.base", "_new_Index"),
        ("sklearn.tree._tree", "Tree"), ("copyreg", "_reconstructor"), ("zoneinfo", "ZoneInfo._unpickle"),
        ("pandas.core.indexes.numeric", "Int64Index"), ("pytz", "_p"), ("dateutil.tz.tz", "tzutc"),
    ]:  # fmt: skip
        assert pol.allows(module, qual), (module, qual)
    for module, qual in [("numpy", "load"), ("numpy", "save"), ("pandas", "read_pickle"), ("os", "system"),
                         ("numpy.testing", "runstring"), ("builtins", "eval"),
                         ("numpy", "memmap")]:  # fmt: skip
        assert not pol.allows(module, qual), (module, qual)


def _gen_profiles():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_profiles", REPO / "scripts" / "gen_profiles.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# The test's own list (independent of the generator's DENIED_HOMES): no profile entry may be
# *defined* under these module prefixes, whatever module re-exports it.
TEST_DENIED_HOMES = (
    "pandas.io", "pandas.plotting", "pandas._testing", "pandas.core.computation", "pandas._config",
    "numpy.testing", "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib._format_impl",
    "numpy.lib._datasource", "numpy.f2py", "numpy.ctypeslib", "scipy.stats", "scipy.io", "scipy.datasets",
    "sklearn.datasets", "sklearn.utils._testing", "sklearn.utils.estimator_checks", "sklearn.experimental",
    "joblib.parallel", "joblib.memory", "joblib._store_backends", "dateutil.zoneinfo",
    "os", "subprocess", "importlib", "pickle", "operator", "functools",
)  # fmt: skip


def _test_denied(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in TEST_DENIED_HOMES)


def test_profile_entries_are_defined_outside_denied_modules_and_reviewed():
    """Generator safeguards, checked on the committed files: (a) the defining module of every
    entry (``__module__``, the ``co_filename`` of a function and of a class's own methods) is not
    denied; (b) every ``ref`` entry is a class, a non-callable or one of the functions kept as
    values that a safe load never calls (``VALUE_ONLY_FUNCTIONS``) or a method objects keep bound
    to themselves (``BOUND_METHODS``, named through their class); (c) every callable ``call``
    entry that is not a class is on the generator's reviewed list."""
    gen = _gen_profiles()
    problems, resolved, functions = [], 0, 0
    for name, rows in _profile_entries().items():
        for module, qual, mode in rows:
            why = gen.entry_problem(module, qual, mode)
            if why:
                problems.append(f"{name}: {module}.{qual} ({mode}): {why}")
            obj = gen.resolve(module, qual)
            if obj is None:
                continue
            resolved += 1
            exempt = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
            if exempt not in gen.DENIED_HOME_EXEMPT:
                homes = gen.defining_modules(obj)
                bad = sorted(h for h in homes if _test_denied(h))
                if bad:
                    problems.append(f"{name}: {module}.{qual} is defined in {bad}")
            if isinstance(obj, type):
                continue
            if (
                mode == "ref"
                and callable(obj)
                and not gen.value_only(obj)
                and (module, qual) not in gen.BOUND_METHODS
            ):
                problems.append(f"{name}: ref entry {module}.{qual} is callable ({type(obj).__name__})")
            if mode == "call" and callable(obj):
                functions += 1
                if not gen.reviewed_function(obj, (module, qual)):
                    problems.append(f"{name}: call entry {module}.{qual} is an unreviewed function")
    assert not problems, problems
    assert resolved > 2500 and functions > 50, (resolved, functions)


@pytest.mark.parametrize(
    ("module", "qual", "mode"),
    [
        ("pandas", "ExcelFile", "call"),  # re-export of pandas.io.excel._base.ExcelFile (F3)
        ("pandas", "HDFStore", "call"),
        ("pandas.api.typing", "JsonReader", "ref"),
        ("scipy.stats._continuous_distns", "norm_gen", "call"),  # __setstate__ exec()s state (F1)
        ("scipy.stats._distn_infrastructure", "rv_continuous_frozen", "call"),
        ("dateutil.tz", "tzfile", "call"),  # opens its path (F2); ref is fine
        ("numpy", "vectorize", "call"),  # calls its pyfunc
        ("sklearn.metrics", "get_scorer", "ref"),  # a function as ref (F11)
        ("numpy", "log1p", "ref"),  # callable ref
        ("numpy", "mean", "call"),  # a value only: np.mean(obj) calls obj.mean (session 12)
        ("sklearn.cluster._kmeans", "_kmeans_single_lloyd", "call"),  # n_threads=-5 kills the process
        ("sklearn.metrics", "pairwise_distances", "call"),  # calls a metric= callable, n_jobs
        ("sklearn.metrics", "make_scorer", "call"),  # a function nobody reviewed
        ("numpy", "load", "call"),
        ("joblib", "load", "call"),
        ("sklearn.datasets", "fetch_openml", "call"),
        ("numpy.testing", "assert_equal", "ref"),
    ],
)
def test_generator_safeguards_refuse_known_bad_entries(module, qual, mode):
    assert _gen_profiles().entry_problem(module, qual, mode), (module, qual, mode)


def test_generator_safeguards_accept_what_pickles_need():
    gen = _gen_profiles()
    for module, qual, mode in [("dateutil.tz", "tzfile", "ref"), ("dateutil.tz._tzfile", "_unpickle", "call"),
                               ("numpy", "log1p", "call"), ("pandas", "DataFrame", "call"),
                               ("joblib.numpy_pickle", "NumpyArrayWrapper", "call"),
                               ("sklearn.feature_selection", "f_classif", "call")]:  # fmt: skip
        assert gen.entry_problem(module, qual, mode) is None, (module, qual, mode)


# CLASS ARG helpers the scanner does not check: C code that refuses anything but its own types
KNOWN_UNCHECKED = {
    ("array", "_array_reconstructor"),  # C code: TypeError unless an array.array subtype
}


def test_class_argument_helpers_refuse_non_classes():
    """Every function the generator's review marks CLASS ARG (it calls an attribute of, or calls,
    an argument) is flagged by the scan when that argument is an object with arbitrary attributes
    (red-team F11/F12): the review is only safe together with the scanner's check."""
    gen = _gen_profiles()
    ns = b"ctypes\nSimpleNamespace\n)R"  # types.SimpleNamespace(): any attribute by BUILD
    checked = 0
    for (module, qual), why in gen.REVIEWED_FUNCTIONS.items():
        if not why.startswith("CLASS ARG") or (module, qual) in KNOWN_UNCHECKED:
            continue
        data = b"\x80\x02c" + f"{module}\n{qual}\n".encode() + b"(" + ns + ns + b"tR."
        report = brinery.scan(data)
        rules = {f.rule for f in report.findings}
        assert not report.ok and "BRS008" in rules, (module, qual, report.findings)
        checked += 1
    assert checked >= 10


def test_profiles_leave_out_the_red_team_entries():
    pol = brinery.Policy()
    for module, qual in [("pandas", "ExcelFile"), ("pandas", "ExcelWriter"), ("pandas", "HDFStore"),
                         ("pandas.api.typing", "JsonReader"), ("pandas.api.typing", "StataReader"),
                         ("pandas.api.typing", "SASReader"), ("scipy.stats", "rv_continuous"),
                         ("scipy.stats._continuous_distns", "norm_gen"), ("numpy", "vectorize"),
                         ("scipy.stats._distn_infrastructure", "rv_continuous_frozen"),
                         ("sklearn.metrics", "get_scorer")]:  # fmt: skip
        assert not pol.allows(module, qual, call=False), (module, qual)
    for module in ("dateutil.tz", "dateutil.tz.tz", "dateutil.tz._tzfile"):
        assert pol.allows(module, "tzfile", call=False) and not pol.allows(module, "tzfile", call=True)


def test_scipy_distributions_are_refused_unless_allowed_by_name():
    """scipy.stats distributions run exec() on their pickled state (red-team F1): refused by the
    default policy; a user who trusts the file allows the classes by name."""
    from scipy.stats import loguniform
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RandomizedSearchCV

    search = RandomizedSearchCV(LogisticRegression(), {"C": loguniform(1e-2, 1e2)}, n_iter=1, cv=2)
    data = pickle.dumps(search, protocol=4)
    report = brinery.scan(data)
    assert not report.ok
    names = sorted({f.global_name for f in report.findings})
    assert names and all(n.startswith("scipy.stats.") for n in names), names
    with pytest.raises(brinery.UnsafePickleError, match="scipy.stats"):
        brinery.safe_loads(data)
    got = brinery.safe_loads(data, allow=names)
    assert type(got.param_distributions["C"]) is type(search.param_distributions["C"])


def test_every_global_of_the_benign_corpus_is_in_the_profiles(corpus):
    """Independent of the scanner: what the stdlib's find_class resolves, the profiles list."""
    import _compat_pickle

    root, manifest = corpus
    listed = {(m, q) for rows in _profile_entries().values() for m, q, _ in rows}
    seen: dict[tuple[str, str], str] = {}

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            seen.setdefault((module, name), self.file_name)
            return super().find_class(module, name)

    for e in manifest["benign"]:
        up = Recorder(io.BytesIO((root / "benign" / e["file"]).read_bytes()), buffers=_buffers(root, e))
        up.file_name = e["file"]
        up.load()
    missing = []
    for (module, name), where in sorted(seen.items()):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # what fix_imports maps protocol-2 names to
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) == ("builtins", "getattr"):
            continue  # a structural rule, not a profile entry: getattr(<listed class>, '<listed attr>')
        if (module, name) not in listed:
            missing.append(f"{module}.{name} ({where})")
    assert not missing, missing


# --------------------------------------------------------------------------------------------
# malicious corpus: flagged, refused, nothing runs
# --------------------------------------------------------------------------------------------


def test_every_malicious_file_is_flagged_by_scan(corpus):
    root, manifest = corpus
    missed = []
    for e in manifest["malicious"]:
        path = root / "malicious" / e["file"]
        report = brinery.scan(path)
        same = brinery.scan(path.read_bytes())
        assert [f.rule for f in report.findings] == [f.rule for f in same.findings]
        if report.ok or not report.findings:
            missed.append(f"{e['file']}: {e['what']}")
        for f in report.findings:
            assert f.rule.startswith("BRS") and f.name and f.message, (e["file"], f)
    assert not missed, missed
    assert not list((root / "markers").iterdir())


def _cli_json(*args: str) -> tuple[int, object, str]:
    assert CLI.is_file(), f"no brinery command at {CLI}: run scripts/setup.sh (or set $BRINERY_CLI)"
    proc = subprocess.run([str(CLI), "scan", "--json", *args], capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, out, proc.stderr


def _files_with_findings(out: object) -> dict[str, int]:
    """{file name: number of findings} from the CLI's JSON output."""
    files = [out] if isinstance(out, dict) else out  # one JSON object per line, per file
    assert isinstance(files, list), out
    result = {}
    for item in files:
        result[Path(item["path"]).name] = len(item["findings"])
    return result


def test_every_malicious_file_is_flagged_by_the_cli(corpus):
    root, manifest = corpus
    code, out, err = _cli_json(str(root / "malicious"))
    assert code == 1, err
    counts = _files_with_findings(out)
    missed = [e["file"] for e in manifest["malicious"] if counts.get(e["file"], 0) == 0]
    assert not missed, missed
    assert not list((root / "markers").iterdir())


def test_a_directory_scan_flags_every_malicious_file_under_any_name(corpus, tmp_path):
    # in a directory the CLI skips files that hold no pickle by content (CSV, JSON, ...) unless
    # they are named like pickles: renamed to `.csv`, every malicious file must still be found
    root, manifest = corpus
    for e in manifest["malicious"]:
        (tmp_path / (e["file"] + ".csv")).write_bytes((root / "malicious" / e["file"]).read_bytes())
    (tmp_path / "table.csv").write_text("id,name\n1,alice\n")
    code, out, err = _cli_json(str(tmp_path))
    assert code == 1, err
    counts = _files_with_findings(out)
    missed = [e["file"] for e in manifest["malicious"] if counts.get(e["file"] + ".csv", 0) == 0]
    assert not missed, missed
    assert "table.csv" not in counts and "1 file(s) under" in err, err


REFUSE = """
import io, json, os, sys

events = []
PAYLOAD = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "subprocess.Popen", "open",
           "webbrowser.open", "os.remove", "shutil.", "socket.", "urllib.Request")
# safe_load refuses after the scan, before the load: nothing at all may be imported, compiled,
# executed or resolved. The native Unpickler(policy=) alone resolves (and so imports) the allowed
# globals that come before the refused one, so there only payload events count.
ANYTHING = PAYLOAD + ("import", "exec", "compile", "pickle.find_class", "ctypes.")

def hook(event, args):
    if event.startswith(WATCH) or (event == "import" and args[0] in ("this", "antigravity")):
        if event == "open" and not (isinstance(args[0], str) and args[0].startswith(MARKERS)) and (
            not isinstance(args[1], str) or "w" not in args[1] and "a" not in args[1] and "x" not in args[1]
        ):
            return  # reads (e.g. of lazily imported data) are not payloads; writes and the marker dir are
        events.append(f"{event} {args[0] if args else ''}"[:160])

import brinery
root, mode = sys.argv[1], sys.argv[2]
WATCH = PAYLOAD if mode == "unpickler" else ANYTHING
MARKERS = os.path.join(root, "markers")
manifest = json.load(open(os.path.join(root, "manifest.json")))
sys.addaudithook(hook)
results = {}
for e in manifest["malicious"]:
    path = os.path.join(root, "malicious", e["file"])
    data = open(path, "rb").read()
    events.clear()
    try:
        if mode == "safe_load":  # pickle after pickle, as pickle.load in a loop would
            with open(path, "rb") as f:
                brinery.safe_load(f)
                while f.tell() < len(data):
                    brinery.safe_load(f)
        elif mode == "safe_loads":
            brinery.safe_loads(data)
        else:  # streaming: load pickle after pickle, as a reader of stacked pickles would
            f = io.BytesIO(data)
            unpickler = brinery.Unpickler(f, policy=brinery.Policy())
            unpickler.load()
            while f.tell() < len(data):
                unpickler.load()
        outcome = "loaded"
    except brinery.UnsafePickleError as ex:
        outcome = "UnsafePickleError" if ex.findings or mode == "unpickler" else "no-findings"
    except Exception as ex:
        outcome = type(ex).__name__
    results[e["file"]] = {"outcome": outcome, "events": list(events)}
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.parametrize("mode", ["safe_load", "safe_loads", "unpickler"])
def test_malicious_files_are_refused_and_nothing_runs(corpus, mode, run_python, describe_proc, tmp_path):
    root, manifest = corpus
    proc = run_python(REFUSE, str(root), mode, cwd=tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS") :])
    problems = []
    for e in manifest["malicious"]:
        r = results[e["file"]]
        is_pickle = e["evasion"] != "container"
        if mode == "unpickler" and not is_pickle:
            ok = r["outcome"] != "loaded"  # not a pickle stream at all
        elif mode == "unpickler":
            # native enforcement alone: refused by policy, or a malformed stream stops it first
            ok = r["outcome"] in ("UnsafePickleError", "UnpicklingError")
        else:
            ok = r["outcome"] == "UnsafePickleError"
        if not ok or r["events"]:
            problems.append(f"{e['file']} ({e['what']}): {r}")
    assert not problems, "\n".join(problems)
    assert not list((root / "markers").iterdir()), "a payload ran"
    assert "BRINERY-MARKER" not in proc.stdout
    assert "Beautiful is better than ugly" not in proc.stdout  # `import this` never ran


# --------------------------------------------------------------------------------------------
# benign corpus: clean, and loads equal to the stdlib
# --------------------------------------------------------------------------------------------


def test_every_benign_file_scans_clean(corpus):
    root, manifest = corpus
    flagged = []
    for e in manifest["benign"]:
        report = brinery.scan(root / "benign" / e["file"])
        if not report.ok or report.findings:
            flagged.append(
                f"{e['file']}: {[(f.rule, f.global_name, f.message) for f in report.findings][:3]}"
            )
        assert report.opcodes > 0
    assert not flagged, "\n".join(flagged)


def test_the_cli_reports_the_benign_corpus_clean(corpus):
    root, manifest = corpus
    # the .pkl files only: the directory also holds the raw out-of-band buffers (not pickles)
    code, out, err = _cli_json(*(str(root / "benign" / e["file"]) for e in manifest["benign"]))
    assert len(_files_with_findings(out)) == len(manifest["benign"])
    flagged = {k: v for k, v in _files_with_findings(out).items() if v}
    assert code == 0 and not flagged, (code, flagged, err[-2000:])


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    return pickle.dumps(a, protocol=4) == pickle.dumps(b, protocol=4)


def test_every_benign_file_safe_loads_equal_to_the_stdlib(corpus):
    root, manifest = corpus
    different = []
    for e in manifest["benign"]:
        path = root / "benign" / e["file"]
        data = path.read_bytes()
        expected = pickle.loads(data, buffers=_buffers(root, e))
        got = brinery.safe_loads(data, buffers=_buffers(root, e))
        if not _same(expected, got):
            different.append(e["file"])
        if e["protocol"] == 4:  # the file API, path and file object
            with open(path, "rb") as f:
                assert _same(brinery.safe_load(f), expected), e["file"]
    assert not different, different


class _PartialWithState:
    """Pickles as `functools.partial(func)` whose BUILD state names `state_func` instead."""

    def __init__(self, func: object, state_func: object) -> None:
        self.func, self.state_func = func, state_func

    def __reduce__(self):
        import functools

        return (functools.partial, (self.func,), (self.state_func, (), {}, None))


def test_partial_of_an_allowed_function_loads_and_nothing_else_does():
    # HistGradientBoosting with categorical features keeps `partial(check_array, ...)` in its
    # preprocessor; a partial of anything but a global the policy allows to call is refused by
    # the scan and, on its own, by the guard of `Unpickler(policy=)`
    import numpy as np
    import pandas as pd
    from dateutil import tz
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.utils.validation import check_array

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"c": pd.Categorical(rng.choice(["a", "b", "c"], 80)), "x": rng.normal(size=80)})
    y = (X["x"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    for protocol in (2, 4, 5):
        data = pickle.dumps(model, protocol=protocol)
        assert brinery.scan(data).ok, brinery.scan(data).findings
        np.testing.assert_array_equal(brinery.safe_loads(data).predict_proba(X), model.predict_proba(X))
    # tzfile(path) opens its path: reference-only, so never a partial's function (the scan
    # names it, BRS002, as for a direct call: a user who trusts the file may allow it)
    for func, state_func in ((tz.tzfile, check_array), (check_array, tz.tzfile)):
        data = pickle.dumps(_PartialWithState(func, state_func), protocol=4)
        findings = brinery.scan(data).findings
        assert [(f.rule, f.global_name) for f in findings] == [("BRS002", "dateutil.tz._tzfile.tzfile")], (
            findings
        )
        with pytest.raises(brinery.UnsafePickleError, match="functools.partial"):
            brinery.safe_loads(data)
        with pytest.raises(brinery.UnsafePickleError) as e:
            brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy()).load()
        assert e.value.findings[0].rule == "BRS008", e.value


def _su(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()


def test_a_setstate_stored_on_the_object_is_never_called(tmp_path):
    # the loader looks `__setstate__` up on the instance: an earlier BUILD can store one there
    # (here `dateutil.tz.tzfile`, reference-only because calling it opens its path), and the
    # next BUILD would call it with an unchecked argument (red-team, session 10)
    marker = tmp_path / "opened"
    marker.write_text("x")
    ns = _su("types") + _su("SimpleNamespace") + b"\x93)R"
    tzfile = _su("dateutil.tz") + _su("tzfile") + b"\x93"
    data = b"\x80\x04" + ns + b"}" + _su("__setstate__") + tzfile + b"sb" + _su(str(marker)) + b"b."
    # the scan does not follow dict keys (what an opcode-dense pickle would pay for): the
    # load-time guard refuses at the second BUILD, before it calls anything
    with pytest.raises(brinery.UnsafePickleError, match="__setstate__"):
        brinery.safe_loads(data)
    with pytest.raises(brinery.UnsafePickleError, match="__setstate__"):
        brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy()).load()


def test_fitted_estimators_predict_the_same(corpus):
    import numpy as np

    root, _ = corpus
    X = np.random.default_rng(1).normal(size=(10, 4))
    for kind in ("sk_random_forest", "sk_logistic_regression", "sk_gradient_boosting", "sk_kmeans",
                 "sk_hist_gradient_boosting", "sk_knn"):  # fmt: skip
        data = (root / "benign" / f"{kind}.p5.pkl").read_bytes()
        ref, got = pickle.loads(data), brinery.safe_loads(data)
        np.testing.assert_array_equal(ref.predict(X), got.predict(X))
        assert ref.get_params().keys() == got.get_params().keys()


def test_every_registered_scorer_safe_loads():
    # `scoring="<name>"` keeps the scorer, and with it the metric function, in a fitted search:
    # every name scikit-learn registers must load (the profile lists the reviewed metrics) and
    # score the same as the stdlib's copy
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import get_scorer, get_scorer_names

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(int)
    est = LogisticRegression().fit(X, y)
    refused = []
    for name in get_scorer_names():
        data = pickle.dumps(get_scorer(name), protocol=5)
        report = brinery.scan(data)
        if not report.ok:
            refused.append((name, [f.allow_name for f in report.findings]))
            continue
        got, ref = brinery.safe_loads(data), pickle.loads(data)
        assert type(got) is type(ref) and got._score_func is ref._score_func, name
        if name == "accuracy":
            assert got(est, X, y) == ref(est, X, y)
    assert not refused, refused


def test_a_user_metric_in_a_scorer_is_still_refused():
    from sklearn.metrics import make_scorer

    data = pickle.dumps(make_scorer(_user_metric), protocol=5)
    with pytest.raises(brinery.UnsafePickleError, match="_user_metric"):
        brinery.safe_loads(data)


def _user_metric(y_true, y_pred):
    return 0.0


def test_dataframes_equal(corpus):
    import pandas as pd

    root, _ = corpus
    for kind in ("pd_frame_tz", "pd_multiindex", "pd_categorical", "pd_frame_mixed"):
        for p in ("p2", "p5", "p5oob"):
            path = root / "benign" / f"{kind}.{p}.pkl"
            if not path.exists():
                continue
            bufs = sorted(
                (root / "benign").glob(f"{kind}.{p}.buf*"), key=lambda q: int(q.name.rsplit("buf", 1)[1])
            )
            data, buffers = path.read_bytes(), [q.read_bytes() for q in bufs]
            pd.testing.assert_frame_equal(
                pickle.loads(data, buffers=buffers), brinery.safe_loads(data, buffers=buffers)
            )


# --------------------------------------------------------------------------------------------
# the API: errors, allow=, class rules, policy=
# --------------------------------------------------------------------------------------------

NAMESPACE = pickle.dumps(argparse.Namespace(a=1), protocol=4)


def test_unsafe_pickle_error_is_an_unpickling_error_naming_the_global_and_the_fix():
    assert issubclass(brinery.UnsafePickleError, pickle.UnpicklingError)
    with pytest.raises(pickle.UnpicklingError) as info:
        brinery.safe_loads(NAMESPACE)
    err = info.value
    assert isinstance(err, brinery.UnsafePickleError)
    assert [f.global_name for f in err.findings] == ["argparse.Namespace"]
    assert err.findings[0].rule == "BRS001"
    text = str(err)
    assert "argparse.Namespace" in text
    assert "allow=['argparse.Namespace']" in text
    assert "brinery scan" in text


def test_allow_by_name():
    obj = brinery.safe_loads(NAMESPACE, allow=["argparse.Namespace"])
    assert obj == argparse.Namespace(a=1)
    assert brinery.scan(NAMESPACE, allow="argparse.Namespace").ok
    assert not brinery.scan(NAMESPACE).ok


def test_dangerous_globals_cannot_be_allowed(corpus):
    root, _ = corpus
    data = (root / "malicious" / "os_system_p4.pkl").read_bytes()
    with pytest.raises(brinery.UnsafePickleError) as info:
        brinery.safe_loads(data, allow=["os.system", "posix.system"])
    assert "cannot be allowed" in str(info.value)
    assert not list((root / "markers").iterdir())


def test_policy_selects_profiles():
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    data = pickle.dumps(frame, protocol=5)
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(data, policy="numpy")
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(data, policy=[])
    got = brinery.safe_loads(data, policy=["stdlib-data", "numpy", "pandas"])
    pd.testing.assert_frame_equal(got, frame)
    got = brinery.safe_loads(data, policy=brinery.Policy(["stdlib-data", "numpy", "pandas"]))
    pd.testing.assert_frame_equal(got, frame)
    with pytest.raises(ValueError):
        brinery.safe_loads(data, policy=brinery.Policy(), allow=["x.y"])
    with pytest.raises(ValueError):
        brinery.safe_loads(data, policy="no-such-profile")
    for load in (lambda: brinery.safe_loads(data, policy=42), lambda: brinery.scan(data, policy=42)):
        with pytest.raises(TypeError, match="policy must be a brinery.Policy, a profile name .* not 'int'"):
            load()


MYPKG = """
from sklearn.base import BaseEstimator

class Model(BaseEstimator):
    def __init__(self, alpha=1.0):
        self.alpha = alpha

class Plain:
    def __init__(self):
        self.x = 1

    def __eq__(self, other):
        return type(other) is Plain and other.x == self.x

def helper():
    return 1
"""


@pytest.fixture
def mypkg(tmp_path, monkeypatch):
    pkg = tmp_path / "brinery_test_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent(MYPKG))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    yield importlib.import_module("brinery_test_pkg.models")
    for name in [m for m in sys.modules if m.startswith("brinery_test_pkg")]:
        del sys.modules[name]


def test_class_rule_allows_verified_subclasses_only(mypkg):
    rule = brinery.subclasses_of("brinery_test_pkg", "sklearn.base.BaseEstimator")
    model = pickle.dumps(mypkg.Model(alpha=0.5), protocol=4)
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(model)
    got = brinery.safe_loads(model, allow=[rule])
    assert type(got) is mypkg.Model and got.alpha == 0.5
    assert brinery.scan(model, allow=[rule]).ok
    # a class that does not subclass the base, and a function, stay refused
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(pickle.dumps(mypkg.Plain(), protocol=4), allow=[rule])
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(pickle.dumps(mypkg.helper, protocol=4), allow=[rule])
    # a rule for another package does not cover it; an explicit name does
    other = brinery.subclasses_of("otherpkg", "sklearn.base.BaseEstimator")
    with pytest.raises(brinery.UnsafePickleError):
        brinery.safe_loads(model, allow=[other])
    assert (
        brinery.safe_loads(pickle.dumps(mypkg.Plain(), protocol=2), allow=["brinery_test_pkg.models.Plain"])
        == mypkg.Plain()
    )


def test_class_rule_never_imports_outside_its_package(corpus, run_python, describe_proc, tmp_path):
    root, _ = corpus
    code = """
        import sys, brinery
        data = open(sys.argv[1], "rb").read()
        before = set(sys.modules)
        try:
            rule = brinery.subclasses_of("brinery_nonexistent_pkg", "sklearn.base.BaseEstimator")
            brinery.safe_loads(data, allow=[rule])
        except brinery.UnsafePickleError:
            pass
        new = sorted(m for m in set(sys.modules) - before if not m.startswith("sklearn"))
        print("NEW", new)
    """
    proc = run_python(code, str(root / "malicious" / "import_this.pkl"), cwd=tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    assert "NEW []" in proc.stdout, proc.stdout
    assert "Beautiful is better" not in proc.stdout


PLUGIN = """
import os
open(os.environ["BRINERY_TEST_IMPORT_MARKER"], "w").close()
from sklearn.base import BaseEstimator

class Model(BaseEstimator):
    pass
"""


def test_class_rule_imports_nothing_the_pickle_names(mypkg, tmp_path, monkeypatch):
    """A class rule looks only at modules already imported (red-team F13): a pickle naming a
    submodule of the rule's package does not make the scan import (run) it."""
    pkg = Path(mypkg.__file__).parent
    (pkg / "plugin.py").write_text(PLUGIN)
    (pkg / "tests.py").write_text(PLUGIN)
    marker = tmp_path / "imported"
    monkeypatch.setenv("BRINERY_TEST_IMPORT_MARKER", str(marker))
    rule = brinery.subclasses_of("brinery_test_pkg", "sklearn.base.BaseEstimator")
    for module in ("brinery_test_pkg.plugin", "brinery_test_pkg.tests"):
        data = b"\x80\x02c" + module.encode() + b"\nModel\n)\x81."
        report = brinery.scan(data, allow=[rule])
        assert not report.ok and report.findings[0].rule == "BRS001", report.findings
        with pytest.raises(brinery.UnsafePickleError):
            brinery.safe_loads(data, allow=[rule])
        assert module not in sys.modules and not marker.exists()
    # once the user imports the module, the rule verifies its classes; test modules stay out
    import importlib

    importlib.import_module("brinery_test_pkg.plugin")
    importlib.import_module("brinery_test_pkg.tests")
    assert brinery.scan(b"\x80\x02cbrinery_test_pkg.plugin\nModel\n)\x81.", allow=[rule]).ok
    assert not brinery.scan(b"\x80\x02cbrinery_test_pkg.tests\nModel\n)\x81.", allow=[rule]).ok
    # a re-export of a class defined elsewhere is not "under the package"
    (pkg / "reexport.py").write_text("from sklearn.linear_model import LinearRegression\n")
    importlib.import_module("brinery_test_pkg.reexport")
    assert not brinery.scan(b"\x80\x02cbrinery_test_pkg.reexport\nLinearRegression\n)\x81.", allow=[rule]).ok


def test_class_rule_does_not_import_library_submodules(run_python, describe_proc, tmp_path):
    code = """
        import sys, brinery
        rule = brinery.subclasses_of("sklearn", "sklearn.base.BaseEstimator")
        data = b"\\x80\\x02csklearn.experimental.enable_halving_search_cv\\nNothing\\n)\\x81."
        report = brinery.scan(data, allow=[rule])
        print("OK", report.ok, "IMPORTED", "sklearn.experimental.enable_halving_search_cv" in sys.modules)
    """
    proc = run_python(code, cwd=tmp_path)
    assert proc.returncode == 0, describe_proc(proc)
    assert "OK False IMPORTED False" in proc.stdout, proc.stdout


def test_bad_arguments():
    with pytest.raises(TypeError):
        brinery.safe_loads("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        brinery.safe_loads(NAMESPACE, allow=[42])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        brinery.subclasses_of("", "sklearn.base.BaseEstimator")
    with pytest.raises(ValueError):
        brinery.subclasses_of("mypkg", "BaseEstimator")
    with pytest.raises(TypeError):
        brinery.safe_load(io.StringIO("text"))  # type: ignore[arg-type]


def test_native_unpickler_policy_enforces_during_the_load():
    # A pickle that the pre-load scan would refuse, handed straight to the streaming API.
    data = pickle.dumps(argparse.Namespace(a=1), protocol=2)
    with pytest.raises(brinery.UnsafePickleError) as info:
        brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy()).load()
    assert "argparse" in str(info.value)
    ok = brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy(allow=["argparse.Namespace"])).load()
    assert ok == argparse.Namespace(a=1)


def test_global_verdicts_cached_by_one_policy_never_serve_another():
    # Each compiled policy caches the globals it lets through; a name one policy allows must
    # still be refused under another, in the streaming Unpickler (no scan before it) and in
    # safe_loads, whichever ran first and however often.
    data = pickle.dumps(argparse.Namespace(a=1), protocol=4)
    allowing = brinery.Policy(allow=["argparse.Namespace"])
    default = brinery.Policy()
    for _ in range(3):
        assert brinery.Unpickler(io.BytesIO(data), policy=allowing).load() == argparse.Namespace(a=1)
        assert brinery.safe_loads(data, allow=["argparse.Namespace"]) == argparse.Namespace(a=1)
        with pytest.raises(brinery.UnsafePickleError):
            brinery.Unpickler(io.BytesIO(data), policy=default).load()
        with pytest.raises(brinery.UnsafePickleError):
            brinery.safe_loads(data)
    # a denied name is refused however often a policy resolved other names before
    evil = b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x04true\x85R."
    for _ in range(2):
        with pytest.raises(brinery.UnsafePickleError, match="BRS003"):
            brinery.Unpickler(io.BytesIO(evil), policy=allowing).load()
        with pytest.raises(brinery.UnsafePickleError, match="BRS003"):
            brinery.safe_loads(evil, allow=["argparse.Namespace"])


def test_safe_load_takes_one_pickle_from_a_file_as_pickle_load_does(tmp_path):
    # pickles written one after another (a log of records, a big array then its metadata) load
    # one per call, the file left right after each STOP, each scanned before it loads
    import numpy as np

    big = np.arange(400_000, dtype=np.float64)  # 3.2 MB: past the first read and `_READ_REST`
    objs = [[1], {"a": (1, 2.5)}, big, "x" * 20_000, None, b"\x00" * 9000]
    stream = b"".join(pickle.dumps(o, p) for o, p in zip(objs, (0, 2, 4, 5, 1, 5), strict=True))
    path = tmp_path / "many.pkl"
    path.write_bytes(stream)
    ends = []
    f = io.BytesIO(stream)
    for _ in objs:
        pickle.load(f)
        ends.append(f.tell())
    for f in (open(path, "rb"), io.BytesIO(stream), open(path, "rb", buffering=0)):
        with f:
            for obj, end in zip(objs, ends, strict=True):
                got = brinery.safe_load(f)
                assert f.tell() == end
                if isinstance(obj, np.ndarray):
                    np.testing.assert_array_equal(got, obj)
                else:
                    assert got == obj
            assert f.read() == b""
    # a malicious pickle after a clean one is refused when it is reached, before it runs
    evil = b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x04true\x85R."
    f = io.BytesIO(pickle.dumps([1], 4) + evil)
    assert brinery.safe_load(f) == [1]
    with pytest.raises(brinery.UnsafePickleError, match="BRS003"):
        brinery.safe_load(f)
    # a truncated pickle is refused, not waited for
    with pytest.raises(brinery.UnsafePickleError, match="truncated"):
        brinery.safe_load(io.BytesIO(pickle.dumps(list(range(5000)), 4)[:-100]))


def test_stacked_pickles_from_a_path_or_a_pipe_are_refused(tmp_path):
    # a path names one pickle; a pipe cannot give back what was read past the first STOP
    two = pickle.dumps([1], 4) + pickle.dumps([2], 4)
    path = tmp_path / "two.pkl"
    path.write_bytes(two)
    with pytest.raises(brinery.UnsafePickleError) as info:
        brinery.safe_load(path)
    assert any(f.rule == "BRS012" for f in info.value.findings)
    r, w = os.pipe()
    os.write(w, two)
    os.close(w)
    with open(r, "rb") as pipe, pytest.raises(brinery.UnsafePickleError) as info:
        brinery.safe_load(pipe)
    assert any(f.rule == "BRS012" for f in info.value.findings)
    assert brinery.safe_load(io.BytesIO(pickle.dumps({"a": (1, 2.5)}, 5))) == {"a": (1, 2.5)}


def test_compressed_pickles_load_and_other_containers_are_refused(tmp_path):
    import bz2
    import gzip
    import lzma
    import zipfile
    import zlib

    import pandas as pd

    frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3, tz="UTC"), "v": [1.0, 2.0, 3.0]})
    frame.to_pickle(tmp_path / "frame.pkl.gz")  # what pandas users write
    pd.testing.assert_frame_equal(brinery.safe_load(tmp_path / "frame.pkl.gz"), frame)
    data = pickle.dumps(frame, protocol=5)
    for compress in (gzip.compress, bz2.compress, lzma.compress, zlib.compress):
        pd.testing.assert_frame_equal(brinery.safe_loads(compress(data)), frame)
    with pytest.raises(brinery.UnsafePickleError, match="argparse.Namespace"):
        brinery.safe_loads(gzip.compress(NAMESPACE))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.pkl", data)
    with pytest.raises(brinery.UnsafePickleError, match=r"refusing to load a container \(data.pkl\)"):
        brinery.safe_loads(buf.getvalue())
    # pandas' `to_pickle("x.pkl.tar")`: a tar archive, scanned by its members and refused by
    # name (it was reported as a malformed pickle)
    frame.to_pickle(tmp_path / "frame.pkl.tar")
    report = brinery.scan(tmp_path / "frame.pkl.tar")
    assert report.ok and report.members == ["frame.pkl"], (report.findings, report.members)
    with pytest.raises(brinery.UnsafePickleError, match=r"refusing to load a container \(frame.pkl\)"):
        brinery.safe_load(tmp_path / "frame.pkl.tar")


def test_joblib_files_scan_clean_but_are_not_handed_to_the_loader(tmp_path):
    import joblib
    import numpy as np

    for compress in (0, 3):
        path = tmp_path / f"model{compress}.joblib"
        joblib.dump(
            {"w": np.arange(5.0), "labels": np.array(["a", None], dtype=object)}, path, compress=compress
        )
        assert brinery.scan(path).ok, brinery.scan(path).findings
        with pytest.raises(brinery.UnsafePickleError, match="joblib"):
            brinery.safe_load(path)


def _shared_and_cyclic():
    shared = {"k": [1, 2, 3]}
    cyc: list = ["head"]
    cyc.append(cyc)
    d: dict = {"self": None}
    d["self"] = d
    pool = [f"w{i}" for i in range(37)]
    words = [pool[i % 37] for i in range(2000)]
    records = [{"id": i, "name": words[i], "tags": ["a", "b"], "shared": shared} for i in range(2000)]
    shared_list = [shared, shared, (shared,)]
    return {"shared": shared_list, "cyc": cyc, "d": d, "records": records, "t": (words, words)}


def _check_shape(got):
    assert got["shared"][0] is got["shared"][1] is got["shared"][2][0]
    assert got["cyc"][1] is got["cyc"]
    assert got["d"]["self"] is got["d"]
    assert all(r["shared"] is got["shared"][0] for r in got["records"])
    assert got["t"][0] is got["t"][1]
    assert got["records"][5]["name"] is got["records"][42]["name"]  # "w5", fetched from the memo


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_loads_stores_every_fetched_memo_slot(protocol):
    # safe_loads skips memo stores nothing fetches (the scan knows): shared and cyclic values,
    # and a memo-heavy stream, must still come out identical, identities included
    value = _shared_and_cyclic()
    data = pickle.dumps(value, protocol=protocol)
    _check_shape(pickle.loads(data))
    got = brinery.safe_loads(data)
    assert repr(got) == repr(pickle.loads(data))
    _check_shape(got)
    # and through the optimizer, which drops the unused PUTs and renumbers the rest
    got = brinery.safe_loads(pickletools.optimize(data))
    _check_shape(got)


def test_safe_loads_mixed_put_and_memoize():
    # MEMOIZE stores at the number of entries: after a BINPUT to index 0 (never fetched), a
    # MEMOIZE stores at 1, fetched next. A stream that mixes both loads with every store made.
    data = b"\x80\x04]q\x000]\x94h\x01\x86."
    got = brinery.safe_loads(data)
    assert got == pickle.loads(data) == ([], [])
    assert got[0] is got[1]
    data = b"\x80\x04]\x94q\x05\x940h\x05h\x00h\x02\x87."
    got = brinery.safe_loads(data)
    assert got == pickle.loads(data) == ([], [], [])
    assert got[0] is got[1] is got[2]
    # protocol 2 stream with PUT only, an unfetched PUT between fetched ones
    data = b"\x80\x02(]q\x00]q\x01h\x00tq\x02."
    got = brinery.safe_loads(data)
    assert got == pickle.loads(data) == ([], [], [])
    assert got[0] is got[2] and got[1] is not got[0]


def test_safe_loads_refuses_alike_with_default_and_explicit_load_arguments():
    """``safe_loads`` calls the native clean path without keyword arguments when they are the
    defaults, and with them otherwise: both calls scan and refuse the same way, and the
    arguments still reach the load."""
    import numpy as np

    evil = b"cposix\nsystem\n(Vtrue\ntR."  # os.system("true"), protocol 0
    # a numpy dtype whose BUILD state is a dict (not numpy's tuple), memoized and filled by
    # SETITEMS: the scan keeps no table of dict entries outside joblib files, and must still
    # tell a dict from inert data here
    dict_state = b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02i8\x89\x88\x87R}\x94(\x8c\x01aK\x01u0h\x00b."
    variants = [
        {},
        {"fix_imports": False},
        {"encoding": "latin1"},
        {"errors": "replace"},
        {"buffers": []},
    ]
    for kwargs in variants:
        for data in (evil, dict_state):
            with pytest.raises(brinery.UnsafePickleError):
                brinery.safe_loads(data, **kwargs)
    # numpy's own state for the same dtype loads, with or without arguments
    ok = (
        b"\x80\x04\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02i8\x89\x88\x87R"
        b"(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb."
    )
    for kwargs in variants:
        assert brinery.safe_loads(ok, **kwargs) == np.dtype("<i8")
    # a Python 2 str decodes as asked (the encoding reaches the load)
    py2 = b"\x80\x02U\x04caf\xe9q\x00."
    assert brinery.safe_loads(py2, encoding="latin1") == pickle.loads(py2, encoding="latin1") == "café"
    assert brinery.safe_loads(py2, encoding="bytes") == b"caf\xe9"
    with pytest.raises(UnicodeDecodeError):
        brinery.safe_loads(py2)


def test_safe_loads_native_entry_takes_every_argument_form():
    # `safe_loads` runs the clean path natively for the default policy or a Policy object and
    # hands everything else to the Python side: each form gives the same result or error
    import array
    import inspect

    assert str(inspect.signature(brinery.safe_loads)) == (
        "(data, /, *, allow=None, policy=None, buffers=None, fix_imports=True, "
        "encoding='ASCII', errors='strict')"
    )
    data = pickle.dumps({"a": [1, 2.5], "b": (None, b"x")}, protocol=5)
    want = pickle.loads(data)
    for value in (
        data,
        bytearray(data),
        memoryview(data),
        memoryview(bytearray(data)).toreadonly(),
        array.array("b", data),  # any contiguous buffer, as pickle.loads
    ):
        assert brinery.safe_loads(value) == want
    assert brinery.safe_loads(data, policy=None, allow=None) == want
    assert brinery.safe_loads(data, policy=brinery.Policy()) == want
    assert brinery.safe_loads(data, policy="stdlib-data") == want
    assert brinery.safe_loads(data, policy=["stdlib-data", "numpy"], allow=[]) == want
    for bad in ("text", 12, None):
        with pytest.raises(TypeError, match="a bytes-like object is required"):
            brinery.safe_loads(bad)
    with pytest.raises(TypeError):
        brinery.safe_loads(data, None)  # everything but the data is keyword-only
    ns = pickle.dumps(argparse.Namespace(a=1), protocol=4)
    allowing = brinery.Policy(allow=["argparse.Namespace"])
    assert brinery.safe_loads(ns, policy=allowing) == argparse.Namespace(a=1)
    assert brinery.safe_loads(ns, allow="argparse.Namespace") == argparse.Namespace(a=1)
    for kwargs in ({}, {"policy": brinery.Policy()}, {"policy": "stdlib-data"}):
        with pytest.raises(brinery.UnsafePickleError, match="argparse.Namespace") as info:
            brinery.safe_loads(ns, **kwargs)
        assert [f.rule for f in info.value.findings] == ["BRS001"]
    with pytest.raises(ValueError, match="allow= cannot extend"):
        brinery.safe_loads(ns, policy=allowing, allow=["x.y"])


def test_guard_refuses_a_repeated_proto_during_the_load():
    # The load-time guard alone (no scan before it): the first PROTO runs in the loader's fast
    # loop, which notes it with the guard; a second one is refused wherever it appears.
    for data in (b"\x80\x04\x80\x04K\x01.", b"\x80\x04]\x94(K\x01\x80\x04K\x02e."):
        pickle.loads(data)  # plain pickle accepts it
        with pytest.raises(brinery.UnsafePickleError, match="PROTO repeated"):
            brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy()).load()
        with pytest.raises(brinery.UnsafePickleError, match="BRS"):
            brinery.safe_loads(data)
    unpickler = brinery.Unpickler(io.BytesIO(b"\x80\x04K\x01.\x80\x04K\x02."), policy=brinery.Policy())
    assert (unpickler.load(), unpickler.load()) == (1, 2)  # one PROTO per load


def test_nested_guarded_loads_keep_their_own_tables():
    # A guarded load whose BUILD runs another guarded load (a __setstate__ calling safe_loads):
    # the guard's tables (taken from the thread's spare at the first global) are the outer
    # load's own throughout; the inner load's are separate, and the outer load still knows its
    # globals afterwards.
    import types

    import numpy as np

    inner = pickle.dumps({"d": np.dtype("f8"), "a": np.arange(3.0), "t": (1, "x")}, protocol=5)

    class Nest:
        def __setstate__(self, state):
            self.inner = brinery.safe_loads(state["inner"])
            self.n = state["n"]

    Nest.__module__, Nest.__qualname__ = "brinery_nest_mod", "Nest"
    mod = types.ModuleType("brinery_nest_mod")
    mod.Nest = Nest
    sys.modules["brinery_nest_mod"] = mod
    try:
        objs = []
        for n in (1, 2):
            o = Nest.__new__(Nest)
            o.__dict__.update(inner=inner, n=n)
            objs.append(o)
        data = pickle.dumps(objs, protocol=4)
        policy = brinery.Policy(allow=["brinery_nest_mod.Nest"])
        for _ in range(3):
            for got in (
                brinery.safe_loads(data, policy=policy),
                brinery.Unpickler(io.BytesIO(data), policy=policy).load(),
            ):
                assert [o.n for o in got] == [1, 2]
                for o in got:
                    assert o.inner["d"] == np.dtype("f8") and o.inner["t"] == (1, "x")
                    np.testing.assert_array_equal(o.inner["a"], np.arange(3.0))
        # after the inner load, BUILD on the outer load's memoized global (the class) is refused
        one = pickle.dumps(objs[0], protocol=4)
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(one)]
        assert ops[:4] == [
            ("PROTO", 4),
            ("FRAME", ops[1][1]),
            ("SHORT_BINUNICODE", "brinery_nest_mod"),
            ("MEMOIZE", None),
        ]
        bad = one[:-1] + b"0h\x02}b."  # POP the object, BINGET 2 (the class), {}, BUILD
        with pytest.raises(TypeError):
            pickle.loads(bad)  # plain pickle runs it (the class's __setstate__, unbound)
        for _ in range(2):
            with pytest.raises(brinery.UnsafePickleError, match="BUILD applied to the global"):
                brinery.Unpickler(io.BytesIO(bad), policy=policy).load()
    finally:
        del sys.modules["brinery_nest_mod"]


# Public names of functions and classes that read or write files, call what they are given
# later, or change library configuration: refused even when allowed by name (red-team review
# of session 9: pandas' public aliases of pandas.io classes could be allowed, and the refusal
# even suggested it).
@pytest.mark.parametrize(
    ("module", "name", "arg"),
    [
        ("pandas", "ExcelFile", "a.xlsx"),
        ("pandas", "HDFStore", "a.h5"),
        ("pandas", "read_csv", "a.csv"),
        ("pandas", "set_option", "display.width"),
        ("pandas.api.typing", "StataReader", "a.dta"),
        ("linecache", "getline", "/etc/hostname"),
        ("filecmp", "cmp", "/etc/hostname"),
        ("atexit", "register", "x"),
        ("weakref", "finalize", "x"),
        ("builtins", "map", "x"),
        ("itertools", "starmap", "x"),
    ],
)
def test_denied_public_names_cannot_be_allowed(module, name, arg):
    text = arg.encode()
    data = b"\x80\x02c" + f"{module}\n{name}\nX".encode() + len(text).to_bytes(4, "little") + text + b"\x85R."
    for allow in (None, [f"{module}.{name}"]):
        report = brinery.scan(data, allow=allow)
        rules = {f.rule for f in report.findings}
        assert not report.ok and "BRS003" in rules, (module, name, report.findings)
        with pytest.raises(brinery.UnsafePickleError) as info:
            brinery.safe_loads(data, allow=allow)
        assert "these findings cannot be allowed by name" in str(info.value), str(info.value)


def test_a_nested_class_is_allowed_as_the_refusal_says(tmp_path, monkeypatch):
    (tmp_path / "nested_models.py").write_text(
        "class Model:\n    class Inner:\n        def __init__(self):\n            self.w = [1, 2]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import nested_models

    data = pickle.dumps(nested_models.Model.Inner(), protocol=4)
    with pytest.raises(brinery.UnsafePickleError) as info:
        brinery.safe_loads(data)
    message = str(info.value)
    assert "allow=['nested_models:Model.Inner']" in message, message
    assert "cannot be allowed by name" not in message, message
    assert brinery.safe_loads(data, allow=["nested_models:Model.Inner"]).w == [1, 2]
    # the outer class came in as a reference only: making one is still refused, at any protocol
    for protocol in range(6):
        outer = pickle.dumps(nested_models.Model(), protocol=protocol)
        with pytest.raises(brinery.UnsafePickleError):
            brinery.safe_loads(outer, allow=["nested_models:Model.Inner"])


def test_a_refusal_without_allowable_findings_says_these_cannot_be_allowed():
    data = b"\x80\x02cpandas\nExcelFile\nX\x03\x00\x00\x00a.x\x85R."
    with pytest.raises(brinery.UnsafePickleError) as info:
        brinery.safe_loads(data, allow=["pandas.ExcelFile"])
    message = str(info.value)
    assert "these findings cannot be allowed by name" in message and "allow=[" not in message, message


@pytest.mark.parametrize("codec", ["cp875", "rot13", "utf_16", "idna", "unicode_escape"])
def test_the_streaming_guard_refuses_codecs_the_scan_refuses(codec):
    """`Unpickler(policy=...)` runs no scan first: its guard checks `_codecs.encode`'s encoding as
    the scan does (another codec would import and run its `encodings.*` module)."""
    enc = codec.encode()
    head = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX"
    data = head + len(enc).to_bytes(4, "little") + enc + b"\x86R."
    assert not brinery.scan(data).ok
    with pytest.raises(brinery.UnsafePickleError, match="plain text encoding"):
        brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy()).load()
    plain = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00latin1\x86R."
    assert brinery.Unpickler(io.BytesIO(plain), policy=brinery.Policy()).load() == b"abc"


def test_policy_none_is_no_profile_as_in_the_cli():
    import numpy as np

    data = pickle.dumps(np.arange(3), protocol=5)
    plain = pickle.dumps({"a": [1, 2]}, protocol=5)
    assert not brinery.scan(data, policy="none").ok
    assert brinery.scan(plain, policy="none").ok
    with pytest.raises(brinery.UnsafePickleError, match="numpy"):
        brinery.safe_loads(data, policy="none")
    assert brinery.safe_loads(data, policy=["none", "numpy"]).tolist() == [0, 1, 2]


class _Built:
    """`cls()` then BUILD with `state` (which `cls.__setstate__` receives, whatever its type)."""

    def __init__(self, cls, state):
        self.cls, self.state = cls, state

    def __reduce__(self):
        return self.cls, (), self.state


def test_special_attribute_names_in_a_state_are_refused_before_anything_runs():
    """Session 12's red team: numpy takes `__array_interface__` from the instance, so a
    SimpleNamespace given one by its BUILD state made `np.positive(obj)` read, and
    `np.add(view, 1, view)` write, any address of the process. A BUILD state (or NEWOBJ_EX's
    keyword arguments) may not name a special attribute other than the descriptive ones."""
    import copyreg
    import types

    import numpy as np

    victim = bytearray(b"A" * 16)
    addr = np.frombuffer(victim, np.uint8).ctypes.data
    interface = {"shape": (16,), "typestr": "|u1", "data": (addr, False), "version": 3}

    class Call:
        def __init__(self, f, *a):
            self.f, self.a = f, a

        def __reduce__(self):
            return self.f, self.a

    class Kwargs:  # SimpleNamespace(**kwargs) through NEWOBJ_EX
        def __reduce_ex__(self, proto):
            return copyreg.__newobj_ex__, (types.SimpleNamespace, (), {"__array_interface__": interface})

    view = Call(np.positive, types.SimpleNamespace(__array_interface__=interface))
    write = Call(np.add, view, 1, view)
    # the state dict is filled, memoized, popped and taken back by GET for the BUILD
    by_get = b"\x80\x02ctypes\nSimpleNamespace\n)R}q\x01X\x13\x00\x00\x00__array_interface__K\x01s0h\x01b."
    with pytest.raises(brinery.UnsafePickleError, match="__array_interface__"):
        brinery.safe_loads(by_get)
    pickled = [
        pickle.dumps(obj, proto) for obj, proto in ((write, 2), (write, 4), (Call(np.positive, Kwargs()), 4))
    ]
    for data in pickled:
        assert not brinery.scan(data).ok
        with pytest.raises(brinery.UnsafePickleError, match="__array_interface__") as e:
            brinery.safe_loads(data)
        assert {f.rule for f in e.value.findings} == {"BRS008"}, e.value.findings
    # a mapping a call built, or one an allowed __setstate__ takes (scikit-learn's updates
    # __dict__ from any mapping): the scan flags the pickle, the guard checks the object's own
    # __dict__ after the BUILD
    from collections import OrderedDict, UserDict

    from sklearn.preprocessing import StandardScaler

    for mapping in (UserDict, lambda d: OrderedDict(d.items())):
        state = mapping({"__array_interface__": interface})
        est = Call(np.positive, _Built(StandardScaler, state))
        data = pickle.dumps(Call(np.add, est, 1, est), 4)
        assert not brinery.scan(data).ok
        with pytest.raises(brinery.UnsafePickleError, match="__array_interface__|special attribute"):
            brinery.safe_loads(data)
    assert bytes(victim) == b"A" * 16
    # a dict holding such a key as data is fine; descriptive names in a state load
    as_data = pickle.dumps(types.SimpleNamespace(a={"__array_interface__": interface}), 4)
    assert brinery.safe_loads(as_data).a == {"__array_interface__": interface}
    ns = brinery.safe_loads(pickle.dumps(types.SimpleNamespace(__doc__="d", __module__="m", x=1), 4))
    assert (ns.__doc__, ns.x) == ("d", 1)


def _refused_by_scan_and_guard(data: bytes, match: str, rule: str | None = None, allow=None) -> None:
    """`data` is refused by `safe_loads` and by the guard alone (`Unpickler(policy=)`, no scan
    before it), each with a message matching `match`; with `rule`, the scan reports it too."""
    if rule is not None:
        findings = brinery.scan(data, allow=allow).findings
        assert rule in [f.rule for f in findings], findings
    with pytest.raises(brinery.UnsafePickleError, match=match):
        brinery.safe_loads(data, allow=allow)
    with pytest.raises(brinery.UnsafePickleError, match=match):
        brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy(allow=allow or [])).load()


BOUND_PKG = """
class Keeper:
    def __init__(self):
        self.x = 1

    def double(self, v):
        return 2 * v

    def other(self):
        return 0


class Custom(Keeper):
    def __getattribute__(self, name):
        if name == "double":
            return len
        return object.__getattribute__(self, name)


class NotFunction(Keeper):
    double = staticmethod(abs)


class WeirdStr(str):  # equal to "double" by hash and __eq__, whatever its text
    def __hash__(self):
        return hash("double")

    def __eq__(self, other):
        return True
"""


class _BoundOf:
    """Pickles as `getattr(obj, name)`: how a bound method of `obj` pickles."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


@pytest.fixture
def boundpkg(tmp_path, monkeypatch):
    pkg = tmp_path / "brinery_bm_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(BOUND_PKG)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    yield importlib.import_module("brinery_bm_pkg.models")
    for name in [m for m in sys.modules if m.startswith("brinery_bm_pkg")]:
        del sys.modules[name]


def test_a_method_an_object_keeps_bound_to_itself_loads_when_listed(boundpkg):
    """`getattr(<instance>, "name")` (a bound method, as scikit-learn's HistGradientBoosting
    keeps `self._raw_predict`) loads when the instance's class is allowed to be called and
    `Class.name` is listed, at every protocol; the scan and the guard refuse anything else."""
    m = "brinery_bm_pkg.models"
    k = boundpkg.Keeper()
    k.f = k.double
    allow = [f"{m}.Keeper", f"{m}:Keeper.double"]
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(k, proto)
        got = brinery.safe_loads(data, allow=allow)
        assert got.f.__self__ is got and got.f(3) == 6, proto
        with pytest.raises(brinery.UnsafePickleError, match=r"Keeper\.double") as e:
            brinery.safe_loads(data, allow=[f"{m}.Keeper"])
        assert {f.rule for f in e.value.findings} == {"BRS001"}, e.value.findings
        # the guard alone (a streaming load, no scan before it) refuses it too
        with pytest.raises(brinery.UnsafePickleError, match=r"Keeper\.double"):
            brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy(allow=[f"{m}.Keeper"])).load()
        got = brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy(allow=allow)).load()
        assert got.f(2) == 4
    # another method of the class than the listed one
    k.f = k.other
    with pytest.raises(brinery.UnsafePickleError, match=r"Keeper\.other"):
        brinery.safe_loads(pickle.dumps(k, 4), allow=allow)
    # a special name, even if listed
    data = pickle.dumps(_BoundOf(boundpkg.Keeper(), "__init__"), 4)
    with pytest.raises(brinery.UnsafePickleError, match="BRS006"):
        brinery.safe_loads(data, allow=[*allow, f"{m}:Keeper.__init__"])

    class CallIt:  # the bound method called by the load
        def __reduce__(self):
            return boundpkg.Keeper().double, (3,)

    data = pickle.dumps(CallIt(), 4)
    with pytest.raises(brinery.UnsafePickleError, match="BRS005"):
        brinery.safe_loads(data, allow=allow)
    with pytest.raises(brinery.UnsafePickleError, match="calls a value that is not an allowed global"):
        brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy(allow=allow)).load()


def test_a_bound_method_that_is_not_a_plain_lookup_is_refused_by_the_guard(boundpkg):
    """What the scan cannot see and the guard checks on the object: its class customises
    attribute access, the attribute is not a function of the class, or the instance's own
    `__dict__` shadows it (`getattr` would return that value, not the method)."""
    m = "brinery_bm_pkg.models"
    shadowed = boundpkg.Keeper()
    shadowed.double = 5
    cases = {
        "Custom": _BoundOf(boundpkg.Custom(), "double"),
        "NotFunction": _BoundOf(boundpkg.NotFunction(), "double"),
        "Keeper": _BoundOf(shadowed, "double"),
    }
    for cls, obj in cases.items():
        allow = [f"{m}.{cls}", f"{m}:{cls}.double"]
        data = pickle.dumps(obj, 4)
        assert brinery.scan(data, allow=allow).ok
        _refused_by_scan_and_guard(data, "would not be a plain method lookup", allow=allow)


def test_a_bound_method_is_never_the_target_of_build_or_a_container_opcode(boundpkg):
    """Session 13's red team: a method forwards attribute lookups to its function, so BUILD on
    a bound method wrote its state into the function's `__dict__` (shared by the process) and
    a later APPEND looked `append` up there: the load called what the pickle stored (here
    `dateutil.tz.tzfile`, reference-only because calling it opens its path). Refused by the scan
    (BRS007) and by the guard alone; the function is left as it was."""
    from scipy.interpolate import Rbf

    opened = []

    def hook(event, args):
        if event == "open" and "brinery-bm-secret" in str(args[0]):
            opened.append(args[0])

    sys.addaudithook(hook)
    bm = b"cbuiltins\ngetattr\ncscipy.interpolate._rbf\nRbf\n)\x81X\x0b\x00\x00\x00_h_gaussian\x86R"
    path = b"/tmp/brinery-bm-secret"
    cases = {
        "BUILD then APPEND": bm
        + b"}X\x06\x00\x00\x00appendcdateutil.tz\ntzfile\nsb"
        + b"X"
        + len(path).to_bytes(4, "little")
        + path
        + b"a.",
        "APPEND": bm + b"K\x01a.",
        "SETITEMS": bm + b"(K\x01K\x02u.",
        "BUILD with a slot state": bm + b"N}X\x01\x00\x00\x00xK\x01s\x86b.",
    }
    for body in cases.values():
        _refused_by_scan_and_guard(b"\x80\x02" + body, "bound to an instance", rule="BRS007")
    assert not opened
    assert Rbf._h_gaussian.__dict__ == {}
    # the same on a method a user listed
    m = "brinery_bm_pkg.models"
    allow = [f"{m}.Keeper", f"{m}:Keeper.double"]
    data = pickle.dumps(_BuiltWith(_BoundOf(boundpkg.Keeper(), "double"), {"x": 1}), 4)
    _refused_by_scan_and_guard(data, "bound to an instance", allow=allow)
    assert boundpkg.Keeper.double.__dict__ == {}


class _BuiltWith:
    """Pickles as `obj` (any reduction) followed by BUILD with `state`."""

    def __init__(self, obj, state):
        self.obj, self.state = obj, state

    def __reduce__(self):
        func, args = self.obj.__reduce__()
        return func, args, self.state


def test_an_instance_dict_key_that_is_not_an_exact_str_blocks_a_bound_method(boundpkg):
    """A str subclass key equal to the method's name by its own `__hash__`/`__eq__` would run
    that `__eq__` inside `getattr` and return the instance's value: the guard takes exact str
    keys only (session 13's red team)."""
    m = "brinery_bm_pkg.models"
    obj = boundpkg.Keeper()
    obj.__dict__[boundpkg.WeirdStr("zzz")] = 5
    data = pickle.dumps(_BoundOf(obj, "double"), 4)
    allow = [f"{m}.Keeper", f"{m}:Keeper.double", f"{m}.WeirdStr"]
    with pytest.raises(brinery.UnsafePickleError, match="not a plain str"):
        brinery.safe_loads(data, allow=allow)


def _short(text: str) -> bytes:
    return b"\x8c" + bytes([len(text)]) + text.encode()


def _stack_global(module: str, name: str) -> bytes:
    return _short(module) + _short(name) + b"\x93"


def test_a_build_state_that_becomes_the_instance_dict_is_frozen():
    """Session 13's red team: numpy's `ABCPolyBase.__setstate__` does `self.__dict__ = state`,
    so a memoized state taken back by GET after the BUILD could add `__array_interface__` to
    the instance after the guard's check, and `numpy.ma.MaskedArray(poly)` then wrote into any
    address (here a bytearray the test owns). The guard freezes such a state (BRS007)."""
    import struct

    import numpy as np

    victim = bytearray(b"untouched-bytearray-of-the-test.")
    addr = np.frombuffer(victim, dtype="u1").__array_interface__["data"][0]

    def i4(n):
        return b"J" + struct.pack("<i", n)

    interface = (
        b"}" + _short("shape") + i4(len(victim)) + b"\x85s" + _short("typestr") + _short("|u1") + b"s"
        + _short("data") + b"\x8a\x08" + struct.pack("<q", addr) + b"\x89\x86s"
        + _short("version") + i4(3) + b"s"
    )  # fmt: skip
    data = (
        b"\x80\x04" + _stack_global("numpy.polynomial.polynomial", "Polynomial") + b")\x81\x94"
        + b"}\x94" + _short("coef") + i4(1) + b"sb0"
        + b"h\x01" + _short("__array_interface__") + interface + b"s0"
        + _stack_global("numpy.ma", "MaskedArray") + b"h\x00\x85R" + i4(0) + i4(ord("X")) + b"s."
    )  # fmt: skip
    _refused_by_scan_and_guard(data, "BRS007")
    assert bytes(victim) == b"untouched-bytearray-of-the-test."
    # real polynomials still load
    from numpy.polynomial import Chebyshev, Polynomial

    for p in (Polynomial([1, 2, 3]), Chebyshev([0.5, 1], domain=[0, 2])):
        got = brinery.safe_loads(pickle.dumps([p, p], 4))
        assert got[0] == p and got[0] is got[1]


def test_a_build_state_may_not_replace_a_method_the_class_calls():
    """Session 13's red team: `IsotonicRegression.__setstate__` updates `__dict__`, then calls
    `self._build_f(X_thresholds_, y_thresholds_)`: a state key `_build_f` made the load call
    the pickle's value (a value-only function, `tzfile` on any path, a bound method on a
    tampered tree: a crash). A state key may not shadow a method of the class, except with the
    method itself bound to the object (HistGradientBoosting's `_raw_predict`)."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics.pairwise import rbf_kernel

    for value in (rbf_kernel, str.split):
        iso = IsotonicRegression()
        iso.__dict__.update(_build_f=value, X_thresholds_=[[1.0]], y_thresholds_=[[2.0]])
        data = pickle.dumps(iso, 4)
        with pytest.raises(brinery.UnsafePickleError, match="'_build_f' that would replace a method"):
            brinery.safe_loads(data)
        with pytest.raises(brinery.UnsafePickleError, match="BRS008"):
            brinery.Unpickler(io.BytesIO(data), policy=brinery.Policy()).load()
    # the same items in a mapping that is not a dict (scikit-learn's __setstate__ takes any):
    # refused by the guard, which walks dict states only
    from collections import ChainMap, UserDict

    for mapping in (ChainMap, UserDict):
        state = mapping({"_build_f": rbf_kernel, "X_thresholds_": [[1.0]], "y_thresholds_": [[2.0]]})
        data = pickle.dumps(_Built(IsotonicRegression, state), 4)
        _refused_by_scan_and_guard(data, "mapping, not a dict")
    # a value that cannot be called in the method's place is not refused (calling it raises)
    iso = IsotonicRegression()
    iso.__dict__.update(_build_f=3, X_thresholds_=[[1.0]], y_thresholds_=[[2.0]])
    with pytest.raises(TypeError, match="not callable"):
        brinery.safe_loads(pickle.dumps(iso, 4))
    # a fitted one loads and predicts
    import numpy as np

    x = np.linspace(0, 1, 20)
    iso = IsotonicRegression().fit(x, x**2)
    np.testing.assert_array_equal(brinery.safe_loads(pickle.dumps(iso, 5)).predict(x), iso.predict(x))


def test_a_defaultdict_factory_is_none_an_allowed_callable_or_a_builtin_type():
    """Session 13's red team: a `defaultdict` could hold any listed value as its factory, which
    a missing key calls (an allowed `__setstate__` reading a `ChainMap` state did that during the
    load): a value-only function, a bound method, `tzfile`. The factory, in the call and in a
    BUILD slot state, must be None, a global the policy allows to call or a builtin type."""
    from collections import Counter, OrderedDict, defaultdict

    from dateutil import tz
    from sklearn.metrics.pairwise import rbf_kernel

    for factory in (None, list, dict, int, set, str, float, tuple, OrderedDict, Counter):
        d = defaultdict(factory, {"a": factory() if factory else 1})
        for proto in (0, 2, 5):
            got = brinery.safe_loads(pickle.dumps(d, proto))
            assert got == d and got.default_factory is factory, (factory, proto)
    for factory in (rbf_kernel, str.lower, tz.tzfile):
        data = pickle.dumps(defaultdict(factory), 4)
        _refused_by_scan_and_guard(data, "missing key would call it", rule="BRS008")
    # the factory set by a BUILD slot state: refused by the scan (BUILD on a defaultdict) and,
    # alone, by the guard
    data = (
        b"\x80\x04" + _stack_global("collections", "defaultdict") + b")R"
        + b"N}" + _short("default_factory") + _stack_global("dateutil.tz", "tzfile") + b"s\x86b."
    )  # fmt: skip
    _refused_by_scan_and_guard(data, "default_factory", rule="BRS008")


def test_a_mapping_that_answers_attribute_lookups_gets_no_special_name_keys():
    """Session 13's third review: scikit-learn's `Bunch` (allowed; `StackingClassifier` keeps
    one) answers attribute lookups from its items, so SETITEMS of `__array_interface__` made
    `numpy.matrix(bunch)` read, and `numpy.ma.MaskedArray` write, any address. Keys given to an
    object whose type has its own attribute lookup may not be special names; a state key that is
    a str subclass (`numpy.str_`, found by a lookup of the plain name) is refused too."""
    import numpy as np
    from sklearn.isotonic import IsotonicRegression
    from sklearn.utils import Bunch

    victim = bytearray(b"untouched-bytearray-of-the-test.")
    addr = np.frombuffer(victim, dtype="u1").__array_interface__["data"][0]
    bunch = Bunch()
    bunch["__array_interface__"] = {"shape": (4,), "typestr": "|u1", "data": (addr, False), "version": 3}
    data = pickle.dumps(_Call(np.ma.MaskedArray, bunch), 4)
    _refused_by_scan_and_guard(data, "__array_interface__")
    # the same items given when the Bunch is made (protocols 0-1 write a dict subclass so)
    import copyreg

    made = _Call(copyreg._reconstructor, Bunch, dict, dict(bunch))
    _refused_by_scan_and_guard(pickle.dumps(_Call(np.ma.MaskedArray, made), 2), "__array_interface__")
    assert bytes(victim) == b"untouched-bytearray-of-the-test."
    # a Bunch of data loads
    got = brinery.safe_loads(pickle.dumps(Bunch(a=1, b=np.arange(3)), 4))
    assert got.a == 1 and list(got.b) == [0, 1, 2]
    # a numpy.str_ key in a state
    iso = IsotonicRegression()
    iso.__dict__[np.str_("_build_f")] = np.ones(2)
    _refused_by_scan_and_guard(pickle.dumps(iso, 4), "not a plain str")


class _Call:
    """Pickles as `func(*args)`."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args
