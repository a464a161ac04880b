"""`memory`, as files written for the agent tool this one replaces have it, on session state.

That tool gave nodes a memory: `config.memory: {enabled, default_scope}` and a node's
`memory: {enabled, scope}`. Here a run's memory is its session-scoped state (`scope: session`
fields, carried from one run of a session to the next), so such files load unchanged, with this
meaning:

- A node has memory when its `memory.enabled` says so, else when `config.memory.enabled` does;
  its scope is its `memory.scope`, else `config.memory.default_scope` (`workflow`).
- The fields a node with memory writes (its `outputs`; for a fan-out target, the `collect_field`
  its results go to) are session-scoped, as if `scope: session` were written on them.
- Scope `workflow` and scope `node` mean the same: state is shared by every node, so what a node
  remembers is the fields it writes, which every node reads.
- Scope `agent` (a chat history per agent) has no equivalent: an error says what to write.
- Any other key under `memory` is an error naming the replacement.

:func:`session_fields` gives every session-scoped field: those written `scope: session` and those
memory makes so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict

from ._model import ConfigModel
from .diagnostics import closest
from .issues import Found, Issue, Loc

if TYPE_CHECKING:
    from .schema import Node, WorkflowConfig

__all__ = ["MemoryConfig", "NodeMemory", "check_memory", "memory_fields", "session_fields"]

MemoryScope = Literal["workflow", "node", "agent"]

_INSTEAD = "write `scope: session` on the fields to keep in `state.fields`"
_NO_AGENT = (
    "memory scope 'agent' (a chat history per agent) has no equivalent here, where every node "
    f"shares the state: use `workflow` (a node remembers the fields it writes), or {_INSTEAD}"
)

# Unknown keys are reported by `check_memory`, with what to write instead, rather than as a bare
# "unknown key"; the JSON Schema still forbids them.
_OTHER_KEYS = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})


class MemoryConfig(ConfigModel):
    """Memory for every node, as the agent tool this one replaces had it: a node with memory
    keeps the fields it writes (its `outputs`) from one run of a session to the next, as if they
    were `scope: session` in `state.fields`."""

    model_config = _OTHER_KEYS

    enabled: bool = False
    """Give every node memory (a node's own `memory.enabled` wins)."""

    default_scope: MemoryScope = "workflow"
    """Scope of a node's memory when it writes none: `workflow` or `node` (the same here: every
    node reads the fields a node remembers). `agent` has no equivalent and is an error."""


class NodeMemory(ConfigModel):
    """This node's memory, as the agent tool this one replaces had it: with memory, the fields the
    node writes (its `outputs`) are kept from one run of a session to the next, as if they were
    `scope: session` in `state.fields`."""

    model_config = _OTHER_KEYS

    enabled: bool | None = None
    """Whether the node has memory. Default: `config.memory.enabled`."""

    scope: MemoryScope | None = None
    """`workflow` or `node` (the same here: every node reads the fields a node remembers).
    Default: `config.memory.default_scope`. `agent` has no equivalent and is an error."""


def _remembers(config: WorkflowConfig, node: Node) -> bool:
    own = node.memory.enabled if node.memory is not None else None
    return config.config.memory.enabled if own is None else own


def _written(config: WorkflowConfig, node: Node) -> list[str]:
    """The state fields a node writes: its outputs, or for a fan-out target what collects them."""
    collect = [e.parallel.collect_field for e in config.edges
               if e.parallel is not None and e.parallel.target_node == node.id]  # fmt: skip
    return collect or list(node.outputs)


def memory_fields(config: WorkflowConfig) -> dict[str, str]:
    """The fields memory makes session-scoped, each with the (first) node that makes it so."""
    fields: dict[str, str] = {}
    for node in config.nodes:
        if _remembers(config, node):
            for name in _written(config, node):
                fields.setdefault(name, node.id)
    return fields


def session_fields(config: WorkflowConfig) -> set[str]:
    """Every session-scoped state field: those written `scope: session` in `state.fields` and
    those written by nodes with memory (see the module's description)."""
    explicit = {name for name, spec in config.state.fields.items() if spec.scope == "session"}
    return explicit | set(memory_fields(config))


def check_memory(config: WorkflowConfig) -> list[Issue]:
    """Every problem of `config.memory` and the nodes' `memory`: scope `agent`, keys that are
    not memory's, a field memory makes session-scoped but written `scope: run`, and a node's
    `memory` that stays off because `config.memory.enabled` is false."""
    found = Found()
    workflow = config.config.memory
    _keys(found, ("config", "memory"), workflow, ["enabled", "default_scope"])
    if workflow.default_scope == "agent":
        found.add(("config", "memory", "default_scope"), _NO_AGENT, code="memory")
    for index, node in enumerate(config.nodes):
        memory = node.memory
        if memory is None:
            continue
        loc: Loc = ("nodes", index, "memory")
        _keys(found, loc, memory, ["enabled", "scope"])
        if memory.scope == "agent":
            found.add((*loc, "scope"), _NO_AGENT, code="memory")
        if memory.enabled is None and not workflow.enabled and memory.model_fields_set:
            found.add(
                loc,
                "this node has no memory: `config.memory.enabled` is false; write "
                "`enabled: true` here to give it memory",
                at_key=True,
                code="memory",
                severity="warning",
            )
    for name, node_id in memory_fields(config).items():
        spec = config.state.fields.get(name)
        if spec is not None and "scope" in spec.model_fields_set and spec.scope == "run":
            found.add(
                ("state", "fields", name, "scope"),
                f"node {node_id!r} has memory, which keeps {name!r} from one run of a session to "
                "the next: remove `scope: run`, or turn the node's memory off "
                "(`memory: {enabled: false}`)",
                code="memory",
            )
    return found.issues


def _keys(found: Found, loc: Loc, memory: Any, keys: list[str]) -> None:
    for key in memory.model_extra or {}:
        found.add(
            (*loc, key),
            f"memory has no {key!r}, only {' and '.join(keys)}: a node with memory keeps the "
            f"fields it writes from one run of a session to the next; for others, {_INSTEAD}",
            suggestion=closest(str(key), keys),
            at_key=True,
            code="memory",
        )
