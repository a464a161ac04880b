"""Graph shape: one way in from START, every node reachable and able to finish, no endless cycle.

Only run when every edge names existing nodes, so that one typo is reported once, not as a cascade
of unreachable nodes.
"""

from __future__ import annotations

from collections import defaultdict

from .issues import Found, Loc
from .schema import END, START, WorkflowConfig

__all__ = ["check_graph", "successors"]


def successors(config: WorkflowConfig) -> dict[str, list[tuple[str, int, bool]]]:
    """Node -> [(next node, edge index, conditional)] for every edge.

    ``conditional`` is true for route and loop edges: a cycle through one of them can be left.
    """
    graph: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for index, edge in enumerate(config.edges):
        conditional = edge.routes is not None or edge.loop is not None
        for target in edge.targets:
            graph[edge.from_].append((target, index, conditional))
    return graph


def check_graph(config: WorkflowConfig) -> Found:
    """Check the graph's shape; assumes every edge endpoint exists."""
    found = Found()
    graph = successors(config)
    ids = [node.id for node in config.nodes]
    index_of = {node_id: i for i, node_id in enumerate(ids)}
    _edge_counts(config, found)
    if START not in graph:
        return found  # nothing is reachable; "no edge leaves START" says it all

    reached = _reach({START}, graph)
    _unreached(ids, reached, graph, index_of, found)
    dead_ends = [n for n in ids if n not in graph and n in reached]
    for node_id in dead_ends:
        found.add(
            ("nodes", index_of[node_id], "id"),
            f"node {node_id!r} has no outgoing edge; add one, e.g. {{from: {node_id}, to: END}}",
            code="dead_end",
        )
    cycle_nodes = _unconditional_cycles(config, graph, found)
    finishing = _reach({END, *dead_ends, *cycle_nodes}, _reverse(graph))
    trapped = [n for n in ids if n in reached and n not in finishing]
    if trapped:
        names = ", ".join(repr(n) for n in trapped)
        found.add(
            ("nodes", index_of[trapped[0]], "id"),
            f"node(s) {names} can never reach END: every route from them leads back; add a route "
            "or default that leaves",
            code="no_exit",
        )
    return found


def _unreached(
    ids: list[str],
    reached: set[str],
    graph: dict[str, list[tuple[str, int, bool]]],
    index_of: dict[str, int],
    found: Found,
) -> None:
    """Report nodes START never reaches: those nothing unreached leads to first, then one node per
    closed island, so that one missing edge is one error."""
    unreached = [n for n in ids if n not in reached]
    fed = {t for n in unreached for t, _, _ in graph.get(n, []) if t != n}
    covered: set[str] = set()
    roots = [n for n in unreached if n not in fed]
    for node_id in roots + unreached:
        if node_id in covered:
            continue
        found.add(
            ("nodes", index_of[node_id], "id"),
            f"node {node_id!r} is never reached from START",
            code="unreachable",
        )
        covered |= _reach({node_id}, graph)


def _edge_counts(config: WorkflowConfig, found: Found) -> None:
    starts = [i for i, e in enumerate(config.edges) if e.from_ == START]
    if not starts:
        found.add(("edges",), "no edge leaves START; add {from: START, to: <first node>}")
    for i in starts[1:]:
        found.add(
            ("edges", i, "from"),
            f"only one edge may leave START (edges[{starts[0]}] already does); use "
            "`to: [a, b]` to start several nodes",
        )
    first: dict[str, int] = {}
    for i, edge in enumerate(config.edges):
        if edge.from_ == START:
            continue
        if edge.from_ in first:
            j = first[edge.from_]
            if edge.kind != "to" or config.edges[j].kind != "to":
                found.add(
                    ("edges", i, "from"),
                    f"node {edge.from_!r} already has an edge (edges[{j}]); a node with routes, "
                    "a loop or a fan-out has exactly one outgoing edge",
                )
        else:
            first[edge.from_] = i


def _reach(starts: set[str], graph: dict[str, list[tuple[str, int, bool]]]) -> set[str]:
    seen = set(starts)
    stack = list(starts)
    while stack:
        for target, _, _ in graph.get(stack.pop(), []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _reverse(
    graph: dict[str, list[tuple[str, int, bool]]],
) -> dict[str, list[tuple[str, int, bool]]]:
    result: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for source, outs in graph.items():
        for target, index, conditional in outs:
            result[target].append((source, index, conditional))
    return result


def _unconditional_cycles(
    config: WorkflowConfig, graph: dict[str, list[tuple[str, int, bool]]], found: Found
) -> set[str]:
    """Report each cycle made only of plain `to` and fan-out edges (nothing could ever leave it);
    return the nodes on them."""
    on_cycles: set[str] = set()
    plain = {
        source: [(t, i) for t, i, conditional in outs if not conditional]
        for source, outs in graph.items()
    }
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    for root in [START, *(n.id for n in config.nodes)]:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, position = stack.pop()
            if position == 0:
                state[node] = 1
                path.append(node)
            outs = plain.get(node, [])
            if position < len(outs):
                stack.append((node, position + 1))
                target, edge_index = outs[position]
                if state.get(target) == 1:
                    cycle = [*path[path.index(target) :], target]
                    on_cycles.update(cycle)
                    loc: Loc = ("edges", edge_index)
                    found.add(
                        loc,
                        f"cycle {' -> '.join(cycle)} has no way out; use a `loop` or `routes` "
                        "edge for a repeat",
                        code="cycle",
                    )
                elif target not in state:
                    stack.append((target, 0))
            else:
                state[node] = 2
                path.pop()
    return on_cycles
