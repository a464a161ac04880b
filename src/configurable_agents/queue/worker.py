"""A worker: runs the queue's tasks with the workflows it was started with.

Each task runs in a thread of the worker's pool, on that thread's own event loop, with the
workflow prepared (compiled) once for the worker. A run whose summary exists already (it ended,
or was cancelled while queued) is skipped, so a redelivered task never runs a finished run again;
a run of a workflow this worker does not have ends ``failed`` with an error naming it.
Like ``serve``'s, each run is recorded as a trace, and as an MLflow run too only with the
workflow's ``observability.mlflow.request_runs``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..engine import InputError, RunStatus
from ..evaluation.online import OnlineEvaluator
from ..server.recording import per_request_runs
from ..server.store import summarize
from .app import TASK_NAME, workflow_key
from .runs import RedisRuns

if TYPE_CHECKING:
    from celery import Celery

    from ..engine import PreparedWorkflow

__all__ = ["Worker", "run_worker"]

_log = logging.getLogger(__name__)

ONLINE_WAIT_S = 10.0
"""Seconds a stopping worker waits for the online scoring of its last runs."""


class Worker:
    """Executes runs of the workflows it knows, recording their ends in ``runs``."""

    def __init__(self, prepared: list[PreparedWorkflow], runs: RedisRuns) -> None:
        for workflow in prepared:
            per_request_runs(workflow)
        self.online = [e for p in prepared if (e := OnlineEvaluator.attach(p)) is not None]
        """Online scoring of the workflows whose `evaluation.online` asks for it."""
        self.workflows = {workflow_key(p): p for p in prepared}
        self.runs = runs
        self._local = threading.local()

    def execute(
        self, key: str, run_id: str, inputs: Mapping[str, Any], tags: Mapping[str, str]
    ) -> None:
        """Run ``run_id`` once (the Celery task's body); never raises for a bad run."""
        if self.runs.summary(run_id) is not None:
            _log.info("run %s ended already (redelivered or cancelled): skipped", run_id)
            return
        prepared = self.workflows.get(key)
        if prepared is None:
            known = ", ".join(sorted(self.workflows))
            error = (
                f"worker {socket.gethostname()} has no workflow {key} (it runs {known}); "
                "start a worker with the same file"
            )
            _log.error("run %s: %s", run_id, error)
            self.runs.fail(run_id, RunStatus.FAILED, error)
            return
        self.runs.start(run_id)
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        try:
            result = loop.run_until_complete(prepared.arun(inputs, tags=tags, run_id=run_id))
        except InputError as exc:
            self.runs.fail(run_id, RunStatus.FAILED, str(exc))
            return
        except Exception as exc:  # a bug: the run must still end
            _log.exception("run %s crashed", run_id)
            self.runs.fail(run_id, RunStatus.FAILED, f"internal error: {type(exc).__name__}")
            return
        if not self.runs.finish(run_id, summarize(result)):
            _log.warning("run %s had already ended; this execution is not kept", run_id)


def run_worker(
    prepared: list[PreparedWorkflow], runs: RedisRuns, app: Celery, *, concurrency: int
) -> None:
    """Consume runs from the queue of ``app`` until stopped (SIGTERM/SIGINT: warm shutdown)."""
    worker = Worker(prepared, runs)

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
    def run(key: str, run_id: str, inputs: dict[str, Any], tags: dict[str, str]) -> None:
        worker.execute(key, run_id, inputs, tags)

    app.Worker(
        pool="threads",
        concurrency=concurrency,
        loglevel="WARNING",
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    ).start()
    for evaluator in worker.online:  # scores of the last runs still reach their traces
        evaluator.wait(ONLINE_WAIT_S)
