"""The batch's own MLflow run: parameters, aggregated metrics and a summary, linked to the rows'
traces (each row records only its trace, tagged with the batch id)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .runner import BATCH_ID_TAG, BatchStats

if TYPE_CHECKING:
    from ..observability.recorder import Recorder

__all__ = ["record_batch_run", "run_frame"]

_STATUS = {None: "FINISHED", "budget": "FINISHED", "interrupted": "KILLED"}


def run_frame(stats: BatchStats, workflow: str, kind: str) -> dict[str, Any]:
    """The name, times and status of the MLflow run of a batch (or an evaluation, ``kind``)
    that ends now: ``<workflow>-<kind>-<UTC start>``."""
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - int(stats.elapsed_s * 1000)
    started = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
    return {
        "name": f"{workflow}-{kind}-{started.strftime('%Y%m%d-%H%M%S')}",
        "start_ms": start_ms,
        "end_ms": end_ms,
        "status": _STATUS[stats.stopped],
    }


def record_batch_run(
    recorder: Recorder,
    stats: BatchStats,
    *,
    batch_id: str,
    inputs: Path,
    output: Path,
    concurrency: int,
    tags: dict[str, str],
) -> None:
    """Spool the batch's parent MLflow run (written by the recorder's background writer)."""
    flow = recorder.workflow.config.flow
    succeeded = stats.statuses.get("success", 0)
    summary: dict[str, Any] = {
        "batch_id": batch_id,
        "workflow_name": flow.name,
        "inputs": str(inputs),
        "output": str(output),
        "rows": stats.total + stats.skipped,
        "skipped_already_done": stats.skipped,
        "run": stats.done,
        "not_started": stats.total - stats.done,
        "statuses": dict(stats.statuses),
        "stopped": stats.stopped,
        "total_cost_usd": stats.cost_usd,
        "unpriced": stats.unpriced,
        "total_tokens": stats.tokens,
        "duration_seconds": stats.elapsed_s,
        "trace_ids": stats.trace_ids,
    }
    run = {
        **run_frame(stats, flow.name, "batch"),
        "params": {
            "workflow_name": flow.name,
            "workflow_version": flow.version or "",
            "inputs_file": str(inputs),
            "output_file": str(output),
            "concurrency": concurrency,
        },
        "metrics": {
            "rows": stats.done,
            "succeeded": succeeded,
            "failed": stats.done - succeeded,
            "skipped": stats.skipped,
            "total_cost_usd": stats.cost_usd,
            "total_tokens": stats.tokens,
            "duration_seconds": stats.elapsed_s,
            "runs_per_second": stats.rate,
        },
        "tags": {
            **recorder.config.tags,
            **tags,
            "workflow": flow.name,
            BATCH_ID_TAG: batch_id,
            "batch.stopped": stats.stopped or "",
        },
        "artifacts": {"batch_summary.json": summary} if recorder.config.log_artifacts else {},
    }
    recorder.record_run(run, stats.trace_ids)
