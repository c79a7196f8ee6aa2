"""The library's modules form a graph without cycles, and each imports alone in a fresh interpreter.

Why: a cycle (a imports b imports a, even through an import inside a function) makes which module runs first
depend on which one a user imports, and a half-initialised module fails with a confusing ImportError.
Imports inside functions count: they are cycles that only wait for the right call.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from diffloss.paths import REPO

LIBRARY = REPO / "diffloss"


def imported_modules(path: Path, package: str) -> set[str]:
    """The ``package.*`` modules a file imports anywhere in it (top level, inside functions, ``if __name__``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from diffloss import pair``: pair is a module of the package, not a name in __init__
            if node.module == package:
                found.update(f"{package}.{alias.name}" for alias in node.names)
    own = {f"{package}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__"}
    return {name for name in found if name in own}


def module_graph(folder: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``__init__`` left out: it only documents the map)."""
    package = folder.name
    return {f"{package}.{p.stem}": imported_modules(p, package) - {f"{package}.{p.stem}"}
            for p in sorted(folder.glob("*.py")) if p.stem != "__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one_through_a_function_level_import(tmp_path):
    """The checker itself: an import inside a function closes a cycle it must report."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("thing = 1\n\ndef later():\n    from pkg import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert find_cycle(module_graph(package)) == ["pkg.a", "pkg.b", "pkg.a"]
    (package / "b.py").write_text("thing = 1\n")
    assert find_cycle(module_graph(package)) is None


def test_the_library_has_no_import_cycle():
    graph = module_graph(LIBRARY)
    assert "diffloss.train" in graph["diffloss.pair"]  # the graph sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", ["diffloss.pair", "diffloss.train", "diffloss.train_cli"])
def test_each_training_module_imports_alone(module):
    """The three that formed the last cycle, each first in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_python_m_diffloss_train_still_reaches_the_command_line():
    """``python -m diffloss.train`` (the README's command) keeps working without train importing its CLI."""
    done = subprocess.run([sys.executable, "-m", "diffloss.train", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pair" in done.stdout and "resume" in done.stdout
