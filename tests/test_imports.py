"""The package's import graph: no circles (lazy and type-only imports counted), the modules the
workflow imports while it builds the job graph stay torch-free, and every tool still imports."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO

PACKAGE = REPO / "src" / "videnhance"
# what workflow/rules/common.smk imports to build the job graph: no torch there (seconds per run)
WORKFLOW_MODULES = ("config", "archs", "segments", "settings", "weights", "defaults", "layout", "verdict", "runs",
                    "scores", "step")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """videnhance module → the videnhance modules it imports anywhere in its text (top level,
    inside functions, under TYPE_CHECKING)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # `from . import x` may name a module
                    deps.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert "videnhance.files" in graph["videnhance.models"]  # a lazy import (inside save_model) counts
    assert "videnhance.config" in graph["videnhance.settings"]  # and a top-level one
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_workflow_builds_its_job_graph_without_torch():
    code = ("import sys; " + "; ".join(f"import videnhance.{m}" for m in WORKFLOW_MODULES) +
            "; print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("tool", sorted(p.name for p in (REPO / "tools").glob("*.py")))
def test_every_tool_imports(tool):
    """The measurement tools behind the docs import what they use: a moved function breaks here,
    not on the next person who runs them."""
    spec = importlib.util.spec_from_file_location(f"tool_{tool[:-3]}", REPO / "tools" / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, "main", None))
