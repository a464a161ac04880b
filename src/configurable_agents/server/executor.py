"""How the server executes runs: one small interface, and the in-process implementation.

The API only calls :class:`Executor`'s ``submit``, ``resume``, ``wait``, ``cancel`` and
``shutdown``, and reads runs from the executor's :class:`~.store.RunStore` and their live events
from its ``events`` (:class:`~.events.EventSource`); an executor that hands runs to a queue
(Celery workers sharing a Redis store) can replace :class:`LocalExecutor` without touching the
API. Executors never call the store on the event loop (:class:`~.store.AsyncRuns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ..engine import PreparedWorkflow, RunResult, RunStatus, check_inputs
from ..engine.durable import ResumeError
from ..engine.events import EventListener, RunEvent
from ..observability.prometheus import Metrics
from .events import EventSource, LocalEvents
from .store import UNFINISHED, AsyncRuns, RunStore, ended_event, summarize

__all__ = ["SHUTDOWN_ERROR", "Executor", "LocalExecutor"]

_log = logging.getLogger(__name__)

SHUTDOWN_ERROR = "run cancelled: the server shut down"
"""Error of a run cancelled because the server stopped before it ended."""


class Executor(Protocol):
    """Executes runs of one workflow and keeps their rows in its store current."""

    jobs: RunStore

    @property
    def events(self) -> EventSource:
        """Where the runs' live events are read."""
        ...

    async def submit(
        self,
        inputs: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        session_id: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Check the inputs, start a run exactly once (in the session ``session_id``, inside the
        caller's trace ``traceparent``), and return its id.

        Raises:
            InputError: the inputs do not fit the workflow (nothing was started).
        """
        ...

    async def resume(
        self,
        run_id: str,
        inputs: Mapping[str, Any] | None,
        *,
        traceparent: str | None = None,
        decide_within: float,
    ) -> bool:
        """Start another attempt of an ended run (``PreparedWorkflow.aresume``) and wait up to
        ``decide_within`` seconds for the engine to take it; whether it has (``False``: it still
        waits for a slot or a worker, and a refusal then leaves the run as it was).

        Raises:
            ResumeInputError: ``inputs`` do not fit what the run waits for (nothing changed).
            ResumeError: the run cannot be resumed: unknown, running, succeeded, nothing to
                resume from (nothing changed).
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


_Attempt = Callable[[EventListener], Awaitable[RunResult]]
"""Runs one attempt of a run (``arun`` or ``aresume``), telling the listener its events."""


class LocalExecutor:
    """Runs as asyncio tasks of the server's event loop, on one :class:`PreparedWorkflow`;
    beyond ``max_running`` runs at once, runs wait ``queued`` for a slot. Their events are kept
    in memory (:class:`~.events.LocalEvents`)."""

    def __init__(
        self,
        prepared: PreparedWorkflow,
        jobs: RunStore,
        metrics: Metrics,
        max_running: int | None = None,
    ) -> None:
        self.prepared = prepared
        self.jobs = jobs
        self.events = LocalEvents()
        self._runs = AsyncRuns(jobs)
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_running) if max_running else None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._shutting_down = False

    async def submit(
        self,
        inputs: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        session_id: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """See :meth:`Executor.submit`."""
        check_inputs(self.prepared.workflow, inputs)
        run_id = uuid.uuid4().hex
        given, labels = dict(inputs), dict(tags)

        def attempt(listener: EventListener) -> Awaitable[RunResult]:
            return self.prepared.arun(
                given,
                tags=labels,
                run_id=run_id,
                session_id=session_id,
                on_event=listener,
                traceparent=traceparent,
            )

        name = self.prepared.workflow.name
        try:
            await self._runs.create(run_id, name, given, labels, session_id=session_id)
        except asyncio.CancelledError:  # the row was written all the same (AsyncRuns): run it
            self._spawn(run_id, attempt)
            raise
        self._spawn(run_id, attempt)
        return run_id

    async def resume(
        self,
        run_id: str,
        inputs: Mapping[str, Any] | None,
        *,
        traceparent: str | None = None,
        decide_within: float,
    ) -> bool:
        """See :meth:`Executor.resume`."""
        view = await self._runs.get(run_id)
        if view is None or view["workflow"] != self.prepared.workflow.name:
            raise ResumeError(f"no run {run_id!r} of this workflow")
        running = self._tasks.get(run_id)
        if (running is not None and not running.done()) or not await self._runs.reopen(run_id):
            raise ResumeError(f"run {run_id} is {view['status']}: only a run that waits or did "
                              "not succeed can be resumed, once it ended")  # fmt: skip
        given, tags = None if inputs is None else dict(inputs), dict(view["tags"])

        def attempt(listener: EventListener) -> Awaitable[RunResult]:
            return self.prepared.aresume(
                run_id, given, tags=tags, on_event=listener, traceparent=traceparent
            )

        decided: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        decided.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen if unawaited
        self._spawn(run_id, attempt, decided)
        done, _ = await asyncio.wait({decided}, timeout=decide_within)
        if done:
            decided.result()  # raises the refusal
        return bool(done)

    def _spawn(
        self, run_id: str, attempt: _Attempt, decided: asyncio.Future[None] | None = None
    ) -> None:
        self.events.open(run_id)
        task = asyncio.create_task(self._execute(run_id, attempt, decided))
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._forget(run_id, task))

    def _forget(self, run_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(run_id) is task:  # not a later attempt's
            del self._tasks[run_id]

    async def _execute(
        self, run_id: str, attempt: _Attempt, decided: asyncio.Future[None] | None
    ) -> None:
        publish = self.events.listener(run_id)
        ending: list[dict[str, Any]] = []

        def listener(event: RunEvent) -> None:
            if decided is not None and not decided.done():
                decided.set_result(None)  # the engine took the attempt
            if event.type == "run_finished":  # told once the store has the run's end
                ending.append(event.to_dict())
            else:
                publish(event)

        summary = None
        try:
            summary = await self._attempt(run_id, attempt, listener, decided)
        finally:
            if decided is not None and not decided.done():
                decided.set_result(None)
            final = ending[-1] if ending else None if summary is None else ended_event(summary)
            self.events.close(run_id, final)

    async def _attempt(
        self,
        run_id: str,
        attempt: _Attempt,
        listener: EventListener,
        decided: asyncio.Future[None] | None,
    ) -> dict[str, Any] | None:
        """Run the attempt and store how it ended; its summary, or ``None`` if the engine
        refused it (then the run is put back as it was and ``decided`` says why)."""
        try:
            async with self._slots or contextlib.nullcontext():
                await self._runs.start(run_id)
                with self.metrics.running():
                    result = await attempt(listener)
        except asyncio.CancelledError:  # cancelled before the run began (queued)
            return await self._fail(run_id, RunStatus.CANCELLED, self._cancel_reason())
        except ResumeError as exc:  # refused before anything changed: the run is as it was
            if decided is None or decided.done():
                _log.exception("run %s: resume refused after it began", run_id)
                return await self._fail(run_id, RunStatus.FAILED, str(exc))
            await self._runs.restore(run_id)
            decided.set_exception(exc)
            return None
        except Exception as exc:  # a bug: the row must still end
            _log.exception("run %s crashed", run_id)
            error = f"internal error: {type(exc).__name__}"
            return await self._fail(run_id, RunStatus.FAILED, error)
        summary = summarize(result)
        if result.status is RunStatus.CANCELLED:
            summary["error"] = self._cancel_reason()
        await self._runs.finish(run_id, summary)
        return summary

    async def _fail(self, run_id: str, status: RunStatus, error: str) -> dict[str, Any]:
        """End a run that produced no result; its summary."""
        await self._runs.fail(run_id, status, error)
        return {"run_id": run_id, "status": status.value, "error": error}

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
