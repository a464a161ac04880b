"""Producers' side of the queue: the server's executor and batch's row executor.

Both enqueue runs (:func:`~configurable_agents.queue.app.send_run`) and wait for their summaries
in Redis; one polling loop per process reads every awaited summary in one round trip. Redis and
the broker are called in threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..batch.runner import BATCH_ID_TAG, ROW_ID_TAG, row_result
from ..engine import RunStatus, check_inputs
from ..engine.durable import ResumeError, ResumeInputError
from ..server.store import QUEUED, AsyncRuns, RunStore
from .app import QUEUE_NAME, send_run, workflow_key
from .events import RedisEvents
from .runs import RedisRuns

if TYPE_CHECKING:
    from celery import Celery

    from ..batch.dataset import Row
    from ..engine import PreparedWorkflow

__all__ = ["QueueExecutor", "QueueRowExecutor", "SummaryWaiter"]

_log = logging.getLogger(__name__)

POLL_S = 0.05
"""Seconds between two reads of the awaited summaries."""

LOST_CHECK_S = 1.0
"""Seconds between two looks for lost tasks (see :class:`SummaryWaiter`)."""


class SummaryWaiter:
    """Waits for runs' summaries, reading all those awaited every :data:`POLL_S` seconds.

    Kombu's Redis transport loses a task when a worker dies between popping it from the queue
    and recording it as unacknowledged (a few milliseconds). So every :data:`LOST_CHECK_S`
    seconds, an awaited run that no worker started and whose task is neither queued nor
    unacknowledged, twice in a row, is sent again (as workflow ``key`` through ``app``).
    """

    def __init__(self, runs: RedisRuns, app: Celery, key: str) -> None:
        self.runs = runs
        self.app = app
        self.key = key
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._missing: set[str] = set()
        self._checked = time.monotonic()

    async def wait(self, run_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The run's summary once it ended, or ``None`` after ``timeout`` seconds."""
        future = self._futures.get(run_id)
        if future is None:
            future = self._futures[run_id] = asyncio.get_running_loop().create_future()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None

    async def _poll(self) -> None:
        while self._futures:
            try:
                ids = list(self._futures)
                summaries = await asyncio.to_thread(self.runs.summaries, ids)
                for run_id, summary in zip(ids, summaries, strict=True):
                    if summary is not None:
                        self._futures.pop(run_id).set_result(summary)
                if time.monotonic() - self._checked >= LOST_CHECK_S:
                    self._checked = time.monotonic()
                    awaited, missed = list(self._futures), self._missing
                    self._missing = await asyncio.to_thread(self._resend_lost, awaited, missed)
            except Exception as exc:  # Redis unreachable for a moment: keep waiting
                _log.warning("reading runs from Redis: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(POLL_S)

    def _resend_lost(self, awaited: list[str], missed: set[str]) -> set[str]:
        """Send again the awaited runs found queued but nowhere in the broker now and at the
        last look (``missed``); the runs missing now."""
        queued = [v for v in self.runs.views(awaited) if v is not None and v["status"] == QUEUED]
        if not queued:
            return set()
        present = self.runs.in_broker(QUEUE_NAME)
        missing = {v["run_id"] for v in queued if v["run_id"] not in present}
        for view in queued:
            run_id = view["run_id"]
            if run_id in missing & missed:
                task = self.runs.task(run_id)
                if task is not None:
                    _log.warning("run %s: its task was lost by a worker; sent again", run_id)
                    send_run(self.app, self.key, run_id, *task)
                missing.discard(run_id)
        return missing


class QueueExecutor:
    """The server's executor with ``serve --queue``: runs go to workers, their rows to Redis,
    so any API replica answers for any run (see :class:`~configurable_agents.server.executor.
    Executor`)."""

    def __init__(self, prepared: PreparedWorkflow, runs: RedisRuns, app: Celery) -> None:
        self.prepared = prepared
        self.jobs: RunStore = runs
        self.runs = runs
        self.events: RedisEvents = runs.events()
        self.app = app
        self.key = workflow_key(prepared)
        self._runs = AsyncRuns(runs)
        self._waiter = SummaryWaiter(runs, app, self.key)

    async def submit(
        self,
        inputs: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        session_id: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Check the inputs, enqueue the run, return its id."""
        check_inputs(self.prepared.workflow, inputs)
        run_id = uuid.uuid4().hex
        options = {"session_id": session_id, "traceparent": traceparent}
        await self._runs.call(lambda: self._enqueue(run_id, inputs, tags, options))
        return run_id

    def _enqueue(
        self,
        run_id: str,
        inputs: Mapping[str, Any],
        tags: Mapping[str, str],
        options: Mapping[str, Any],
    ) -> None:
        name = self.prepared.workflow.name
        session_id = options.get("session_id")
        self.runs.create(run_id, name, inputs, tags, session_id=session_id, task=options)
        send_run(self.app, self.key, run_id, inputs, tags, options)

    async def resume(
        self,
        run_id: str,
        inputs: Mapping[str, Any] | None,
        *,
        traceparent: str | None = None,
        decide_within: float,
    ) -> bool:
        """Enqueue another attempt of the run and wait up to ``decide_within`` seconds for the
        worker that takes it to say whether the engine took it (see
        :meth:`~configurable_agents.server.executor.Executor.resume`)."""
        view = await self._runs.get(run_id)
        if view is None or view["workflow"] != self.prepared.workflow.name:
            raise ResumeError(f"no run {run_id!r} of this workflow")
        answer_id = uuid.uuid4().hex
        options = {"resume": answer_id, "traceparent": traceparent}
        given = None if inputs is None else dict(inputs)
        task = {"inputs": given, "options": options}
        if not await self._runs.call(lambda: self.runs.reopen(run_id, task)):
            raise ResumeError(f"run {run_id} is {view['status']}: only a run that waits or did "
                              "not succeed can be resumed, once it ended")  # fmt: skip
        tags = view["tags"]
        await self._runs.call(lambda: send_run(self.app, self.key, run_id, given, tags, options))
        deadline = time.monotonic() + decide_within
        while True:
            answer, summary = await asyncio.to_thread(self._decision, run_id, answer_id)
            if answer is not None or summary is not None:
                break
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        if answer is not None and answer.get("refused"):
            detail = str(answer.get("detail") or "resume refused")
            if answer["refused"] == "inputs":
                raise ResumeInputError(detail, list(answer.get("errors") or []))
            raise ResumeError(detail)
        return True

    def _decision(
        self, run_id: str, answer_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The worker's answer to a resume, and the run's summary (it may end first)."""
        return self.runs.resume_answer(answer_id), self.runs.summary(run_id)

    async def wait(self, run_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the run to end (on whichever worker)."""
        if await self._runs.get(run_id) is None:
            return False
        return await self._waiter.wait(run_id, timeout) is not None

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run still queued (no worker will run it); a running one cannot be."""
        view = await self._runs.get(run_id)
        if view is None or view["status"] != QUEUED:
            return False
        await self._runs.fail(run_id, RunStatus.CANCELLED, "run cancelled")
        return True

    async def shutdown(self, timeout: float) -> None:
        """Nothing to stop: runs belong to the queue and its workers, not to this server."""


class QueueRowExecutor:
    """Batch's row executor with ``batch --queue``: each row is a run on some worker.

    A row's run id is derived from the batch id and the row id, so its end is written once even
    when a worker dies and the run is delivered again.
    """

    def __init__(
        self,
        prepared: PreparedWorkflow,
        runs: RedisRuns,
        app: Celery,
        tags: Mapping[str, str],
        batch_id: str,
    ) -> None:
        self.prepared = prepared
        self.runs = runs
        self.app = app
        self.key = workflow_key(prepared)
        self.tags = {**tags, BATCH_ID_TAG: batch_id}
        self.batch_id = batch_id
        self._runs = AsyncRuns(runs)
        self._waiter = SummaryWaiter(runs, app, self.key)

    async def __call__(self, row: Row) -> dict[str, Any]:
        """Enqueue ``row`` and return its result line once a worker ended it."""
        if row.problem is not None:
            return row_result(row, "failed", error=f"{row.where}: {row.problem}")
        run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.batch_id}/{row.id}").hex
        tags = {**self.tags, ROW_ID_TAG: row.id}
        try:
            await self._runs.call(lambda: self._enqueue(run_id, row.inputs, tags))
            summary = await self._waiter.wait(run_id)
        except asyncio.CancelledError:
            await self._runs.fail(run_id, RunStatus.CANCELLED, "batch interrupted")  # if queued
            raise
        assert summary is not None  # no timeout
        return summary_line(row, summary)

    def _enqueue(self, run_id: str, inputs: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        self.runs.create(run_id, self.prepared.workflow.name, inputs, tags)
        send_run(self.app, self.key, run_id, inputs, tags)


def summary_line(row: Row, summary: Mapping[str, Any]) -> dict[str, Any]:
    """A row's result line (as :func:`~configurable_agents.batch.runner.row_result`) from the
    summary a worker wrote."""
    status, error = summary["status"], summary.get("error")
    if "tokens" not in summary:  # ended without a result (refused, cancelled, bad inputs)
        return row_result(row, status, error=error and f"{row.where}: {error}")
    tokens = summary["tokens"]
    line: dict[str, Any] = {"id": row.id, "row": row.number, "status": status}
    line.update(
        outputs=summary["outputs"],
        tokens={"input": tokens["input"], "output": tokens["output"], "total": tokens["total"]},
        cost_usd=float(summary["cost_usd"] or 0.0),
        unpriced=summary["unpriced"],
        trace_id=summary["trace_id"],
        duration_s=summary["duration_s"],
        error=error,
    )
    return line
