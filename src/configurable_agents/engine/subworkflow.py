"""Workflow nodes: a sub-workflow run as part of its parent's run.

The sub-workflow is prepared with its parent (its own nodes' settings, output models and tools)
and compiled once; each execution of the workflow node invokes that compiled graph as a
LangGraph subgraph, with the parent's run config, so that:

- with checkpoints, its steps are saved in the parent's thread (under the node's checkpoint
  namespace): a failure, a kill or a `human` node inside it resumes through the parent's
  ``resume`` without running its completed nodes again;
- its nodes run with a child of the parent's :class:`~.context.RunContext`: their calls reserve
  against the run's budgets, their records are the run's (named by path, ``classify/label``,
  under the workflow node's execution, so that their spans nest under its span), and live
  events name them by that path.

What the sub-workflow's own `config.execution` says (budgets, timeout, checkpoints, concurrency)
applies when it runs on its own; inside a parent, the parent's does. Its `config.llm`, tools and
prompts are its own; `--llm` overrides every node of both.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.loader import Workflow
from ..config.schema import Node
from ..config.templates import Placeholder, parse_template, render_template, resolve
from ..pricing import PriceBook, TokenUsage
from .calls import describe_error
from .context import BudgetExceeded, NodeFailed, RunContext
from .records import NodeRecord, Spend

if TYPE_CHECKING:
    from .node import NodePlan

__all__ = [
    "WORKFLOW_PROVIDER",
    "SubPlan",
    "all_plans",
    "find_plan",
    "prepare_subworkflow",
    "run_subworkflow",
    "sub_inputs",
    "subworkflow_servers",
]

WORKFLOW_PROVIDER = "workflow"
"""The `provider` of a workflow node's record (its `model` is the sub-workflow's name): its
sub-workflow's nodes made the calls, and have records of their own."""


@dataclass
class SubPlan:
    """A workflow node's sub-workflow, prepared.

    Attributes:
        workflow: The validated sub-workflow.
        plans: Its nodes' plans.
        graph: Its compiled graph, invoked as a subgraph.
        servers: The MCP servers its nodes' tools call (`config.tools.mcp_servers` of its
            file), stopped with the prepared parent.
    """

    workflow: Workflow
    plans: dict[str, NodePlan]
    graph: Any
    servers: Any = None


def prepare_subworkflow(
    parent: Workflow,
    node: Node,
    plans_of: Callable[[Workflow, Any], dict[str, NodePlan]],
    prices: PriceBook,
    problems: dict[str, list[str]],
    env: Mapping[str, str],
) -> NodePlan:
    """The plan of workflow node ``node`` of ``parent``: its sub-workflow's plans (made by
    ``plans_of`` from the sub-workflow and its MCP servers) and compiled graph. A problem of the
    sub-workflow's nodes is added to ``problems``; so is a model without a price when the parent
    has a cost budget (the sub-workflow's calls count against it)."""
    from ..llm.outputs import output_model
    from ..llm.settings import LLMSettings
    from ..tools.mcp import open_mcp_servers
    from .graph import build_graph
    from .node import NodePlan
    from .run import SetupError

    child = parent.subworkflows[node.id]
    settings = LLMSettings(provider="mock", model=WORKFLOW_PROVIDER)
    plan = NodePlan(node, settings, output_model(parent, node), [], 0)
    folder = Path(child.source).parent if child.source else None
    servers = open_mcp_servers(child.config, env, folder)
    try:
        child_plans = plans_of(child, servers)
    except SetupError as exc:
        if servers is not None:
            servers.close()
        problems.setdefault(f"sub-workflow {child.source or child.name}: {exc}", []).append(node.id)
        return plan
    for inner in child_plans.values():
        inner.final = False  # a live listener streams the run's final nodes, not a child's
    if parent.config.config.execution.max_cost_usd is not None:
        for path, inner in all_plans(child_plans):
            if inner.node.type == "llm" and _unpriced(prices, inner):
                problems.setdefault(
                    f"max_cost_usd is set but {inner.settings.provider}/{inner.settings.model} "
                    "has no known price, so the budget cannot be enforced",
                    [],
                ).append(f"{node.id}/{path}")
    plan.subworkflow = SubPlan(child, child_plans, build_graph(child, child_plans), servers)
    return plan


def subworkflow_servers(plans: dict[str, NodePlan]) -> list[Any]:
    """The MCP servers of every sub-workflow, to be stopped with the prepared workflow."""
    return [
        plan.subworkflow.servers
        for _, plan in all_plans(plans)
        if plan.subworkflow is not None and plan.subworkflow.servers is not None
    ]


