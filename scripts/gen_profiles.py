#!/usr/bin/env python3
"""Generate brinery's built-in safe-load profiles from the libraries' own inventories.

Usage (regenerate after upgrading numpy/pandas/scikit-learn in .venv, then commit the output):

    .venv/bin/python scripts/gen_profiles.py [OUTDIR]

OUTDIR defaults to ``crates/brinery/src/scan/profiles``; it receives ``stdlib-data.txt``,
``numpy.txt``, ``pandas.txt`` and ``sklearn.txt``. Format (read by the Rust core, see
``crates/brinery/src/scan``): one entry per line, ``module<TAB>qualname<TAB>call|ref``; ``call`` =
may be called by the pickle (REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ target, or the class of an object that
BUILD gives state), ``ref`` = may only be referenced as a value (an argument, a default parameter).
``call`` implies ``ref``. ``#`` starts a comment. No wildcards: every alias is its own line.

How the lists are made (no hand-picked samples; the benign safety corpus checks the result):

- **stdlib-data**: the data types of the standard library that pickles reference: containers,
  datetime (with timezone and zoneinfo), decimal, fractions, uuid, collections, pathlib paths,
  ipaddress, array, ``statistics.NormalDist``, compiled patterns, ``time.struct_time``,
  ``functools.partial`` (its function is checked by the scan and the guard), the ``Ellipsis`` and
  ``NotImplemented`` constants,
  ``copyreg._reconstructor`` and ``_codecs.encode`` (how protocols 0-2 spell
  ``bytes``). Written out below: this is a fixed, reviewed list, not an inventory.
- **numpy**: the array/scalar reconstructors, ``numpy.dtype``, every DType class in
  ``numpy.dtypes``, every scalar type in ``numpy.sctypeDict`` (ref), the ``numpy.ma`` helpers,
  every ``BitGenerator`` subclass and the ``numpy.random._pickle`` constructors, the reviewed math
  ufuncs (``REVIEWED_UFUNCS``, call), functions kept as values (``VALUE_ONLY_NUMPY``, ref only:
  ``np.mean`` as ``FeatureAgglomeration``'s ``pooling_func``), the polynomial classes; each at every module
  path where numpy exposes it, plus the ``numpy.core.*`` / ``numpy._core.*`` alias of every such
  path (numpy 1 wrote ``numpy.core``, numpy 2 writes ``numpy._core``).
- **pandas**: every class defined by pandas in its data modules (``pandas.core``, ``pandas._libs``,
  ``pandas.tseries``, ``pandas.arrays``, ``pandas``) and the unpickle helpers they reduce to
  (``_new_*Index``, ``*_unpickle*``, Cython ``__pyx_unpickle_*``), at every module path where
  pandas exposes them; the old paths of ``pandas.compat.pickle_compat`` (current and historic map);
  the timezone constructors of ``dateutil.tz`` and ``pytz`` (``tzfile`` ref only: it opens paths).
- **sklearn**: every class defined by scikit-learn (``sklearn.utils.all_estimators()`` is checked
  to be a subset) with its helper types (trees, losses, link functions, binners, neighbours trees,
  distance metrics), the Cython ``__pyx_unpickle_*`` / ``newObj`` helpers, the reviewed univariate
  score functions (``SelectKBest(f_classif)``), the metric functions of the registered scorers
  (``REVIEWED_SCORER_FUNCTIONS``: ``scoring="f1"`` keeps ``f1_score``), the ``scipy.sparse``
  matrix/array classes, scipy's splines and interpolators (not scipy.stats distributions: their
  ``__setstate__`` exec()s pickled state) and joblib's ``NumpyArrayWrapper``.

Excluded on purpose (never in a profile, however they are found): anything under I/O, testing,
computation/eval, plotting, configuration or dataset-download modules (``pandas.io``,
``pandas.core.computation``, ``pandas._testing``, ``numpy.testing``, ``sklearn.datasets``,
``sklearn.utils._testing``, ...), exception classes, and every function that is not a pure
unpickle helper. ``numpy.memmap`` is not listed (it maps files).

Safeguards (``check()``, re-run by tests/test_safety.py on the committed files): every entry is
imported and its *defining* modules (``__module__``, the ``co_filename`` of a function and of the
methods in a class body) must not fall under ``DENIED_HOMES``, which catches re-exports such as
``pandas.ExcelFile``; a ``ref`` entry is a class or a non-callable; a callable ``call`` entry that
is not a class is in ``REVIEWED_FUNCTIONS`` (with its one-line review), ``REVIEWED_UFUNCS`` or the
Cython ``__pyx_unpickle_`` template; ``CALL_DENIED_CLASSES`` are never ``call``.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import pkgutil
import re
import sys
import types
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "crates" / "brinery" / "src" / "scan" / "profiles"

CALL = "call"
REF = "ref"


class Profile:
    """Entries of one profile: (module, qualname) -> mode, with a reason per entry source."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.entries: dict[tuple[str, str], str] = {}

    def add(self, module: str, qualname: str, mode: str) -> None:
        assert mode in (CALL, REF), mode
        assert module and qualname and "\t" not in module + qualname and " " not in module + qualname
        key = (module, qualname)
        if self.entries.get(key) == CALL:
            return
        self.entries[key] = mode

    def write(self, path: Path, versions: str) -> None:
        lines = [
            f"# brinery built-in profile `{self.name}`: {self.description}",
            f"# generated by scripts/gen_profiles.py with {versions}; do not edit by hand.",
            "# module<TAB>qualname<TAB>call|ref (call implies ref)",
        ]
        for (module, qualname), mode in sorted(self.entries.items()):
            lines.append(f"{module}\t{qualname}\t{mode}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def import_quiet(name: str) -> types.ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # optional dependency missing (pyarrow, numba, jinja2 ...)
            return None


def walk(package: str, excluded: re.Pattern[str]) -> list[types.ModuleType]:
    """The package and every importable submodule whose name does not match ``excluded``."""
    root = import_quiet(package)
    assert root is not None, package
    mods = [root]
    if not hasattr(root, "__path__"):
        return mods
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if excluded.search(info.name):
            continue
        mod = import_quiet(info.name)
        if mod is not None:
            mods.append(mod)
    return mods


def locations(
    objs: list[object], modules: list[types.ModuleType], keep_private: frozenset[str] = frozenset()
) -> dict[int, set[tuple[str, str]]]:
    """Every (module, qualname) under which pickle could name each object.

    ``obj.__module__`` + ``obj.__qualname__`` (what pickle writes today) plus every public module
    in ``modules`` (and the private ones in ``keep_private``) that exposes it as a plain attribute
    under its own name: re-exports, and old paths that still resolve.
    """
    wanted = {id(o): o for o in objs}
    found: dict[int, set[tuple[str, str]]] = {id(o): set() for o in objs}
    for o in objs:
        mod = getattr(o, "__module__", None)
        qual = getattr(o, "__qualname__", None) or getattr(o, "__name__", None)
        if isinstance(mod, str) and isinstance(qual, str) and "<" not in qual:
            found[id(o)].add((mod, qual))
    for mod in modules:
        try:
            items = list(vars(mod).items())
        except TypeError:
            continue
        private = any(part.startswith("_") for part in mod.__name__.split(".")[1:])
        for attr, value in items:
            if id(value) in wanted and wanted[id(value)] is value:
                name = getattr(value, "__name__", attr)
                home = getattr(value, "__module__", None) == mod.__name__
                if attr == name and (home or not private or mod.__name__ in keep_private):
                    found[id(value)].add((mod.__name__, attr))
    return found


def is_data_class(cls: object) -> bool:
    return isinstance(cls, type) and not issubclass(cls, BaseException | Warning)


# --- safeguards: where an entry is defined, what a function entry does ----------------------------

# Module prefixes no profile entry may be *defined* in (``obj.__module__``, and for functions and
# the methods of classes the module of ``__code__.co_filename``): a re-export under a harmless
# name (``pandas.ExcelFile`` is ``pandas.io.excel._base.ExcelFile`` with ``__module__ = "pandas"``)
# must not smuggle an I/O, network, testing, eval or code-loading object into a profile.
DENIED_HOMES = (
    # pandas: file/URL/clipboard I/O, plotting, eval/query, config, test helpers
    "pandas.io", "pandas.plotting", "pandas._testing", "pandas.testing", "pandas.util",
    "pandas.core.computation", "pandas._config", "pandas.core.config_init", "pandas.api.interchange",
    "pandas.core.interchange", "pandas._libs.parsers", "pandas._libs.json", "pandas._libs.writers",
    "pandas._libs.sas", "pandas._libs.testing", "pandas.conftest", "pandas.tests", "pandas.core._numba",
    "pandas.core.util.numba_", "pandas.core.window.numba_",  # numba JIT compilation
    # numpy: file loaders/savers, test runners, build tools, ctypes, source inspection
    "numpy.testing", "numpy._pytesttester", "numpy.lib.npyio", "numpy.lib._npyio_impl", "numpy.lib.format",
    "numpy.lib._format_impl", "numpy.lib._datasource", "numpy.lib._utils_impl", "numpy.lib.utils",
    "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy._utils", "numpy.conftest", "numpy.tests",
    "numpy.core.memmap", "numpy._core.memmap",
    # scipy: distributions (setstate exec()s a template, F1), file I/O, dataset download, tests
    "scipy.stats", "scipy.io", "scipy.datasets", "scipy.misc", "scipy._lib._testutils",
    # scikit-learn: dataset download/loading, test and check helpers, module discovery, vendored code
    "sklearn.datasets", "sklearn.utils._testing", "sklearn.utils.estimator_checks",
    "sklearn.utils._show_versions", "sklearn.utils.discovery", "sklearn.externals", "sklearn.experimental",
    "sklearn.utils.parallel", "sklearn.conftest", "sklearn.tests",
    # joblib (load/dump, parallel workers, memory caches on disk), dateutil's tarball reader
    "joblib", "dateutil.zoneinfo", "dateutil.tz.win",
    # the standard library's code runners, importers, processes, files, sockets
    "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "pkgutil", "pydoc", "runpy",
    "code", "codeop", "pickle", "_pickle", "marshal", "ctypes", "operator", "_operator", "functools", "io",
    "_io", "webbrowser", "tempfile", "glob", "urllib", "http", "ftplib", "smtplib", "multiprocessing",
    "concurrent", "threading", "_thread", "asyncio", "signal", "mmap", "shelve", "dbm", "sqlite3",
    "tarfile", "zipfile", "zipimport", "inspect", "ast", "dis", "this", "antigravity",
)  # fmt: skip
# Entries defined under a denied prefix that are allowed anyway, each with the reason.
DENIED_HOME_EXEMPT = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): "inert record of an array's layout (subclass, shape, "
    "order, dtype); only joblib's own NumpyUnpickler reads the data after it, and safe_load refuses "
    "joblib files: listed so that `brinery.scan` reports joblib files clean",
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"): "the same class where scikit-learn "
    "< 0.23 vendored joblib (old joblib files name it)",
    ("functools", "partial"): "a function with stored arguments: the scanner and the guard accept only a "
    "global the policy allows to call as its function, in the call and in its BUILD state "
    "(ArgRule::AllowedFunction): calling it later is no more than the pickle may do with that global",
}


