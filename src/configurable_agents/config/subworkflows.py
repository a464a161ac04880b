"""Sub-workflows: a node `workflow: FILE` runs another workflow file inside this one.

Loading follows each reference (a path relative to the file that holds it) and validates the
file it names, recursively: the sub-workflow's own problems are reported in its file, with the
`workflow:` keys that lead there (:attr:`.Diagnostic.via`). A reference back to a file that is
being validated further up (A uses B uses A) is a cycle, reported where that reference is.

The checks across the boundary, made once the sub-workflow is loaded:

- `inputs` name the sub-workflow's fields (did you mean ...?), every required one is given, and
  each template fits its field's type: a template that is a single placeholder
  (`"{state.tickets}"`) passes the value with its type, so that type must fit; any other template
  renders as text, so the field must take a `str`;
- `outputs` name the sub-workflow's fields, and each one's type fits the field it is written to
  here (:func:`output_types` hands :mod:`.checks` their types, which also declare the implicit
  ones);
- a workflow node has no `prompt`, `tools`, `llm` and the other keys only a model's node has;
  `outputs` written as a mapping belongs to workflow nodes only;
- a sub-workflow that pauses the run (a `human` node, `interrupt_before`) needs this file's
  checkpoints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diagnostics import Diagnostic, closest
from .durable_checks import needs_checkpoints
from .issues import Found, Issue, Loc
from .limits import MAX_NESTING
from .schema import Node, WorkflowConfig
from .scope import Scope
from .state import StateField, field_spec, schema_mismatch
from .templates import Placeholder, TemplateError, parse_template
from .types import ANY, TypeExpr

if TYPE_CHECKING:
    from .loader import Workflow

__all__ = [
    "SUFFIXES",
    "Child",
    "Children",
    "check_subworkflows",
    "load_children",
    "pausing_node",
]

SUFFIXES = (".yaml", ".yml", ".json")
"""Extensions of workflow files (offered as suggestions for a missing file)."""

WORKFLOW_ONLY_NOT = ("prompt", "tools", "llm", "output_schema", "max_retries",
                     "max_tool_calls", "timeout")  # fmt: skip
"""Keys of a model's node that a workflow node has not: its sub-workflow's nodes have theirs."""

Validate = Callable[..., "tuple[Workflow | None, list[Diagnostic]]"]
"""The loader's validation of one file: ``(path, stack, cache) -> (workflow, diagnostics)``."""


@dataclass
class Child:
    """The sub-workflow a workflow node references.

    Attributes:
        index: The node's index in `nodes`.
        node: The node.
        path: The sub-workflow's file, as opened (joined to the referencing file's folder).
        workflow: The validated sub-workflow; ``None`` when it could not be loaded or is invalid
            (its problems are reported).
    """

    index: int
    node: Node
    path: str
    workflow: Workflow | None = None


