"""A run's trace as MLflow span dictionaries, built from its records after the run.

The dictionaries have the shape of ``mlflow.entities.Span.to_dict()`` (attribute values JSON
encoded), so that they can wait in the spool as JSON and become MLflow spans with
``Span.from_dict`` in the writer. Building them imports nothing from MLflow.

One trace per run, and per attempt of a resumed run (its totals are the attempt's; its tags name
the attempt and the trace it resumed): a root span ``workflow_<name>`` (with the run's session
as ``session.id``, which MLflow makes the trace's session), an ``AGENT`` span per node execution
(named after the node's display `name` when it has one; a sub-workflow's node executions are
nested under the span of the workflow node that ran them, whose cost is theirs), a
``CHAT_MODEL`` span per model call
(token usage, cost, model and provider in MLflow's own attributes) and a ``TOOL`` span per tool
call. Each failed attempt of a model call (a timeout, a
transient error that was retried) is an ``ERROR`` child of the call's span, with its duration.

With autolog, the LangChain runs captured during a call (``engine.capture``) join the trace: the
call's own run (the chat model's last attempt, or the tool's run) is merged into the call's span,
whose usage, cost, model and provider stay ours; earlier attempts and nested runs become its
children.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ..config.loader import Workflow
from ..engine.records import (
    LangChainRun,
    ModelCallRecord,
    NodeRecord,
    RunResult,
    ToolCallRecord,
)
from ..engine.subworkflow import WORKFLOW_PROVIDER
from ..pricing import Price
from . import layout
from .layout import PROMPTS_ATTRIBUTE
from .models import HASH_ATTRIBUTE, workflow_hash
from .traceparent import parse_traceparent

__all__ = ["TraceSpans", "attempt_unpriced", "build_trace", "run_tags", "session_of", "span_dict"]

Scrub = Callable[[Any], Any]
TraceSpans = tuple[str, list[dict[str, Any]]]

_OK = "STATUS_CODE_OK"
_ERROR = "STATUS_CODE_ERROR"
_PAYLOAD = ("mlflow.spanInputs", "mlflow.spanOutputs")
_USAGE = "mlflow.chat.tokenUsage"
_CHAT_KINDS = ("CHAT_MODEL", "LLM")


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _cost(cost: Decimal | None) -> float | None:
    return None if cost is None else float(cost)


def _llm_cost(price: Price) -> dict[str, float]:
    """MLflow's cost shape (its trace cost and Overview charts sum input and output); empty when
    unpriced, so that the store does not price the call itself."""
    if price.cost_usd is None:
        return {}
    return {
        "input_cost": float(price.input_usd or 0),
        "output_cost": float(price.output_usd or 0),
        "total_cost": float(price.cost_usd),
    }


class _Builder:
    def __init__(self, trace_hex: str, scrub: Scrub, log_prompts: bool) -> None:
        self.trace_hex = trace_hex
        self.trace_id = f"tr-{trace_hex}"
        self.scrub = scrub
        self.log_prompts = log_prompts
        self.spans: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        kind: str,
        start_ns: int,
        duration_s: float,
        parent: str | None,
        attributes: dict[str, Any],
        error: str | None = None,
        span_hex: str | None = None,
    ) -> str:
        span_hex = span_hex or secrets.token_hex(8)
        encoded = {"mlflow.traceRequestId": json.dumps(self.trace_id)}
        encoded["mlflow.spanType"] = json.dumps(kind)
        for key, value in attributes.items():
            if value is not None:
                encoded[key] = json.dumps(self.scrub(value), default=str, ensure_ascii=False)
        events = []
        if error is not None:
            events.append(
                {
                    "name": "exception",
                    "time_unix_nano": start_ns + _ns(duration_s),
                    "attributes": {"exception.message": self.scrub(error)},
                }
            )
        self.spans.append(
            {
                "trace_id": _b64(self.trace_hex),
                "span_id": _b64(span_hex),
                "parent_span_id": _b64(parent) if parent else None,
                "name": name,
                "start_time_unix_nano": start_ns,
                "end_time_unix_nano": start_ns + max(_ns(duration_s), 1),
                "events": events,
                "status": {"code": _ERROR if error else _OK, "message": self.scrub(error or "")},
                "attributes": encoded,
                "links": [],
            }
        )
        return span_hex

    def prompts(self, value: Any) -> Any:
        return value if self.log_prompts else None


def span_dict(
    trace_hex: str,
    span_hex: str,
    parent_hex: str | None,
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    *,
    error: str | None = None,
    scrub: Scrub = lambda value: value,
) -> dict[str, Any]:
    """One span dictionary, like those of :func:`build_trace`: a span of user code
    (``configurable_agents.tracing``), whose ids are chosen when it opens."""
    builder = _Builder(trace_hex, scrub, log_prompts=True)
    duration_s = (end_ns - start_ns) / 1e9
    builder.add(name, kind, start_ns, duration_s, parent_hex, attributes, error, span_hex)
    return builder.spans[0]


def build_trace(
    result: RunResult,
    workflow: Workflow,
    *,
    scrub: Scrub = lambda value: value,
    log_prompts: bool = True,
    trace_hex: str | None = None,
    parent_hex: str | None = None,
) -> TraceSpans:
    """The trace id (``tr-...``) and the span dictionaries of a finished run; ``trace_hex`` (32
    hex digits) sets the trace id, e.g. to export a recorded run under its MLflow trace id, and
    ``parent_hex`` (16 hex digits, a span of that trace) makes the root that span's child, as in
    a caller's trace."""
    builder = _Builder(trace_hex or secrets.token_hex(16), scrub, log_prompts)
    flow = workflow.config.flow
    tags = {
        layout.TAG_WORKFLOW: flow.name,
        layout.TAG_WORKFLOW_VERSION: flow.version or "",
        layout.TAG_STATUS: result.status.value,
        layout.TRACE_NAME: flow.name,  # reports group by trace name (query_trace_metrics)
        layout.TAG_UNPRICED: "true" if attempt_unpriced(result) else "false",
        **result.tags,
        **run_tags(result),
    }
    usage = result.attempt_usage  # the earlier attempts' calls are in their own traces
    waiting = result.status.value == "waiting"
    root_attributes: dict[str, Any] = {
        "mlflow.spanInputs": result.inputs,
        "mlflow.spanOutputs": result.outputs,
        "workflow.name": flow.name,
        "workflow.version": flow.version,
        HASH_ATTRIBUTE: workflow_hash(workflow),  # its version's MLflow model (models.py)
        "workflow.node_count": len(workflow.config.nodes),
        "workflow.run_id": result.run_id,
        "workflow.status": result.status.value,
        layout.SPAN_TOTAL_COST: float(result.attempt_cost_usd),
        "workflow.total_tokens": usage.total_tokens,
        "workflow.unpriced": attempt_unpriced(result),
        "user.id": result.tags.get("user_id"),
        layout.SPAN_SESSION: session_of(result),
        layout.SPAN_ATTEMPT: result.attempt,
        layout.SPAN_RESUMED_FROM: result.resumed_from,
        layout.SPAN_WAITING: [_waiting(builder, w.to_dict()) for w in result.waiting] or None,
    }
    root_attributes.update({f"mlflow.traceTag.{k}": str(v) for k, v in tags.items()})
    if workflow.prompt_versions:
        root_attributes[PROMPTS_ATTRIBUTE] = sorted(set(workflow.prompt_versions.values()))
    root = builder.add(
        f"workflow_{flow.name}",
        "CHAIN",
        result.started_ns,
        result.duration_s,
        parent_hex,
        root_attributes,
        None if result.status.value == "success" or waiting else result.error,
    )
    labels = _labels(workflow)
    spans = {record.execution_id: secrets.token_hex(8) for record in result.records}
    inner: dict[str, list[NodeRecord]] = {}  # a workflow node's execution -> its sub-workflow's
    for record in result.records:
        if record.parent_execution_id in spans:
            inner.setdefault(record.parent_execution_id, []).append(record)

    def add(record: NodeRecord, parent: str) -> None:
        prompt = workflow.prompt_versions.get(record.node_id)
        own = spans[record.execution_id]
        cost = _subtree_cost(record, inner)
        _node_spans(builder, record, parent, prompt, labels.get(record.node_id), own, cost)
        for child in inner.get(record.execution_id, ()):
            add(child, own)

    for record in result.records:
        if record.parent_execution_id not in spans:
            add(record, root)
    return builder.trace_id, builder.spans