@functools.cache
def _path_roots() -> tuple[Path, ...]:
    return tuple(Path(entry or ".").resolve() for entry in sys.path)


@functools.cache
def module_of_file(filename: str) -> str | None:
    """The dotted module name of a source file under a ``sys.path`` entry (None if outside)."""
    path = Path(filename).resolve()
    best: tuple[int, str] | None = None
    for root in _path_roots():
        try:
            rel = path.relative_to(root)
        except (ValueError, OSError):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        if parts and (best is None or len(parts) < best[0]):
            best = (len(parts), ".".join(parts))
    return best[1] if best else None


def _code_files(obj: object, owner: str | None = None) -> list[str]:
    """The source file of a function (of a method/property when ``owner`` is the class qualname:
    only code written in that class body, not decorators' wrappers or attached accessors)."""
    func = obj
    for attr in ("__func__", "fget"):
        func = getattr(func, attr, func)
    while hasattr(func, "__wrapped__"):
        func = func.__wrapped__
    code = getattr(func, "__code__", None)
    if code is None:
        return []
    if owner is not None and not str(getattr(func, "__qualname__", "")).startswith(owner + "."):
        return []
    return [code.co_filename]


def defining_modules(obj: object) -> set[str]:
    """Where ``obj`` really lives: its ``__module__`` plus the modules its code comes from.

    For a function, the module of ``__code__.co_filename``; for a class, that of every function,
    class/static method and property defined in the class body (its own ``__dict__``).
    """
    homes: set[str] = set()
    mod = getattr(obj, "__module__", None)
    if isinstance(mod, str):
        homes.add(mod)
    files = _code_files(obj)
    if isinstance(obj, type):
        for v in vars(obj).values():
            files += _code_files(v, obj.__qualname__)
    for f in files:
        name = module_of_file(f)
        if name is not None:
            homes.add(name)
    return homes


def denied_prefix(module: str) -> str | None:
    for prefix in DENIED_HOMES:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def denied_home(obj: object) -> str | None:
    """The first defining module of ``obj`` under a denied prefix (None when it is clean)."""
    key = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
    if key in DENIED_HOME_EXEMPT:
        return None
    for home in sorted(defining_modules(obj)):
        if denied_prefix(home):
            return home
    return None


# Classes that may be listed (as `ref`: a value, e.g. a helper's class argument) but never as `call`:
# constructing or calling them does what a pickle must not.
CALL_DENIED_CLASSES = {
    ("dateutil.tz._tzfile", "tzfile"): "tzfile(path) opens and reads any path (F2); pickles use _unpickle",
    ("numpy", "vectorize"): "a vectorize instance calls its pyfunc (F11)",
}


# numpy ufuncs an estimator may keep as a parameter (`FunctionTransformer(np.log1p)`). Reviewed:
# elementwise arithmetic; the Python code a ufunc can reach is the operands' type-level dunders
# (`__array_ufunc__`, `__add__`, ...) and, for object arrays, the elements' methods of the same name
# (no argument is called as a function, nothing is imported, read, written or evaluated).
REVIEWED_UFUNCS = (
    "absolute", "add", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "cbrt",
    "ceil", "clip", "cos", "cosh", "deg2rad", "divide", "exp", "exp2", "expm1", "fabs", "floor",
    "floor_divide", "fmax", "fmin", "hypot", "isfinite", "isinf", "isnan", "log", "log10", "log1p", "log2",
    "logaddexp", "logaddexp2", "maximum", "minimum", "mod", "multiply", "negative", "positive", "power",
    "rad2deg", "reciprocal", "remainder", "rint", "sign", "sin", "sinh", "sqrt", "square", "subtract",
    "tan", "tanh", "true_divide", "trunc",
)  # fmt: skip

