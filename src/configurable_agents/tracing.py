"""Tracing your own code around workflows, and the cost of any trace.

:func:`trace` records a span of your code (a decorator or a context manager) through the same
durable spool and background writer as workflow runs: it never waits for the store and loses
nothing. Spans nest: a span opened inside another, or inside a caller's MLflow span
(``@mlflow.trace``, ``mlflow.start_span``), is its child, and a workflow run inside any of them
(:func:`~configurable_agents.run_workflow`) is recorded in that one trace, under it.
:func:`cost_summary` reads a trace back from the store and adds up its tokens and cost the way
each run's ``cost_summary.json`` does.

Example::

    from configurable_agents import run_workflow
    from configurable_agents.tracing import cost_summary, trace

    @trace(span_type="RETRIEVER")
    def find_documents(question: str) -> list[str]: ...

    @trace
    def answer(question: str) -> str:
        documents = find_documents(question)
        result = run_workflow("answer.yaml", {"question": question, "documents": documents})
        return result.outputs["answer"]

    with trace("support request") as span:
        span.set_outputs(answer("Where is my parcel?"))
    print(cost_summary(span.trace_id))

Importing this module imports neither MLflow nor LangChain; :func:`cost_summary` imports MLflow.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

from .api import TRACING_ENV
from .config.settings import MlflowConfig
from .observability import layout
from .observability.context import (
    OpenSpan,
    Parent,
    close_span,
    current,
    mlflow_span,
    open_span,
)
from .observability.recorder import background_writer, flush_all
from .observability.recorder import tracking_uri as configured_uri
from .observability.redact import Scrub, make_scrubber
from .observability.spans import span_dict
from .observability.spool import Spool, default_spool_path

__all__ = [
    "SPAN_TYPES",
    "Span",
    "SpanScope",
    "SpanType",
    "cost_summary",
    "current_span",
    "flush",
    "trace",
]

SpanType = Literal["AGENT", "LLM", "TOOL", "RETRIEVER", "CLASSIFIER", "MEMORY"]
SPAN_TYPES: tuple[str, ...] = ("AGENT", "LLM", "TOOL", "RETRIEVER", "CLASSIFIER", "MEMORY")
"""The span types :func:`trace` takes (MLflow shows each with its own icon)."""

_F = TypeVar("_F", bound=Callable[..., Any])
_log = logging.getLogger(__name__)
_warned: set[str] = set()
_UNSET: Any = object()
_USAGE = "mlflow.chat.tokenUsage"
_COST = "mlflow.llm.cost"
_CHAT_KINDS = ("CHAT_MODEL", "LLM")
_SIZE_STATS = "mlflow.trace.sizeStats"


class Span:
    """A span of :func:`trace` while it is open: what it records when it closes.

    Attributes:
        name: The span's name.
        span_type: One of :data:`SPAN_TYPES`.
        trace_id: Its trace's id (``tr-...``), or None when it is not recorded (tracing is
            off: ``CONFIGURABLE_AGENTS_TRACING=off``, or the store is a ``file:`` one).
        span_id: Its id (16 hex digits), or None when it is not recorded.
    """

    def __init__(
        self,
        name: str,
        span_type: str,
        attributes: Mapping[str, Any],
        trace_id: str | None,
        span_id: str | None,
    ) -> None:
        self.name = name
        self.span_type = span_type
        self.trace_id = trace_id
        self.span_id = span_id
        self.attributes: dict[str, Any] = dict(attributes)
        self.inputs: Any = _UNSET
        self.outputs: Any = _UNSET

    def set_inputs(self, inputs: Any) -> None:
        """Record ``inputs`` (JSON-encodable; anything else as its ``str``) as the span's input."""
        self.inputs = inputs

    def set_outputs(self, outputs: Any) -> None:
        """Record ``outputs`` as the span's output (a decorated function's is its return value
        unless set)."""
        self.outputs = outputs

    def set_attribute(self, key: str, value: Any) -> None:
        """Record one attribute, e.g. ``mlflow.chat.tokenUsage`` (``{"input_tokens": ..,
        "output_tokens": .., "total_tokens": ..}``) and ``mlflow.llm.cost`` (``{"input_cost": ..,
        "output_cost": .., "total_cost": ..}``) on an ``LLM`` span, which :func:`cost_summary`
        and MLflow's trace totals count."""
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Record several attributes (see :meth:`set_attribute`)."""
        self.attributes.update(attributes)


@dataclass
class _Entry:
    """One opening of a :class:`SpanScope`, until it closes."""

    span: Span
    start_ns: int
    parent_hex: str | None
    at: Parent | None
    """Where the span is recorded (its trace, id, store and experiment), None if it is not."""
    tokens: tuple[Token[OpenSpan | None], Token[_Entry | None]] | None = None


_entered: ContextVar[_Entry | None] = ContextVar("configurable_agents_trace_entry", default=None)


def current_span() -> Span | None:
    """The innermost :func:`trace` span open in this context (e.g. inside a decorated
    function), if any."""
    entry = _entered.get()
    return None if entry is None else entry.span


class SpanScope:
    """What :func:`trace` returns: a context manager (``with trace(...) as span``) and a
    decorator. Each use opens a span of its own, so one scope may be used many times, and
    concurrently."""

    def __init__(
        self,
        name: str | None,
        span_type: str,
        attributes: Mapping[str, Any] | None,
        tracking_uri: str | None,
        experiment: str | None,
    ) -> None:
        if span_type not in SPAN_TYPES:
            raise ValueError(
                f"span_type {span_type!r} is not one of {', '.join(SPAN_TYPES)} "
                "(configurable_agents.tracing.SPAN_TYPES)"
            )
        if name is not None and not (isinstance(name, str) and name):
            raise ValueError(f"a span's name is a non-empty string, not {name!r}")
        self.name = name
        self.span_type = span_type
        self.attributes = dict(attributes or {})
        self.tracking_uri = tracking_uri
        self.experiment = experiment

    def __enter__(self) -> Span:
        """Open a span (named ``span`` unless named), the innermost in this context."""
        return self._open(self.name or "span", _UNSET).span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close and record the innermost span; an exception leaving the block is its error."""
        entry = _entered.get()
        if entry is not None:
            self._close(entry, exc)

    def __call__(self, func: _F) -> _F:
        """``func`` (sync or ``async``), each call of it a span named after it unless named,
        its arguments the inputs and its return value the outputs.

        Raises:
            TypeError: ``func`` is a generator function.
        """
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(f"trace cannot decorate {func.__name__}: it is a generator function")
        name = self.name or func.__name__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                entry = self._open(name, _inputs(func, args, kwargs))
                try:
                    result = await cast(Callable[..., Awaitable[Any]], func)(*args, **kwargs)
                except BaseException as exc:
                    self._close(entry, exc)
                    raise
                self._close(entry, None, result)
                return result

            return cast(_F, traced_async)

        @functools.wraps(func)
        def traced(*args: Any, **kwargs: Any) -> Any:
            entry = self._open(name, _inputs(func, args, kwargs))
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._close(entry, exc)
                raise
            self._close(entry, None, result)
            return result

        return cast(_F, traced)

    def _open(self, name: str, inputs: Any) -> _Entry:
        theirs, parent = mlflow_span(), current()
        at = self._where(parent)
        if at is None:
            span = Span(name, self.span_type, self.attributes, None, None)
        else:
            span = Span(name, self.span_type, self.attributes, f"tr-{at.trace_hex}", at.span_hex)
        span.inputs = inputs
        entry = _Entry(span, time.time_ns(), parent.span_hex if parent else None, at)
        mine = open_span(OpenSpan(at, theirs.span_hex if theirs else None))
        entry.tokens = (mine, _entered.set(entry))
        return entry

    def _where(self, parent: Parent | None) -> Parent | None:
        """Where a span opening under ``parent`` is recorded; None when it is not."""
        if os.environ.get(TRACING_ENV, "").strip().lower() == "off":
            return None
        experiment = self.experiment or MlflowConfig().experiment_name
        if parent is None:
            destination = self.tracking_uri or configured_uri(MlflowConfig(), os.environ)
            trace_hex = secrets.token_hex(16)
        else:
            destination, trace_hex = parent.destination, parent.trace_hex
            experiment = parent.experiment or experiment
        if destination.startswith("file:"):
            if destination not in _warned:
                _warned.add(destination)
                _log.warning(
                    "spans of configurable_agents.tracing are not recorded to %s: a file: store "
                    "keeps each trace whole (use sqlite:///...)",
                    destination,
                )
            return None
        return Parent(trace_hex, secrets.token_hex(8), destination, experiment)

    def _close(self, entry: _Entry, error: BaseException | None, result: Any = _UNSET) -> None:
        if entry.tokens is not None:
            mine, entered = entry.tokens
            _entered.reset(entered)
            close_span(mine)
        span = entry.span
        if span.outputs is _UNSET:
            span.outputs = result
        if entry.at is None:
            return
        try:
            _record(entry, time.time_ns(), error)
        except Exception as exc:  # user code never fails for its tracing
            _log.warning("span %s was not recorded: %s", span.name, exc)


