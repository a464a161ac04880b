"""Prometheus metrics of a workflow's runs, in a registry of their own.

An observer of the runs (:class:`~configurable_agents.engine.RunObserver`): each finished run adds
to the run, token, cost and duration series from its result and node records.
The server renders them at ``/metrics``; ``run`` serves them on
`config.observability.prometheus.port` while it runs (:func:`serve_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..config.settings import PrometheusConfig
from ..engine import NullObserver, PreparedWorkflow, RunResult, RunStatus

__all__ = ["METRIC_NAMES", "Metrics", "serve_metrics"]

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
"""Histogram buckets of `workflow_duration_seconds`, in seconds (10 s is the alert's line)."""

NODE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""Histogram buckets of `node_duration_seconds`, in seconds."""

METRIC_NAMES = (
    "workflow_runs_total",
    "llm_tokens_total",
    "llm_cost_usd_total",
    "workflow_duration_seconds",
    "node_duration_seconds",
    "active_workflows",
    "traces_spooled",
    "traces_dropped_total",
)
"""Every metric a :class:`Metrics` exports, as Prometheus queries name them."""


class Metrics(NullObserver):
    """The metrics of one workflow's runs.

    Attributes:
        registry: The registry holding them (not the process-wide default one, so several
            servers can live in one process).
    """

    def __init__(self, workflow: str, backlog: Callable[[], int] | None = None) -> None:
        """Create the series; ``backlog`` counts the runs waiting in the trace spool."""
        self.workflow = workflow
        self.recording = backlog is not None
        self.registry = registry = CollectorRegistry()
        self.runs = Counter(
            "workflow_runs", "Finished runs.", ["workflow", "status"], registry=registry
        )
        self.tokens = Counter(
            "llm_tokens", "Model tokens, by type (input, output).", ["model", "type"],
            registry=registry,
        )  # fmt: skip
        self.cost = Counter(
            "llm_cost_usd", "Cost of priced model calls, USD.", ["model"], registry=registry
        )
        self.duration = Histogram(
            "workflow_duration_seconds", "Run wall time.", ["workflow"],
            buckets=RUN_BUCKETS, registry=registry,
        )  # fmt: skip
        self.node_duration = Histogram(
            "node_duration_seconds", "Node execution wall time.", ["workflow", "node"],
            buckets=NODE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.active = Gauge("active_workflows", "Runs in progress.", registry=registry)
        self.spooled = Gauge(
            "traces_spooled", "Finished runs waiting in the spool for MLflow.", registry=registry
        )
        self.spooled.set_function(lambda: float(backlog()) if backlog else 0.0)
        self.dropped = Counter(
            "traces_dropped", "Finished runs whose trace could not be recorded.", registry=registry
        )
        for status in RunStatus:  # every series exists from the start, so rates are defined
            self.runs.labels(workflow, status.value)
        self.duration.labels(workflow)

    @classmethod
    def for_workflow(cls, prepared: PreparedWorkflow) -> Metrics:
        """Metrics observing every run of a :class:`PreparedWorkflow` from now on (after the
        observers already attached, so that a run's trace id is known)."""
        from .recorder import Recorder

        recorder = prepared.observer(Recorder)
        backlog = recorder.spool.pending if recorder is not None else None
        metrics = cls(prepared.workflow.name, backlog)
        prepared.observers.append(metrics)
        return metrics

    def run_finished(self, result: RunResult) -> None:
        """Count a finished run: status, duration, and each node execution's time, tokens, cost."""
        self.runs.labels(self.workflow, result.status.value).inc()
        self.duration.labels(self.workflow).observe(result.duration_s)
        for record in result.records:
            self.node_duration.labels(self.workflow, record.node_id).observe(record.duration_s)
            usage = record.usage
            if usage.input_tokens:
                self.tokens.labels(record.model, "input").inc(usage.input_tokens)
            if usage.output_tokens:
                self.tokens.labels(record.model, "output").inc(usage.output_tokens)
            if record.model_calls and not record.unpriced:
                self.cost.labels(record.model).inc(
                    float(record.known_cost_usd - record.tool_cost_usd)
                )
            for tool in record.tool_calls:
                if tool.cost_usd:
                    self.cost.labels(f"tool/{tool.name}").inc(float(tool.cost_usd))
        if self.recording and result.trace_id is None:
            self.dropped.inc()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count a run as active while the block runs."""
        self.active.inc()
        try:
            yield
        finally:
            self.active.dec()

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def serve_metrics(metrics: Metrics, config: PrometheusConfig, host: str = "0.0.0.0") -> Any:
    """Serve ``metrics`` at ``config.path`` on ``config.port`` from a daemon thread.

    Returns:
        The WSGI server (``shutdown()`` stops it).

    Raises:
        OSError: the port cannot be listened on.
    """
    from prometheus_client import start_wsgi_server

    server, _ = start_wsgi_server(config.port, host, registry=metrics.registry)
    app = server.get_app()
    if app is not None:
        server.set_app(_only_at(config.path, app))
    return server


def _only_at(path: str, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering 404 anywhere but ``path``."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").rstrip("/") != path.rstrip("/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return app(environ, start_response)

    return guarded
