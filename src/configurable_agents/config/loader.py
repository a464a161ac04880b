"""Loading a workflow: read the file, validate its structure, then check it as a whole.

Every problem is reported at once, each located; a mistake in one node or edge is reported once,
and the rest of the file is still checked around it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .builder import plain_data_problem
from .checks import Known, check_workflow
from .diagnostics import Diagnostic, WorkflowValidationError, format_path
from .evaluation_checks import check_evaluation
from .graph_checks import check_graph
from .issues import Issue, Loc
from .schema import Node, WorkflowConfig
from .source import SourceDocument, SourceError, read_source
from .state import StateField
from .structure import structure_issues
from .subworkflows import check_subworkflows, load_children
from .unset_checks import unset_reads

__all__ = ["Workflow", "load_workflow", "validate_workflow"]

_MAX_PASSES = 8


@dataclass
class Workflow:
    """A validated workflow, ready to run.

    Attributes:
        config: The file's content as models.
        fields: Every state field: those declared in `state` and those declared implicitly by node
            outputs and fan-out collect fields.
        implicit_fields: Names of the implicitly declared fields, in the order they were found.
        source: The file it was loaded from, if any.
        warnings: Problems that do not make the workflow invalid.
        prompt_versions: For each node whose prompt came from MLflow's prompt registry, the
            version it uses (``name/3``), set when the references are resolved.
        subworkflows: The validated sub-workflow of each workflow node, by node id.
    """

    config: WorkflowConfig
    fields: dict[str, StateField]
    implicit_fields: tuple[str, ...] = ()
    source: str | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    prompt_versions: dict[str, str] = field(default_factory=dict)
    subworkflows: dict[str, Workflow] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The workflow's `flow.name`."""
        return self.config.flow.name

    @property
    def nodes(self) -> dict[str, Node]:
        """Nodes by id, in file order."""
        return {node.id: node for node in self.config.nodes}


def load_workflow(source: str | os.PathLike[str] | Mapping[str, Any]) -> Workflow:
    """Load and validate a workflow file (YAML, or JSON by extension) or an already parsed mapping.

    Raises:
        WorkflowValidationError: the workflow has errors; ``diagnostics`` lists them all.
    """
    workflow, diagnostics = validate_workflow(source)
    if workflow is None:
        raise WorkflowValidationError(diagnostics)
    return workflow


