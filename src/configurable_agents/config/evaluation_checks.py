"""Whole-file checks of the `evaluation:` section: scorer names, the outputs and tools they read,
function scorers' modules, `pass_if` and the online scorers."""

from __future__ import annotations

from collections.abc import Iterable

from .conditions import ConditionError, parse_condition
from .diagnostics import closest
from .issues import Found, Issue, Loc
from .schema import WorkflowConfig
from .tool_modules import custom_tool_issue

__all__ = ["check_evaluation", "expected_columns", "tool_names", "written_fields"]


def written_fields(config: WorkflowConfig) -> set[str]:
    """Fields some node (or a fan-out) writes: what a run outputs."""
    written = {name for node in config.nodes for name in node.outputs}
    return written | {e.parallel.collect_field for e in config.edges if e.parallel is not None}


def tool_names(config: WorkflowConfig) -> set[str]:
    """Names the workflow's tools are called by (a custom `module:function` by its function)."""
    names = set()
    for node in config.nodes:
        for ref in node.tool_refs:
            names.add(ref.name.rpartition(":")[2])
    return names


def expected_columns(config: WorkflowConfig) -> dict[str, Loc]:
    """Dataset columns the scorers read expected values from, with where each is named."""
    columns: dict[str, Loc] = {}
    if config.evaluation is None:
        return columns
    for index, scorer in enumerate(config.evaluation.scorers):
        column = getattr(scorer, "expected", None)
        if column is not None:
            columns.setdefault(column, ("evaluation", "scorers", index, "expected"))
    return columns


def check_evaluation(config: WorkflowConfig) -> list[Issue]:
    """Every problem of the `evaluation:` section that needs the rest of the file to see."""
    evaluation = config.evaluation
    if evaluation is None:
        return []
    found = Found()
    names: dict[str, int] = {}
    outputs = sorted(written_fields(config))
    tools = sorted(tool_names(config))
    allowed = config.config.tools.allowed_modules
    for index, scorer in enumerate(evaluation.scorers):
        at: Loc = ("evaluation", "scorers", index)
        if scorer.name in names:
            found.add((*at, "name"), f"duplicate scorer name {scorer.name!r} "
                      f"(also evaluation.scorers[{names[scorer.name]}])")  # fmt: skip
        names.setdefault(scorer.name, index)
        output = getattr(scorer, "output", None)
        if output is not None and output.split(".")[0] not in outputs:
            head = output.split(".")[0]
            found.add((*at, "output"), f"{head!r} is not an output of the workflow",
                      suggestion=closest(head, outputs), code="unknown_output")  # fmt: skip
        called = [scorer.tool] if scorer.type == "tool_called" else []
        called += scorer.tools if scorer.type == "tool_sequence" else []
        for k, tool in enumerate(called):
            loc: Loc = (*at, "tool") if scorer.type == "tool_called" else (*at, "tools", k)
            if tool not in tools:
                found.add(loc, f"no node calls a tool named {tool!r}",
                          suggestion=closest(tool, tools), code="unknown_tool")  # fmt: skip
        if scorer.type == "function":
            issue = custom_tool_issue(scorer.function, allowed)
            if issue is not None:
                message = issue.message.replace("custom tool", "scorer function")
                found.add((*at, "function"), message, code="scorer")
    _pass_if(found, evaluation.pass_if, list(names))
    if evaluation.online is not None:
        for k, name in enumerate(evaluation.online.scorers or []):
            if name not in names:
                found.add(("evaluation", "online", "scorers", k), f"no scorer named {name!r}",
                          suggestion=closest(name, names), code="unknown_scorer")  # fmt: skip
    return found.issues


def _pass_if(found: Found, text: str | None, names: Iterable[str]) -> None:
    if text is None:
        return
    loc: Loc = ("evaluation", "pass_if")
    try:
        condition = parse_condition(text, arithmetic=True)
    except ConditionError as exc:
        found.add(loc, f"pass_if: {exc}", code="condition")
        return
    names = list(names)
    for path in condition.paths():
        parts = path.parts[1:] if path.parts[0] == "baseline" else path.parts
        shown = ".".join(path.parts)
        if len(parts) != 1 or parts[0] not in names:
            found.add(loc, f"pass_if reads {shown!r}, which is not a scorer name"
                      + (" (or baseline.<scorer>)" if path.parts[0] != "baseline" else ""),
                      suggestion=closest(parts[-1] if parts else shown, names),
                      needle=shown, code="unknown_scorer")  # fmt: skip
