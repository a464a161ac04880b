"""The LangGraph ``StateGraph`` of a workflow.

Every state field is a channel whose last write wins (so concurrent branches may write). A loop
keeps its iteration count in a hidden channel, reset by a small exit step when the loop ends. A
fan-out sends one LangGraph task per item (``Send``), so each item is checkpointed on its own;
the collect field's channel puts each result at its item's index. A `human` node, and any node
with `interrupt_before`, pauses the run with LangGraph's ``interrupt``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

from ..config.conditions import ConditionError, parse_condition
from ..config.loader import Workflow
from ..config.schema import END, START, LoopSpec, ParallelSpec, Route, WorkflowConfig
from .context import NodeFailed, RunContext
from .node import NodePlan
from .steps import ITEM_KEY, SPENT_KEY, add_spend, fan_out_item, run_step

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["CONTEXT_KEY", "build_graph", "loop_key"]


def _last(_old: Any, new: Any) -> Any:
    return new


def _collect(old: Any, new: Any) -> Any:
    """A fan-out's collect field: an item's result goes to its index, anything else replaces."""
    placed = fan_out_item(new)
    if placed is None:
        return new
    index, total = placed
    values = list(old) if isinstance(old, list) else []
    values = (values + [None] * total)[:total]
    if index is not None:
        values[index] = new["value"]
    return values


def loop_key(node_id: str) -> str:
    """Hidden state key holding a loop's iteration count."""
    return f"__loop__{node_id}"


class _Names:
    """Graph node names that cannot clash with state keys (LangGraph forbids that)."""

    def __init__(self, keys: set[str]) -> None:
        self.prefix = "node."
        while any(k.startswith(self.prefix) for k in keys):
            self.prefix = "_" + self.prefix

    def __call__(self, node_id: str) -> str:
        from langgraph.graph import END as GRAPH_END
        from langgraph.graph import START as GRAPH_START

        if node_id == START:
            return GRAPH_START
        if node_id == END:
            return GRAPH_END
        return f"{self.prefix}{node_id}"


CONTEXT_KEY = "configurable_agents_run"
"""Key of the :class:`RunContext` in LangGraph's ``configurable`` run config."""


def _ctx(config: Any) -> RunContext:
    return config["configurable"][CONTEXT_KEY]


def build_graph(workflow: Workflow, plans: dict[str, NodePlan]) -> Any:
    """Compile a workflow into a LangGraph graph, once; each run passes its :class:`RunContext`
    as ``config["configurable"][CONTEXT_KEY]``."""
    from langgraph.graph import StateGraph

    config = workflow.config
    loops = {e.from_: e.loop for e in config.edges if e.loop is not None}
    fan_outs = {e.parallel.target_node: e.parallel for e in config.edges if e.parallel is not None}
    keys = [*workflow.fields, *(loop_key(n) for n in loops)]
    collected = {spec.collect_field for spec in fan_outs.values()}
    # a list-typed channel starts as [] (not unset), so the first item's result goes through
    # _collect too
    channels: dict[str, Any] = {
        k: Annotated[list, _collect] if k in collected else Annotated[Any, _last] for k in keys
    }
    channels[SPENT_KEY] = Annotated[dict, add_spend]
    state_type = TypedDict("WorkflowState", channels, total=False)  # type: ignore[misc]
    names = _Names(set(keys))
    joins = _joins(config)
    graph: Any = StateGraph(state_type)  # its state type is made here: nothing to check statically
    for node_id, plan in plans.items():
        if node_id in fan_outs:
            run = _item(plan, fan_outs[node_id])
        else:
            run = _single(plan, node_id in loops)
        if plan.subworkflow is not None:
            run = _with_subgraph(run, plan.subworkflow.graph)
        graph.add_node(names(node_id), run)
    for edge in config.edges:
        if edge.parallel is not None:
            target = names(edge.parallel.target_node)
            graph.add_conditional_edges(names(edge.from_), _sender(edge.parallel, target), [target])
            continue
        source = names(edge.from_)
        if edge.routes is not None:
            targets = {route.to: names(route.to) for route in edge.routes}
            graph.add_conditional_edges(source, _router(edge.from_, edge.routes), targets)
        elif edge.loop is not None:
            exit_name = f"{source}.exit"
            graph.add_node(exit_name, _loop_exit(edge.from_))
            graph.add_edge(exit_name, names(edge.loop.exit_to))
            graph.add_conditional_edges(
                source, _loop_router(edge.from_, edge.loop), {"again": source, "exit": exit_name}
            )
        else:
            for target in edge.targets:
                if edge.from_ not in joins.get(target, ()):
                    graph.add_edge(source, names(target))
    for target, sources in joins.items():
        graph.add_edge([names(s) for s in sources], names(target))
    return graph.compile()


