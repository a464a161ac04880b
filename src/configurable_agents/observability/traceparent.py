"""W3C Trace Context ``traceparent`` values: a caller's trace that a run continues.

``00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`` (https://www.w3.org/TR/trace-context/).
A run given one records its spans in the caller's trace when it exports them by OTLP, and names
the caller's trace and span in its MLflow trace (see docs/OBSERVABILITY.md). Imports nothing: the
server parses request headers with it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["TraceParent", "format_traceparent", "is_sampled", "parse_traceparent"]

_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_SAMPLED = 0x01


class TraceParent(NamedTuple):
    """The caller's trace and span, as lower-case hex."""

    trace_id: str
    """32 hex digits."""
    span_id: str
    """16 hex digits."""


def _fields(text: str) -> tuple[str, str, str] | None:
    if not isinstance(text, str):
        return None
    match = _FORMAT.fullmatch(text.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None  # ff is forbidden; version 00 has exactly four fields
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, flags


def parse_traceparent(text: str | None) -> TraceParent | None:
    """The trace and span ids of a ``traceparent`` value, or None when it is not a valid one:
    not four ``-``-separated lower-case hex fields of 2, 32, 16 and 2 digits, version ``ff``,
    version ``00`` with more fields, or an all-zero trace or span id. (A later version's extra
    fields are allowed, as the specification asks.)

    >>> parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    TraceParent(trace_id='4bf92f3577b34da6a3ce929d0e0e4736', span_id='00f067aa0ba902b7')
    """
    if text is None:
        return None
    fields = _fields(text)
    return None if fields is None else TraceParent(fields[0], fields[1])


def is_sampled(text: str | None) -> bool:
    """Whether a valid ``traceparent`` has its ``sampled`` flag set (the caller records its
    trace); False for an invalid one."""
    fields = None if text is None else _fields(text)
    return fields is not None and bool(int(fields[2], 16) & _SAMPLED)


def format_traceparent(trace_id: str, span_id: str, *, sampled: bool = True) -> str:
    """A version ``00`` ``traceparent`` value naming ``span_id`` of trace ``trace_id``.

    Raises:
        ValueError: the ids are not 32 and 16 lower-case hex digits, or are all zeros.
    """
    text = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    if parse_traceparent(text) is None:
        raise ValueError(f"not a trace id and span id: {trace_id!r}, {span_id!r}")
    return text
