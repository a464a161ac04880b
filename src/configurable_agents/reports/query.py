"""What a report covers (store, experiments, workflow, time range, status) and opening its store.

Dates are UTC days. Nothing here imports MLflow until a store is opened.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_TRACKING_URI",
    "PERIODS",
    "ReportError",
    "ReportQuery",
    "Store",
    "date_range",
    "default_tracking_uri",
    "open_store",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PERIODS = ("today", "yesterday", "last_7_days", "last_30_days", "this_month")
Status = Literal["success", "failure", "waiting"]
DAY_MS = 86_400_000


class ReportError(Exception):
    """A report cannot be made; the message says why in one line."""


def default_tracking_uri(env: Mapping[str, str] | None = None) -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    env = os.environ if env is None else env
    return env.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _day(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None


def date_range(
    period: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    *,
    today: dt.date | None = None,
) -> tuple[int | None, int | None]:
    """The UTC milliseconds ``[start, end]`` (both inclusive, ``None`` for open) a report covers.

    ``period`` is one of :data:`PERIODS`; ``start_date``/``end_date`` (YYYY-MM-DD, inclusive)
    narrow or replace it.

    Raises:
        ReportError: unknown period, a date that is not a date, or an end before the start.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    start: dt.date | None = None
    end: dt.date | None = None
    if period is not None:
        spans = {
            "today": (today, today),
            "yesterday": (today - dt.timedelta(days=1), today - dt.timedelta(days=1)),
            "last_7_days": (today - dt.timedelta(days=6), today),
            "last_30_days": (today - dt.timedelta(days=29), today),
            "this_month": (today.replace(day=1), today),
        }
        if period not in spans:
            raise ReportError(f"--period: {period!r} is not one of {', '.join(PERIODS)}")
        start, end = spans[period]
    if start_date is not None:
        start = _day(start_date, "--start-date")
    if end_date is not None:
        end = _day(end_date, "--end-date")
    if start is not None and end is not None and end < start:
        raise ReportError(f"--end-date {end} is before --start-date {start}")

    def ms(day: dt.date) -> int:
        return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)

    return (
        None if start is None else ms(start),
        None if end is None else ms(end) + DAY_MS - 1,
    )


@dataclass(frozen=True)
class ReportQuery:
    """The runs a report covers.

    Attributes:
        tracking_uri: The MLflow store (``sqlite:///...``, ``postgresql://...``, ``http(s)://...``).
        experiment: Experiment name; ``None`` for every experiment of the store.
        workflow: Workflow name; ``None`` for all.
        start_ms: First UTC millisecond covered (inclusive); ``None`` for no lower bound.
        end_ms: Last UTC millisecond covered (inclusive); ``None`` for no upper bound.
        status: ``success``, ``failure`` (any other ending) or ``waiting`` (paused for a person,
            not resumed since); ``None`` for all.
    """

    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str | None = None
    workflow: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    status: Status | None = None

    def describe(self) -> dict[str, Any]:
        """The query as JSON-ready filters (dates as ISO strings)."""

        def iso(ms: int | None) -> str | None:
            return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()

        return {
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "workflow": self.workflow,
            "start": iso(self.start_ms),
            "end": iso(self.end_ms),
            "status": self.status,
        }


@dataclass
class Store:
    """An open MLflow store and the experiments a query reads."""

    client: Any
    backend: Any
    experiment_ids: list[str]


def open_store(query: ReportQuery) -> Store:
    """Open the query's store and find its experiments, creating nothing.

    Raises:
        ReportError: a missing SQLite file, a store that does not answer, an unknown experiment,
            or a store with no experiment holding runs.
    """
    uri = query.tracking_uri
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ReportError(f"no MLflow store at {path} (is --tracking-uri right?)")
    if uri.startswith(("http:", "https:")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no schema-migration chatter
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        backend = client._tracking_client.store
        if query.experiment is not None:
            found = client.get_experiment_by_name(query.experiment)
            if found is None:
                raise ReportError(f"no experiment {query.experiment!r} in {uri}")
            ids = [found.experiment_id]
        else:
            ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    except MlflowException as exc:
        raise ReportError(f"cannot read {uri}: {exc.message.splitlines()[0]}") from None
    if not ids:
        raise ReportError(f"no experiments in {uri}")
    return Store(client, backend, ids)
