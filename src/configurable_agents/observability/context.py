"""The caller's open span: where a run's trace, or a span of user code, is recorded now.

Two kinds of span can be open around a run: a span of ``configurable_agents.tracing`` (ours,
kept in a context variable) and an MLflow span of the caller (``@mlflow.trace``,
``mlflow.start_span``). :func:`current` returns the innermost. MLflow is looked at only when
the process has imported it already: finding no span must never cost MLflow's import.
"""

from __future__ import annotations

import re
import sys
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OpenSpan",
    "Parent",
    "close_span",
    "current",
    "innermost",
    "mlflow_span",
    "open_span",
    "same_store",
]

_TRACE_ID = re.compile(r"tr-[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Parent:
    """An open span that a run's trace, or a new span, goes under.

    Attributes:
        trace_hex: Its trace's id without ``tr-`` (32 hex digits, OpenTelemetry's).
        span_hex: Its id (16 hex digits).
        destination: The store its trace is recorded in.
        experiment: The experiment our spans of its trace are spooled under; None for an MLflow
            span (its trace is in the caller's experiment, whatever ours say).
    """

    trace_hex: str
    span_hex: str
    destination: str
    experiment: str | None


@dataclass(frozen=True)
class OpenSpan:
    """A span of ours that is open in this context.

    Attributes:
        parent: The span as a parent of what opens inside it; None when it is not recorded.
        mlflow_outer: The id of the caller's MLflow span that was active when it opened: an
            MLflow span active now with another id opened inside it, and is the innermost.
    """

    parent: Parent | None
    mlflow_outer: str | None


_open: ContextVar[OpenSpan | None] = ContextVar("configurable_agents_open_span", default=None)


def open_span(span: OpenSpan) -> Token[OpenSpan | None]:
    """Make ``span`` the innermost of ours in this context; reset the token when it closes."""
    return _open.set(span)


def close_span(token: Token[OpenSpan | None]) -> None:
    """Make the span that was open before :func:`open_span` gave ``token`` the innermost."""
    _open.reset(token)


def innermost() -> OpenSpan | None:
    """The innermost span of ours open in this context, if any."""
    return _open.get()


def mlflow_span() -> Parent | None:
    """The caller's active MLflow span, when MLflow is imported and one is open in this context
    with an MLflow trace id (``tr-`` and 32 hex digits: not a span of another OpenTelemetry
    tracer, not MLflow's no-op span when its tracing is disabled)."""
    mlflow = sys.modules.get("mlflow")
    active = getattr(mlflow, "get_current_active_span", None)
    if active is None:
        return None
    try:
        span = active()
        if span is None:
            return None
        trace_id, span_id = span.trace_id, span.span_id
        destination = mlflow.get_tracking_uri()  # type: ignore[union-attr]
    except Exception:  # a half-imported or unusual MLflow: no caller span rather than a failure
        return None
    if not (
        isinstance(trace_id, str)
        and isinstance(span_id, str)
        and _TRACE_ID.fullmatch(trace_id)
        and _SPAN_ID.fullmatch(span_id)
    ):
        return None
    return Parent(trace_id[3:], span_id, str(destination), None)


def current() -> Parent | None:
    """The innermost open span that is recorded, ours or the caller's MLflow span; None when
    there is none."""
    ours = _open.get()
    theirs = mlflow_span()
    if ours is None or (theirs is not None and theirs.span_hex != ours.mlflow_outer):
        return theirs
    return ours.parent or theirs


def _canonical(uri: str) -> str:
    if uri.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri.rstrip("/")


def same_store(one: str, other: str) -> bool:
    """Whether two tracking URIs name one store that keeps spans written apart as one trace
    (a ``file:`` store keeps each trace whole, as an artifact: never)."""
    if one.startswith("file:") or other.startswith("file:"):
        return False
    return _canonical(one) == _canonical(other)
