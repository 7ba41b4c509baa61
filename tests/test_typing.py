"""Typing: the hand-written ``brinery/_native.pyi`` matches the built module, ``py.typed`` ships,
code written against ``pickle`` type-checks unchanged against ``brinery``, and the runtime
signatures are the stdlib's (what ``inspect.signature`` and ``help()`` show).
"""

from __future__ import annotations

import inspect
import io
import pickle
import re
from pathlib import Path

import brinery
import brinery._native
import pytest

PACKAGE = Path(brinery.__file__).parent


def test_py_typed_and_stub_ship_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_native.pyi").is_file()


def test_stubtest(run_python, describe_proc, tmp_path, repo_root):
    allowlist = repo_root / "tests" / "stubtest_allowlist.txt"
    args = ["brinery"]
    if allowlist.exists():
        args += ["--allowlist", str(allowlist)]
    proc = run_python(
        "import sys; from mypy.stubtest import main; sys.exit(main())", *args, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, describe_proc(proc)
    assert "Success: no issues found" in proc.stdout, describe_proc(proc)


def test_stub_names_are_the_runtime_names():
    stub = (PACKAGE / "_native.pyi").read_text()
    for name in brinery._native.__all__:
        assert re.search(rf"^(class |def )?{name}\b", stub, re.M), name


# --------------------------------------------------------------------------------------------
# Code written for the stdlib's pickle type-checks against brinery (mypy, strict)
# --------------------------------------------------------------------------------------------

CLIENT = """
from __future__ import annotations

import io
from typing import Any

import brinery as pickle


class MyPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return None

    def reducer_override(self, obj: Any) -> Any:
        return NotImplemented


class MyUnpickler(pickle.Unpickler):
    def find_class(self, module_name: str, global_name: str, /) -> Any:
        return super().find_class(module_name, global_name)

    def persistent_load(self, pid: Any) -> Any:
        return pid


def roundtrip(obj: object) -> object:
    data: bytes = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    data = pickle.dumps(obj, protocol=2, fix_imports=False)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, 5, buffer_callback=buffers.append)
    f = io.BytesIO()
    pickle.dump(obj, f, pickle.DEFAULT_PROTOCOL)
    p = MyPickler(f, 4)
    p.fast = True
    p.dispatch_table = {}
    p.dump(obj)
    p.clear_memo()
    memo: dict[int, tuple[int, Any]] = p.memo.copy()
    p.memo = memo
    f.seek(0)
    u = pickle.Unpickler(f, encoding="latin1", errors="strict", buffers=buffers)
    u.persistent_load = lambda pid: pid
    u.memo.clear()
    first = u.load()
    second = pickle.load(f, fix_imports=True)
    try:
        return pickle.loads(data, buffers=buffers) or first or second
    except pickle.UnpicklingError:
        raise
    except pickle.PickleError:
        return None


roundtrip([1, 2])
reveal_type(pickle.dumps)
reveal_type(pickle.Unpickler(io.BytesIO()).memo)
"""

BAD_CLIENT = """
import io
import brinery as pickle

pickle.dumps(1, protocol="5")
pickle.loads("not bytes")
pickle.Pickler(io.BytesIO()).dump(1, 2)
pickle.Unpickler(io.BytesIO(), encoding=1)
"""


def run_mypy(run_python, tmp_path, source: str):
    (tmp_path / "client.py").write_text(source)
    return run_python(
        "import sys; from mypy import api; out, err, rc = api.run(sys.argv[1:]); "
        "print(out, end=''); print(err, end='', file=sys.stderr); sys.exit(rc)",
        "--strict",
        "--no-incremental",
        "--cache-dir=/dev/null",
        "client.py",
        cwd=tmp_path,
        timeout=300,
    )


def test_client_code_type_checks(run_python, describe_proc, tmp_path):
    proc = run_mypy(run_python, tmp_path, CLIENT)
    notes = [line for line in proc.stdout.splitlines() if "error:" in line]
    assert not notes, describe_proc(proc)
    assert 'Revealed type is "def (obj: Any, protocol: int | None =' in proc.stdout, proc.stdout
    assert 'Revealed type is "brinery._native.UnpicklerMemoProxy"' in proc.stdout, proc.stdout


def test_misuse_is_reported(run_python, tmp_path):
    proc = run_mypy(run_python, tmp_path, BAD_CLIENT)
    errors = [line for line in proc.stdout.splitlines() if "error:" in line]
    assert [int(line.split(":")[1]) for line in errors] == [5, 6, 7, 8], proc.stdout


# --------------------------------------------------------------------------------------------
# Runtime signatures equal the stdlib's
# --------------------------------------------------------------------------------------------

CALLABLES = [
    "dump",
    "dumps",
    "load",
    "loads",
    "Pickler",
    "Unpickler",
    "Pickler.dump",
    "Pickler.clear_memo",
    "Unpickler.load",
    "Unpickler.find_class",
]


def resolve(module, dotted: str):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", CALLABLES)
def test_signature_matches_stdlib(name):
    ours = str(inspect.signature(resolve(brinery, name)))
    if name == "Unpickler":  # brinery adds one keyword-only parameter: the safe-load `policy`
        ours = ours.replace(", policy=None)", ")")
    assert ours == str(inspect.signature(resolve(pickle, name)))


@pytest.mark.parametrize(
    "args",
    [
        (2, False),
        (2, True, None),
        (5, True, list.append.__get__([])),
    ],
    ids=["fix_imports", "fix_imports+callback", "callback"],
)
def test_pickler_accepts_positional_arguments_like_stdlib(args):
    """``pickle.Pickler(file, protocol, fix_imports, buffer_callback)``: all four are positional."""
    outputs = []
    for module in (pickle, brinery):
        f = io.BytesIO()
        module.Pickler(f, *args).dump(["x", b"y"])
        outputs.append(f.getvalue())
    assert outputs[0] == outputs[1]


def test_pickler_dump_takes_obj_positionally_only():
    with pytest.raises(TypeError):
        pickle.Pickler(io.BytesIO()).dump(obj=1)
    with pytest.raises(TypeError):
        brinery.Pickler(io.BytesIO()).dump(obj=1)
