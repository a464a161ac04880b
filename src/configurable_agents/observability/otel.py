"""OpenTelemetry export: each finished run's spans, sent by OTLP to a collector (Jaeger, Tempo...).

The spans are the ones MLflow gets (:func:`.spans.build_trace`, secrets scrubbed the same way,
under the same trace id when MLflow records the run), with the GenAI semantic-convention
attributes added. A run is exported or not by its trace id (``TraceIdRatioBased``, so the decision
is deterministic). A run given a caller's W3C ``traceparent`` continues the caller's trace: its
spans have the caller's trace id, its root the caller's span as parent, and it is exported when
the caller's ``sampled`` flag is set (``ParentBased``). A kept run is only queued when it ends:
a background thread builds its spans and hands them to the SDK's ``BatchSpanProcessor``, whose own
thread exports them, so a run never waits for span building or for the collector. At exit a
process waits a bounded time for its spans (``$CONFIGURABLE_AGENTS_FLUSH_TIMEOUT``, default 10 s).

Imports OpenTelemetry (the ``otel`` extra) only when a workflow enables it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .._version import __version__
from ..config.loader import Workflow
from ..engine import NullObserver, RunResult, SetupError
from .recorder import FLUSH_TIMEOUT_ENV
from .redact import make_scrubber
from .spans import build_trace
from .traceparent import is_sampled, parse_traceparent

__all__ = ["OtlpExporter", "flush_all"]

_log = logging.getLogger(__name__)
_processors: dict[tuple[Any, ...], Any] = {}
_processors_lock = threading.Lock()
_MAX_PENDING = 10_000
"""Most finished runs waiting for their spans to be built; beyond, runs are not exported."""
_Item = tuple["OtlpExporter", RunResult, str, str | None]
"""A run to export: its exporter, its result, its trace id and the caller's span, if any."""
_pending: queue.Queue[_Item] = queue.Queue(_MAX_PENDING)
_builder: threading.Thread | None = None

_DEFAULT_ENDPOINT = {"http": "http://localhost:4318", "grpc": "http://localhost:4317"}
_TRACES_PATH = "/v1/traces"
_EXPORT_TIMEOUT_S = 10.0
# Names of `gen_ai.provider.name` in the semantic conventions, where they differ from ours.
_GEN_AI_PROVIDER = {"google": "gcp.gemini"}
_OPERATION = {"AGENT": "invoke_agent", "CHAT_MODEL": "chat", "TOOL": "execute_tool"}


def _endpoint(protocol: str, configured: str | None, env: Mapping[str, str]) -> str:
    """The collector URL: for ``http`` the traces URL (``/v1/traces`` appended to a base URL)."""
    base = configured or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or _DEFAULT_ENDPOINT[protocol]
    if protocol == "grpc" or urlsplit(base).path.endswith(_TRACES_PATH):
        return base
    return base.rstrip("/") + _TRACES_PATH


def _span_exporter(protocol: str, endpoint: str, headers: Mapping[str, str]) -> Any:
    # Empty headers: the SDK falls back to $OTEL_EXPORTER_OTLP_(TRACES_)HEADERS.
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        metadata = {k.lower(): v for k, v in headers.items()} or None  # gRPC wants lower case
        return GrpcExporter(endpoint=endpoint, headers=metadata, timeout=_EXPORT_TIMEOUT_S)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=endpoint, headers=dict(headers) or None, timeout=_EXPORT_TIMEOUT_S)


