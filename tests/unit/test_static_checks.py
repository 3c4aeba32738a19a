"""The code's static health, checked with every test run: lint, format, types, import cycles.

ruff and mypy are configured in pyproject.toml and installed by the test extra; a finding fails
the suite with the tools' own report. Missing tools are skipped locally and fail under CI=true.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "triggers"


def _tool(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_finds_nothing() -> None:
    _tool("ruff")
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_applied() -> None:
    _tool("ruff")
    done = _run("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout + done.stderr


def test_mypy_finds_nothing() -> None:
    _tool("mypy")
    # The cache lives outside the tree: a clean checkout stays clean.
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / f"triggers-mypy-cache-{os.getuid()}"
    done = _run("mypy", "--cache-dir", str(cache))
    assert done.returncode == 0, done.stdout + done.stderr


# -- import cycles -------------------------------------------------------------------------------


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (lazily or under TYPE_CHECKING too),
    without a package's edges to its own submodules and a submodule's to its parents."""
    files = {_module_name(path, root): path for path in root.rglob("*.py")}
    modules = {name: is_package for name, is_package in files}
    graph: dict[str, set[str]] = {}
    for (name, is_package), path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(t for t in _imported(name, is_package, node) if t in modules)
        graph[name] = {
            t
            for t in targets
            if t != name
            and not (is_package and t.startswith(name + "."))
            and not (modules[t] and name.startswith(t + "."))
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_the_cycle_check_sees_lazy_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def thing():\n    from . import a\n")
    (package / "c.py").write_text("from pkg import b\n")
    graph = {k.split(".", 1)[1]: v for k, v in import_graph(package).items() if "." in k}
    assert graph["a"] == {"pkg.b"} and graph["c"] == {"pkg.b"}
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_the_core_never_imports_the_function_the_operator_tools_or_the_desk() -> None:
    """The data path (events -> rules -> plan -> dispatch -> ledger/runners) stands alone:
    what is deployed, operated or run on a desk builds on it, never the other way round."""
    core = ("events", "rules", "plan", "dispatch", "ledger", "runners", "errors")
    outer = ("function", "ops", "local", "emulators", "cli", "main")

    def role(module: str) -> str:  # triggers.ledger.base -> ledger
        return (module.split(".") + [""])[1]

    offending = {
        (module, target)
        for module, targets in import_graph(PACKAGE).items()
        if role(module) in core
        for target in targets
        if role(target) in outer
    }
    assert offending == set()
