"""Reading traces: MLflow's trace-metric aggregation in the store, and traces one by one.

``query_trace_metrics`` is the store method MLflow's own overview charts use (SQL stores run it as
grouped SQL; REST stores send it to the server's ``/traces/metrics``). It aggregates trace counts
and tokens by trace name and status, span costs by model and provider, both by time bucket, with
filters on trace tags, trace status and span type.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..observability import layout
from .query import ReportQuery, Store

__all__ = ["TraceMetrics", "UnpricedTrace", "search_filter", "unpriced_traces", "unsupported"]

_MAX_POINTS = 100_000  # the SQL store does not page these results
_END_OF_TIME_MS = 2**53
_DAY_S = 86_400


def _bucket_ms(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp() * 1000


class TraceMetrics:
    """Aggregations over the traces a query covers, computed by the store."""

    def __init__(self, store: Store, query: ReportQuery) -> None:
        self.store = store
        self.query = query
        self.filters: list[str] = []
        if query.workflow is not None:
            self.filters.append(f'trace.tag.{layout.TRACE_NAME} = "{query.workflow}"')
        if query.status == "waiting":
            self.filters.append(f'trace.tag.{layout.TAG_STATUS} = "waiting"')
        elif query.status is not None:
            self.filters.append(
                f'trace.status = "{"OK" if query.status == "success" else "ERROR"}"'
            )

    def count(self) -> int:
        """Traces the query covers.

        Raises:
            Exception: as the store does; :func:`unsupported` tells a store without the API.
        """
        return int(
            sum(p.values["COUNT"] for p in self._points("TRACES", "trace_count", "COUNT", []))
        )

    def _points(
        self,
        view: str,
        metric: str,
        aggregation: str,
        dimensions: list[str],
        filters: tuple[str, ...] = (),
        by_day: bool = False,
    ) -> list[Any]:
        from mlflow.entities.trace_metrics import AggregationType, MetricAggregation, MetricViewType

        start, end = self.query.start_ms, self.query.end_ms
        if by_day:
            start, end = start or 0, end or _END_OF_TIME_MS
        return list(
            self.store.backend.query_trace_metrics(
                experiment_ids=self.store.experiment_ids,
                view_type=MetricViewType(view),
                metric_name=metric,
                aggregations=[MetricAggregation(AggregationType(aggregation))],
                dimensions=dimensions or None,
                filters=[*self.filters, *filters],
                time_interval_seconds=_DAY_S if by_day else None,
                start_time_ms=start,
                end_time_ms=end,
                max_results=_MAX_POINTS,
            )
        )

    def _by_name(self, metric: str, aggregation: str, *filters: str) -> list[tuple[str, float]]:
        points = self._points("TRACES", metric, aggregation, ["trace_name"], filters)
        return [(p.dimensions["trace_name"], p.values[aggregation]) for p in points]

    def run_counts(self) -> list[tuple[str, str, int]]:
        """``(workflow, trace status, runs)`` of the traces named after their workflow."""
        points = self._points("TRACES", "trace_count", "COUNT", ["trace_name", "trace_status"])
        return [
            (p.dimensions["trace_name"], p.dimensions["trace_status"], int(p.values["COUNT"]))
            for p in points
        ]

    def tokens(self) -> list[tuple[str, float]]:
        """``(workflow, tokens)``."""
        return self._by_name("total_tokens", "SUM")

    def unpriced_count(self) -> int:
        """Runs with an unpriced model (tagged ``unpriced=true``)."""
        points = self._points(
            "TRACES", "trace_count", "COUNT", [], (f'trace.tag.{layout.TAG_UNPRICED} = "true"',)
        )
        return int(sum(p.values["COUNT"] for p in points))

    def costs(self, workflow: str, by_day: bool = False) -> list[tuple[float, str, str, float]]:
        """``(UTC day start in ms or 0, provider, model, cost)`` of the priced calls of
        ``workflow``'s runs: one grouped query over that workflow's spans (an unpriced call's
        cost is empty, so it adds nothing)."""
        points = self._points(
            "SPANS", "total_cost", "SUM", ["span_model_name", "span_model_provider"],
            (f'trace.tag.{layout.TRACE_NAME} = "{workflow}"',),  # only model calls have costs
            by_day=by_day,
        )  # fmt: skip
        return [
            (
                _bucket_ms(p.dimensions["time_bucket"]) if by_day else 0.0,
                p.dimensions["span_model_provider"],
                p.dimensions["span_model_name"],
                p.values["SUM"],
            )
            for p in points
        ]

    def runs_by_day(self) -> list[tuple[float, int]]:
        """``(UTC day start in ms, runs)``."""
        points = self._points("TRACES", "trace_count", "COUNT", [], by_day=True)
        return [(_bucket_ms(p.dimensions["time_bucket"]), int(p.values["COUNT"])) for p in points]


def unsupported(exc: Exception) -> bool:
    """Whether ``exc`` says the store has no trace metrics (file stores, older servers)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, NotImplementedError):
        return True
    if isinstance(exc, MlflowException):
        code = exc.error_code
        return code in ("NOT_IMPLEMENTED", "ENDPOINT_NOT_FOUND") or "not supported" in exc.message
    return False


def search_filter(query: ReportQuery, *extra: str) -> str:
    """A ``search_traces`` filter string for the query (time, workflow, status) and ``extra``."""
    clauses = list(extra)
    if query.workflow is not None:
        clauses.append(f"tag.{layout.TAG_WORKFLOW} = '{query.workflow}'")
    if query.status == "waiting":
        clauses.append(f"tag.{layout.TAG_STATUS} = 'waiting'")
    elif query.status is not None:
        clauses.append(f"trace.status = '{'OK' if query.status == 'success' else 'ERROR'}'")
    if query.start_ms is not None:
        clauses.append(f"trace.timestamp_ms >= {query.start_ms}")
    if query.end_ms is not None:
        clauses.append(f"trace.timestamp_ms <= {query.end_ms}")
    return " AND ".join(clauses)


@dataclass
class UnpricedTrace:
    """A run with an unpriced model.

    Attributes:
        trace_id: The run's trace.
        timestamp_ms: When it started.
        unpriced_models: ``provider/model`` of its unpriced calls.
    """

    trace_id: str
    timestamp_ms: int
    unpriced_models: set[str] = field(default_factory=set)


def unpriced_traces(store: Store, query: ReportQuery, limit: int) -> list[UnpricedTrace]:
    """The ``limit`` newest runs the query covers that have an unpriced model: a model call
    whose cost is empty."""
    found = []
    for trace in store.client.search_traces(
        locations=store.experiment_ids,
        filter_string=search_filter(query, f"tag.{layout.TAG_UNPRICED} = 'true'"),
        max_results=limit,
        order_by=["timestamp_ms DESC"],
    ):
        models = {
            f"{span.get_attribute('mlflow.llm.provider')}/{span.get_attribute('mlflow.llm.model')}"
            for span in trace.data.spans
            if span.span_type == "CHAT_MODEL"
            and "total_cost" not in (span.get_attribute("mlflow.llm.cost") or {})
        }
        found.append(UnpricedTrace(trace.info.trace_id, trace.info.request_time, models))
    return found