def _joins(config: WorkflowConfig) -> dict[str, list[str]]:
    """Nodes where the branches of a fork (`to: [a, b]`) meet, with the branch ends leading there.

    LangGraph runs a node once per step in which something reaches it, so branches of different
    lengths would run the meeting node twice; an edge from all branch ends makes it wait for all.
    """
    plain: dict[str, list[str]] = {}
    for edge in config.edges:
        if edge.routes is None and edge.loop is None and edge.parallel is None:
            plain.setdefault(edge.from_, []).extend(edge.targets)
    joins: dict[str, list[str]] = {}
    for edge in config.edges:
        if not isinstance(edge.to, list) or len(edge.to) < 2:
            continue
        ends: dict[str, set[str]] = {}  # meeting node -> branch ends reaching it
        for branch in edge.to:
            node, seen = branch, set()
            while node in plain and len(plain[node]) == 1 and node not in seen:
                seen.add(node)
                following = plain[node][0]
                if following == END:
                    break
                ends.setdefault(following, set()).add(node)
                node = following
        for meeting, sources in ends.items():
            if len(sources) == len(edge.to):
                joins[meeting] = sorted(sources)
                break
    return joins


def _single(plan: NodePlan, is_loop: bool) -> Callable[..., Any]:
    key = loop_key(plan.node.id)

    async def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        ctx = _ctx(config)
        update: dict[str, Any] = {}
        iteration = None
        if is_loop:
            iteration = int(state.get(key) or 0) + 1
            update[key] = iteration
        update.update(await run_step(ctx, plan, state, iteration=iteration, config=config))
        ctx.state.update({k: v for k, v in update.items() if k != SPENT_KEY})
        return update

    return run


def _with_subgraph(run: Callable[..., Any], subgraph: Any) -> Callable[..., Any]:
    """A workflow node's step, which runs ``subgraph`` (its sub-workflow's compiled graph)
    inside. LangGraph finds a node's subgraph among the names its function reads, and then
    reads the subgraph's checkpoints with the parent's (``aget_state(subgraphs=True)``)."""

    async def node(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        assert subgraph is not None  # named here so that LangGraph finds it
        return await run(state, config)

    return node


def _sender(spec: ParallelSpec, target: str) -> Callable[[dict[str, Any]], list[Any]]:
    """One ``Send`` per item of ``spec.items_field`` (one with no item for an empty list, so
    the collect field is written and the run goes on)."""
    from langgraph.types import Send

    def send(state: dict[str, Any]) -> list[Any]:
        items = state.get(spec.items_field)
        if items is None:
            items = []
        if not isinstance(items, list):
            return [Send(target, {**state, ITEM_KEY: {"error": "it holds no list"}})]
        if not items:
            return [Send(target, {**state, ITEM_KEY: {"index": None, "total": 0}})]
        total = len(items)
        return [
            Send(target, {**state, ITEM_KEY: {"index": i, "total": total, "item": item}})
            for i, item in enumerate(items)
        ]

    return send


def _item(plan: NodePlan, spec: ParallelSpec) -> Callable[..., Any]:
    output_name = plan.node.outputs[0]

    async def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        ctx = _ctx(config)
        sent = state.get(ITEM_KEY) or {}
        if "error" in sent:
            raise NodeFailed(f"fan-out over {spec.items_field!r}: {sent['error']}")
        index, total = sent.get("index"), int(sent.get("total") or 0)
        value, spent = None, None
        if index is not None:
            where = {"item": sent.get("item"), "item_index": index}
            out = await run_step(ctx, plan, state, config=config, **where)
            value, spent = out[output_name], out[SPENT_KEY]
        collected = ctx.state.get(spec.collect_field)
        collected = (list(collected) if isinstance(collected, list) else []) + [None] * total
        collected = collected[:total]
        if index is not None:
            collected[index] = value
        ctx.state[spec.collect_field] = collected
        mark = {ITEM_KEY: True, "index": index, "total": total, "value": value}
        return {spec.collect_field: mark, SPENT_KEY: spent or {}}

    return run


def _router(node_id: str, routes: list[Route]) -> Callable[[dict[str, Any]], str]:
    compiled = [(None if r.is_default else parse_condition(r.expression), r.to) for r in routes]

    def route(state: dict[str, Any]) -> str:
        for condition, target in compiled:
            try:
                if condition is None or condition.evaluate(state):
                    return target
            except ConditionError as exc:
                source = condition.source if condition is not None else "default"
                raise NodeFailed(f"route after {node_id!r}: {source!r}: {exc}") from None
        raise NodeFailed(f"route after {node_id!r}: no route matched")  # validation forbids this

    return route


def _loop_router(node_id: str, spec: LoopSpec) -> Callable[[dict[str, Any]], str]:
    key = loop_key(node_id)

    def route(state: dict[str, Any]) -> str:
        done = state.get(spec.condition_field) is True
        return "exit" if done or int(state.get(key) or 0) >= spec.max_iterations else "again"

    return route


def _loop_exit(node_id: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    key = loop_key(node_id)

    def reset(_state: dict[str, Any]) -> dict[str, Any]:
        return {key: 0}

    return reset