def _labels(workflow: Workflow, prefix: str = "") -> dict[str, str]:
    """Display labels by node path, sub-workflows' nodes included (``classify/label``)."""
    labels = {f"{prefix}{n.id}": n.name for n in workflow.config.nodes if n.name}
    for node_id, child in workflow.subworkflows.items():
        labels.update(_labels(child, f"{prefix}{node_id}/"))
    return labels


def _subtree_cost(record: NodeRecord, inner: dict[str, list[NodeRecord]]) -> Decimal | None:
    """A node execution's cost, with its sub-workflow's (a workflow node's own calls are its
    sub-workflow's nodes' calls); ``None`` when a call is unpriced."""
    cost = record.cost_usd
    for child in inner.get(record.execution_id, ()):
        more = _subtree_cost(child, inner)
        cost = None if cost is None or more is None else cost + more
    return cost


def attempt_unpriced(result: RunResult) -> bool:
    """Whether a model call of this attempt had no known price (its trace's totals miss it)."""
    return any(record.unpriced for record in result.records)


def session_of(result: RunResult) -> str | None:
    """The run's session: its ``session_id``, else its ``session_id`` tag (the older way)."""
    return result.session_id or result.tags.get("session_id") or None


def run_tags(result: RunResult) -> dict[str, str]:
    """The trace (and run) tags of a resumed run and of a run in a caller's W3C trace:
    :data:`~.layout.TAG_ATTEMPT`, :data:`~.layout.TAG_RESUMED_FROM`,
    :data:`~.layout.TAG_PARENT_TRACE` and :data:`~.layout.TAG_PARENT_SPAN`, those that apply."""
    tags: dict[str, str] = {}
    if result.attempt > 1:
        tags[layout.TAG_ATTEMPT] = str(result.attempt)
        if result.resumed_from:
            tags[layout.TAG_RESUMED_FROM] = result.resumed_from
    caller = parse_traceparent(result.traceparent)
    if caller is not None:
        tags[layout.TAG_PARENT_TRACE] = caller.trace_id
        tags[layout.TAG_PARENT_SPAN] = caller.span_id
    return tags


