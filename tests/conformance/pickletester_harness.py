#!/usr/bin/env python3
# Copied from the project brief's shared/conformance/pickletester_harness.py; runs CPython's own
# Lib/test/pickletester.py against a module. tests/test_conformance.py drives it.
"""Run CPython's own pickle conformance suite (Lib/test/pickletester.py), wired
exactly the way Lib/test/test_pickle.py wires the C accelerator `_pickle`,
against any module exposing dump/dumps/load/loads/Pickler/Unpickler.

  python harness.py pickle            # stdlib (C accelerator _pickle)
  python harness.py pickle:py         # stdlib pure-Python pickle._Pickler/_Unpickler
  python harness.py brinery -v -k frame --only PicklerTests,InMemoryTests
  python harness.py brinery --memlimit 16G   # also run the BigmemPickleTests for real
Needs the interpreter's `test` package (Lib/test; Debian: libpython3.X-testsuite).
Tested on CPython 3.10-3.13. fail/error counts are per failing subTest.
"""
import argparse, collections, importlib, pickle, sys, time, types, unittest
from test import support, pickletester as pt, test_pickle as tp

def load_target(name):
    if name == "pickle:py":          # pure-Python reference implementation
        return types.SimpleNamespace(
            __name__="pickle:py", dump=pickle._dump, dumps=pickle._dumps,
            load=pickle._load, loads=pickle._loads,
            Pickler=pickle._Pickler, Unpickler=pickle._Unpickler)
    return importlib.import_module(name)

def build(M, ref, errors):
    """Return {name: TestCase class}; mirrors test_pickle.py's C* classes."""
    st = staticmethod
    if errors == "c":    # the _pickle contract: everything surfaces as UnpicklingError
        bad_stack = truncated = (pickle.UnpicklingError,)
    else:                # the pickle._Unpickler contract (lenient)
        bad_stack, truncated = (tp.PyUnpicklerTests.bad_stack_errors,
                                tp.PyUnpicklerTests.truncated_errors)
    T = collections.OrderedDict()
    def mk(name, bases, **ns):
        T[name] = type(name, tuple(bases), ns)

    mk("ModuleTests", [pt.AbstractPickleModuleTests, unittest.TestCase],
       dump=st(M.dump), dumps=st(M.dumps), load=st(M.load), loads=st(M.loads),
       Pickler=M.Pickler, Unpickler=M.Unpickler)
    mk("UnpicklerTests", [tp.PyUnpicklerTests], unpickler=M.Unpickler,
       bad_stack_errors=bad_stack, truncated_errors=truncated)
    if hasattr(tp, "PyPicklingErrorTests"):                       # 3.13+
        mk("PicklingErrorTests", [tp.PyPicklingErrorTests], pickler=M.Pickler)
    mk("PicklerTests", [tp.PyPicklerTests], pickler=M.Pickler, unpickler=M.Unpickler)
    mk("InMemoryTests", [tp.InMemoryPickleTests],
       dumps=lambda self, arg, protocol=None, **kw: M.dumps(arg, protocol, **kw),
       loads=lambda self, buf, **kw: M.loads(buf, **kw),
       bad_stack_errors=bad_stack, truncated_errors=truncated)
    mk("PersPicklerTests", [tp.PyPersPicklerTests], pickler=M.Pickler, unpickler=M.Unpickler)
    mk("IdPersPicklerTests", [tp.PyIdPersPicklerTests], pickler=M.Pickler,
       unpickler=M.Unpickler,
       persistent_load_error=getattr(M, "UnpicklingError", pickle.UnpicklingError))
    objbase = getattr(tp, "CPicklerUnpicklerObjectTests", None) if errors == "c" else None
    mk("PicklerUnpicklerObjectTests", [objbase or tp.PyPicklerUnpicklerObjectTests],
       pickler_class=M.Pickler, unpickler_class=M.Unpickler)
    mk("DispatchTableTests", [tp.PyDispatchTableTests], pickler_class=M.Pickler)
    mk("ChainDispatchTableTests", [tp.PyChainDispatchTableTests], pickler_class=M.Pickler)
    custom = type("CustomPickler", (M.Pickler, pt.AbstractCustomPicklerClass), {})
    mk("HookTests", [tp.PyPicklerHookTests], pickler_class=custom)
    # interoperability with a reference implementation, both directions
    mk("DumpX_LoadRef", [tp.PyPicklerTests], pickler=M.Pickler, unpickler=ref.Unpickler)
    mk("DumpRef_LoadX", [tp.PyPicklerTests], pickler=ref.Pickler, unpickler=M.Unpickler)
    # Deliberately NOT run: SizeofTests / HeapTypesTests (CPython object layout),
    # CompatPickleTests (checks the _compat_pickle tables, not an implementation).
    return T