def _unpriced(prices: PriceBook, plan: NodePlan) -> bool:
    settings = plan.settings
    return prices.price(settings.provider, settings.model, TokenUsage(1)).cost_usd is None


def all_plans(plans: dict[str, NodePlan], prefix: str = "") -> Iterator[tuple[str, NodePlan]]:
    """``(path, plan)`` of every node, those of sub-workflows included (``classify/label``)."""
    for node_id, plan in plans.items():
        yield f"{prefix}{node_id}", plan
        if plan.subworkflow is not None:
            yield from all_plans(plan.subworkflow.plans, f"{prefix}{node_id}/")


def find_plan(plans: dict[str, NodePlan], path: str) -> NodePlan:
    """The plan of the node at ``path`` (``approve``, or ``classify/approve`` in the
    sub-workflow of node ``classify``).

    Raises:
        KeyError: no such node.
    """
    head, _, rest = path.partition("/")
    plan = plans[head]
    if not rest:
        return plan
    if plan.subworkflow is None:
        raise KeyError(path)
    return find_plan(plan.subworkflow.plans, rest)


def sub_inputs(
    node: Node, state: dict[str, Any], item: Any = None, item_index: int | None = None
) -> dict[str, Any]:
    """The sub-workflow's inputs: each of the node's `inputs` templates filled from ``state``.
    A template that is one placeholder gives the value itself (typed); any other, the text it
    renders to. A value that is ``null`` is left out, so that the field's default applies."""
    values = dict(state)
    if item_index is not None:
        values["item"] = item
        values["item_index"] = item_index
    given: dict[str, Any] = {}
    for name, template in node.inputs.items():
        parts = parse_template(template)
        if len(parts) == 1 and isinstance(parts[0], Placeholder):
            try:
                value = copy.deepcopy(resolve(parts[0].path, values))
            except KeyError:
                value = None
        else:
            value = render_template(template, values)
        if value is not None:
            given[name] = value
    return given


async def run_subworkflow(
    ctx: RunContext,
    plan: NodePlan,
    state: dict[str, Any],
    config: Any,
    *,
    iteration: int | None = None,
    item: Any = None,
    item_index: int | None = None,
) -> tuple[dict[str, Any], Spend]:
    """Run the node's sub-workflow once: the values the node writes (its outputs), and what
    the sub-workflow's completed node executions cost (all of its attempts', as its checkpoint
    keeps them).

    The node's own record (no calls of its own: those are its sub-workflow's nodes' records) is
    kept in ``ctx`` whatever happens, also when the sub-workflow pauses for a person.

    Raises:
        NodeFailed: the sub-workflow failed, or cannot take the inputs.
        BudgetExceeded: a call of the sub-workflow would go over a budget of the run.
    """
    from .graph import CONTEXT_KEY
    from .inputs import InputError, check_inputs
    from .steps import SPENT_KEY

    sub = plan.subworkflow
    assert sub is not None, "a workflow node is prepared with its sub-workflow"
    node = plan.node
    path = ctx.path(node.id)
    record = NodeRecord(
        node_id=node.id,
        provider=WORKFLOW_PROVIDER,
        model=sub.workflow.name,
        iteration=iteration,
        item_index=item_index,
    )
    started = time.perf_counter()
    record.started_ns = time.time_ns()
    child = ctx.child(sub.workflow, node.id, record.execution_id)
    try:
        given = sub_inputs(node, state, item, item_index)
        record.inputs = given
        try:
            child_state = check_inputs(sub.workflow, given)
        except InputError as exc:
            raise NodeFailed(
                f"node {path!r}: sub-workflow {sub.workflow.name!r} cannot take its inputs: {exc}"
            ) from None
        configurable = {**config["configurable"], CONTEXT_KEY: child}
        final = await sub.graph.ainvoke(child_state, {**config, "configurable": configurable})
        outputs = {outer: final.get(inner) for inner, outer in node.output_map.items()}
        record.output = outputs
        return outputs, Spend.from_dict(final.get(SPENT_KEY) or {})
    except NodeFailed as exc:
        message = str(exc)
        if not message.startswith(f"node {path!r}"):
            message = f"node {path!r}: sub-workflow {sub.workflow.name!r} failed: {message}"
        record.error = message
        raise NodeFailed(message) from None
    except BudgetExceeded as exc:
        record.error = str(exc)
        raise
    except Exception as exc:
        if not _pauses(exc):
            record.error = describe_error(exc)
        raise
    finally:
        record.duration_s = time.perf_counter() - started
        ctx.record(record)


def _pauses(exc: BaseException) -> bool:
    """Whether ``exc`` is LangGraph's way of pausing the run (a person is asked)."""
    from langgraph.errors import GraphBubbleUp

    return isinstance(exc, GraphBubbleUp)
