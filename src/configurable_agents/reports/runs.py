"""Recent runs and one run's profile, read from their MLflow traces."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..observability import layout
from .query import ReportError, ReportQuery, Store, open_store
from .traces import search_filter

__all__ = ["BOTTLENECK_SHARE", "NodeTiming", "RunProfile", "RunSummary", "list_runs", "profile_run"]

BOTTLENECK_SHARE = 0.5
"""A node execution taking more than this share of its run's time is a bottleneck."""


@dataclass
class RunSummary:
    """One recorded run.

    Attributes:
        trace_id: Its MLflow trace (what ``report profile`` takes).
        workflow: Its workflow.
        status: ``success``, ``failed``, ``budget_exceeded``, ``timeout``, ``cancelled`` or
            ``waiting``.
        start: When it started (UTC, ISO 8601).
        duration_s: Its wall time.
        tokens: Tokens of its model calls.
        cost_usd: Cost of its priced calls.
        unpriced: Whether some model of the run has no price (its calls are not in the cost).
    """

    trace_id: str
    workflow: str
    status: str
    start: str
    duration_s: float
    tokens: int
    cost_usd: float
    unpriced: bool


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def _resumed(store: Store, trace_id: str) -> bool:
    """Whether a later attempt of the run resumed from trace ``trace_id``."""
    later = store.client.search_traces(
        locations=store.experiment_ids,
        filter_string=f"tag.{layout.TAG_RESUMED_FROM} = '{trace_id}'",
        max_results=1,
        include_spans=False,
    )
    return bool(later)


def list_runs(query: ReportQuery, limit: int = 20) -> list[RunSummary]:
    """The ``limit`` newest runs the query covers, newest first.

    Raises:
        ReportError: the store cannot be read.
    """
    store = open_store(query)
    traces = store.client.search_traces(
        locations=store.experiment_ids,
        filter_string=search_filter(query) or None,
        max_results=limit,
        order_by=["timestamp_ms DESC"],
        include_spans=False,
    )
    if query.status == "waiting":
        traces = [t for t in traces if not _resumed(store, t.info.trace_id)]
    runs = []
    for trace in traces:
        info = trace.info
        usage = json.loads(info.trace_metadata.get(layout.TRACE_TOKENS) or "{}")
        unpriced = info.tags.get(layout.TAG_UNPRICED) == "true"
        runs.append(
            RunSummary(
                trace_id=info.trace_id,
                workflow=info.tags.get(layout.TAG_WORKFLOW, ""),
                status=info.tags.get(layout.TAG_STATUS, str(info.state)),
                start=_iso(info.request_time),
                duration_s=(info.execution_duration or 0) / 1000,
                tokens=int(usage.get("total_tokens", 0)),
                cost_usd=_priced_cost(store, info) if unpriced else _trace_cost(info),
                unpriced=unpriced,
            )
        )
    return runs


def _trace_cost(info: Any) -> float:
    cost = json.loads(info.trace_metadata.get(layout.TRACE_COST) or "{}")
    return float(cost.get("total_cost", 0.0))


def _priced_cost(store: Store, info: Any) -> float:
    """The store may price calls we left unpriced; the run's own total counts only ours."""
    root = next(s for s in store.client.get_trace(info.trace_id).data.spans if s.parent_id is None)
    return float(root.get_attribute(layout.SPAN_TOTAL_COST) or 0.0)


@dataclass
class NodeTiming:
    """One node execution in a run's waterfall.

    Attributes:
        node: The node.
        iteration: Loop iteration, if any.
        item_index: Fan-out item, if any.
        start_ms: Start, in milliseconds after the run started.
        duration_ms: Wall time.
        share: Share of the run's wall time.
        tokens: Tokens of its model calls.
        cost_usd: Cost of its calls; ``None`` when unpriced.
        model: ``provider/model`` it called.
        status: ``OK`` or ``ERROR``.
        bottleneck: Whether it took more than half the run's time.
    """

    node: str
    iteration: int | None
    item_index: int | None
    start_ms: float
    duration_ms: float
    share: float
    tokens: int
    cost_usd: float | None
    model: str
    status: str
    bottleneck: bool


@dataclass
class RunProfile:
    """Where one run's time and money went."""

    trace_id: str
    workflow: str
    status: str
    start: str
    duration_ms: float
    cost_usd: float
    tokens: int
    unpriced: bool
    nodes: list[NodeTiming] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def profile_run(query: ReportQuery, run: str) -> RunProfile:
    """The per-node waterfall of run ``run``: a trace id (``tr-...``), an MLflow run id, or
    ``latest`` for the newest run the query covers.

    Raises:
        ReportError: no such run, or the store cannot be read.
    """
    from mlflow.exceptions import MlflowException

    store = open_store(query)
    if run == "latest":
        found = list_runs(query, limit=1)
        if not found:
            raise ReportError(f"no runs in {query.tracking_uri}")
        run = found[0].trace_id
    try:
        if not run.startswith("tr-"):
            run = store.client.get_run(run).data.tags[layout.RUN_TAG_TRACE]
        trace = store.client.get_trace(run)
    except (MlflowException, KeyError):
        raise ReportError(f"no run {run!r} in {query.tracking_uri}") from None
    spans = trace.data.spans
    root = next(s for s in spans if s.parent_id is None)
    total_ns = max(root.end_time_ns - root.start_time_ns, 1)
    calls: dict[str, list[Any]] = {}
    for span in spans:
        if span.span_type == "CHAT_MODEL":
            calls.setdefault(span.parent_id, []).append(span)
    nodes = []
    for span in sorted((s for s in spans if s.span_type == "AGENT"), key=lambda s: s.start_time_ns):
        duration = span.end_time_ns - span.start_time_ns
        own = calls.get(span.span_id, [])
        tokens = sum((c.get_attribute("mlflow.chat.tokenUsage") or {}).get("total_tokens", 0)
                     for c in own)  # fmt: skip
        nodes.append(
            NodeTiming(
                node=str(span.get_attribute("node.id") or span.name),  # a label names it
                iteration=span.get_attribute("node.iteration"),
                item_index=span.get_attribute("node.item_index"),
                start_ms=(span.start_time_ns - root.start_time_ns) / 1e6,
                duration_ms=duration / 1e6,
                share=duration / total_ns,
                tokens=int(tokens),
                cost_usd=span.get_attribute(layout.SPAN_NODE_COST),
                model=own[0].name if own else "",
                status=str(span.status.status_code),
                bottleneck=duration / total_ns > BOTTLENECK_SHARE,
            )
        )
    usage = json.loads(trace.info.trace_metadata.get(layout.TRACE_TOKENS) or "{}")
    return RunProfile(
        trace_id=trace.info.trace_id,
        workflow=trace.info.tags.get(layout.TAG_WORKFLOW, ""),
        status=trace.info.tags.get(layout.TAG_STATUS, ""),
        start=_iso(trace.info.request_time),
        duration_ms=total_ns / 1e6,
        cost_usd=float(root.get_attribute(layout.SPAN_TOTAL_COST) or 0.0),
        tokens=int(usage.get("total_tokens", 0)),
        unpriced=trace.info.tags.get(layout.TAG_UNPRICED) == "true",
        nodes=nodes,
    )