def validate_workflow(
    source: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[Workflow | None, list[Diagnostic]]:
    """Validate a workflow without raising: the workflow (``None`` if invalid) and every problem.

    Never raises, whatever the input: a bug of ours shows as one error with code ``internal``.
    """
    try:
        return _validate(source)
    except Exception as exc:  # the promise above: report, never raise (RecursionError included)
        name = "<workflow>" if isinstance(source, Mapping) else str(source)
        message = f"internal error while validating (please report it): {type(exc).__name__}"
        return None, [Diagnostic(f"{message}: {exc}"[:300], file=name, code="internal")]


def _validate(
    source: str | os.PathLike[str] | Mapping[str, Any],
    stack: tuple[tuple[str, str], ...] = (),
    cache: dict[str, Any] | None = None,
) -> tuple[Workflow | None, list[Diagnostic]]:
    """Validate one file; ``stack`` and ``cache`` are those of the sub-workflows being loaded
    (see :func:`.subworkflows.load_children`)."""
    if isinstance(source, Mapping):
        document = SourceDocument("<workflow>", dict(source))
        problem = plain_data_problem(document.data)
        if problem is not None:
            return None, [_locate(document, Issue(*problem, code="source"))]
    elif not isinstance(source, str | os.PathLike):
        given = type(source).__name__
        return None, [Diagnostic(f"expected a file path or a mapping, not {given}", code="source")]
    else:
        try:
            document = read_source(source)
        except SourceError as exc:
            return None, [exc.diagnostic]
    if not isinstance(document.data, dict):
        return None, [_locate(document, Issue((), "a workflow file must be a mapping of keys"))]
    config, issues, known = _validate_structure(document.data)
    workflow = None
    nested: list[tuple[Loc, Diagnostic]] = []  # the sub-workflows' own, where they are used
    if config is not None:
        if not stack and not isinstance(source, Mapping):
            real = os.path.realpath(document.file)
            stack = ((real, document.file),)
        file = None if isinstance(source, Mapping) else document.file
        children = load_children(
            config, file, document.locate, stack, {} if cache is None else cache, _validate
        )
        issues += children.issues
        nested = children.diagnostics
        known.fields |= children.unknown_outputs
        checked = check_workflow(config, known, children.output_types())
        issues += checked.found.issues
        issues += check_subworkflows(config, children, checked.fields, known.fields)
        if not known.incomplete:  # it would name what a structural error left out
            issues += check_evaluation(config)
        if checked.endpoints_ok and not known.incomplete:
            issues += check_graph(config).issues
            issues += unset_reads(config, checked.fields).issues
        workflow = Workflow(config, checked.fields, tuple(checked.implicit), document.file)
        workflow.subworkflows = children.workflows
    own = [(_locate(document, issue), 0) for issue in _once(issues)]
    used = [(d, 1) for _, d in nested]
    where = [document.locate(loc) or (0, 0) for loc, _ in nested]
    keys = [(d.line or 0, d.column or 0, 0) for d, _ in own]
    keys += [(line, column, 1) for line, column in where]
    order = sorted(range(len(keys)), key=lambda i: keys[i])  # stable: a file's own order kept
    diagnostics = [[*own, *used][i][0] for i in order]
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    if workflow is not None:
        workflow.warnings = diagnostics
    return workflow, diagnostics


def _validate_structure(data: dict[str, Any]) -> tuple[WorkflowConfig | None, list[Issue], Known]:
    """Validate with pydantic; on errors, drop the broken items and validate the rest again so that
    the whole-file checks can still run on what is sound."""
    issues: list[Issue] = []
    known = Known()
    current = data
    meant: set[Loc] = set()  # keys a misspelt key was meant to be: their absence is reported
    for _ in range(_MAX_PASSES):
        try:
            return WorkflowConfig.model_validate(current), issues, known
        except ValidationError as exc:
            found = structure_issues(exc, current, WorkflowConfig)
        meant |= {
            (*i.loc[:-1], i.suggestion) for i in found if i.code == "unknown_key" and i.suggestion
        }
        issues += [i for i in found if not (i.code == "missing_key" and i.loc in meant)]
        pruned = _prune(current, [issue.loc for issue in found], known)
        if pruned is None:
            break
        current = pruned
    return None, issues, known


def _prune(data: dict[str, Any], locs: list[Loc], known: Known) -> dict[str, Any] | None:
    """A copy of ``data`` without the items the errors are in; ``None`` if nothing sound is left."""
    data = copy.deepcopy(data)
    drop_nodes: set[int] = set()
    drop_edges: set[int] = set()
    for loc in locs:
        head = loc[0] if loc else None
        if head in ("nodes", "edges") and len(loc) >= 2 and isinstance(loc[1], int):
            (drop_nodes if head == "nodes" else drop_edges).add(loc[1])
        elif head == "state" and len(loc) >= 3 and loc[1] == "fields":
            known.fields.add(str(loc[2]))
            data["state"]["fields"].pop(loc[2], None)
        elif head == "flow":
            data["flow"] = {"name": "workflow"}
        elif head == "config" and len(loc) >= 4 and loc[1:3] == ("tools", "mcp_servers"):
            known.mcp_servers.add(str(loc[3]))  # only that server is left out
            data["config"]["tools"]["mcp_servers"].pop(loc[3], None)
        elif head == "config" and len(loc) >= 2:
            data["config"].pop(loc[1], None)
        elif head == "evaluation":  # its cross-checks would name what was left out
            data.pop("evaluation", None)
        elif head == "schema_version":
            data["schema_version"] = "1.0"
        elif len(loc) == 1 and isinstance(head, str) and head not in ("nodes", "edges", "state"):
            data.pop(head, None)
        else:
            return None
        known.incomplete = True
    for index in drop_nodes:
        raw = data["nodes"][index]
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str):
            known.node_ids.add(raw_id)
        else:
            known.unnamed_nodes = True
        outputs = raw.get("outputs") if isinstance(raw, dict) else None
        if isinstance(outputs, dict):  # a workflow node's {sub-workflow field: state field}
            outputs = list(outputs.values())
        if isinstance(outputs, list):
            known.fields.update(o for o in outputs if isinstance(o, str))
    for index in drop_edges:
        raw = data["edges"][index]
        spec = raw.get("parallel") if isinstance(raw, dict) else None
        if isinstance(spec, dict):
            known.fields.update(
                v for k, v in spec.items() if k.endswith("_field") and isinstance(v, str)
            )
            if isinstance(spec.get("target_node"), str):
                known.fan_out_targets.add(spec["target_node"])
    if drop_nodes:
        data["nodes"] = [n for i, n in enumerate(data["nodes"]) if i not in drop_nodes]
    if drop_edges:
        data["edges"] = [e for i, e in enumerate(data["edges"]) if i not in drop_edges]
    if drop_nodes and not data["nodes"]:
        return None
    if drop_edges and not data["edges"]:
        data["edges"] = [{"from": "START", "to": "END"}]
    return data


def _once(issues: list[Issue]) -> list[Issue]:
    """The issues without repeats: the same problem at the same path (a misspelt placeholder used
    ten times in one prompt) is one mistake, reported where it first occurs."""
    seen: dict[tuple[Loc, str, str], Issue] = {}
    for issue in issues:
        seen.setdefault((issue.loc, issue.message, issue.severity), issue)
    return list(seen.values())


def _locate(document: SourceDocument, issue: Issue) -> Diagnostic:
    position = document.locate(issue.loc, key=issue.at_key)
    if position and issue.needle:
        position = document.find(issue.loc, issue.needle, issue.nth) or position
    line, column = position or (None, None)
    return Diagnostic(
        message=issue.message,
        path=format_path(issue.loc),
        file=document.file,
        line=line,
        column=column,
        suggestion=issue.suggestion,
        severity=issue.severity,  # type: ignore[arg-type]
        code=issue.code,
    )
