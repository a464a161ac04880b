"""How the server executes runs: one small interface, and the in-process implementation.

The API only calls :class:`Executor`'s ``submit``, ``wait``, ``cancel`` and ``shutdown``, and reads
runs from the executor's :class:`~.store.RunStore`; an executor that hands runs to a queue (Celery
workers sharing a Redis store) can replace :class:`LocalExecutor` without touching the API.
Executors never call the store on the event loop (:class:`~.store.AsyncRuns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from ..engine import PreparedWorkflow, RunStatus, check_inputs
from ..observability.prometheus import Metrics
from .store import UNFINISHED, AsyncRuns, RunStore, summarize

__all__ = ["SHUTDOWN_ERROR", "Executor", "LocalExecutor"]

_log = logging.getLogger(__name__)

SHUTDOWN_ERROR = "run cancelled: the server shut down"
"""Error of a run cancelled because the server stopped before it ended."""


class Executor(Protocol):
    """Executes runs of one workflow and keeps their rows in its store current."""

    jobs: RunStore

    async def submit(self, inputs: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Check the inputs, start a run exactly once, and return its id.

        Raises:
            InputError: the inputs do not fit the workflow (nothing was started).
        """
        ...

    async def wait(self, run_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the run to end; whether it has. Never cancels it."""
        ...

    async def cancel(self, run_id: str) -> bool:
        """Cancel an unfinished run and wait for its row to say so; ``False`` if this executor
        does not run it."""
        ...

    async def shutdown(self, timeout: float) -> None:
        """Let running runs finish for up to ``timeout`` seconds, then cancel the rest."""
        ...


class LocalExecutor:
    """Runs as asyncio tasks of the server's event loop, on one :class:`PreparedWorkflow`;
    beyond ``max_running`` runs at once, runs wait ``queued`` for a slot."""

    def __init__(
        self,
        prepared: PreparedWorkflow,
        jobs: RunStore,
        metrics: Metrics,
        max_running: int | None = None,
    ) -> None:
        self.prepared = prepared
        self.jobs = jobs
        self._runs = AsyncRuns(jobs)
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_running) if max_running else None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._shutting_down = False

    async def submit(self, inputs: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """See :meth:`Executor.submit`."""
        check_inputs(self.prepared.workflow, inputs)
        run_id = uuid.uuid4().hex
        try:
            await self._runs.create(run_id, self.prepared.workflow.name, inputs, tags)
        except asyncio.CancelledError:  # the row was written all the same (AsyncRuns): run it
            self._spawn(run_id, inputs, tags)
            raise
        self._spawn(run_id, inputs, tags)
        return run_id

    def _spawn(self, run_id: str, inputs: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        task = asyncio.create_task(self._execute(run_id, dict(inputs), dict(tags)))
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def _execute(self, run_id: str, inputs: dict[str, Any], tags: dict[str, str]) -> None:
        try:
            async with self._slots or contextlib.nullcontext():
                await self._runs.start(run_id)
                with self.metrics.running():
                    result = await self.prepared.arun(inputs, tags=tags, run_id=run_id)
        except asyncio.CancelledError:  # cancelled before the run began (queued)
            await self._runs.fail(run_id, RunStatus.CANCELLED, self._cancel_reason())
            return
        except Exception as exc:  # a bug: the row must still end
            _log.exception("run %s crashed", run_id)
            await self._runs.fail(run_id, RunStatus.FAILED, f"internal error: {type(exc).__name__}")
            return
        summary = summarize(result)
        if result.status is RunStatus.CANCELLED:
            summary["error"] = self._cancel_reason()
        await self._runs.finish(run_id, summary)

    def _cancel_reason(self) -> str:
        return SHUTDOWN_ERROR if self._shutting_down else "run cancelled"

    async def wait(self, run_id: str, timeout: float) -> bool:
        """See :meth:`Executor.wait`."""
        task = self._tasks.get(run_id)
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)  # never cancels the task
            return task.done()
        view = await self._runs.get(run_id)
        return view is not None and view["status"] not in UNFINISHED

    async def cancel(self, run_id: str) -> bool:
        """See :meth:`Executor.cancel`."""
        task = self._tasks.get(run_id)
        if task is None:
            return False
        task.cancel()
        await asyncio.wait({task})
        return True

    async def shutdown(self, timeout: float) -> None:
        """See :meth:`Executor.shutdown`."""
        tasks = set(self._tasks.values())
        if not tasks:
            return
        _log.info("waiting up to %g s for %d run(s) to finish", timeout, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            self._shutting_down = True
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)
