"""The type information that ships with fastnll (py.typed, the stubs), checked with mypy."""
# mypy --strict on a usage file, deliberate misuses mypy must reject, and the stubs against the
# runtime signatures (so the stubs cannot drift from the code).
import ast
import inspect
import os
import re
import subprocess
import sys
import sysconfig

import pytest

import fastnll

HERE = os.path.join(os.path.dirname(__file__), "typing")
PKG = os.path.dirname(fastnll.__file__)
STUB = os.path.join(PKG, "__init__.pyi")


def test_type_information_ships_with_the_package():
    assert os.path.isfile(os.path.join(PKG, "py.typed"))
    assert os.path.isfile(STUB)


def _stub_functions():
    """name -> the last definition in the stub (the widest overload, or the only one)."""
    tree = ast.parse(open(STUB).read())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("name", [n for n in fastnll.__all__ if callable(getattr(fastnll, n))])
def test_stub_signature_matches_the_runtime(name):
    stub = _stub_functions()[name]
    runtime = inspect.signature(getattr(fastnll, name))
    a = stub.args
    params = a.posonlyargs + a.args + a.kwonlyargs
    assert [p.arg for p in params] == list(runtime.parameters), name
    n_defaults = len(a.defaults) + sum(d is not None for d in a.kw_defaults)
    with_default = [p for p in runtime.parameters.values() if p.default is not p.empty]
    assert n_defaults == len(with_default), name


def _mypy(path, tmp_path):
    pytest.importorskip("mypy")
    env = dict(os.environ)
    root = os.path.dirname(PKG)
    # An installed fastnll is found through py.typed; an in-place build through MYPYPATH
    # (mypy refuses site-packages there).
    site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    if os.path.realpath(root) not in site:
        env["MYPYPATH"] = root
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
         str(tmp_path / "mypy"), "--python-executable", sys.executable, path],
        capture_output=True, text=True, env=env, cwd=HERE)
    return out.returncode, out.stdout + out.stderr


def test_mypy_strict_accepts_typical_use(tmp_path):
    code, report = _mypy("usage.py", tmp_path)
    assert code == 0, report


def test_mypy_rejects_misuse(tmp_path):
    code, report = _mypy("misuse.py", tmp_path)
    assert "import-untyped" not in report and "import-not-found" not in report, report
    flagged = {int(m.group(1)) for m in re.finditer(r"misuse\.py:(\d+): error", report)}
    with open(os.path.join(HERE, "misuse.py")) as f:
        marked = {i for i, line in enumerate(f, 1) if "# E:" in line}
    assert code == 1 and flagged == marked, report