# Every function (any callable that is not a class) a profile may list, by the (module, qualname)
# where it is *defined*, with the review that makes it safe to call with pickle-chosen arguments:
# it must not call its arguments, import, do I/O, evaluate strings or resolve names. "CLASS ARG":
# the function calls an attribute of a class argument (`cls.__new__`, `cls.from_arrays`, ...): safe
# only because the scanner and the load-time guard check that argument is an allowed class.
REVIEWED_FUNCTIONS: dict[tuple[str, str], str] = {
    ("copyreg", "_reconstructor"): "CLASS ARG: base.__new__(cls, state), base.__init__(obj, state)",
    ("_codecs", "encode"): "str -> bytes (how protocols 0-2 write bytes); the codec name is looked up "
    "in `encodings`: the scanner accepts only constant latin1/utf-8/ascii",
    ("zoneinfo", "ZoneInfo._unpickle"): "ZoneInfo cache lookup by key; the key is validated "
    "against path traversal by zoneinfo before the tz database file is opened",
    ("array", "_array_reconstructor"): "CLASS ARG: checks cls is an array.array subtype (C code)",
    ("numpy._core.multiarray", "_reconstruct"): "CLASS ARG: ndarray.__new__(subtype) checks the subtype",
    ("numpy._core.multiarray", "scalar"): "builds a numpy scalar from a dtype and bytes/object",
    ("numpy._core.numeric", "_frombuffer"): "np.frombuffer(buf, dtype).reshape(shape, order)",
    ("numpy._core._internal", "_convert_to_stringdtype_kwargs"): "StringDType(na_object, coerce)",
    ("numpy.ma.core", "_mareconstruct"): "CLASS ARG: ndarray.__new__(baseclass), subtype.__new__(subtype)",
    ("numpy.random._pickle", "__bit_generator_ctor"): "CLASS ARG: a name is looked up in numpy's "
    "BitGenerators table; *any* type argument is called with no arguments (must be a BitGenerator)",
    ("numpy.random._pickle", "__generator_ctor"): "CLASS ARG: calls its 2nd argument with its 1st (F11): "
    "it must be __bit_generator_ctor",
    ("numpy.random._pickle", "__randomstate_ctor"): "CLASS ARG: calls its 2nd argument with its 1st "
    "(F11): it must be __bit_generator_ctor",
    ("dateutil.tz._tzfile", "_unpickle"): "CLASS ARG: cls.__new__(cls), then parses the transition "
    "data from the pickle (no file is opened, unlike tzfile(path))",
    ("pyarrow.lib", "_restore_array"): "rebuilds an Arrow array from (type, length, null_count, offset, "
    "buffers, children, dictionary) without validating it: the scanner and the guard accept only that "
    "shape, and the guard checks its layout before the call and validate(full=True) after it",
    ("pyarrow.lib", "type_for_alias"): "looks a type name up in pyarrow's alias table (a constant str only)",
    ("pyarrow.lib", "py_buffer"): "wraps bytes/bytearray/PickleBuffer data in an Arrow Buffer (no copy)",
    ("pytz", "_p"): "looks a zone up by name in pytz's bundled database (names are validated)",
    ("pytz", "_UTC"): "returns the pytz.utc singleton",
    ("pandas.core.indexes.base", "_new_Index"): "CLASS ARG: cls.__new__(cls, **d) / cls._from_...",
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"): "CLASS ARG: cls._simple_new / cls.__new__",
    ("pandas.core.indexes.timedeltas", "_new_TimedeltaIndex"): "CLASS ARG: cls._simple_new / cls.__new__",
    ("pandas.core.indexes.period", "_new_PeriodIndex"): "CLASS ARG: cls.from_ordinals / cls._simple_new",
    ("pandas.core.indexes.interval", "_new_IntervalIndex"): "CLASS ARG: cls.from_arrays(**d)",
    ("pandas.core.internals.blocks", "new_block"): "block of the dtype's block class from an array "
    "(what pandas 1/2 pickles named `new_block` resolve to)",
    ("pandas._libs.internals", "_unpickle_block"): "Cython: block of the dtype's block class",
    ("pandas._libs.tslibs.nattype", "_nat_unpickle"): "Cython: returns the NaT singleton",
    ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"): "Cython: Timedelta from an int and a unit",
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"): "Cython: Timestamp from int, tz, reso",
    ("sklearn.metrics._dist_metrics", "newObj"): "CLASS ARG: obj.__new__(obj), an attribute of its argument",
    ("sklearn.neighbors._ball_tree", "newObj"): "CLASS ARG: obj.__new__(obj), an attribute of its argument",
    ("sklearn.neighbors._kd_tree", "newObj"): "CLASS ARG: obj.__new__(obj), an attribute of its argument",
    ("sklearn.feature_selection._univariate_selection", "f_classif"): "ANOVA F on arrays (score_func)",
    ("sklearn.utils.validation", "check_array"): "validates and converts an array (dtype, finiteness, "
    "dimensions); `estimator` only names it in messages; imports pandas' SparseDtype only when given "
    "a pandas object (pandas is loaded then); what HistGradientBoosting's categorical preprocessing "
    "keeps as `partial(check_array, ...)`",
    ("sklearn.feature_selection._univariate_selection", "f_regression"): "F-test on arrays (score_func)",
    ("sklearn.feature_selection._univariate_selection", "r_regression"): "Pearson r on arrays (score_func)",
    ("sklearn.feature_selection._univariate_selection", "chi2"): "chi-squared on arrays (score_func)",
    ("sklearn.feature_selection._univariate_selection", "f_oneway"): "one-way ANOVA on arrays",
    # interp1d keeps the evaluation method of its `kind` as a value (`self._call`); these four only
    # index and interpolate numpy arrays of their first argument (`_call_spline` calls
    # `self._spline`, an attribute of its argument: not listed, so spline kinds are refused)
    ("scipy.interpolate._interpolate", "interp1d._call_linear_np"): "np.interp(x, self.x, self.y)",
    ("scipy.interpolate._interpolate", "interp1d._call_linear"): "searchsorted and slopes on self.x/_y",
    ("scipy.interpolate._interpolate", "interp1d._call_nearest"): "searchsorted on self.x_bds, index _y",
    ("scipy.interpolate._interpolate", "interp1d._call_previousnext"): "searchsorted on _x_shift, index _y",
    ("re", "_compile"): "compiles a pattern with flags through re's cache (what a pickled re.Pattern "
    "reduces to); matching, where a pattern costs time, is the user's call",
    ("scipy._lib.array_api_compat.numpy._aliases", "asarray"): "np.array(obj, dtype, copy) after a "
    "device == 'cpu' check (BSpline keeps it as `xp.asarray`); reaches only the array protocol of obj",
    # metric functions users pass to `make_scorer` that no registered scorer uses
    ("sklearn.metrics._classification", "fbeta_score"): "F-beta from label arrays (f1_score is "
    "fbeta_score with beta=1; `make_scorer(fbeta_score, beta=2)`)",
    ("sklearn.metrics._classification", "cohen_kappa_score"): "agreement of two label arrays; "
    "`weights` is None, 'linear' or 'quadratic' (else ValueError)",
    ("sklearn.metrics._classification", "hamming_loss"): "fraction of wrong labels (arrays)",
    ("sklearn.metrics._classification", "zero_one_loss"): "misclassification count or rate (arrays)",
    ("sklearn.metrics._classification", "hinge_loss"): "mean hinge loss of decision values (arrays)",
    ("sklearn.metrics._regression", "mean_pinball_loss"): "quantile loss of two arrays and `alpha`",
    ("sklearn.metrics._regression", "mean_tweedie_deviance"): "Tweedie deviance of two arrays, `power`",
    ("sklearn.metrics._regression", "d2_pinball_score"): "D^2 of the pinball loss (arrays, `alpha`)",
    ("sklearn.metrics._regression", "d2_tweedie_score"): "D^2 of the Tweedie deviance (arrays, `power`)",
}  # fmt: skip

