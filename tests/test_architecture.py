"""The layers read top-down: no package imports a higher layer, and no two packages import each
other (directly or round a loop). Imports inside functions count: a lazy import is still a
dependency. See docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "configurable_agents"

LAYERS = [
    {"_version", "config", "environment", "pricing"},
    {"llm", "tools"},
    {"engine"},
    {"observability", "prompts"},
    {"api", "batch", "reports", "tracing"},
    {"evaluation"},
    {"deploy", "queue", "server"},
    {"cli"},
]
"""Bottom first. A package may import its own layer and the ones below it."""

RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def _unit(module: list[str]) -> str:
    """The package (or top-level module) a module belongs to; the package's own ``__init__`` and
    ``__main__`` count as the top, with the CLI."""
    if module[-1] == "__init__":
        module = module[:-1]
    if len(module) == 1:
        return "cli"  # the package's own __init__ and __main__: the top
    name = module[1]
    return "cli" if name == "__main__" else name


def _imports(path: Path) -> set[tuple[str, ...]]:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    package = list(parts[:-1])  # a module's package; for an __init__, its own
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            target = [*base, *(node.module.split(".") if node.module else [])]
            found.add(tuple(target))
            found.update(tuple([*target, alias.name]) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(tuple(alias.name.split(".")) for alias in node.names)
    return {target for target in found if target[0] == "configurable_agents"}


def _graph() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: a module that imports it}."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(SRC.rglob("*.py")):
        module = list(path.relative_to(SRC.parent).with_suffix("").parts)
        unit = _unit(module)
        for target in _imports(path):
            if len(target) == 1:
                continue  # `from configurable_agents import x`: only the CLI does it
            other = _unit(list(target))
            if other != unit and (other in RANK or other == "cli"):
                graph[unit].setdefault(other, ".".join(module))
    return graph


def test_every_package_has_a_layer() -> None:
    units = {
        _unit(list(p.relative_to(SRC.parent).with_suffix("").parts)) for p in SRC.rglob("*.py")
    }
    assert units - set(RANK) == set()


def test_no_package_imports_a_higher_layer() -> None:
    upward = [
        f"{where} ({unit}) imports {other}"
        for unit, targets in _graph().items()
        for other, where in targets.items()
        if RANK[other] > RANK[unit]
    ]
    assert upward == []


def test_no_import_cycle_between_packages() -> None:
    graph = _graph()
    cycles = []

    def visit(unit: str, path: list[str]) -> None:
        for other in graph.get(unit, {}):
            if other in path:
                cycles.append(" -> ".join([*path[path.index(other) :], other]))
            elif len(path) < len(RANK):
                visit(other, [*path, other])

    for unit in list(graph):
        visit(unit, [unit])
    assert cycles == []


def test_the_graph_is_read() -> None:
    """The checks above would pass on an empty graph: make sure the edges are really found."""
    graph = _graph()
    assert "config" in graph["engine"] and "engine" in graph["observability"]
    assert "engine" not in graph.get("config", {})
