"""The package's imports run one way: no import cycle, and no module importing one of a higher layer.

Read from the source (every ``import`` statement, those inside functions included), so a late import cannot hide a
cycle. The layers, from the ground up::

    data, models, losses, presets, distributed     what everything stands on
    methods                                        networks and step(batch) -> dict
    train, evaluate, probes, timing                the fit loop, evaluation, the step timer
    studies, experiment, learn                     the papers' experiments
    results, plots, gradcam, runs                  result files, figures, notebook runs
    cli, book, bench, gpucheck                     the command lines
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ssltutor"

LAYERS = [
    ("data", "models", "losses", "presets", "distributed"),
    ("methods",),
    ("train", "evaluate", "probes", "timing"),
    ("studies", "experiment", "learn"),
    ("results", "plots", "gradcam", "runs"),
    ("cli", "book", "bench", "gpucheck"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """The ``ssltutor`` modules that ``path`` imports, by dotted name (``from .x import y`` counts as importing
    ``x.y`` when y is a module, else ``x``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ssltutor"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ssltutor":
                continue
            for alias in node.names:
                found.add(f"{target}.{alias.name}" if is_module(f"{target}.{alias.name}") else target)
    found.discard(name)
    return found


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int | None:
    """Index into LAYERS of ``ssltutor.<top>...`` (None for the package itself)."""
    parts = name.split(".")
    if len(parts) == 1:
        return None
    for i, tops in enumerate(LAYERS):
        if parts[1] in tops:
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_imports.py: add it to LAYERS")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_was_read():
    assert "ssltutor.methods" in GRAPH and "ssltutor.methods.base" in GRAPH["ssltutor.methods"]
    assert all(layer_of(name) is not None for name in GRAPH if name != "ssltutor")


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_higher_layer():
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, deps in GRAPH.items() for b in sorted(deps)
              if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("graph,expected", [({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
                                            ({"a": {"b"}, "b": {"c"}, "c": set()}, None)])
def test_find_cycle(graph, expected):
    assert find_cycle(graph) == expected