@overload
def trace(func: _F, /) -> _F: ...


@overload
def trace(
    name: str | None = None,
    /,
    *,
    span_type: SpanType = "AGENT",
    attributes: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> SpanScope: ...


def trace(
    target: Any = None,
    /,
    *,
    span_type: SpanType = "AGENT",
    attributes: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> Any:
    """A span of your code: ``@trace``, ``@trace(span_type="TOOL")``, or
    ``with trace("name", span_type="RETRIEVER") as span:``.

    The span's inputs are a decorated function's arguments (``set_inputs`` in a ``with``
    block), its outputs the return value, and an exception that leaves it sets its status to
    ``ERROR`` (and goes on). It is spooled when it closes and written by the background writer;
    :func:`flush` waits for it. ``CONFIGURABLE_AGENTS_TRACING=off`` records nothing.

    Args:
        target: The function to decorate (``@trace``), or the span's name (default: the
            function's name; ``span`` for a ``with`` block).
        span_type: One of :data:`SPAN_TYPES`.
        attributes: Attributes recorded on the span.
        tracking_uri: The store of a trace this span starts (default: ``$MLFLOW_TRACKING_URI``,
            else ``sqlite:///mlflow.db``, like a workflow's ``tracking_uri``). A span inside
            another, or inside an MLflow span, is recorded in that span's trace and store.
        experiment: The experiment a trace this span starts is recorded under (default
            ``configurable_agents``, like a workflow's ``experiment_name``).

    Returns:
        The decorated function, or a :class:`SpanScope` to use with ``with`` or as a decorator.

    Raises:
        ValueError: ``span_type`` is not one of :data:`SPAN_TYPES`, or the name is empty.
        TypeError: the decorated function is a generator function.
    """
    if callable(target):
        return SpanScope(None, span_type, attributes, tracking_uri, experiment)(target)
    return SpanScope(target, span_type, attributes, tracking_uri, experiment)


def _inputs(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A call's arguments by parameter name (defaults included, ``self`` and ``cls`` left out)."""
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):  # the call itself will say what is wrong
        return {"args": list(args), "kwargs": kwargs}
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}


@functools.cache
def _scrubber() -> Scrub:
    """Masks the secrets of the environment (as it is at the first span recorded)."""
    return make_scrubber(os.environ, redact_pii=False)


@functools.lru_cache(maxsize=4)
def _spool(path: str) -> Spool:
    return Spool(path)


def _record(entry: _Entry, end_ns: int, error: BaseException | None) -> None:
    """Spool the closed span (secrets in it masked) and make sure a writer is draining."""
    at, span = entry.at, entry.span
    assert at is not None
    attributes = dict(span.attributes)
    for key, value in (("mlflow.spanInputs", span.inputs), ("mlflow.spanOutputs", span.outputs)):
        if value is not _UNSET:
            attributes[key] = value
    if entry.parent_hex is None:  # the trace's root names it
        attributes[f"mlflow.traceTag.{layout.TRACE_NAME}"] = span.name
    recorded = span_dict(
        at.trace_hex,
        at.span_hex,
        entry.parent_hex,
        span.name,
        span.span_type,
        entry.start_ns,
        end_ns,
        attributes,
        error=None if error is None else f"{type(error).__name__}: {error}",
        scrub=_scrubber(),
    )
    spool = _spool(str(default_spool_path()))
    payload = {"trace_id": f"tr-{at.trace_hex}", "spans": [recorded], "run": None}
    spool.put(at.destination, at.experiment or MlflowConfig().experiment_name, payload)
    background_writer(spool, at.destination).ensure()


def flush(timeout: float | None = None) -> bool:
    """Wait up to ``timeout`` seconds (default ``$CONFIGURABLE_AGENTS_FLUSH_TIMEOUT``, 10) for
    this process's spans and workflow runs to be written; whether they all were (what is left
    stays spooled, and the background writer goes on after this process). Spans of MLflow's
    own (``@mlflow.trace``) are MLflow's to write: ``mlflow.flush_trace_async_logging()``."""
    return flush_all(timeout)


def cost_summary(trace_id: str, tracking_uri: str | None = None) -> dict[str, Any]:
    """The tokens and cost of a trace, as in each run's ``cost_summary.json``, computed from
    the spans of the trace in the store: a workflow run's own trace, or any trace holding
    workflow runs or LLM spans (a caller's, a :func:`trace` one). Waits for :func:`flush`
    first, and for MLflow's export of a caller's spans if the trace is not whole yet (no root,
    a span whose parent is missing, fewer spans than MLflow counted), unless called inside an
    MLflow span: then the trace is read as it is so far.

    A span's token usage (``mlflow.chat.tokenUsage``) and cost (``mlflow.llm.cost``) count
    once, unless a span above it carries them too (then that one counts, as in MLflow's own
    trace totals).

    Args:
        trace_id: The trace (``tr-...``), e.g. a run's ``result.trace_id``.
        tracking_uri: Its store (default: ``$MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlflow.db``).

    Returns:
        ``trace_id``; ``workflow_name`` and ``workflow_version`` (of the workflow when the
        trace holds runs of one workflow; else the trace's name and None); ``status`` (the
        first run that did not succeed says why, else ``success``, ``failed`` or
        ``in_progress`` from the trace); ``total_tokens`` (``prompt_tokens``,
        ``completion_tokens``, ``total_tokens``); ``total_cost_usd``; ``unpriced`` (a model
        call has no known price); ``node_breakdown`` (per node of the workflow runs in it:
        ``tokens``, ``cost_usd``, ``duration_ms``, ``model``; keyed ``<workflow>.<node>``
        when the trace holds runs of several workflows).

    Raises:
        LookupError: the store has no such trace.
    """
    from .observability.writer import prepare_environment

    uri = tracking_uri or configured_uri(MlflowConfig(), os.environ)
    flush()
    prepare_environment(uri)
    from mlflow.exceptions import MlflowException, MlflowNotImplementedException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)

    def read() -> Any:
        try:  # the store's own reading: the client answers a trace open here from memory
            return client._tracking_client.store.get_trace(trace_id, allow_partial=True)
        except MlflowNotImplementedException:  # a file store: the trace is an artifact
            return client.get_trace(trace_id)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise LookupError(f"no trace {trace_id} in {uri}") from None
            raise

    found = read()
    mlflow = sys.modules["mlflow"]
    if not _whole(found) and not mlflow.get_current_active_span():
        mlflow.flush_trace_async_logging()  # the rest may be a caller's spans MLflow is writing
        found = read()
    return _summary(trace_id, found.info.state.value, list(found.data.spans))


