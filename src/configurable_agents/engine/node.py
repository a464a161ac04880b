"""Executing one node: render the prompt, let the model call tools, get a valid structured reply.

The model answers through the `final_answer` tool, whose arguments are the node's output model.
A reply that fails validation is sent back with the validation error (up to `max_retries` times);
tool calls are executed and their results returned, at most `max_tool_calls` per execution.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..config.schema import Node
from ..config.templates import render_template
from ..llm.outputs import FINAL_ANSWER
from ..llm.settings import LLMSettings
from ..pricing import TokenUsage, estimate_tokens
from .calls import call_with_retries, describe_error
from .context import BudgetExceeded, NodeFailed, RunContext
from .records import FailedAttempt, ModelCallRecord, NodeRecord, ToolCallRecord

if TYPE_CHECKING:
    from .subworkflow import SubPlan

__all__ = ["NodePlan", "execute_node"]

MAX_TOOL_RESULT_CHARS = 20_000
"""Longest tool result handed back to the model; the rest is cut with a note."""


@dataclass
class NodePlan:
    """Everything prepared once per run for a node."""

    node: Node
    settings: LLMSettings
    output_model: type[BaseModel]
    tools: list[Any]
    max_retries: int
    final: bool = False
    """Whether an edge leads from the node to `END`: a live listener gets its reply's tokens."""
    subworkflow: SubPlan | None = None
    """A workflow node's sub-workflow, prepared (:mod:`.subworkflow`)."""


def _system_prompt(workflow_name: str, plan: NodePlan) -> str:
    tools = " You may call the other tools first." if plan.tools else ""
    return (
        f"You are step {plan.node.id!r} of the workflow {workflow_name!r}. "
        f"Give your result by calling the `{FINAL_ANSWER}` tool.{tools}"
    )


def _values(state: dict[str, Any], item: Any, item_index: int | None) -> dict[str, Any]:
    values = dict(state)
    if item_index is not None:
        values["item"] = item
        values["item_index"] = item_index
    return values


def render_prompt(plan: NodePlan, state: dict[str, Any], item: Any, item_index: int | None) -> str:
    """The node's prompt filled from state, its `inputs` and the fan-out item."""
    values = _values(state, item, item_index)
    for name, template in plan.node.inputs.items():
        values[name] = render_template(template, _values(state, item, item_index))
    return render_template(str(plan.node.prompt), values)  # references are resolved by now


async def execute_node(
    ctx: RunContext,
    plan: NodePlan,
    state: dict[str, Any],
    *,
    iteration: int | None = None,
    item: Any = None,
    item_index: int | None = None,
) -> dict[str, Any]:
    """Run the node once and return the values it writes (its outputs).

    The execution's record is kept in ``ctx`` whatever happens, with its spend so far.

    Raises:
        NodeFailed: no valid reply within the retries, or a tool failed with `on_error: fail`.
        BudgetExceeded: the next call would go over a budget.
    """
    from langchain_core.messages import HumanMessage, SystemMessage

    record = NodeRecord(
        node_id=plan.node.id,
        provider=plan.settings.provider,
        model=plan.settings.model,
        iteration=iteration,
        item_index=item_index,
    )
    started = time.perf_counter()
    record.started_ns = time.time_ns()
    try:
        record.prompt = render_prompt(plan, state, item, item_index)
        messages: list[Any] = [
            SystemMessage(_system_prompt(ctx.workflow.name, plan)),
            HumanMessage(record.prompt),
        ]
        output = await _converse(ctx, plan, messages, record)
        record.output = output
        return output
    except Exception as exc:
        record.error = str(exc) if isinstance(exc, NodeFailed) else describe_error(exc)
        raise
    finally:
        record.duration_s = time.perf_counter() - started
        ctx.record(record)


async def _converse(
    ctx: RunContext, plan: NodePlan, messages: list[Any], record: NodeRecord
) -> dict[str, Any]:
    retries_left = plan.max_retries
    while True:
        use_tools = bool(plan.tools) and len(record.tool_calls) < plan.node.max_tool_calls
        bound = ctx.bound_model(plan, use_tools)
        reply = await _call(ctx, plan, bound, messages, record)
        calls = reply.tool_calls or []
        final = next((c for c in calls if c["name"] == FINAL_ANSWER), None)
        if final is None and calls and use_tools:
            messages.append(reply)
            for call in calls:
                messages.append(await _run_tool(ctx, plan, call, record))
            continue
        problem = "the reply did not call final_answer"
        if final is not None:
            try:
                return plan.output_model.model_validate(final["args"]).model_dump(mode="json")
            except ValidationError as exc:
                problem = _validation_summary(exc)
        if retries_left <= 0:
            raise NodeFailed(
                f"node {plan.node.id!r}: no valid reply after {plan.max_retries + 1} "
                f"attempt(s): {problem}"
            )
        retries_left -= 1
        messages.extend(_feedback(reply, calls, problem))


