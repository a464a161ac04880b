"""One step of the graph: ask for approval (`interrupt_before`), then run the node — a model
(:func:`~.node.execute_node`), a person (`type: human`), who answers through LangGraph's
``interrupt`` (the run pauses with status `waiting` and resumes with the answer), or a
sub-workflow (`type: workflow`, :mod:`.subworkflow`)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from .context import NodeFailed, RunContext, spend_of_step
from .events import WaitingFor
from .node import NodePlan, execute_node, render_prompt
from .records import NodeRecord, Spend

__all__ = [
    "HUMAN_PROVIDER",
    "ITEM_KEY",
    "SPENT_KEY",
    "add_spend",
    "fan_out_item",
    "run_step",
    "waiting_for",
]

ITEM_KEY = "__configurable_agents_item__"
"""Key of a fan-out item in the state a ``Send`` hands its task, and of its result's mark."""

SPENT_KEY = "__configurable_agents_spent__"
"""Hidden state key: what the node executions whose writes are in the state cost. Saved with
each checkpoint, so a resumed run knows what completed work cost without a write of its own."""

HUMAN_PROVIDER = "human"
"""The `provider` of a human node's record: a person, not a model, answered."""


def add_spend(old: Any, new: Any) -> dict[str, Any]:
    """The :data:`SPENT_KEY` channel: spends add up."""
    return (Spend.from_dict(old or {}) + Spend.from_dict(new or {})).to_dict()


def fan_out_item(value: Any) -> tuple[int | None, int] | None:
    """``(index, total)`` of a fan-out item's result, or None for any other value."""
    if isinstance(value, dict) and value.get(ITEM_KEY) is True:
        return value.get("index"), int(value.get("total") or 0)
    return None


def waiting_for(
    plan: NodePlan,
    state: dict[str, Any],
    *,
    approval: bool,
    iteration: int | None = None,
    item: Any = None,
    item_index: int | None = None,
    path: str | None = None,
) -> WaitingFor:
    """What the node asks of a person: approval to run, or (a human node) its outputs;
    ``path`` names the node in the run (inside a sub-workflow, ``classify/approve``)."""
    node = plan.node
    if approval:
        what = node.description or f"node {node.name or node.id!r} is about to run"
        prompt, outputs, deadline = f"Approve? {what}", {}, None
    else:
        prompt = render_prompt(plan, state, item, item_index)
        outputs = plan.output_model.model_json_schema()
        deadline = time.time() + node.timeout if node.timeout else None
    return WaitingFor(
        node=path or node.id,
        kind="approval" if approval else "input",
        prompt=prompt,
        outputs=outputs,
        deadline=deadline,
        iteration=iteration,
        item_index=item_index,
        label=node.name,
    )


def _ask(waiting: WaitingFor) -> Any:
    from langgraph.types import interrupt

    return interrupt(waiting.to_dict())


async def run_step(
    ctx: RunContext,
    plan: NodePlan,
    state: dict[str, Any],
    *,
    iteration: int | None = None,
    item: Any = None,
    item_index: int | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Run the node once (after its approval, if it asks for one); the values it writes, with
    what it cost under :data:`SPENT_KEY`. ``config`` is the step's LangGraph run config, which
    a workflow node runs its sub-workflow with.

    Raises:
        NodeFailed: the node failed, or a person declined to approve it.
        BudgetExceeded: the next call would go over a budget.
    """
    node = plan.node
    where = {"iteration": iteration, "item": item, "item_index": item_index}
    if node.interrupt_before:
        answer = _ask(waiting_for(plan, state, approval=True, path=ctx.path(node.id), **where))
        if isinstance(answer, dict) and answer.get("approved") is False:
            raise NodeFailed(f"node {node.id!r} was not approved")
    ctx.emit(
        "node_started",
        {"node": node.id, "label": node.name, "iteration": iteration, "item_index": item_index},
    )
    with spend_of_step() as spent:
        if node.type == "human":
            output = _answered(ctx, plan, state, **where)
        elif node.type == "workflow":
            from .subworkflow import run_subworkflow

            output, inner = await run_subworkflow(ctx, plan, state, config, **where)
            spent.append(inner)  # what its sub-workflow's completed executions cost
        else:
            output = await execute_node(ctx, plan, state, **where)
    return {**output, SPENT_KEY: sum(spent, Spend()).to_dict()}


def _answered(
    ctx: RunContext,
    plan: NodePlan,
    state: dict[str, Any],
    *,
    iteration: int | None,
    item: Any,
    item_index: int | None,
) -> dict[str, Any]:
    waiting = waiting_for(
        plan,
        state,
        approval=False,
        iteration=iteration,
        item=item,
        item_index=item_index,
        path=ctx.path(plan.node.id),
    )
    answer = _ask(waiting)
    record = NodeRecord(
        node_id=plan.node.id,
        provider=HUMAN_PROVIDER,
        model="person",
        iteration=iteration,
        item_index=item_index,
        prompt=waiting.prompt,
    )
    record.started_ns = time.time_ns()
    try:
        record.output = plan.output_model.model_validate(answer).model_dump(mode="json")
        return record.output
    except ValidationError as exc:
        record.error = f"node {plan.node.id!r}: the answer does not fit its outputs: {exc}"
        raise NodeFailed(record.error) from None
    finally:
        ctx.record(record)