def _waiting(builder: _Builder, waiting: dict[str, Any]) -> dict[str, Any]:
    """What a waiting run waits for; the prompt shown to the person only with `log_prompts`."""
    if not builder.log_prompts:
        waiting = {k: v for k, v in waiting.items() if k != "prompt"}
    return waiting


def _node_spans(
    builder: _Builder,
    record: NodeRecord,
    parent: str,
    prompt: str | None,
    label: str | None,
    span_hex: str | None = None,
    cost: Decimal | None = None,
) -> None:
    workflow_node = record.provider == WORKFLOW_PROVIDER
    inputs = {"inputs": record.inputs} if workflow_node else {"prompt": record.prompt}
    attributes = {
        **_prompt_attributes(prompt),
        "mlflow.spanInputs": builder.prompts(inputs),
        "mlflow.spanOutputs": record.output,
        "node.id": record.node_id,
        layout.SPAN_NODE_LABEL: label,
        "node.iteration": record.iteration,
        "node.item_index": record.item_index,
        "node.model_calls": record.model_calls,
        layout.SPAN_NODE_COST: _cost(cost if workflow_node else record.cost_usd),
        "node.price_source": record.price_source,
        "node.workflow": record.model if workflow_node else None,
    }
    node = builder.add(
        label or record.node_id.rpartition("/")[2],
        "AGENT",
        record.started_ns,
        record.duration_s,
        parent,
        attributes,
        record.error,
        span_hex,
    )
    for call in record.calls:
        _call_span(builder, record, call, node, prompt)
    for tool in record.tool_calls:
        _tool_span(builder, tool, node)


def _prompt_attributes(prompt: str | None) -> dict[str, Any]:
    """``prompt.name`` and ``prompt.version`` of a registry prompt (``name/3``), if any."""
    if prompt is None:
        return {}
    name, _, version = prompt.rpartition("/")
    return {"prompt.name": name, "prompt.version": int(version)}


