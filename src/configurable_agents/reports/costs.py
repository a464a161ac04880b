"""Cost reports: totals, breakdowns and periods of the runs a query covers.

Two ways to the same figures, from what runs record (see ``docs/OBSERVABILITY.md``):

- ``traces`` (default where the store has it): MLflow's ``query_trace_metrics`` aggregates in
  the store, grouped by trace name (the workflow), trace status, model and time bucket: run
  counts and tokens from the traces, costs from the ``CHAT_MODEL`` spans' ``mlflow.llm.cost``
  (an unpriced call's is empty, so it adds nothing). Runs with an unpriced model are counted by
  their ``unpriced=true`` tag; the newest of them are read span by span to name their models.
- ``runs``: page every MLflow run with ``search_runs`` and sum its metrics (``total_cost_usd``,
  ``total_tokens``, ``node_<id>_cost_usd``). Used for stores without trace metrics, traces
  recorded before traces were named after their workflow, and the per-node breakdown.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..observability import layout
from .query import ReportError, ReportQuery, Store, open_store
from .tags import TAG_PREFIX, tag_breakdown, tag_keys
from .traces import TraceMetrics, unpriced_traces, unsupported

__all__ = ["AGGREGATES", "BREAKDOWNS", "DEFAULT_BREAKDOWNS", "CostReport", "cost_report"]

BREAKDOWNS = ("workflow", "model", "node")
"""Breakdowns by name; ``tag:KEY`` (any run tag) is one too."""
DEFAULT_BREAKDOWNS = ("workflow", "model")
"""What ``--breakdown`` with no value (and no ``--breakdown`` at all) gives."""
AGGREGATES = ("daily", "weekly", "monthly")
Source = Literal["auto", "traces", "runs"]
UNPRICED_LISTED = 20
"""Most runs with an unpriced model listed by id (newest first); all are counted."""


def period_label(ms: float, aggregate_by: str) -> str:
    """The period a UTC millisecond falls in: ``2026-11-25``, ``2026-W48`` or ``2026-11``."""
    day = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()
    if aggregate_by == "daily":
        return day.isoformat()
    if aggregate_by == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


@dataclass
class CostReport:
    """What the runs a query covers cost (USD) and used (tokens).

    ``total_cost_usd`` is the cost of every priced model call. Runs with an unpriced model are
    counted among the runs and in ``unpriced``, their priced calls in the costs, their unpriced
    calls nowhere (never as $0).

    Attributes:
        total_cost_usd: Cost of the priced model calls.
        total_runs: Runs covered.
        successful: Runs that succeeded.
        failed: Runs that did not (failed, budget or time exceeded, cancelled).
        total_tokens: Tokens of every model call, priced or not.
        by_workflow: Per workflow (when asked for): ``workflow``, ``runs``, ``successful``,
            ``failed``, ``tokens``, ``cost_usd``.
        by_model: Per model (when asked for): ``model``, ``provider``, ``cost_usd``.
        by_node: Per node (when asked for): ``workflow``, ``node``, ``cost_usd``.
        by_tag: Per tag key asked for (``tag:KEY``), one row per value: ``value`` (``(none)``
            for runs without the tag), ``runs``, ``successful``, ``failed``, ``tokens``,
            ``cost_usd``.
        periods: Per period (when asked for): ``period``, ``runs``, ``cost_usd``,
            ``by_workflow`` and ``by_model`` (name to cost).
        unpriced: ``runs`` (count), ``models`` (``provider/model`` unpriced in the runs
            listed) and ``trace_ids`` (up to 20, newest first) of the runs with an unpriced
            model.
        source: ``traces`` or ``runs``: how the figures were read.
        filters: The query.
    """

    total_cost_usd: float = 0.0
    total_runs: int = 0
    successful: int = 0
    failed: int = 0
    total_tokens: int = 0
    by_workflow: list[dict[str, Any]] = field(default_factory=list)
    by_model: list[dict[str, Any]] = field(default_factory=list)
    by_node: list[dict[str, Any]] = field(default_factory=list)
    by_tag: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    periods: list[dict[str, Any]] = field(default_factory=list)
    unpriced: dict[str, Any] = field(
        default_factory=lambda: {"runs": 0, "models": [], "trace_ids": []}
    )
    source: str = "traces"
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def avg_cost_per_run(self) -> float:
        """Mean cost of a run (0 with no runs)."""
        return self.total_cost_usd / self.total_runs if self.total_runs else 0.0

    @property
    def avg_tokens_per_run(self) -> float:
        """Mean tokens of a run (0 with no runs)."""
        return self.total_tokens / self.total_runs if self.total_runs else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``--format json`` writes)."""
        data = asdict(self)
        data["avg_cost_per_run"] = self.avg_cost_per_run
        data["avg_tokens_per_run"] = self.avg_tokens_per_run
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostReport:
        """The report :meth:`to_dict` (or a JSON export) describes."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


class _Totals:
    """Figures being summed, whichever way they are read."""

    def __init__(self) -> None:
        self.workflows: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"runs": 0, "successful": 0, "failed": 0, "tokens": 0, "cost_usd": 0.0}
        )
        self.models: dict[tuple[str, str], float] = defaultdict(float)
        self.nodes: dict[tuple[str, str], float] = defaultdict(float)
        self.periods: dict[str, dict[str, Any]] = {}
        self.unpriced_runs = 0
        self.unpriced_models: set[str] = set()
        self.unpriced_ids: list[tuple[int, str]] = []

    def period(self, label: str) -> dict[str, Any]:
        if label not in self.periods:
            self.periods[label] = {
                "period": label,
                "runs": 0,
                "cost_usd": 0.0,
                "by_workflow": defaultdict(float),
                "by_model": defaultdict(float),
            }
        return self.periods[label]

    def report(
        self, source: str, query: ReportQuery, breakdown: tuple[str, ...], dated: bool
    ) -> CostReport:
        workflows = [{"workflow": name, **self.workflows[name]} for name in sorted(self.workflows)]
        return CostReport(
            total_cost_usd=sum(w["cost_usd"] for w in workflows),
            total_runs=sum(w["runs"] for w in workflows),
            successful=sum(w["successful"] for w in workflows),
            failed=sum(w["failed"] for w in workflows),
            total_tokens=sum(w["tokens"] for w in workflows),
            by_workflow=workflows if "workflow" in breakdown else [],
            by_model=[
                {"model": model, "provider": provider, "cost_usd": cost}
                for (provider, model), cost in sorted(
                    self.models.items(), key=lambda item: (-item[1], item[0])
                )
            ]
            if "model" in breakdown
            else [],
            by_node=[
                {"workflow": workflow, "node": node, "cost_usd": cost}
                for (workflow, node), cost in sorted(self.nodes.items())
            ]
            if "node" in breakdown
            else [],
            periods=[
                {**p, "by_workflow": dict(p["by_workflow"]), "by_model": dict(p["by_model"])}
                for _, p in sorted(self.periods.items())
            ]
            if dated
            else [],
            unpriced={
                "runs": self.unpriced_runs,
                "models": sorted(self.unpriced_models),
                "trace_ids": [
                    i for _, i in sorted(self.unpriced_ids, reverse=True)[:UNPRICED_LISTED]
                ],
            },
            source=source,
            filters=query.describe(),
        )


def cost_report(
    query: ReportQuery,
    *,
    breakdown: tuple[str, ...] = DEFAULT_BREAKDOWNS,
    aggregate_by: str | None = None,
    source: Source = "auto",
) -> CostReport:
    """What the runs ``query`` covers cost, with the breakdowns and periods asked for.

    Args:
        query: Store, experiment, workflow, time range and status.
        breakdown: Any of :data:`BREAKDOWNS` and ``tag:KEY`` for any run tag; ``node`` pages
            the MLflow runs and ``tag:KEY`` the traces (both slower on a large store).
        aggregate_by: ``daily``, ``weekly`` or ``monthly`` periods; ``None`` for none.
        source: ``traces`` (trace metrics), ``runs`` (paging runs) or ``auto`` (traces where
            the store supports them).

    Raises:
        ReportError: bad arguments, a store that cannot be read, an empty store or an unknown
            workflow.
    """
    unknown = {b for b in breakdown if b not in BREAKDOWNS and not b.startswith(TAG_PREFIX)}
    if unknown:
        raise ReportError(
            f"--breakdown: {sorted(unknown)[0]!r} is not one of workflow, model, node, tag:KEY"
        )
    keys = tag_keys(breakdown)
    if aggregate_by is not None and aggregate_by not in AGGREGATES:
        raise ReportError(f"--aggregate-by: {aggregate_by!r} is not one of daily, weekly, monthly")
    store = open_store(query)
    with_nodes = "node" in breakdown
    dated = aggregate_by is not None
    used = "traces"
    totals = None if source == "runs" else _from_traces(store, query, aggregate_by)
    if totals is not None:
        if with_nodes:
            _from_runs(store, query, _Totals(), aggregate_by, nodes_into=totals)
    elif source == "traces":
        raise ReportError(f"{query.tracking_uri} cannot aggregate trace metrics for this query")
    else:
        used, totals = "runs", _Totals()
        _from_runs(store, query, totals, aggregate_by)
    if not totals.workflows and query.workflow is None and _store_is_empty(store):
        raise ReportError(f"no runs recorded in {query.tracking_uri}")
    if query.workflow is not None and not totals.workflows and not _workflow_exists(store, query):
        raise ReportError(f"no runs of workflow {query.workflow!r} in {query.tracking_uri}")
    report = totals.report(used, query, breakdown, dated)
    if keys:
        report.by_tag = tag_breakdown(store, query, keys)
    return report


def _from_traces(store: Store, query: ReportQuery, aggregate_by: str | None) -> _Totals | None:
    """Sum what the store aggregates, or ``None`` when it cannot (no trace metrics, or traces
    not named after their workflow). Independent grouped queries run side by side: SQLite and
    the database drivers release the interpreter while a query runs."""
    metrics = TraceMetrics(store, query)
    totals = _Totals()
    dated = aggregate_by is not None
    with ThreadPoolExecutor(max_workers=4) as pool:
        total = pool.submit(metrics.count)
        counts = pool.submit(metrics.run_counts)
        tokens = pool.submit(metrics.tokens)
        unpriced = pool.submit(metrics.unpriced_count)
        listed = pool.submit(unpriced_traces, store, query, UNPRICED_LISTED)
        runs_by_day = pool.submit(metrics.runs_by_day) if dated else None
        try:
            named = counts.result()
        except Exception as exc:
            if unsupported(exc):
                return None
            raise
        workflows = sorted({name for name, _, _ in named})
        costs = {name: pool.submit(metrics.costs, name, dated) for name in workflows}
        if sum(count for _, _, count in named) != total.result():
            return None  # older traces: only their MLflow runs say which workflow they ran
        for name, status, count in named:
            entry = totals.workflows[name]
            entry["runs"] += count
            entry["successful" if status == "OK" else "failed"] += count
        for name, used in tokens.result():
            totals.workflows[name]["tokens"] += int(used)
        for name, rows in costs.items():
            for bucket_ms, provider, model, cost in rows.result():
                totals.workflows[name]["cost_usd"] += cost
                totals.models[(provider, model)] += cost
                if aggregate_by is not None:
                    period = totals.period(period_label(bucket_ms, aggregate_by))
                    period["cost_usd"] += cost
                    period["by_model"][model] += cost
                    period["by_workflow"][name] += cost
        totals.unpriced_runs += unpriced.result()
        for trace in listed.result():
            totals.unpriced_ids.append((trace.timestamp_ms, trace.trace_id))
            totals.unpriced_models.update(trace.unpriced_models)
        if runs_by_day is not None and aggregate_by is not None:
            for bucket_ms, count in runs_by_day.result():
                totals.period(period_label(bucket_ms, aggregate_by))["runs"] += count
    return totals


def _run_filter(query: ReportQuery) -> str:
    clauses = []
    if query.workflow is not None:
        clauses.append(f"tags.{layout.TAG_WORKFLOW} = '{query.workflow}'")
    if query.status == "success":
        clauses.append(f"tags.{layout.RUN_TAG_STATUS} = 'success'")
    elif query.status == "failure":
        clauses.append(f"tags.{layout.RUN_TAG_STATUS} != 'success'")
    elif query.status == "waiting":
        clauses.append(f"tags.{layout.RUN_TAG_STATUS} = 'waiting'")
    if query.start_ms is not None:
        clauses.append(f"attributes.start_time >= {query.start_ms}")
    if query.end_ms is not None:
        clauses.append(f"attributes.start_time <= {query.end_ms}")
    return " AND ".join(clauses)


def _from_runs(
    store: Store,
    query: ReportQuery,
    totals: _Totals,
    aggregate_by: str | None,
    *,
    nodes_into: _Totals | None = None,
) -> None:
    """Page every run the query covers and sum its metrics."""
    nodes = (nodes_into or totals).nodes
    token = None
    while True:
        page = store.client.search_runs(
            store.experiment_ids, _run_filter(query), max_results=50_000, page_token=token
        )
        for run in page:
            tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
            if layout.TAG_WORKFLOW not in tags or layout.METRIC_TOTAL_COST not in metrics:
                continue  # not a workflow run (e.g. a batch's parent run)
            name = tags[layout.TAG_WORKFLOW]
            run_cost = metrics[layout.METRIC_TOTAL_COST]
            entry = totals.workflows[name]
            entry["runs"] += 1
            ok = tags.get(layout.RUN_TAG_STATUS) == "success"
            entry["successful" if ok else "failed"] += 1
            entry["tokens"] += int(metrics.get(layout.METRIC_TOTAL_TOKENS, 0))
            entry["cost_usd"] += run_cost
            calls = _node_costs(params, metrics)
            unpriced = {model for _, model, _, cost in calls if cost is None}
            totals.unpriced_models.update(unpriced)
            for provider, model, node, cost in calls:
                if cost is not None:
                    totals.models[(provider, model.partition("/")[2])] += cost
                    nodes[(name, node)] += cost
            if unpriced:
                totals.unpriced_runs += 1
                trace_id = tags.get(layout.RUN_TAG_TRACE, run.info.run_id)
                totals.unpriced_ids.append((run.info.start_time, trace_id))
            if aggregate_by is not None:
                period = totals.period(period_label(run.info.start_time, aggregate_by))
                period["runs"] += 1
                period["cost_usd"] += run_cost
                period["by_workflow"][name] += run_cost
                for _, model, _, cost in calls:
                    if cost is not None:
                        period["by_model"][model.partition("/")[2]] += cost
        token = page.token
        if not token:
            return


def _node_costs(
    params: dict[str, str], metrics: dict[str, float]
) -> list[tuple[str, str, str, float | None]]:
    """``(provider, provider/model, node, cost or None when unpriced)`` of each node of a run,
    from its ``node_<id>_provider``/``_model`` params and ``node_<id>_cost_usd`` metrics."""
    found = []
    for node, key in layout.node_keys(set(params), "model").items():
        provider = params.get(layout.node_key(node, "provider"), "")
        cost = metrics.get(layout.node_key(node, "cost_usd"))
        found.append((provider, f"{provider}/{params[key]}", node, cost))
    return found


def _store_is_empty(store: Store) -> bool:
    found = store.client.search_traces(locations=store.experiment_ids, max_results=1)
    return not found and not store.client.search_runs(store.experiment_ids, max_results=1)


def _workflow_exists(store: Store, query: ReportQuery) -> bool:
    unfiltered = ReportQuery(query.tracking_uri, query.experiment, query.workflow)
    try:
        if TraceMetrics(store, unfiltered).count():
            return True
    except Exception as exc:
        if not unsupported(exc):
            raise
    return bool(
        store.client.search_runs(store.experiment_ids, _run_filter(unfiltered), max_results=1)
    )