class Result(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.per = collections.defaultdict(collections.Counter)
        self.t = collections.Counter()
    def _c(self, test): return type(test).__name__
    def startTest(self, test):
        self._t0 = time.perf_counter(); super().startTest(test)
    def stopTest(self, test):
        self.t[self._c(test)] += time.perf_counter() - self._t0; super().stopTest(test)
    def addFailure(self, test, err):
        self.per[self._c(test)]["fail"] += 1; super().addFailure(test, err)
    def addError(self, test, err):
        self.per[self._c(test)]["error"] += 1; super().addError(test, err)
    def addSkip(self, test, reason):
        self.per[self._c(test)]["skip"] += 1; super().addSkip(test, reason)
    def addSubTest(self, test, sub, err):
        if err is not None:
            k = "fail" if issubclass(err[0], test.failureException) else "error"
            self.per[self._c(test)][k] += 1
        super().addSubTest(test, sub, err)

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module")
    ap.add_argument("--ref", default=None, help="interop partner (default: pickle, "
                    "or pickle:py when testing pickle itself)")
    ap.add_argument("--errors", choices=["c", "py"], default=None,
                    help="which unpickler error contract to hold the module to "
                         "(default: py for pickle:py, else c)")
    ap.add_argument("--only", default="", help="comma-separated class names")
    ap.add_argument("-k", action="append", default=[], help="test name substring")
    ap.add_argument("--memlimit", default=None, help="e.g. 16G: run bigmem tests")
    ap.add_argument("--list", action="store_true", help="list classes/test counts")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--failing", default=None, help="write failing test ids here")
    a = ap.parse_args()
    M = load_target(a.module)
    ref = load_target(a.ref or ("pickle:py" if a.module == "pickle" else "pickle"))
    errors = a.errors or ("py" if a.module == "pickle:py" else "c")
    for exc in ("PickleError", "PicklingError", "UnpicklingError"):
        E = getattr(M, exc, None)
        if E is not None and not issubclass(E, getattr(pickle, exc)):
            print(f"WARNING: {a.module}.{exc} is not a subclass of pickle.{exc}; "
                  "pickletester asserts on pickle.* exception classes")
    if a.memlimit:
        support.set_memlimit(a.memlimit)
    classes = build(M, ref, errors)
    if a.only:
        classes = {k: v for k, v in classes.items() if k in a.only.split(",")}
    loader = unittest.TestLoader()
    if a.k:
        loader.testNamePatterns = [f"*{p}*" for p in a.k]
    suite = unittest.TestSuite()
    counts = {}
    for name, cls in classes.items():
        s = loader.loadTestsFromTestCase(cls)
        counts[name] = s.countTestCases()
        suite.addTest(s)
    if a.list:
        for n, c in counts.items():
            print(f"{n:30s} {c:4d}")
        print(f"{'TOTAL':30s} {sum(counts.values()):4d}")
        return 0
    print(f"target={a.module} ref={getattr(ref, '__name__', ref)} errors={errors} "
          f"python={sys.version.split()[0]}", flush=True)
    runner = unittest.TextTestRunner(verbosity=2 if a.v else 1, resultclass=Result,
                                     stream=sys.stdout)
    t0 = time.perf_counter()
    r = runner.run(suite)
    dt = time.perf_counter() - t0
    print(f"\n{'class':30s} {'tests':>5s} {'fail':>5s} {'error':>5s} {'skip':>5s} {'secs':>7s}")
    for n in classes:
        p = r.per[n]
        print(f"{n:30s} {counts[n]:5d} {p['fail']:5d} {p['error']:5d} {p['skip']:5d} "
              f"{r.t[n]:7.2f}")
    print(f"{'TOTAL':30s} {r.testsRun:5d} {len(r.failures):5d} {len(r.errors):5d} "
          f"{len(r.skipped):5d} {dt:7.2f}")
    if a.failing:
        with open(a.failing, "w") as f:
            for t, _ in r.failures + r.errors:
                f.write(t.id() + "\n")
    return 0 if r.wasSuccessful() else 1

if __name__ == "__main__":
    sys.exit(main())
