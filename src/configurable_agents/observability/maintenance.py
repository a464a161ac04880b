"""Store upkeep: pruning old traces and runs, and a health summary of the store.

``python -m configurable_agents.observability.maintenance DESTINATION EXPERIMENT DAYS`` prunes
(what `prune_on_start` runs, beside the process that records).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from .writer import MlflowWriter

__all__ = ["StoreStatus", "prune", "store_status"]

_DAY_MS = 24 * 3600 * 1000


def prune(destination: str, experiment: str, retention_days: int) -> tuple[int, int]:
    """Delete traces and runs older than ``retention_days`` from ``experiment``.

    Returns:
        How many traces and how many runs were deleted.
    """
    writer = MlflowWriter(destination)
    client = writer.client
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return 0, 0
    cutoff = int(time.time() * 1000) - retention_days * _DAY_MS
    traces = client.delete_traces(found.experiment_id, max_timestamp_millis=cutoff)
    runs = 0
    page = None
    while True:
        batch = client.search_runs(
            [found.experiment_id],
            filter_string=f"attributes.start_time < {cutoff}",
            max_results=1000,
            page_token=page,
        )
        for run in batch:
            client.delete_run(run.info.run_id)
            runs += 1
        page = batch.token
        if not page:
            return int(traces or 0), runs


@dataclass(frozen=True)
class StoreStatus:
    """What `observability status` reports about a store."""

    reachable: bool
    error: str | None = None
    runs_24h: int = 0
    traces_24h: int = 0


def store_status(destination: str, experiment: str) -> StoreStatus:
    """Whether the store answers, and its runs and traces of the last 24 hours."""
    try:
        client = MlflowWriter(destination).client
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return StoreStatus(True)
        since = int(time.time() * 1000) - _DAY_MS
        runs = client.search_runs(
            [found.experiment_id], filter_string=f"attributes.start_time >= {since}",
            max_results=50000,
        )  # fmt: skip
        traces = client.search_traces(
            locations=[found.experiment_id],
            filter_string=f"trace.timestamp_ms >= {since}",
            max_results=50000,
            include_spans=False,
        )
        return StoreStatus(True, None, len(runs), len(traces))
    except Exception as exc:
        return StoreStatus(False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


if __name__ == "__main__":
    prune(sys.argv[1], sys.argv[2], int(sys.argv[3]))
