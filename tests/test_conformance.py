"""CPython's own pickle test suite (Lib/test/pickletester.py) against brinery.

tests/conformance/pickletester_harness.py wires pickletester's test classes to a module the way
Lib/test/test_pickle.py wires the C accelerator ``_pickle``, plus interop classes in both
directions against the stdlib. It runs in a subprocess: a crash fails the test instead of killing
pytest. Requirement: 0 failures and 0 errors, and nothing skipped except what the stdlib itself
skips here (bigmem tests without --memlimit, 32-bit-only tests, and the one test pickletester
skips structurally in InMemoryTests).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

HARNESS = "tests/conformance/pickletester_harness.py"

# "test_x (__main__.Class.test_x) ... ok" (unittest verbosity 2)
RESULT_LINE = re.compile(r"^(test\w*) \(__main__\.(\w+)\.\1\)(?: \(.*\))? \.\.\. (.*)$", re.M)
TOTAL_LINE = re.compile(r"^TOTAL\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+[\d.]+$", re.M)

ALLOWED_SKIPS = [
    # BigmemPickleTests-style tests: they need --memlimit and 5-32 GB of RAM.
    re.compile(r"^not enough memory: [\d.]+G minimum needed$"),
    re.compile(r"^test is only meaningful on 32-bit builds$"),
]
# pickletester's test_evil_pickler_mutating_collection needs a Pickler class, which the
# InMemoryTests (dumps/loads only) don't have; it runs in every class that has one.
STRUCTURAL_SKIP = ("InMemoryTests", "test_evil_pickler_mutating_collection")


def run_harness(run_python, describe_proc, module: str):
    proc = run_python(
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
        HARNESS,
        module,
        "-v",
        timeout=600,
    )
    total = TOTAL_LINE.search(proc.stdout)
    assert total, f"no TOTAL line in the harness output\n{describe_proc(proc)}"
    results = {(cls, name): outcome for name, cls, outcome in RESULT_LINE.findall(proc.stdout)}
    return proc, tuple(int(g) for g in total.groups()), results


@pytest.fixture(scope="module")
def brinery_run(run_python, describe_proc):
    return run_harness(run_python, describe_proc, "brinery")


def skips(results):
    return {
        key: outcome.removeprefix("skipped ")[1:-1]
        for key, outcome in results.items()
        if outcome.startswith("skipped ")
    }


def test_zero_failures_and_errors(brinery_run, describe_proc):
    proc, (ran, failed, errors, skipped), results = brinery_run
    assert (failed, errors) == (0, 0), describe_proc(proc)
    assert proc.returncode == 0, describe_proc(proc)
    assert ran > 500, f"only {ran} tests ran"
    # Every test printed exactly one result line that we understood.
    assert len(results) == ran, f"parsed {len(results)} result lines of {ran}"
    outcomes = Counter("skipped" if o.startswith("skipped ") else o for o in results.values())
    assert outcomes == {"ok": ran - skipped, "skipped": skipped}, outcomes


def test_only_bigmem_and_32bit_skips(brinery_run):
    _, (_, _, _, skipped), results = brinery_run
    skipped_tests = skips(results)
    assert len(skipped_tests) == skipped
    unexpected = {
        key: reason
        for key, reason in skipped_tests.items()
        if key != STRUCTURAL_SKIP and not any(p.match(reason) for p in ALLOWED_SKIPS)
    }
    assert not unexpected, f"skips that are neither bigmem nor 32-bit: {unexpected}"


def test_structurally_skipped_test_runs_elsewhere(brinery_run):
    _, _, results = brinery_run
    name = STRUCTURAL_SKIP[1]
    ran_in = {cls for (cls, test), outcome in results.items() if test == name and outcome == "ok"}
    assert {"PicklerTests", "DumpX_LoadRef", "DumpRef_LoadX"} <= ran_in, ran_in


def test_skips_same_as_stdlib(brinery_run, run_python, describe_proc):
    """brinery skips exactly the tests the C accelerator skips under the same harness."""
    _, _, results = brinery_run
    proc, (_, failed, errors, _), stdlib_results = run_harness(run_python, describe_proc, "pickle")
    assert (failed, errors) == (0, 0), describe_proc(proc)
    assert set(stdlib_results) == set(results)
    assert skips(results) == skips(stdlib_results)
