"""Whole-file checks of durable runs: human nodes, approvals, checkpoints and session fields."""

from __future__ import annotations

from .issues import Found, Issue
from .schema import Node, WorkflowConfig
from .state import StateField

__all__ = ["check_durable", "needs_checkpoints"]

_LLM_ONLY = ("tools", "llm", "max_retries")
"""Node keys that mean nothing to a person answering a `human` node."""


def needs_checkpoints(config: WorkflowConfig) -> bool:
    """Whether a node pauses the run (a `human` node or `interrupt_before`): such runs are
    resumed from their checkpoints."""
    return any(node.type == "human" or node.interrupt_before for node in config.nodes)


def check_durable(config: WorkflowConfig) -> list[Issue]:
    """Every problem of human nodes, approvals, checkpoints and session-scoped fields."""
    found = Found()
    for index, node in enumerate(config.nodes):
        if node.type == "human":
            _human(found, index, node)
    checkpoints = config.config.execution.checkpoints
    if checkpoints.enabled is False and needs_checkpoints(config):
        pausing = next(n.id for n in config.nodes if n.type == "human" or n.interrupt_before)
        found.add(
            ("config", "execution", "checkpoints", "enabled"),
            f"node {pausing!r} pauses the run, which needs checkpoints to resume it: remove "
            "`enabled: false`",
            code="checkpoints",
        )
    for name, spec in config.state.fields.items():
        _nested_scopes(found, ("state", "fields", name), spec)
    return found.issues


def _human(found: Found, index: int, node: Node) -> None:
    for key in _LLM_ONLY:
        if key in node.model_fields_set and getattr(node, key):
            found.add(
                ("nodes", index, key),
                f"a human node has no {key!r}: a person answers it, not a model",
                at_key=True,
                code="human_node",
            )


def _nested_scopes(found: Found, loc: tuple[str | int, ...], spec: StateField) -> None:
    for name, entry in (spec.schema_ or {}).items():
        if isinstance(entry, StateField):
            if entry.scope != "run":
                found.add(
                    (*loc, "schema", name, "scope"),
                    "scope applies to top-level state fields only",
                    code="scope",
                )
            _nested_scopes(found, (*loc, "schema", name), entry)
