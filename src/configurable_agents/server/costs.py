"""``GET /costs``: the cost report of ``report costs`` as JSON, for dashboards.

It reads the MLflow store the served workflow records to (whether or not this server traces):
the workflow's ``tracking_uri`` if its file writes one, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///mlflow.db``. Every experiment of the store is covered, like ``report costs``.

The report is made in a thread, and MLflow is imported on the first ``/costs`` request only.
Answers: 200 with the report; 422 for a bad query (e.g. an end date before the start date); 404
when there is nothing to report (no store there yet, no runs, no runs of ``workflow``); 503 when
the store cannot be read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from fastapi import FastAPI, Query
from fastapi.responses import Response
from pydantic import StringConstraints

from ..reports.query import PERIODS, ReportError, ReportQuery, date_range
from .cost_schemas import CostReport
from .openapi import ok, responses
from .schemas import Error
from .served import ServedDep
from .wire import SafeJSONResponse

__all__ = ["Period", "add_cost_routes", "get_costs", "shown_uri"]

_log = logging.getLogger(__name__)

Period = StrEnum("Period", [(period.upper(), period) for period in PERIODS])  # type: ignore[misc]
"""A UTC period a report covers (``report costs --period``)."""

_VISIBLE = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A character that is not white space nor a control character (the same in every regex
engine that reads the pattern: Python's, Rust's in pydantic, a client's ECMAScript)."""

_Breakdown = Annotated[
    str, StringConstraints(pattern=rf"^(|workflow|model|node|tag:.*{_VISIBLE}.*)$")
]
"""``workflow``, ``model``, ``node``, ``tag:KEY``, or empty (the defaults)."""

_Workflow = Annotated[str, StringConstraints(pattern=r"^[^'\"\\\x00-\x1f\x7f]+$")]
"""A workflow name: no quotes, backslashes or control characters (MLflow's filters quote it)."""

_BREAKDOWN_HELP = (
    "`workflow`, `model`, `node` or `tag:KEY` (any run tag; runs without it as `(none)`). "
    "Repeatable; empty, or not given: `workflow` and `model`. By node and by tag read every "
    "run: slower."
)

_REPORTS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="costs-report")
"""Threads making reports: at most two at once, never taking the threads of the runs' store
calls (a slow or unreachable store can hold a report for minutes)."""

_NOTHING = "Nothing to report: no MLflow store there yet, no runs, no runs of `workflow`."

_OPTION = re.compile(r"--([a-z]+(?:-[a-z]+)*)")
_PARAMETERS = ("period", "start_date", "end_date", "breakdown", "aggregate_by")


def shown_uri(uri: str) -> str:
    """``uri`` without its password (a report names its store)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _without_password(text: str, uri: str) -> str:
    """``text`` with ``uri`` and its password (if it has one, of 4 characters or more) masked."""
    text = text.replace(uri, shown_uri(uri))
    password = urlsplit(uri).password
    return text.replace(password, "***") if password and len(password) >= 4 else text


def _breakdowns(given: list[str]) -> tuple[str, ...]:
    """The breakdowns asked for; an empty ``breakdown`` (or none) stands for the defaults."""
    from ..reports.costs import DEFAULT_BREAKDOWNS

    named = tuple(b for b in given if b)
    defaults = DEFAULT_BREAKDOWNS if len(named) < len(given) or not given else ()
    return tuple(dict.fromkeys(defaults + named))


def _message(error: ReportError, uri: str | None = None) -> str:
    """The report's message, its command-line options named as parameters (``--end-date``:
    ``end_date``), the password of the store ``uri`` masked."""
    text = str(error) if uri is None else _without_password(str(error), uri)
    return _OPTION.sub(lambda found: found[1].replace("-", "_"), text)


def _invalid(error: ReportError) -> Response:
    """422 with the report's message, in FastAPI's form, located at the first parameter it
    names."""
    message = _message(error)
    named = sorted((message.index(p), p) for p in _PARAMETERS if p in message)
    location = ["query", named[0][1]] if named else ["query"]
    return SafeJSONResponse(
        {"detail": [{"loc": location, "msg": message, "type": "value_error"}]}, 422
    )


def _report(query: ReportQuery, breakdown: tuple[str, ...], aggregate_by: str | None) -> Any:
    """The report as JSON (blocking: run it in a thread).

    Raises:
        ReportError: the store has nothing to report, or cannot be read.
    """
    from ..reports.costs import cost_report

    try:
        report = cost_report(query, breakdown=breakdown, aggregate_by=aggregate_by)
    except ReportError:
        raise
    except Exception as exc:
        if not _store_failed(exc):
            raise
        where = shown_uri(query.tracking_uri)
        _log.warning("GET /costs: reading %s failed", where, exc_info=exc)
        lines = str(getattr(exc, "message", exc)).splitlines() or [type(exc).__name__]
        raise ReportError(f"cannot read {where}: {lines[0]}") from None
    data = report.to_dict()
    data["filters"]["tracking_uri"] = shown_uri(query.tracking_uri)
    return data


def _store_failed(error: Exception) -> bool:
    """Whether ``error`` comes from the store (MLflow, SQLAlchemy, the network), not a bug."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    # ImportError: the store's database driver is not installed
    return isinstance(error, MlflowException | SQLAlchemyError | OSError | ImportError)


def _dates(start_date: dt.date | None, end_date: dt.date | None) -> tuple[str | None, ...]:
    return tuple(None if day is None else day.isoformat() for day in (start_date, end_date))


async def get_costs(
    served: ServedDep,
    period: Period | None = None,
    start_date: Annotated[dt.date | None, Query(description="First UTC day covered.")] = None,
    end_date: Annotated[
        dt.date | None, Query(description="Last UTC day covered (inclusive); not before the first.")
    ] = None,
    workflow: Annotated[_Workflow | None, Query(description="Only this workflow's runs.")] = None,
    status: Literal["success", "failure"] | None = None,
    breakdown: Annotated[list[_Breakdown], Query(description=_BREAKDOWN_HELP)] = [],  # noqa: B006
    aggregate_by: Literal["daily", "weekly", "monthly"] | None = None,
) -> Response:
    """What runs cost: totals, breakdowns and periods, as `report costs --format json` gives
    them; runs with an unpriced model are counted apart. `period` is a UTC period that
    `start_date` and `end_date` narrow."""
    from ..reports.tags import tag_keys

    try:
        start, end = date_range(period and period.value, *_dates(start_date, end_date))
        breakdowns = _breakdowns(breakdown)
        tag_keys(breakdowns)
    except ReportError as exc:
        return _invalid(exc)
    query = ReportQuery(
        served.costs_store, workflow=workflow, start_ms=start, end_ms=end, status=status
    )
    try:
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(_REPORTS, _report, query, breakdowns, aggregate_by)
    except ReportError as exc:
        detail = _message(exc, served.costs_store)
        nothing = detail.startswith("no ")  # no store there yet, no runs, no runs of `workflow`
        return SafeJSONResponse({"detail": detail}, 404 if nothing else 503)
    return SafeJSONResponse(report)


def add_cost_routes(app: FastAPI, auth: bool) -> None:
    """Add ``GET /costs`` to ``app``, with 401 among its answers when a token is required
    (``auth``)."""
    documented = {
        200: ok(CostReport, "The report."),
        **responses(auth=auth),
        404: ok(Error, _NOTHING),
        503: ok(Error, "The MLflow store cannot be read."),
    }
    app.add_api_route("/costs", get_costs, response_model=None, responses=documented)