# Functions estimators keep as values that a safe load never needs to call: listed `ref` (value
# only). The scan and the guard refuse to call a `ref` global (BRS002), and no helper takes one as
# a function (the class-argument helpers take allowed classes, functools.partial a `call`
# function). Unlike every other function in the profiles these are *not* reviewed as safe to
# call with pickle-chosen arguments (session 12's red team: `np.mean(obj)` calls `obj.mean`, an
# attribute a BUILD may set; `_kmeans_single_lloyd(..., n_threads=-5)` kills the process), so
# they must stay values: `entry_problem` refuses them as `call`.
VALUE_ONLY_NUMPY = (
    "amax", "amin", "clip", "cumsum", "max", "mean", "median", "min", "nan_to_num", "nanmax",
    "nanmean", "nanmedian", "nanmin", "nansum", "prod", "round", "std", "sum", "var",
)  # fmt: skip
# scikit-learn's kernel functions, given as `kernel=` (`SVC(kernel=rbf_kernel)`, KernelRidge,
# KernelPCA, Nystroem): each computes a matrix from two arrays (no n_jobs, unlike
# `pairwise_kernels`).
VALUE_ONLY_KERNELS = (
    "additive_chi2_kernel", "chi2_kernel", "cosine_similarity", "laplacian_kernel", "linear_kernel",
    "polynomial_kernel", "rbf_kernel", "sigmoid_kernel",
)  # fmt: skip
# str methods given as a text vectorizer's `tokenizer=`/`preprocessor=`
# (`TfidfVectorizer(tokenizer=str.split)`); pickled as `getattr(str, "split")`.
VALUE_ONLY_STR_METHODS = ("casefold", "lower", "split", "strip", "upper")
VALUE_ONLY_FUNCTIONS: dict[tuple[str, str], str] = {
    ("sklearn.cluster._kmeans", "_kmeans_single_lloyd"): "BisectingKMeans' solver (`_kmeans_single`)",
    ("sklearn.cluster._kmeans", "_kmeans_single_elkan"): "the same, `algorithm='elkan'`",
    **{("numpy", n): "a parameter (`FeatureAgglomeration(pooling_func=np.mean)`)" for n in VALUE_ONLY_NUMPY},
    **{("sklearn.metrics.pairwise", n): "a kernel (`SVC(kernel=rbf_kernel)`)" for n in VALUE_ONLY_KERNELS},
    **{("builtins", f"str.{n}"): "a vectorizer's tokenizer (`str.split`)" for n in VALUE_ONLY_STR_METHODS},
}


# Methods an object keeps bound to itself, listed as `Class.method` (ref): a safe load lets
# `getattr(<instance of Class>, "method")` through for these only (the guard checks that the
# attribute is a plain function of the class and the instance's type is that class). Reviewed:
# - scikit-learn 1.9: HistGradientBoosting's `_patch_raw_predict` (early stopping with a
#   `scoring=` other than "loss") restores `estimator._raw_predict = <the bound method>`, so the
#   fitted estimator pickles it; `_raw_predict` computes raw predictions from its trees and calls
#   nothing it is given;
# - scipy 1.17: the legacy `Rbf` keeps its basis function as `self._function = getattr(self,
#   "_h_" + function)`; each `_h_*` is one numpy expression of `r` and `self.epsilon`.
BOUND_METHODS: dict[tuple[str, str], str] = {
    **{
        ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", f"{cls}._raw_predict"): (
            "kept by early stopping with scoring= other than 'loss'"
        )
        for cls in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
    },
    **{
        ("scipy.interpolate._rbf", f"Rbf._h_{basis}"): "Rbf's basis function (`function=` a name)"
        for basis in (
            "multiquadric",
            "inverse_multiquadric",
            "gaussian",
            "linear",
            "cubic",
            "quintic",
            "thin_plate",
        )
    },
}


def value_only(obj: object) -> bool:
    """Whether `obj` is one of the VALUE_ONLY_FUNCTIONS (by its own module and qualname; a
    builtin type's method by its class's module)."""
    module = getattr(obj, "__module__", None) or getattr(
        getattr(obj, "__objclass__", None), "__module__", None
    )
    return (module, getattr(obj, "__qualname__", None)) in VALUE_ONLY_FUNCTIONS


# The metric functions of scikit-learn's registered scorers (`sklearn.metrics.get_scorer_names()`):
# a fitted search with `scoring="f1"` keeps `f1_score` in its `scorer_`. Reviewed one by one
# (scikit-learn 1.9): each computes a number from arrays (y_true, y_pred or scores, sample_weight,
# labels, ...) with numpy and scipy.special; none calls an argument, imports, does I/O, evaluates
# strings or starts workers (no n_jobs). A scorer function of a later scikit-learn that is not on
# this list is left out (the generator says so) until someone reviews it.
REVIEWED_SCORER_FUNCTIONS = {
    ("sklearn.metrics._classification", n)
    for n in (
        "accuracy_score", "balanced_accuracy_score", "brier_score_loss", "d2_brier_score",
        "d2_log_loss_score", "f1_score", "jaccard_score", "log_loss", "matthews_corrcoef",
        "precision_score", "recall_score",
    )
} | {
    ("sklearn.metrics._ranking", n)
    for n in ("average_precision_score", "roc_auc_score", "top_k_accuracy_score")
} | {
    ("sklearn.metrics._regression", n)
    for n in (
        "d2_absolute_error_score", "explained_variance_score", "max_error", "mean_absolute_error",
        "mean_absolute_percentage_error", "mean_gamma_deviance", "mean_poisson_deviance",
        "mean_squared_error", "mean_squared_log_error", "median_absolute_error", "r2_score",
        "root_mean_squared_error", "root_mean_squared_log_error",
    )
} | {
    ("sklearn.metrics._scorer", n) for n in ("negative_likelihood_ratio", "positive_likelihood_ratio")
} | {
    ("sklearn.metrics.cluster._supervised", n)
    for n in (
        "adjusted_mutual_info_score", "adjusted_rand_score", "completeness_score",
        "fowlkes_mallows_score", "homogeneity_score", "mutual_info_score",
        "normalized_mutual_info_score", "rand_score", "v_measure_score",
    )
}  # fmt: skip

# Cython's generated pickle helpers `__pyx_unpickle_<Class>(type, checksum, state)`: reviewed as one
# template (Cython's Pickle.pyx): checks the layout checksum, `<Class>.__new__(type)` (CPython
# checks `type` is a <Class> subtype), then assigns the C fields from the state tuple.
CYTHON_UNPICKLE = re.compile(r"^__pyx_unpickle_(\w+)$")