async def _call(
    ctx: RunContext, plan: NodePlan, bound: Any, messages: list[Any], record: NodeRecord
) -> Any:
    prompt_tokens = sum(estimate_tokens(_content(m)) for m in messages)
    reservation = ctx.reserve(plan.node.id, plan.settings, prompt_tokens)
    usage = TokenUsage()
    pricer = functools.partial(ctx.prices.price, plan.settings.provider, plan.settings.model)
    call = ModelCallRecord(started_ns=time.time_ns(), pricer=pricer)
    record.calls.append(call)
    started = time.perf_counter()
    try:
        async with ctx.calls:
            reply = await call_with_retries(
                bound,
                messages,
                timeout=plan.settings.timeout,
                retries=plan.max_retries,
                config=ctx.callbacks(call.runs),
                on_failure=lambda started_ns, duration_s, exc: call.failed_attempts.append(
                    FailedAttempt(started_ns, duration_s, describe_error(exc))
                ),
                timeout_setting=(
                    f"timeout of node {plan.node.id!r}" if plan.node.timeout else "llm.timeout"
                ),
                on_chunk=_token_listener(ctx, plan),
            )
        usage = TokenUsage.from_metadata(getattr(reply, "usage_metadata", None))
        call.reply = reply.tool_calls or reply.content
        return reply
    except Exception as exc:
        call.error = describe_error(exc)
        raise
    finally:
        call.duration_s = time.perf_counter() - started
        call.usage = usage
        # Only a cost budget needs the price now; otherwise it is computed when first read.
        ctx.settle(reservation, usage, call.cost_usd if ctx.max_cost is not None else None)
        ctx.call_finished(plan.node.id, call)


async def _run_tool(
    ctx: RunContext, plan: NodePlan, call: dict[str, Any], record: NodeRecord
) -> Any:
    from langchain_core.messages import ToolMessage

    started = time.perf_counter()
    entry = ToolCallRecord(
        name=call["name"], args=dict(call.get("args") or {}), started_ns=time.time_ns()
    )
    record.tool_calls.append(entry)
    tool = next((t for t in plan.tools if t.name == call["name"]), None)
    metadata = (tool.metadata or {}) if tool is not None else {}
    entry.attributes = dict(metadata.get("span_attributes") or {})
    price = None
    if tool is not None:  # priced as the workflow names it (mcp:SERVER/TOOL), else as called
        price = ctx.prices.tool_price(metadata.get("tool", entry.name))
        price = ctx.prices.tool_price(entry.name) if price is None else price
    try:
        reservation = ctx.reserve_tool(plan.node.id, entry.name, price) if price else None
    except BudgetExceeded as exc:
        entry.error = f"not called: {exc}"
        raise
    try:
        if tool is None:
            raise LookupError(f"unknown tool {call['name']!r}")
        result = await tool.ainvoke(entry.args, ctx.callbacks(entry.runs))
        entry.cost_usd = price or entry.cost_usd
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        if len(text) > MAX_TOOL_RESULT_CHARS:
            text = text[:MAX_TOOL_RESULT_CHARS] + f"\n[cut: {len(text)} characters in all]"
        entry.result = text
    except Exception as exc:
        entry.error = describe_error(exc)
        on_error = (tool.metadata or {}).get("on_error", "fail") if tool is not None else "fail"
        if on_error == "fail":
            raise NodeFailed(
                f"node {plan.node.id!r}: tool {call['name']!r} failed: {entry.error}"
            ) from exc
        text = f"error: {entry.error}"
    finally:
        entry.duration_s = time.perf_counter() - started
        if reservation is not None:
            ctx.settle(reservation, TokenUsage(), entry.cost_usd)
    return ToolMessage(content=text, tool_call_id=call.get("id") or call["name"])


def _token_listener(ctx: RunContext, plan: NodePlan) -> Callable[[Any], None] | None:
    """For a final node of a run someone watches live: tells them each piece of the reply."""
    if not (plan.final and ctx.on_event is not None):
        return None

    def token(chunk: Any) -> None:
        text = chunk.content if isinstance(chunk.content, str) else ""
        for call in getattr(chunk, "tool_call_chunks", None) or ():
            text += call.get("args") or ""
        if text:
            ctx.emit("token", {"node": plan.node.id, "text": text})

    return token


def _feedback(reply: Any, calls: list[dict[str, Any]], problem: str) -> list[Any]:
    from langchain_core.messages import HumanMessage, ToolMessage

    instruction = f"That answer was not valid: {problem}. Call {FINAL_ANSWER} again, corrected."
    if not calls:
        return [reply, HumanMessage(instruction)]
    answers = [
        ToolMessage(content=instruction, tool_call_id=c.get("id") or c["name"]) for c in calls
    ]
    return [reply, *answers]


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(reply)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _content(message: Any) -> str:
    content = message.content
    text = content if isinstance(content, str) else json.dumps(content, default=str)
    calls = getattr(message, "tool_calls", None)
    return text + (json.dumps(calls, default=str) if calls else "")