def _processor(protocol: str, endpoint: str, headers: Mapping[str, str]) -> Any:
    """One batch processor (one export thread) per collector, shared by every workflow."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    key = (protocol, endpoint, tuple(sorted(headers.items())))
    with _processors_lock:
        if key not in _processors:
            _processors[key] = BatchSpanProcessor(_span_exporter(protocol, endpoint, headers))
        return _processors[key]


def _build_forever() -> None:
    while True:
        exporter, result, trace_hex, parent_hex = _pending.get()
        try:
            exporter.export(result, trace_hex, parent_hex)
        except Exception as exc:  # the run's spans are lost, never the run
            _log.warning("could not export run %s by OTLP: %s", result.run_id, exc)
        finally:
            _pending.task_done()


def _enqueue(item: _Item) -> None:
    global _builder
    with _processors_lock:
        if _builder is None or not _builder.is_alive():  # first use, or in a forked child
            _builder = threading.Thread(target=_build_forever, name="OtlpSpanBuilder", daemon=True)
            _builder.start()
    try:
        _pending.put_nowait(item)
    except queue.Full:
        _log.warning("OTLP export is %d runs behind; run %s is not exported", _MAX_PENDING,
                     item[1].run_id)  # fmt: skip


def _finished_within(work: Callable[[], object], deadline: float) -> bool:
    """Run ``work`` in a thread, waiting for it until ``deadline`` at most."""
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    return not worker.is_alive()


def flush_all(timeout: float | None = None) -> bool:
    """Export what this process has queued, waiting at most ``timeout`` seconds in all
    (default ``$CONFIGURABLE_AGENTS_FLUSH_TIMEOUT``, else 10); whether everything was sent."""
    if timeout is None:
        timeout = float(os.environ.get(FLUSH_TIMEOUT_ENV, "10"))
    deadline = time.monotonic() + timeout
    done = _finished_within(_pending.join, deadline)
    for processor in list(_processors.values()):
        # The SDK's force_flush ignores its timeout: hence a thread we stop waiting for.
        done = done and _finished_within(processor.force_flush, deadline)
    return done


atexit.register(flush_all)


def _attribute(encoded: str) -> Any:
    """An OTel attribute value from an MLflow span attribute (JSON): scalars stay scalars,
    lists of strings stay lists, anything else stays JSON text."""
    value = json.loads(encoded)
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return encoded


class OtlpExporter(NullObserver):
    """The observer exporting a workflow's runs by OTLP per `config.observability.opentelemetry`.

    Raises:
        SetupError: the ``otel`` extra (OpenTelemetry SDK and OTLP exporter) is not installed.
    """

    def __init__(self, workflow: Workflow, *, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        observability = workflow.config.config.observability
        config = observability.opentelemetry
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

            processor = _processor(
                config.protocol, _endpoint(config.protocol, config.endpoint, env), config.headers
            )
        except ImportError as exc:
            raise SetupError(
                f"config.observability.opentelemetry: OTLP export over {config.protocol} needs "
                f"the otel extra (pip install 'configurable-agents[otel]'): {exc}"
            ) from None
        self.workflow = workflow
        self.processor = processor
        self.sampler = TraceIdRatioBased(config.sampling_rate)
        resource = {"service.name": config.service_name}
        if workflow.config.flow.version:
            resource["service.version"] = workflow.config.flow.version
        self.resource = Resource.create(resource)
        self.scrub = make_scrubber(env, redact_pii=observability.mlflow.redact_pii)
        self.log_prompts = observability.mlflow.log_prompts

    def sampled(self, trace_hex: str) -> bool:
        """Whether the run with this trace id is exported (``TraceIdRatioBased``)."""
        decision = self.sampler.should_sample(None, int(trace_hex, 16), "run").decision
        return decision.is_sampled()

    def run_finished(self, result: RunResult) -> None:
        """Queue the run for export: a run given a caller's ``traceparent`` in the caller's trace
        (its root the caller's span's child) when the caller samples it (as OpenTelemetry's
        ``ParentBased`` sampler decides); any other under its MLflow trace id, if sampled."""
        caller = parse_traceparent(result.traceparent)
        if caller is not None:
            if is_sampled(result.traceparent):
                _enqueue((self, result, caller.trace_id, caller.span_id))
            return
        trace_hex = (result.trace_id or "")[3:] or secrets.token_hex(16)
        if self.sampled(trace_hex):
            _enqueue((self, result, trace_hex, None))

    def export(self, result: RunResult, trace_hex: str, parent_hex: str | None = None) -> None:
        """Build the run's spans and hand them to the batch processor (in the builder thread);
        ``parent_hex``, a span of another process's trace ``trace_hex``, is the root's parent."""
        _, spans = build_trace(
            result,
            self.workflow,
            scrub=self.scrub,
            log_prompts=self.log_prompts,
            trace_hex=trace_hex,
            parent_hex=parent_hex,
        )
        for span in spans:
            if parent_hex is not None and result.trace_id:  # the MLflow trace, to find it there
                span["attributes"]["mlflow.traceRequestId"] = json.dumps(result.trace_id)
            self.processor.on_end(self._readable(span, remote=parent_hex))

    def _readable(self, span: dict[str, Any], remote: str | None = None) -> Any:
        """The SDK's span of a span dictionary; ``remote`` is the id of a parent span of another
        process (the caller's), if any."""
        import base64

        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        def ident(value: str) -> int:
            return int.from_bytes(base64.b64decode(value), "big")

        trace_id = ident(span["trace_id"])
        sampled = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(trace_id, ident(span["span_id"]), False, sampled)
        parent = span["parent_span_id"]
        is_remote = remote is not None and parent is not None and ident(parent) == int(remote, 16)
        attributes = {k: _attribute(v) for k, v in span["attributes"].items()}
        kind = attributes["mlflow.spanType"]
        attributes.update(_gen_ai(kind, span["name"], attributes))
        error = span["status"]["code"] == "STATUS_CODE_ERROR"
        return ReadableSpan(
            name=span["name"],
            context=context,
            parent=SpanContext(trace_id, ident(parent), is_remote, sampled) if parent else None,
            resource=self.resource,
            attributes=attributes,
            events=[Event(e["name"], e["attributes"], e["time_unix_nano"]) for e in span["events"]],
            kind=SpanKind.CLIENT if kind == "CHAT_MODEL" else SpanKind.INTERNAL,
            status=Status(StatusCode.ERROR, span["status"]["message"])
            if error
            else Status(StatusCode.OK),
            start_time=span["start_time_unix_nano"],
            end_time=span["end_time_unix_nano"],
            instrumentation_scope=InstrumentationScope("configurable_agents", __version__),
        )


def _gen_ai(kind: str, name: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """GenAI semantic-convention attributes of a span, from its MLflow attributes."""
    extra: dict[str, Any] = {}
    if kind in _OPERATION:
        extra["gen_ai.operation.name"] = _OPERATION[kind]
    if kind == "AGENT":
        extra["gen_ai.agent.name"] = name  # the node's display name, when it has one
        if "node.id" in attributes:
            extra["gen_ai.agent.id"] = attributes["node.id"]
    elif kind == "TOOL":
        extra["gen_ai.tool.name"] = name
    elif kind == "CHAT_MODEL":
        provider = attributes.get("mlflow.llm.provider", "")
        extra["gen_ai.provider.name"] = _GEN_AI_PROVIDER.get(provider, provider)
        extra["gen_ai.system"] = extra["gen_ai.provider.name"]  # the name before semconv 1.37
    elif kind == "CHAIN" and "session.id" in attributes:
        extra["gen_ai.conversation.id"] = attributes["session.id"]
    return extra
