"""Costs by run tag (``--breakdown tag:KEY``): the traces a query covers, grouped by a tag's value.

A run's tags (``--tag user_id=u-7``, ``tags=`` in Python, a served request's tags) are its trace's
tags. MLflow's trace-metric aggregation cannot group by a tag, so the traces are paged (without
their spans) and each one's cost and tokens are read from the totals MLflow keeps in its metadata
(``mlflow.trace.cost``, ``mlflow.trace.tokenUsage``): slower than the other breakdowns on a large
store, like ``node``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from ..observability import layout
from .query import ReportError, ReportQuery, Store
from .traces import search_filter

__all__ = ["TAG_PREFIX", "UNSET", "tag_breakdown", "tag_keys"]

TAG_PREFIX = "tag:"
UNSET = "(none)"
"""The group of runs that do not carry the tag."""

_PAGE = 1_000


def tag_keys(breakdown: tuple[str, ...]) -> list[str]:
    """The tag keys of the ``tag:KEY`` entries of ``breakdown``, in order.

    Raises:
        ReportError: an entry names no key.
    """
    keys = []
    for entry in breakdown:
        if entry.startswith(TAG_PREFIX):
            key = entry[len(TAG_PREFIX) :].strip()
            if not key:
                raise ReportError("--breakdown: 'tag:' needs a tag key, e.g. tag:user_id")
            keys.append(key)
    return list(dict.fromkeys(keys))


def _metadata(info: Any, key: str) -> dict[str, Any]:
    try:
        value = json.loads(info.trace_metadata.get(key) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tag_breakdown(store: Store, query: ReportQuery, keys: list[str]) -> dict[str, list[Any]]:
    """Per tag key, one row per value (``value``, ``runs``, ``successful``, ``failed``,
    ``tokens``, ``cost_usd``), the costliest first; runs without the tag under ``(none)``."""
    groups: dict[str, dict[str, dict[str, Any]]] = {
        key: defaultdict(
            lambda: {"runs": 0, "successful": 0, "failed": 0, "tokens": 0, "cost_usd": 0.0}
        )
        for key in keys
    }
    token = None
    while True:
        page = store.client.search_traces(
            locations=store.experiment_ids,
            filter_string=search_filter(query) or None,
            max_results=_PAGE,
            include_spans=False,
            page_token=token,
        )
        for trace in page:
            info = trace.info
            if layout.TAG_WORKFLOW not in info.tags:
                continue  # not a workflow run's trace
            cost = float(_metadata(info, layout.TRACE_COST).get("total_cost") or 0.0)
            tokens = int(_metadata(info, layout.TRACE_TOKENS).get("total_tokens") or 0)
            ok = str(getattr(info.state, "value", info.state)) == "OK"
            for key in keys:
                entry = groups[key][info.tags.get(key, UNSET)]
                entry["runs"] += 1
                entry["successful" if ok else "failed"] += 1
                entry["tokens"] += tokens
                entry["cost_usd"] += cost
        token = page.token
        if not token:
            break
    return {
        key: [
            {"value": value, **entry}
            for value, entry in sorted(
                rows.items(), key=lambda item: (-item[1]["cost_usd"], item[0])
            )
        ]
        for key, rows in groups.items()
    }