@dataclass
class Children:
    """Every sub-workflow of a file, and what loading them found.

    Attributes:
        children: By node index.
        issues: Problems in the referencing file (a missing file, a cycle).
        diagnostics: The sub-workflows' own problems, located in their files.
        unknown_outputs: Fields this file's workflow nodes write whose types are unknown (their
            sub-workflow is invalid, or does not have the field).
    """

    children: dict[int, Child] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    diagnostics: list[tuple[Loc, Diagnostic]] = field(default_factory=list)
    unknown_outputs: set[str] = field(default_factory=set)

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The valid sub-workflows, by the id of the node that runs them."""
        return {c.node.id: c.workflow for c in self.children.values() if c.workflow is not None}

    def output_types(self) -> dict[int, list[tuple[str, StateField, Loc]]]:
        """Per workflow node (by index): each output's state field, the type the sub-workflow
        gives it, and where it is written."""
        types: dict[int, list[tuple[str, StateField, Loc]]] = {}
        for index, child in self.children.items():
            found = types.setdefault(index, [])
            fields = child.workflow.fields if child.workflow is not None else {}
            for k, (inner, outer) in enumerate(child.node.output_map.items()):
                if inner in fields:
                    loc: Loc = ("nodes", index, "outputs", child.node.output_key(k))
                    found.append((outer, fields[inner], loc))
        return types


def load_children(
    config: WorkflowConfig,
    file: str | None,
    locate: Callable[[Loc], tuple[int, int] | None],
    stack: tuple[tuple[str, str], ...],
    cache: dict[str, Any],
    validate: Validate,
) -> Children:
    """Load and validate the sub-workflow of each workflow node of ``config``.

    Args:
        config: The referencing file's content.
        file: The referencing file (``None`` for a mapping: paths are then relative to the
            working directory).
        locate: Line and column of a config path in the referencing file.
        stack: ``(real path, path as shown)`` of each file being validated, outermost first:
            a reference to one of them is a cycle.
        cache: Results of the files already validated, by real path.
        validate: The loader's validation of one file.
    """
    found = Children()
    folder = Path(file).parent if file else Path()
    for index, node in enumerate(config.nodes):
        if node.type != "workflow" or node.workflow is None:
            continue
        loc: Loc = ("nodes", index, "workflow")
        path = os.path.normpath(folder / node.workflow)
        child = found.children[index] = Child(index, node, path)
        found.unknown_outputs.update(node.outputs)  # until the sub-workflow says otherwise
        real = os.path.realpath(path)
        shown = [s for r, s in stack]
        if real in (r for r, _ in stack):
            start = [r for r, _ in stack].index(real)
            chain = " -> ".join([*shown[start:], path])
            found.issues.append(
                Issue(
                    loc,
                    f"sub-workflow cycle: {chain}; a workflow cannot run itself, even through "
                    "others",
                    code="cycle",
                )
            )
            continue
        if not os.path.isfile(path):
            found.issues.append(_missing(loc, node.workflow, path))
            continue
        if len(stack) >= MAX_NESTING:
            found.issues.append(
                Issue(loc, f"sub-workflows nest more than {MAX_NESTING} files deep", code="depth")
            )
            continue
        if real not in cache:
            cache[real] = validate(path, (*stack, (real, path)), cache)
        workflow, diagnostics = cache[real]
        position = locate(loc)
        where = f"{file or '<workflow>'}" + (f":{position[0]}:{position[1]}" if position else "")
        for diagnostic in diagnostics:
            found.diagnostics.append((loc, replace(diagnostic, via=(where, *diagnostic.via))))
        child.workflow = workflow
        if workflow is not None:
            known = {inner for inner in node.output_map if inner in workflow.fields}
            found.unknown_outputs -= {node.output_map[inner] for inner in known}
    return found


def _missing(loc: Loc, written: str, path: str) -> Issue:
    """A reference to a file that does not exist, with the likeliest file of that folder."""
    folder = Path(path).parent
    try:
        names = [p.name for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()]
    except OSError:
        names = []
    guess = closest(Path(path).name, names)
    suggestion = str(Path(written).parent / guess) if guess else None
    if suggestion is not None and suggestion.startswith("./") and not written.startswith("./"):
        suggestion = suggestion[2:]
    looked = f" (looked for {path})" if os.path.normpath(written) != path else ""
    return Issue(
        loc,
        f"no workflow file {written!r}{looked}",
        suggestion=suggestion,
        code="subworkflow",
    )


def pausing_node(workflow: Workflow) -> str | None:
    """The path (`review` or `classify/review`) of a node that pauses runs of ``workflow``, in
    it or in a sub-workflow, if any."""
    for node in workflow.config.nodes:
        if node.type == "human" or node.interrupt_before:
            return node.id
    for node_id, child in workflow.subworkflows.items():
        inner = pausing_node(child)
        if inner is not None:
            return f"{node_id}/{inner}"
    return None


def check_subworkflows(
    config: WorkflowConfig, children: Children, fields: dict[str, StateField], unknown: set[str]
) -> list[Issue]:
    """Every problem of workflow nodes: their keys, and their inputs and outputs against their
    sub-workflows' fields (see the module's description)."""
    found = Found()
    fan_out_targets = {e.parallel.target_node for e in config.edges if e.parallel is not None}
    scope = Scope(fields, unknown)
    for index, node in enumerate(config.nodes):
        _keys(found, index, node)
        child = children.children.get(index)
        if child is None or child.workflow is None:
            continue
        _inputs(found, child, child.workflow, scope, node.id in fan_out_targets)
        _outputs(found, child, child.workflow)
    _checkpoints(found, config, children)
    return found.issues


def _keys(found: Found, index: int, node: Node) -> None:
    loc: Loc = ("nodes", index)
    if node.type != "workflow":
        if node.workflow is not None:
            found.add(
                (*loc, "type"),
                f"a node with `workflow` runs that workflow: remove `type: {node.type}` (or "
                "`workflow`)",
                code="workflow_node",
            )
        if isinstance(node.outputs_, dict):
            found.add(
                (*loc, "outputs"),
                "outputs written as a mapping {sub-workflow field: state field} belong to "
                "workflow nodes; list the fields this node writes",
                code="workflow_node",
            )
        return
    if node.workflow is None:
        found.add(
            (*loc, "workflow"),
            "missing required key 'workflow': a `type: workflow` node names the workflow file "
            "it runs",
            code="missing_key",
        )
    for key in WORKFLOW_ONLY_NOT:
        if key in node.model_fields_set:
            found.add(
                (*loc, key),
                f"a workflow node has no {key!r}: the nodes of its sub-workflow have their own",
                at_key=True,
                code="workflow_node",
            )


def _inputs(found: Found, child: Child, workflow: Workflow, scope: Scope, fan_out: bool) -> None:
    base: Loc = ("nodes", child.index, "inputs")
    node = child.node
    meant: set[str] = set()  # fields a misspelt input was meant to be: not also "missing"
    for name, template in node.inputs.items():
        spec = workflow.fields.get(name)
        if spec is None:
            guess = closest(name, [f for f in workflow.fields if f not in node.inputs])
            meant.add(guess or "")
            found.add(
                (*base, name),
                f"sub-workflow {child.path!r} has no field {name!r}",
                suggestion=guess,
                at_key=True,
                code="subworkflow_field",
            )
            continue
        problem = _input_problem(template, spec, scope, fan_out)
        if problem is not None:
            found.add(
                (*base, name),
                f"input {name!r}: {problem} as the sub-workflow's field {name!r} declares it",
                code="type_mismatch",
            )
    given = {*node.inputs, *meant}
    missing = [n for n, s in workflow.fields.items() if s.required and n not in given]
    if missing:
        names = ", ".join(repr(n) for n in missing)
        found.add(
            base if node.inputs else ("nodes", child.index, "workflow"),
            f"sub-workflow {child.path!r} needs its required input(s) {names}: give them in "
            "`inputs` (field: template)",
            code="missing_input",
        )


def _input_problem(template: str, spec: StateField, scope: Scope, fan_out: bool) -> str | None:
    """Why the value of ``template`` cannot go to the sub-workflow's field ``spec``, if it
    cannot (a malformed template or unknown placeholder is reported by the template checks)."""
    try:
        parts = parse_template(template)
    except TemplateError:
        return None
    if len(parts) == 1 and isinstance(parts[0], Placeholder):
        given = _placeholder_field(parts[0], scope, fan_out)
        if given is None:
            return None
        problem = schema_mismatch(spec, given)
        return None if problem is None else f"{{{parts[0].text}}} {problem}"
    if spec.type_expr.accepts(TypeExpr("str")):
        return None
    return (
        "the template renders as text (a template that is one placeholder, such as "
        '"{state.count}", passes a typed value), not ' + spec.type
    )


def _placeholder_field(part: Placeholder, scope: Scope, fan_out: bool) -> StateField | None:
    """The type (as a field, with its object schema) of the value a placeholder names; ``None``
    when it names nothing known (reported elsewhere) or a value of any type."""
    path = part.path[1:] if part.path[0] == "state" and len(part.path) > 1 else part.path
    if fan_out and part.path[0] in ("item", "item_index"):
        if part.path[0] == "item_index" and len(path) == 1:
            return StateField(type="int")
        return None
    if path[0] not in scope.fields:
        return None
    spec = scope.fields[path[0]]
    for name in path[1:]:
        schema = spec.schema_ or {}
        if spec.type_expr.kind != "object" or name not in schema:
            return None
        spec = field_spec(schema[name])
    return None if spec.type_expr == ANY else spec


def _outputs(found: Found, child: Child, workflow: Workflow) -> None:
    node = child.node
    mapping = isinstance(node.outputs_, dict)
    for k, inner in enumerate(node.output_map):
        if inner not in workflow.fields:
            found.add(
                ("nodes", child.index, "outputs", node.output_key(k)),
                f"sub-workflow {child.path!r} has no field {inner!r}",
                suggestion=closest(inner, workflow.fields),
                at_key=mapping,
                code="subworkflow_field",
            )


def _checkpoints(found: Found, config: WorkflowConfig, children: Children) -> None:
    if config.config.execution.checkpoints.enabled is not False or needs_checkpoints(config):
        return  # on, or already reported by the durable checks
    for child in children.children.values():
        inner = pausing_node(child.workflow) if child.workflow is not None else None
        if inner is not None:
            found.add(
                ("config", "execution", "checkpoints", "enabled"),
                f"node {child.node.id!r} runs {child.path!r}, whose node {inner!r} pauses the "
                "run, which needs checkpoints to resume it: remove `enabled: false`",
                code="checkpoints",
            )
            return


def walk(workflow: Workflow, prefix: str = "") -> Iterator[tuple[str, Workflow]]:
    """``(path prefix, workflow)`` of ``workflow`` and of every sub-workflow in it, depth first:
    ``("", parent)``, ``("classify/", child)`` ..."""
    yield prefix, workflow
    for node_id, child in workflow.subworkflows.items():
        yield from walk(child, f"{prefix}{node_id}/")
