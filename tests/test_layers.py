"""The shape of the code: layers that import only downward, no import circles, modules of one job, and
Optuna pinned to the versions whose private names were checked."""

import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import grimp
import optuna
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from bitsmith.search import _optuna

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "bitsmith"
MAX_LINES = 400


def cycles(package: str) -> list[list[str]]:
    """Every group of modules that import each other in a circle (in-function imports count too)."""
    graph = grimp.build_graph(package)
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    edges = {m: [i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules and
                 (i == package or i.startswith(package + "."))] for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for m in modules:
        if m not in index:
            visit(m)
    return found


def test_no_module_takes_part_in_an_import_circle():
    assert cycles("bitsmith") == []


def test_a_circle_hidden_in_a_function_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "circlepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from circlepkg.high import g  # lazy: still a circle\n")
    (pkg / "high.py").write_text("from circlepkg.low import f\n\ndef g():\n    return f\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cycles("circlepkg") == [["circlepkg.high", "circlepkg.low"]]


def test_import_contracts_are_kept():
    """The layers in pyproject.toml, as CI checks them (`lint-imports`)."""
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"Contracts: (\d+) kept, 0 broken", run.stdout)


def test_lint_imports_fails_on_an_upward_import(tmp_path):
    """The contracts can fail: a copy of the package whose errors module imports the command line breaks them."""
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "bitsmith", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "bitsmith" / "errors.py").write_text((SRC / "errors.py").read_text() + textwrap.dedent("""

        def _upward():
            from bitsmith.cli import main  # noqa: F401
        """))
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(copy), "PATH": ""})
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "bitsmith.errors is not allowed to import bitsmith.cli" in run.stdout


def test_modules_do_one_job_each():
    """No module is longer than about MAX_LINES lines unless its docstring says why it must be."""
    long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_LINES and "must be longer" not in text.split('"""')[1]:
            long.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
    assert long == []


def test_optuna_is_a_version_whose_private_names_were_checked():
    """search/_optuna.py boxes every private Optuna name; pyproject pins Optuna to the minors it lists."""
    installed = Version(optuna.__version__)
    assert f"{installed.major}.{installed.minor}" in _optuna.TESTED, (
        f"Optuna {installed} was never checked: run scripts/optuna-conformance.sh, then add its minor version to "
        "TESTED in src/bitsmith/search/_optuna.py and to the pin in pyproject.toml")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = SpecifierSet(next(d for d in deps if re.match(r"optuna\b", d))[len("optuna"):])
    for tested in _optuna.TESTED:
        major, minor = map(int, tested.split("."))
        assert Version(f"{major}.{minor}.0") in spec and Version(f"{major}.{minor}.99") in spec
    untested = {Version(f"{m}.{n}.0") for m in range(3, 8) for n in range(0, 12)} - {
        Version(f"{t}.0") for t in _optuna.TESTED}
    assert not [v for v in untested if v in spec], "pyproject.toml admits an Optuna minor version never checked"


@pytest.mark.parametrize("name", ["._log_number_offset", "._thread_lock", "._replay_result", "._write_log",
                                  "._sync_with_backend", "._trial_id", "._populate_tree", "optuna._hypervolume",
                                  "journal._storage", "._last_created_trial_id_by_this_process",
                                  "._study_id_to_trial_ids", "._create_new_trial"])
def test_private_optuna_names_appear_only_in_their_box(name):
    pattern = re.compile(re.escape(name) + r"\b")
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if pattern.search(p.read_text())]
    assert users == ["search/_optuna.py"]
