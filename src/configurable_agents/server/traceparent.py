"""The caller's W3C Trace Context (``traceparent`` request header), read as the standard says.

A valid header is handed to the engine (``arun(traceparent=...)``) so the run's trace continues
the caller's; an invalid one is ignored, never answered with an error (W3C Trace Context, section
"traceparent header": a vendor that cannot parse it restarts the trace).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["TRACEPARENT", "parse_traceparent"]

TRACEPARENT = "traceparent"
"""The request header's name."""

_HEADER = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def parse_traceparent(values: Sequence[str]) -> str | None:
    """The ``traceparent`` to continue, from every value the request carried, or ``None``.

    Version ``00`` must be exactly ``00-<trace-id>-<parent-id>-<flags>`` (lowercase hex);
    a later version may carry more after a dash, and its first 55 characters are kept (what
    this version understands). Invalid: version ``ff``, an all-zero trace id or parent id,
    uppercase hex, surrounding text, or more than one header.
    """
    if len(values) != 1:
        return None
    header = values[0].strip(" \t")
    matched = _HEADER.match(header)
    if matched is None:
        return None
    version, trace_id, parent_id, _ = matched.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    rest = header[matched.end() :]
    if version == "00":
        return header if not rest else None
    if rest and not rest.startswith("-"):
        return None
    return header[: matched.end()]
