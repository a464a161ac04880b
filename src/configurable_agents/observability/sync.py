"""Copying runs recorded locally while their MLflow server was down to that server.

A recorder whose ``http(s)`` server does not answer records to ``sqlite:///mlflow.db`` and tags
each trace and run with :data:`~.recorder.FALLBACK_TAG`. :func:`copy_fallback_runs` copies them,
trace ids kept, with MLflow's own APIs, and tags the local copies :data:`SYNCED_TAG` so that a
second sync copies nothing twice.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from .recorder import FALLBACK_TAG
from .spool import SpoolItem
from .writer import RECORD_KEY_TAG, MlflowWriter

__all__ = ["SYNCED_TAG", "copy_fallback_runs"]

SYNCED_TAG = "configurable_agents.synced_to"
"""Tag set on a local trace or run once it was copied to the server it names."""

_PAGE = 200


def copy_fallback_runs(source: str, target: str) -> tuple[int, int]:
    """Copy the traces and runs that ``source`` holds in place of server ``target`` to it.

    Returns:
        How many traces and how many runs were copied.
    """
    local, remote = MlflowWriter(source), MlflowWriter(target)
    marked = f"tags.`{FALLBACK_TAG}` = '{target}'"
    traces = runs = 0
    for experiment in local.client.search_experiments():
        traces += _copy_traces(local, remote, experiment, marked.replace("tags.", "tag.", 1))
        runs += _copy_runs(local, remote, experiment, marked, target)
    return traces, runs


def _copy_traces(local: MlflowWriter, remote: MlflowWriter, experiment: Any, marked: str) -> int:
    copied = 0
    page = None
    while True:
        found = local.client.search_traces(
            locations=[experiment.experiment_id],
            filter_string=marked,
            max_results=_PAGE,
            page_token=page,
        )
        pending = [t for t in found if t.info.tags.get(SYNCED_TAG) != remote.destination]
        if pending:
            store = remote.client._tracking_client.store
            store.log_spans(
                remote.experiment_id(experiment.name),
                [span for trace in pending for span in trace.data.spans],
            )
            for trace in pending:
                local.client.set_trace_tag(trace.info.trace_id, SYNCED_TAG, remote.destination)
            copied += len(pending)
        page = found.token
        if not page:
            return copied


def _copy_runs(
    local: MlflowWriter, remote: MlflowWriter, experiment: Any, marked: str, target: str
) -> int:
    copied = 0
    page = None
    while True:
        found = local.client.search_runs(
            [experiment.experiment_id], filter_string=marked, max_results=_PAGE, page_token=page
        )
        for run in found:
            if run.data.tags.get(SYNCED_TAG) == target:
                continue
            payload = _payload(local, experiment.experiment_id, run)
            # claims=1: written through the retry path, so a sync cut off earlier copies once
            remote.write([SpoolItem(0, target, experiment.name, payload, 0, claims=1)])
            local.client.set_tag(run.info.run_id, SYNCED_TAG, target)
            copied += 1
        page = found.token
        if not page:
            return copied


def _payload(local: MlflowWriter, experiment_id: str, run: Any) -> dict[str, Any]:
    """A spool payload that writes ``run`` again: its name, times, status, params, metrics,
    tags, JSON artifacts and linked traces."""
    run_id = run.info.run_id
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    key = tags.pop(RECORD_KEY_TAG, None) or run_id
    linked = [
        t.info.trace_id
        for t in local.client.search_traces(
            locations=[experiment_id], run_id=run_id, include_spans=False, max_results=1000
        )
    ] or [t for t in [run.data.tags.get("mlflow.trace_id")] if t]
    artifacts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for entry in local.client.list_artifacts(run_id):
            if not entry.is_dir:
                path = Path(local.client.download_artifacts(run_id, entry.path, tmp))
                artifacts[entry.path] = json.loads(path.read_text())
    return {
        "key": key,
        "trace_id": linked[0] if len(linked) == 1 else None,
        "linked_traces": linked,
        "spans": [],
        "run": {
            "name": run.info.run_name,
            "start_ms": run.info.start_time,
            "end_ms": run.info.end_time or run.info.start_time,
            "status": run.info.status,
            "params": run.data.params,
            "metrics": run.data.metrics,
            "tags": tags,
            "artifacts": artifacts,
        },
    }