def _whole(trace: Any) -> bool:
    """Whether a trace read from the store is whole: a root, the parent of every other span,
    and at least as many spans as MLflow's exporter said it wrote (``sizeStats``), if it did."""
    spans = trace.data.spans
    ids = {span.span_id for span in spans}
    parents = {span.parent_id for span in spans}
    stats = json.loads(trace.info.trace_metadata.get(_SIZE_STATS) or "{}")
    counted = len(spans) >= int(stats.get("num_spans") or 0)
    return None in parents and parents - {None} <= ids and counted


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _counted(spans: list[Any], parents: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """The spans whose ``key`` attribute counts (by id): those carrying it with no span above
    them carrying it."""
    counted = {}
    for span in spans:
        value = _mapping(span.attributes.get(key))
        if value is not None and not any(
            _mapping(above.attributes.get(key)) is not None for above in _above(span, parents)
        ):
            counted[span.span_id] = value
    return counted


def _above(span: Any, parents: Mapping[str, Any]) -> Iterator[Any]:
    """The spans above ``span``, nearest first."""
    seen = {span.span_id}
    parent = parents.get(span.parent_id or "")
    while parent is not None and parent.span_id not in seen:
        seen.add(parent.span_id)
        yield parent
        parent = parents.get(parent.parent_id or "")


def _cost(value: dict[str, Any]) -> float:
    total = value.get("total_cost")
    if total is None:
        return float(value.get("input_cost") or 0) + float(value.get("output_cost") or 0)
    return float(total)


def _summary(trace_id: str, state: str, spans: list[Any]) -> dict[str, Any]:
    """``cost_summary.json``'s shape, from a trace's spans and its state (``OK``, ...)."""
    spans = sorted(spans, key=lambda s: (s.end_time_ns or 0, s.start_time_ns))
    by_id = {span.span_id: span for span in spans}
    usage = _counted(spans, by_id, _USAGE)
    costs = _counted(spans, by_id, _COST)
    runs = {s.span_id: s for s in spans if "workflow.run_id" in s.attributes}
    names = list(dict.fromkeys(s.attributes.get("workflow.name") for s in runs.values()))
    nodes = {
        s.span_id: s for s in spans if "node.id" in s.attributes and s.parent_id in runs
    }  # a node execution: an AGENT span right under a workflow run's root

    def node_key(node: Any) -> str:
        node_id = str(node.attributes["node.id"])
        if len(names) < 2:
            return node_id
        return f"{runs[node.parent_id].attributes.get('workflow.name')}.{node_id}"

    breakdown: dict[str, dict[str, Any]] = {}
    for node in nodes.values():
        entry = breakdown.setdefault(
            node_key(node), {"tokens": 0, "cost_usd": 0.0, "duration_ms": 0.0, "model": None}
        )
        entry["duration_ms"] += (
            (node.end_time_ns or node.start_time_ns) - node.start_time_ns
        ) / 1e6
        cost = node.attributes.get(layout.SPAN_NODE_COST)
        if cost is None:
            entry["cost_usd"] = None
        elif entry["cost_usd"] is not None:
            entry["cost_usd"] += float(cost)
    prompt = completion = total = 0
    unpriced = any(bool(run.attributes.get("workflow.unpriced")) for run in runs.values())
    for span in spans:
        tokens = usage.get(span.span_id)
        node = next((s for s in _above(span, by_id) if s.span_id in nodes), None)
        if tokens is not None:
            used_in = int(tokens.get("input_tokens") or 0)
            used_out = int(tokens.get("output_tokens") or 0)
            used = int(tokens.get("total_tokens") or used_in + used_out)
            prompt, completion, total = prompt + used_in, completion + used_out, total + used
            if node is not None:
                breakdown[node_key(node)]["tokens"] += used
            own_cost = _mapping(span.attributes.get(_COST)) or {}
            if span.span_type in _CHAT_KINDS and not own_cost:
                unpriced = True
        model = span.attributes.get("mlflow.llm.model")
        provider = span.attributes.get("mlflow.llm.provider")
        if node is not None and span.span_type in _CHAT_KINDS and model and provider:
            breakdown[node_key(node)]["model"] = f"{provider}/{model}"
    statuses = [run.attributes.get("workflow.status") for run in runs.values()]
    status = next((s for s in statuses if s != "success"), None) or {
        "OK": "success",
        "ERROR": "failed",
    }.get(state, "in_progress")
    root = next((s for s in spans if s.parent_id is None), None)
    single = len(names) == 1
    versions = {run.attributes.get("workflow.version") for run in runs.values()}
    return {
        "trace_id": trace_id,
        "workflow_name": names[0] if single else (root.name if root is not None else None),
        "workflow_version": versions.pop() if single and len(versions) == 1 else None,
        "status": status,
        "total_tokens": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
        },
        "total_cost_usd": sum(_cost(value) for value in costs.values()),
        "unpriced": unpriced,
        "node_breakdown": breakdown,
    }