def _call_span(
    builder: _Builder, record: NodeRecord, call: ModelCallRecord, parent: str, prompt: str | None
) -> None:
    usage = call.usage
    attributes = {
        **_prompt_attributes(prompt),
        "mlflow.spanInputs": builder.prompts(
            {"messages": [{"role": "user", "content": record.prompt}]}
        ),
        "mlflow.spanOutputs": builder.prompts(call.reply),
        "mlflow.llm.model": record.model,
        "mlflow.llm.provider": record.provider,
        "mlflow.chat.tokenUsage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            # MLflow's names, so that its trace totals count them; input_tokens includes both
            "cache_read_input_tokens": usage.cached_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
        },
        "mlflow.llm.cost": _llm_cost(call.price),
        "gen_ai.request.model": record.model,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    own = _own_run(call.runs, _CHAT_KINDS)
    if own is not None:  # LangChain's messages and parameters; our usage, cost and model
        langchain = _run_attributes(builder, own)
        ours = {k: v for k, v in attributes.items() if k not in _PAYLOAD}
        usage_keys = {**langchain.get(_USAGE, {}), **attributes[_USAGE]}
        attributes = {**langchain, **ours, _USAGE: usage_keys}
    span = builder.add(
        f"{record.provider}/{record.model}",
        "CHAT_MODEL",
        call.started_ns,
        call.duration_s,
        parent,
        attributes,
        call.error,
    )
    if call.runs:  # autolog: LangChain's run of each attempt, failed ones included
        _inner_spans(builder, call.runs, own, span, _attempt_endings(call))
        return
    for number, attempt in enumerate(call.failed_attempts, 1):
        builder.add(
            f"attempt {number}",
            "CHAT_MODEL",
            attempt.started_ns,
            attempt.duration_s,
            span,
            {"mlflow.llm.model": record.model, "mlflow.llm.provider": record.provider},
            attempt.error,
        )


def _tool_span(builder: _Builder, tool: ToolCallRecord, parent: str) -> None:
    attributes: dict[str, Any] = {"mlflow.spanInputs": tool.args, "mlflow.spanOutputs": tool.result}
    attributes.update(tool.attributes)  # an MCP tool's mcp.server and mcp.tool
    if tool.cost_usd:  # as a "model" of provider `tool`, so that cost reports group it by name
        attributes["mlflow.llm.cost"] = {"total_cost": float(tool.cost_usd)}
        attributes["mlflow.llm.model"] = tool.name
        attributes["mlflow.llm.provider"] = "tool"
    own = _own_run(tool.runs, ("TOOL",))
    if own is not None:
        attributes = {**_run_attributes(builder, own), **attributes}
    span = builder.add(
        tool.name, "TOOL", tool.started_ns, tool.duration_s, parent, attributes, tool.error
    )
    _inner_spans(builder, tool.runs, own, span)


def _own_run(runs: list[LangChainRun], kinds: tuple[str, ...]) -> LangChainRun | None:
    """The call's own LangChain run: its last top-level run of the call's kind (earlier ones
    are attempts that failed and were retried)."""
    tops = [r for r in runs if r.parent_run_id is None and r.span_type in kinds]
    return tops[-1] if tops else None


def _attempt_endings(call: ModelCallRecord) -> dict[str, tuple[int, int, str]]:
    """The start, end and error of each attempt's LangChain run that never ended, as the attempt
    was timed: an attempt cancelled at `llm.timeout` is never told to LangChain's callbacks.
    Attempts and top-level chat runs pair in order."""
    tops = [r for r in call.runs if r.parent_run_id is None and r.span_type in _CHAT_KINDS]
    return {
        run.run_id: (
            attempt.started_ns,
            attempt.started_ns + _ns(attempt.duration_s),
            attempt.error,
        )
        for run, attempt in zip(tops, call.failed_attempts, strict=False)
        if not run.ended_ns
    }


def _run_attributes(builder: _Builder, run: LangChainRun) -> dict[str, Any]:
    if run.span_type == "TOOL":  # like our tool spans, a tool's arguments and result are logged
        return run.attributes
    return {k: builder.prompts(v) if k in _PAYLOAD else v for k, v in run.attributes.items()}


def _inner_spans(
    builder: _Builder,
    runs: list[LangChainRun],
    own: LangChainRun | None,
    parent: str,
    endings: dict[str, tuple[int, int, str]] | None = None,
) -> None:
    """Every captured run but the merged one, under its own parent run, else under ``parent``;
    ``endings`` time the runs that LangChain never ended."""
    spans = {own.run_id: parent} if own is not None else {}
    for run in runs:
        if run is own:
            continue
        default = (run.started_ns, run.ended_ns, run.error)
        started_ns, ended_ns, error = (endings or {}).get(run.run_id, default)
        error = error or (None if ended_ns else "the run did not end")
        spans[run.run_id] = builder.add(
            run.name,
            run.span_type,
            started_ns,
            max(ended_ns - started_ns, 0) / 1e9,
            spans.get(run.parent_run_id or "", parent),
            _run_attributes(builder, run),
            error,
        )
