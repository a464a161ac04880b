"""Warnings for template placeholders that may name a field before anything has written it.

A field has a value from the start when it is required (an input) or has a default; any other
field only once a node writes it (a node writes its outputs; a fan-out target writes the
`collect_field`, not its own output). A placeholder reading such a field in a node that the run
can reach from START without passing a writer renders as empty text (see
:func:`.templates.render_template`), which is rarely what the author meant: `validate` says so.
"""

from __future__ import annotations

from collections.abc import Iterator

from .graph_checks import successors
from .issues import Found, Loc
from .schema import START, Node, WorkflowConfig
from .state import StateField
from .templates import Placeholder, TemplateError, parse_template

__all__ = ["unset_reads"]

_FAN_OUT_NAMES = ("item", "item_index")


def unset_reads(config: WorkflowConfig, fields: dict[str, StateField]) -> Found:
    """One warning per node and field it may read before the field has a value.

    Assumes a checked workflow: every edge names existing nodes and every placeholder resolves.
    """
    found = Found()
    graph = successors(config)
    writers = _writers(config)
    fan_out_targets = {e.parallel.target_node for e in config.edges if e.parallel is not None}
    unwritten: dict[str, set[str]] = {}  # field -> nodes the run may reach before a writer
    for index, node in enumerate(config.nodes):
        warned: set[str] = set()
        for loc, template, part in _reads(index, node, node.id in fan_out_targets):
            name = part.path[1] if part.path[0] == "state" else part.path[0]
            spec = fields.get(name)
            if name in warned or spec is None or spec.required or spec.default is not None:
                continue
            if name not in unwritten:
                unwritten[name] = _reach_avoiding(graph, writers.get(name, set()))
            if node.id not in unwritten[name]:
                continue
            warned.add(name)
            end = template.index("}", part.offset) + 1
            needle = template[part.offset : end]
            found.add(
                loc,
                f"node {node.id!r} may read {name!r} before anything writes it: the field is "
                "optional with no default, so unless it is given as an input it renders as empty "
                "text; give it a default or make it required",
                needle=needle,
                nth=template[: part.offset].count(needle),
                code="unset_field",
                severity="warning",
            )
    return found


def _writers(config: WorkflowConfig) -> dict[str, set[str]]:
    """Field -> ids of the nodes whose execution writes it."""
    collect = {e.parallel.target_node: e.parallel.collect_field for e in config.edges if e.parallel}
    writers: dict[str, set[str]] = {}
    for node in config.nodes:
        written = [collect[node.id]] if node.id in collect else node.outputs
        for name in written:
            writers.setdefault(name, set()).add(node.id)
    return writers


def _reach_avoiding(graph: dict[str, list[tuple[str, int, bool]]], writers: set[str]) -> set[str]:
    """Nodes the run can arrive at from START without first passing through one of ``writers``
    (a writer is arrived at, but what follows it is not)."""
    seen = {START}
    stack = [START]
    while stack:
        current = stack.pop()
        if current in writers:
            continue
        for target, _, _ in graph.get(current, []):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def _reads(index: int, node: Node, fan_out: bool) -> Iterator[tuple[Loc, str, Placeholder]]:
    """Every placeholder of the node that names a state field, with where its template is."""
    templates: list[tuple[Loc, str, set[str]]] = [
        (("nodes", index, "inputs", name), text, set()) for name, text in node.inputs.items()
    ]
    if node.prompt_text is not None:  # a registry prompt is checked once fetched (--resolve)
        templates.append((("nodes", index, "prompt"), node.prompt_text, set(node.inputs)))
    for loc, template, local in templates:
        try:
            parts = parse_template(template)
        except TemplateError:
            continue
        for part in parts:
            if not isinstance(part, Placeholder):
                continue
            head = part.path[0]
            if head == "state":
                if len(part.path) > 1:
                    yield loc, template, part
            elif head not in local and not (fan_out and head in _FAN_OUT_NAMES):
                yield loc, template, part