def reviewed_function(obj: object, name: tuple[str, str] | None = None) -> str | None:
    """The review of a callable non-class entry, or None if it was never reviewed.

    Looked up by the object's own (``__module__``, ``__qualname__``), or by the entry's name when
    that is what the object lacks (C methods such as ``zoneinfo.ZoneInfo._unpickle``)."""
    import numpy as np

    if isinstance(obj, np.ufunc):
        return "ufunc (REVIEWED_UFUNCS)" if obj.__name__ in REVIEWED_UFUNCS else None
    key = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
    if key in REVIEWED_FUNCTIONS:
        return REVIEWED_FUNCTIONS[key]
    if key in REVIEWED_SCORER_FUNCTIONS:
        return "metric of a registered scorer (REVIEWED_SCORER_FUNCTIONS)"
    if name in REVIEWED_FUNCTIONS and resolve(*name) == obj:  # == : bound C methods are fresh objects
        return REVIEWED_FUNCTIONS[name]
    m = CYTHON_UNPICKLE.match(str(key[1]))
    if m and type(obj).__name__ == "cython_function_or_method" and isinstance(key[0], str):
        return "Cython __pyx_unpickle_ template (CYTHON_UNPICKLE)"
    return None


def resolve(module: str, qual: str) -> object:
    """What a profile entry names (None when the module or attribute does not exist here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            obj: object = importlib.import_module(module)
        except Exception:
            return None
        for part in qual.split("."):
            try:
                obj = getattr(obj, part)
            except Exception:  # e.g. sklearn's "import enable_halving_search_cv first"
                return None
    return obj


def entry_problem(module: str, qual: str, mode: str) -> str | None:
    """Why a profile entry must not be listed (None when it may): the generator's and the tests'
    safeguards (defining module denied, a callable `ref`, an unreviewed function)."""
    if denied_prefix(module) and (module, qual) not in DENIED_HOME_EXEMPT:
        return f"named under denied module {module}"
    obj = resolve(module, qual)
    if obj is None:
        return None  # an old path that no longer exists (find_class cannot resolve it either)
    if isinstance(obj, types.ModuleType):
        return "a module"
    home = denied_home(obj)
    if home:
        return f"defined in denied module {home}"
    if isinstance(obj, type):
        why = CALL_DENIED_CLASSES.get((obj.__module__, obj.__qualname__))
        return f"a class that must not be callable: {why}" if mode == CALL and why else None
    if mode == REF:
        if callable(obj) and not value_only(obj) and (module, qual) not in BOUND_METHODS:
            return (
                "a callable ref entry (ref entries must be classes, constants, VALUE_ONLY_FUNCTIONS "
                "or BOUND_METHODS)"
            )
        return None
    if callable(obj) and reviewed_function(obj, (module, qual)) is None:
        return f"a function that is not in REVIEWED_FUNCTIONS ({type(obj).__name__})"
    return None


# --- stdlib-data -------------------------------------------------------------------------------

STDLIB_CALL = {
    "builtins": ["set", "frozenset", "bytearray", "bytes", "complex", "slice", "range"],
    "copyreg": ["_reconstructor"],
    "_codecs": ["encode"],
    "datetime": ["date", "time", "datetime", "timedelta", "timezone"],
    "zoneinfo": ["ZoneInfo", "ZoneInfo._unpickle"],
    # with decimal's context (its signal classes are below) and `Decimal.as_tuple()`
    "decimal": ["Decimal", "Context", "DecimalTuple"],
    "fractions": ["Fraction"],
    "uuid": ["UUID", "SafeUUID"],
    "collections": [
        "OrderedDict",
        "defaultdict",
        "deque",
        "Counter",
        "ChainMap",
        "UserDict",
        "UserList",
        "UserString",
    ],
    # concrete paths too: making one touches no file (only its methods do, and a pickle calls
    # none); a config dict or a fitted pipeline's `memory=` keeps them
    "pathlib": ["PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath"],
    "ipaddress": [
        "IPv4Address",
        "IPv6Address",
        "IPv4Network",
        "IPv6Network",
        "IPv4Interface",
        "IPv6Interface",
    ],
    "array": ["array", "_array_reconstructor"],
    # a compiled pattern (`re.compile(...)` kept by a tokenizer or a config) and its flags
    "re": ["_compile", "RegexFlag"],
    # `time.gmtime()`/`localtime()` results
    "time": ["struct_time"],
    # a function with stored arguments (HistGradientBoosting's categorical preprocessing keeps
    # `partial(check_array, ...)`): the scanner and the guard accept only a global the policy
    # allows to call as its function, in the call and in its BUILD state (ArgRule::AllowedFunction)
    "functools": ["partial"],
    "types": ["SimpleNamespace"],
    "statistics": ["NormalDist"],
}
# Referenced as values: `copyreg._reconstructor(cls, object, None)`, `defaultdict(list)`,
# a `dtype=float` parameter, ...
STDLIB_REF = {
    "builtins": [
        "object",
        "list",
        "dict",
        "tuple",
        "int",
        "float",
        "str",
        "bool",
        "type",
        "NoneType",
        # the two constants that pickle by name (`...` in stored index expressions or hints)
        "Ellipsis",
        "NotImplemented",
    ],  # fmt: skip
    "datetime": ["tzinfo"],
    # a Context's `flags` and `traps` list these classes
    "decimal": [
        "Clamped",
        "DecimalException",
        "DivisionByZero",
        "FloatOperation",
        "Inexact",
        "InvalidOperation",
        "Overflow",
        "Rounded",
        "Subnormal",
        "Underflow",
    ],  # fmt: skip
}


def gen_stdlib() -> Profile:
    prof = Profile(
        "stdlib-data",
        "standard-library data types: containers, datetime/zoneinfo/timezone, decimal, fractions, "
        "uuid, collections, pathlib paths, ipaddress, array, statistics.NormalDist, compiled patterns, "
        "time.struct_time, functools.partial (of allowed functions only), Ellipsis, str methods as values",
    )
    for mode, table in ((CALL, STDLIB_CALL), (REF, STDLIB_REF)):
        for module, names in table.items():
            mod = importlib.import_module(module)
            for qual in names:
                obj: object = mod
                for part in qual.split("."):
                    obj = getattr(obj, part, None) if part != "NoneType" else type(None)
                assert obj is not None, (module, qual)
                prof.add(module, qual, mode)
    # str methods kept as values (VALUE_ONLY_FUNCTIONS)
    for module, qual in VALUE_ONLY_FUNCTIONS:
        if module == "builtins":
            assert value_only(resolve(module, qual)), qual
            prof.add(module, qual, REF)
    # pathlib's private layout moved (3.13: pathlib._local); the names above are what pickle writes
    # for 3.8-3.14 since the classes keep __module__ = "pathlib".
    return prof


# --- numpy -------------------------------------------------------------------------------------

NUMPY_EXCLUDED = re.compile(
    r"(^numpy\.(testing|tests|f2py|distutils|_pyinstaller|conftest|ctypeslib|lib\.npyio|lib\._npyio_impl"
    r"|lib\.format|lib\._datasource|_utils|_build_utils|typing|_typing|doc|compat|matlib|char|strings"
    r"|fft|linalg|exceptions|version|_distributor_init|__config__)|\.tests(\.|$)|\._?testing|\bconftest)"
)


# private modules whose names numpy's own reductions write (numpy 1 and 2)
NUMPY_PRIVATE_HOMES = frozenset(
    {
        "numpy._core.multiarray",
        "numpy._core.numeric",
        "numpy._core._internal",
        "numpy.random._pickle",
        "numpy.core.multiarray",
        "numpy.core.numeric",
    }
)


def numpy_core_aliases(prof: Profile) -> None:
    """numpy 1 pickles name ``numpy.core.X``; numpy 2 writes ``numpy._core.X``: list both."""
    for (module, qual), mode in list(prof.entries.items()):
        for a, b in (("numpy._core", "numpy.core"), ("numpy.core", "numpy._core")):
            if module == a or module.startswith(a + "."):
                prof.add(b + module[len(a) :], qual, mode)


def gen_numpy() -> Profile:
    import numpy as np

    prof = Profile(
        "numpy",
        "numpy arrays, scalars, dtypes, masked arrays, random generators and bit generators, "
        "polynomials, ufuncs and reviewed functions as values",
    )
    mods = walk("numpy", NUMPY_EXCLUDED)
    mods += [m for m in (import_quiet("numpy.core.multiarray"), import_quiet("numpy.core.numeric")) if m]
    core = importlib.import_module("numpy._core.multiarray")
    numeric = importlib.import_module("numpy._core.numeric")
    ma_core = importlib.import_module("numpy.ma.core")
    rnd_pickle = importlib.import_module("numpy.random._pickle")
    call: list[object] = [
        np.dtype,
        core._reconstruct,
        core.scalar,
        numeric._frombuffer,
        ma_core._mareconstruct,
        ma_core.MaskedConstant,
        np.random.Generator,
        np.random.RandomState,
        np.random.SeedSequence,
        importlib.import_module("numpy.random.bit_generator").SeedlessSeedSequence,
    ]
    call += [v for k, v in vars(rnd_pickle).items() if k.endswith("_ctor") and callable(v)]
    # StringDType's pickle helper (np.vectorize is not listed: calling it calls its `pyfunc`)
    internal = importlib.import_module("numpy._core._internal")
    call += [v for k, v in vars(internal).items() if k.startswith("_convert_to_stringdtype") and callable(v)]
    dtypes = importlib.import_module("numpy.dtypes")
    call += [getattr(dtypes, n) for n in dtypes.__all__ if isinstance(getattr(dtypes, n), type)]
    bitgen = np.random.BitGenerator
    for mod in mods:
        if mod.__name__.startswith("numpy.random"):
            for k, v in vars(mod).items():
                if isinstance(v, type) and issubclass(v, bitgen):
                    call.append(v)
                if k.startswith("__pyx_unpickle_") and callable(v):
                    call.append(v)
    poly = importlib.import_module("numpy.polynomial")
    call += [
        v for v in vars(poly).values() if isinstance(v, type) and issubclass(v, poly._polybase.ABCPolyBase)
    ]
    # the legacy polynomial class (`np.poly1d(np.polyfit(x, y, 2))`): coefficients and a name
    call.append(np.poly1d)
    # array classes: `_reconstruct(cls, shape, dtype)` calls them (numpy.memmap is not listed: it
    # maps files, and the core deny-lists it)
    call += [np.ndarray, np.matrix, np.recarray, ma_core.MaskedArray]
    ref: list[object] = [np.record, ma_core.mvoid]
    ref += sorted(set(np.sctypeDict.values()), key=lambda t: t.__name__)
    # the abstract scalar types too (`make_column_selector(dtype_include=np.number)`)
    ref += [
        v for v in vars(np).values() if isinstance(v, type) and issubclass(v, np.generic) and v not in ref
    ]
    # ufuncs kept as parameters (`FunctionTransformer(np.log1p)`): a reviewed list, as `call`
    # (a `ref` entry is never callable, see check())
    call += [getattr(np, n) for n in REVIEWED_UFUNCS if isinstance(getattr(np, n, None), np.ufunc)]
    # numpy functions kept as parameters (`FeatureAgglomeration(pooling_func=np.mean)`): values only
    ref += [getattr(np, n) for n in VALUE_ONLY_NUMPY if hasattr(np, n)]
    everything = call + ref
    found = locations(everything, mods, NUMPY_PRIVATE_HOMES)
    for objs, mode in ((call, CALL), (ref, REF)):
        for obj in objs:
            for module, qual in found[id(obj)]:
                if (NUMPY_EXCLUDED.search(module) and module != "numpy") or not module.startswith("numpy"):
                    continue
                prof.add(module, qual, mode)
    numpy_core_aliases(prof)
    return prof


# --- pandas ------------------------------------------------------------------------------------

PANDAS_EXCLUDED = re.compile(
    r"(^pandas\.(io|plotting|util|_testing|testing|tests|conftest|_config|api\.interchange|api\.executors|errors|compat"
    r"|core\.computation|core\.config_init|core\.interchange|core\._numba|_libs\.parsers"
    r"|_libs\.writers|_libs\.json|_libs\.testing|_libs\.sas|_libs\.window|_version|_typing"
    r"|core\.arrays\.arrow)|\.tests(\.|$))"
)
PANDAS_HELPER = re.compile(r"^(__pyx_unpickle_\w+|_new_\w*Index|_?_?\w*unpickle\w*)$")

# pandas.compat.pickle_compat._class_locations_map of pandas 1.x/2.x (pandas 3 keeps only a few):
# old (module, name) -> where the object lives now. Old pickles still name the left side.
PANDAS_HISTORIC = {
    ("pandas.core.sparse.array", "SparseArray"): ("pandas.core.arrays", "SparseArray"),
    ("pandas.core.base", "FrozenNDArray"): ("numpy", "ndarray"),
    ("pandas.core.indexes.frozen", "FrozenNDArray"): ("numpy", "ndarray"),
    ("pandas.core.base", "FrozenList"): ("pandas.core.indexes.frozen", "FrozenList"),
    ("pandas.core.series", "TimeSeries"): ("pandas.core.series", "Series"),
    ("pandas._sparse", "BlockIndex"): ("pandas._libs.sparse", "BlockIndex"),
    ("pandas.tslib", "Timestamp"): ("pandas._libs.tslibs.timestamps", "Timestamp"),
    ("pandas._libs.tslib", "Timestamp"): ("pandas._libs.tslibs.timestamps", "Timestamp"),
    ("pandas._period", "Period"): ("pandas._libs.tslibs.period", "Period"),
    ("pandas._libs.period", "Period"): ("pandas._libs.tslibs.period", "Period"),
    ("pandas.tslib", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.tslib", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.tslibs.nattype", "__nat_unpickle"): ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas.sparse.array", "SparseArray"): ("pandas.core.arrays", "SparseArray"),
    ("pandas.core.arrays.sparse.array", "SparseArray"): ("pandas.core.arrays", "SparseArray"),
    ("pandas.core.arrays.sparse.dtype", "SparseDtype"): ("pandas.core.dtypes.dtypes", "SparseDtype"),
    ("pandas.indexes.base", "_new_Index"): ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.indexes.base", "Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.indexes.numeric", "Float64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "UInt64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Float64Index"): ("pandas.core.indexes.base", "Index"),
    ("pandas.indexes.range", "RangeIndex"): ("pandas.core.indexes.range", "RangeIndex"),
    ("pandas.indexes.multi", "MultiIndex"): ("pandas.core.indexes.multi", "MultiIndex"),
    ("pandas.tseries.index", "_new_DatetimeIndex"): ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    ("pandas.tseries.index", "DatetimeIndex"): ("pandas.core.indexes.datetimes", "DatetimeIndex"),
    ("pandas.tseries.period", "PeriodIndex"): ("pandas.core.indexes.period", "PeriodIndex"),
    ("pandas.core.categorical", "Categorical"): ("pandas.core.arrays", "Categorical"),
    ("pandas.tseries.tdi", "TimedeltaIndex"): ("pandas.core.indexes.timedeltas", "TimedeltaIndex"),
    ("pandas.core.internals", "BlockManager"): ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.internals", "SingleBlockManager"): ("pandas.core.internals.managers", "SingleBlockManager"),
    ("pandas.core.internals.blocks", "new_block"): ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.internals.blocks", "Block"): ("pandas.core.internals.blocks", "Block"),
    ("pandas.core.internals.blocks", "ObjectBlock"): ("pandas.core.internals.blocks", "NumpyBlock"),
    ("pandas.core.internals.blocks", "FloatBlock"): ("pandas.core.internals.blocks", "NumpyBlock"),
    ("pandas.core.internals.blocks", "IntBlock"): ("pandas.core.internals.blocks", "NumpyBlock"),
    ("pandas.core.internals.blocks", "BoolBlock"): ("pandas.core.internals.blocks", "NumpyBlock"),
    ("pandas.core.internals.blocks", "DatetimeBlock"): ("pandas.core.internals.blocks", "DatetimeLikeBlock"),
    ("pandas.core.internals.blocks", "DatetimeTZBlock"): (
        "pandas.core.internals.blocks",
        "DatetimeLikeBlock",
    ),
    ("pandas.core.internals.blocks", "CategoricalBlock"): ("pandas.core.internals.blocks", "ExtensionBlock"),
}

# pytz is not a pandas dependency since pandas 3 but tz-aware frames written by pandas 1/2 name it.
# pytz._p(*args) rebuilds a zone from the validated tz database name; _UTC() returns the singleton.
PYTZ = [("pytz", "_p", CALL), ("pytz", "_UTC", CALL), ("pytz", "UTC", REF), ("pytz", "utc", REF)]
# dateutil classes whose constructor opens a path (tzfile(fileobj: str) -> open()): ref only
DATEUTIL_REF_ONLY = frozenset({"tzfile"})
# pandas' arrow-backed arrays (pandas 3's default `str` dtype when pyarrow is installed, ArrowDtype
# columns): `_restore_array((type_for_alias(name), length, null_count, offset, [py_buffer(data),
# ...], children, dictionary))`. Listed without importing pyarrow (an optional dependency).
PANDAS_PYARROW = [
    ("pyarrow.lib", "_restore_array", CALL),
    ("pyarrow.lib", "type_for_alias", CALL),
    ("pyarrow.lib", "py_buffer", CALL),
]
# singletons pickled by name (their __reduce__ returns a string)
PANDAS_SINGLETONS = [("pandas._libs.missing", "NA"), ("pandas", "NA")]


def gen_pandas() -> Profile:
    import pandas as pd

    prof = Profile(
        "pandas",
        "pandas frames, series, indexes, extension arrays and dtypes, timestamps, periods, offsets, "
        "intervals, the dateutil/pytz timezone constructors; old pandas paths",
    )
    mods = walk("pandas", PANDAS_EXCLUDED)
    call: list[object] = []
    seen: set[int] = set()
    for mod in mods:
        for k, v in vars(mod).items():
            vm = getattr(v, "__module__", None)
            if not isinstance(vm, str) or not (vm == "pandas" or vm.startswith("pandas.")):
                continue
            if PANDAS_EXCLUDED.search(vm) or id(v) in seen or denied_home(v):
                continue
            ok = is_data_class(v) or (
                callable(v) and not isinstance(v, type) and PANDAS_HELPER.match(k) and vm == mod.__name__
            )
            if ok:
                seen.add(id(v))
                call.append(v)
    assert pd.DataFrame in call and pd.Series in call and pd.DatetimeTZDtype in call
    dateutil_tz = import_quiet("dateutil.tz")
    dateutil_mods: list[types.ModuleType] = []
    if dateutil_tz is not None:
        dateutil_mods = walk("dateutil.tz", re.compile(r"win"))
        for mod in dateutil_mods:
            for v in vars(mod).values():
                if (
                    isinstance(v, type)
                    and issubclass(v, datetime.tzinfo)
                    and v.__module__.startswith("dateutil")
                ):
                    if id(v) not in seen:
                        seen.add(id(v))
                        call.append(v)
                elif callable(v) and PANDAS_HELPER.match(getattr(v, "__name__", "")) and id(v) not in seen:
                    if getattr(v, "__module__", None) == mod.__name__:  # dateutil's own unpickle helpers
                        seen.add(id(v))
                        call.append(v)
        rd = importlib.import_module("dateutil.relativedelta")
        call.append(rd.relativedelta)
        dateutil_mods.append(rd)
        # relativedelta(weekday=MO(1)), DateOffset(weekday=...), holiday offsets: `weekday(n, k)`
        common = importlib.import_module("dateutil._common")
        call.append(common.weekday)
        dateutil_mods.append(common)
    found = locations(
        call, mods + dateutil_mods, frozenset(m.__name__ for m in mods if "._libs" in m.__name__)
    )
    for obj in call:
        # dateutil's tzfile(path) opens the path: only its pickle helper `_tzfile._unpickle` is
        # callable (red-team F2); the class itself is that helper's (ref-only) argument
        mode = REF if getattr(obj, "__qualname__", "") in DATEUTIL_REF_ONLY else CALL
        for module, qual in found[id(obj)]:
            if not PANDAS_EXCLUDED.search(module) and module.startswith(("pandas", "dateutil")):
                prof.add(module, qual, mode)
    # old paths: pandas' own current compat map plus the historic one
    compat = import_quiet("pandas.compat.pickle_compat")
    old_map = dict(PANDAS_HISTORIC)
    if compat is not None:
        old_map.update(getattr(compat, "_class_locations_map", {}))
    for (old_mod, old_name), (new_mod, new_name) in sorted(old_map.items()):
        mode = prof.entries.get((new_mod, new_name))
        if (new_mod, new_name) == ("numpy", "ndarray"):
            mode = REF
        if mode is None:
            continue  # the target no longer exists (e.g. SparseSeries): nothing to alias
        prof.add(old_mod, old_name, mode)
    for module, qual, mode in PYTZ:
        prof.add(module, qual, mode)
    for module, qual, mode in PANDAS_PYARROW:
        prof.add(module, qual, mode)
    for module, qual in PANDAS_SINGLETONS:
        obj = importlib.import_module(module)
        assert getattr(obj, qual) is pd.NA, (module, qual)
        prof.add(module, qual, REF)
    return prof


# --- sklearn -----------------------------------------------------------------------------------

SKLEARN_EXCLUDED = re.compile(
    r"(^sklearn\.(datasets|externals|_build_utils|__check_build|experimental|conftest|_config"
    r"|utils\._testing|utils\.estimator_checks|utils\._show_versions|utils\.parallel|utils\._joblib"
    r"|utils\._optional_dependencies|utils\.fixes|_min_dependencies|_distributor_init|callback)"
    r"|\.tests(\.|$)|\._?testing)"
)
SKLEARN_HELPER = re.compile(r"^(__pyx_unpickle_\w+|newObj)$")


def gen_sklearn() -> Profile:
    import sklearn
    from sklearn.utils import all_estimators

    prof = Profile(
        "sklearn",
        "every scikit-learn class (estimators with trees, losses, binners, kernels, metrics helpers), "
        "the reviewed score functions (SelectKBest's, the registered scorers' metrics), scipy.sparse "
        "containers, joblib's array wrapper, the methods estimators keep bound to themselves (BOUND_METHODS)",
    )
    mods = walk("sklearn", SKLEARN_EXCLUDED)
    call: list[object] = []
    ref: list[object] = []
    seen: set[int] = set()
    for mod in mods:
        for k, v in vars(mod).items():
            vm = getattr(v, "__module__", None)
            if not isinstance(vm, str) or not vm.startswith("sklearn") or SKLEARN_EXCLUDED.search(vm):
                continue
            if id(v) in seen:
                continue
            if denied_home(v):
                continue
            if is_data_class(v) or (callable(v) and SKLEARN_HELPER.match(k) and vm == mod.__name__):
                seen.add(id(v))
                call.append(v)
    missing = [c for _, c in all_estimators() if id(c) not in seen]
    assert not missing, f"all_estimators() not covered: {missing}"
    # functions estimators keep as parameters (`SelectKBest(score_func=f_classif)`): only the
    # reviewed ones (REVIEWED_FUNCTIONS), as `call`; other metric/kernel functions are not listed
    # (estimators keep their names as strings unless the user passed a callable).
    for (module, qual), _reason in REVIEWED_FUNCTIONS.items():
        if module.startswith("sklearn."):
            v = getattr(importlib.import_module(module), qual)
            if id(v) not in seen:
                seen.add(id(v))
                call.append(v)
    # the metric functions of the registered scorers (`scoring="accuracy"`), the reviewed ones
    from sklearn.metrics import _scorer

    for scorer in _scorer._SCORERS.values():
        v = getattr(scorer, "_score_func", None)
        key = (getattr(v, "__module__", None), getattr(v, "__qualname__", None))
        if v is None or id(v) in seen:
            continue
        if key not in REVIEWED_SCORER_FUNCTIONS:
            print(f"sklearn: scorer function {key[0]}.{key[1]} is not reviewed: left out", file=sys.stderr)
            continue
        seen.add(id(v))
        call.append(v)
    # scipy.sparse containers (fitted attributes of estimators trained on sparse input)
    sparse_mods = walk("scipy.sparse", re.compile(r"(linalg|csgraph|tests|_sparsetools)"))
    import scipy.sparse as sp

    bases = tuple(b for b in (getattr(sp, "spmatrix", None), getattr(sp, "sparray", None)) if b)
    for mod in sparse_mods:
        for v in vars(mod).values():
            if isinstance(v, type) and issubclass(v, bases) and id(v) not in seen:
                seen.add(id(v))
                call.append(v)
    # scipy objects estimators keep: splines and interpolators (SplineTransformer, isotonic
    # regression). Not scipy.stats distributions: `rv_generic.__setstate__` exec()s a template
    # string from the pickled state (red-team F1); RandomizedSearchCV pickles holding them are
    # refused unless the user allows the distribution classes by name.
    interp = importlib.import_module("scipy.interpolate")
    for attr in interp.__all__:
        v = getattr(interp, attr, None)
        if is_data_class(v) and id(v) not in seen and not denied_home(v):
            seen.add(id(v))
            call.append(v)
    # interp1d's evaluation methods (reviewed, REVIEWED_FUNCTIONS)
    for (module, qual), _review in REVIEWED_FUNCTIONS.items():
        if module == "scipy.interpolate._interpolate":
            v = resolve(module, qual)
            if v is not None and id(v) not in seen:
                seen.add(id(v))
                call.append(v)
    # scipy's array-API shim: BSpline keeps `xp.asarray` as a value (reviewed, REVIEWED_FUNCTIONS)
    aliases = import_quiet("scipy._lib.array_api_compat.numpy._aliases")
    if aliases is not None:
        call.append(aliases.asarray)
    scipy_mods = [interp] + ([aliases] if aliases is not None else [])
    # functions kept as values that a safe load never calls (VALUE_ONLY_FUNCTIONS): BisectingKMeans'
    for module, qual in VALUE_ONLY_FUNCTIONS:
        if module.startswith("sklearn."):
            v = resolve(module, qual)
            if v is not None and id(v) not in seen:
                seen.add(id(v))
                ref.append(v)
    joblib_mods: list[types.ModuleType] = []
    npp = import_quiet("joblib.numpy_pickle")
    if npp is not None:
        call.append(npp.NumpyArrayWrapper)
        joblib_mods.append(npp)
    found = locations(call + ref, mods + sparse_mods + scipy_mods + joblib_mods)
    for objs, mode in ((call, CALL), (ref, REF)):
        for obj in objs:
            for module, qual in found[id(obj)]:
                if not SKLEARN_EXCLUDED.search(module) and module.startswith(("sklearn", "scipy", "joblib")):
                    prof.add(module, qual, mode)
    if npp is not None:  # joblib once lived inside scikit-learn
        prof.add("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper", CALL)
    # methods estimators keep bound to themselves (BOUND_METHODS), named through their class
    for module, qual in BOUND_METHODS:
        if resolve(module, qual) is not None:
            prof.add(module, qual, REF)
    assert ("sklearn.tree._tree", "Tree") in prof.entries
    del sklearn
    return prof


FORBIDDEN = re.compile(
    r"(^(os|posix|nt|subprocess|sys|shutil|socket|importlib|pkgutil|pydoc|runpy|code|codeop|pickle|_pickle"
    r"|marshal|ctypes|operator|_operator|functools|io|_io|webbrowser|this|antigravity)$)"
    r"|(^numpy\.(testing|lib\.npyio|load|save))|(^pandas\.io)|(^sklearn\.datasets)"
)
FORBIDDEN_NAMES = {
    ("builtins", n)
    for n in (
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "print",
        "help",
        "exit",
        "quit",
        "memoryview",
    )
} | {("numpy", n) for n in ("load", "save", "savez", "loadtxt", "fromfile", "genfromtxt", "memmap")}


def check(prof: Profile) -> None:
    problems = [
        f"{module}.{qual} ({mode}): {why}"
        for (module, qual), mode in sorted(prof.entries.items())
        if (why := entry_problem(module, qual, mode))
    ]
    assert not problems, f"{prof.name}: " + "; ".join(problems)
    for module, qual in prof.entries:
        if (module, qual) in DENIED_HOME_EXEMPT:
            continue  # reviewed one by one (DENIED_HOME_EXEMPT)
        assert not FORBIDDEN.search(module), f"{prof.name}: forbidden module {module}.{qual}"
        if (module, qual) in FORBIDDEN_NAMES:
            raise AssertionError(f"{prof.name}: {module}.{qual} is forbidden")
        assert not re.search(r"(read_|to_pickle|load|save|eval|exec|system|popen|spawn)", qual.lower()) or (
            qual.startswith("__pyx_unpickle") or "unpickle" in qual.lower() or qual.endswith("Loss")
        ), f"{prof.name}: suspicious name {module}.{qual}"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    import numpy
    import pandas
    import scipy
    import sklearn

    versions = (
        f"Python {sys.version.split()[0]}, numpy {numpy.__version__}, pandas {pandas.__version__}, "
        f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}"
    )
    for prof in (gen_stdlib(), gen_numpy(), gen_pandas(), gen_sklearn()):
        check(prof)
        prof.write(out / f"{prof.name}.txt", versions)
        n_call = sum(1 for m in prof.entries.values() if m == CALL)
        print(f"{prof.name}: {len(prof.entries)} entries ({n_call} call, {len(prof.entries) - n_call} ref)")


if __name__ == "__main__":
    main()
