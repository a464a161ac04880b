"""A worker: runs the queue's tasks with the workflows it was started with.

Each task runs in a thread of the worker's pool, on that thread's own event loop, with the
workflow prepared (compiled) once for the worker. A run whose summary exists already (it ended,
or was cancelled while queued) is skipped, so a redelivered task never runs a finished run again;
a run of a workflow this worker does not have ends ``failed`` with an error naming it. A run's
events go to its Redis stream (:mod:`.events`) as the engine tells them. A resume task (its
options name a ``resume`` answer) runs ``aresume``: the worker answers whether the engine took
the attempt (its first event) or refused it (then the run is put back as it was).
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

from ..engine import InputError, RunResult, RunStatus
from ..engine.durable import ResumeError, ResumeInputError
from ..engine.events import RunEvent
from ..evaluation.online import OnlineEvaluator
from ..server.recording import per_request_runs
from ..server.store import ended_event, summarize
from .app import TASK_NAME, workflow_key
from .events import EventWriter
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
        self.events = runs.events()
        self._local = threading.local()

    def execute(
        self,
        key: str,
        run_id: str,
        inputs: Mapping[str, Any] | None,
        tags: Mapping[str, str],
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Run an attempt of ``run_id`` once (the Celery task's body; ``options``: see
        :data:`~.runs.Task`); never raises for a bad run."""
        options = dict(options or {})
        if self.runs.summary(run_id) is not None:
            _log.info("run %s ended already (redelivered or cancelled): skipped", run_id)
            return
        writer = self.events.writer(run_id)
        prepared = self.workflows.get(key)
        if prepared is None:
            known = ", ".join(sorted(self.workflows))
            error = (
                f"worker {socket.gethostname()} has no workflow {key} (it runs {known}); "
                "start a worker with the same file"
            )
            _log.error("run %s: %s", run_id, error)
            self._fail(run_id, writer, error)
            return
        self.runs.start(run_id)
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        resume = options.get("resume")
        traceparent = options.get("traceparent")
        try:
            if resume:
                result = self._resume(loop, prepared, run_id, inputs, tags, options, writer)
                if result is None:  # refused: the run is as it was
                    return
            else:
                attempt = prepared.arun(
                    inputs or {},
                    tags=tags,
                    run_id=run_id,
                    session_id=options.get("session_id"),
                    on_event=writer,
                    traceparent=traceparent,
                )
                result = loop.run_until_complete(attempt)
        except InputError as exc:
            self._fail(run_id, writer, str(exc))
            return
        except Exception as exc:  # a bug: the run must still end
            _log.exception("run %s crashed", run_id)
            self._fail(run_id, writer, f"internal error: {type(exc).__name__}")
            return
        summary = summarize(result)
        if not self.runs.finish(run_id, summary):
            _log.warning("run %s had already ended; this execution is not kept", run_id)
        writer.close(ended_event(summary))

    def _resume(
        self,
        loop: asyncio.AbstractEventLoop,
        prepared: PreparedWorkflow,
        run_id: str,
        inputs: Mapping[str, Any] | None,
        tags: Mapping[str, str],
        options: Mapping[str, Any],
        writer: EventWriter,
    ) -> RunResult | None:
        """Run a resume attempt, answering whether the engine took it; ``None`` if it refused
        it (then the run is put back as it was)."""
        answer_id = str(options["resume"])
        taken = False

        def listen(event: RunEvent) -> None:
            nonlocal taken
            if not taken:
                taken = True
                self.runs.answer_resume(answer_id, {"taken": True})
            writer(event)

        attempt = prepared.aresume(
            run_id,
            None if inputs is None else dict(inputs),
            tags=dict(tags),
            on_event=listen,
            traceparent=options.get("traceparent"),
        )
        try:
            result = loop.run_until_complete(attempt)
        except ResumeError as exc:
            if taken:
                raise
            refused = "inputs" if isinstance(exc, ResumeInputError) else "resume"
            errors = exc.errors if isinstance(exc, ResumeInputError) else []
            answer = {"refused": refused, "detail": str(exc), "errors": errors}
            self.runs.answer_resume(answer_id, answer, restore=run_id)
            return None
        if not taken:
            self.runs.answer_resume(answer_id, {"taken": True})
        return result

    def _fail(self, run_id: str, writer: EventWriter, error: str) -> None:
        """End a run that produced no result, and its events."""
        self.runs.fail(run_id, RunStatus.FAILED, error)
        final = {"run_id": run_id, "status": RunStatus.FAILED.value, "error": error}
        writer.close(ended_event(final))


def run_worker(
    prepared: list[PreparedWorkflow], runs: RedisRuns, app: Celery, *, concurrency: int
) -> None:
    """Consume runs from the queue of ``app`` until stopped (SIGTERM/SIGINT: warm shutdown)."""
    worker = Worker(prepared, runs)

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
    def run(
        key: str,
        run_id: str,
        inputs: dict[str, Any] | None,
        tags: dict[str, str],
        options: dict[str, Any] | None = None,
    ) -> None:
        worker.execute(key, run_id, inputs, tags, options)

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
