"""Where runs are kept, as the API reads them: the :class:`RunStore` protocol, the run statuses
and the view of a run every store gives.

Two stores implement it: the server's SQLite job table (:class:`~.jobs.JobStore`) and the
queue's Redis runs (:class:`~configurable_agents.queue.runs.RedisRuns`). This module is neutral:
it imports neither, nor FastAPI, so the queue depends on it and not on the server's internals.

Store calls block (SQLite, Redis), so the API and the executors never make them on the event
loop: :class:`AsyncRuns` runs each in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from ..engine.records import RunResult, RunStatus

__all__ = [
    "QUEUED",
    "RESUMABLE",
    "RUNNING",
    "UNFINISHED",
    "AsyncRuns",
    "Record",
    "RunStore",
    "ended_event",
    "run_view",
    "summarize",
]

QUEUED = "queued"
"""Status of an accepted run waiting to start (for a free slot, or for a worker)."""

RUNNING = "running"
"""Status of a run in progress."""

UNFINISHED = (QUEUED, RUNNING)
"""Statuses of runs that have not ended; an ended run has a :class:`RunStatus` value."""

RESUMABLE = tuple(s.value for s in RunStatus if s is not RunStatus.SUCCESS)
"""Statuses of runs another attempt may continue from their last checkpoint (``waiting``, and
every ending but ``success``)."""

SUMMARY_FIELDS = (
    "outputs",
    "state",
    "cost_usd",
    "unpriced",
    "tokens",
    "duration_s",
    "trace_id",
    "error",
    "attempt",
    "resumed_from",
    "waiting",
)
"""What a run's view takes from its summary (``None`` until it ends)."""

_T = TypeVar("_T")


class Record(Protocol):
    """A stored run's columns by name (a ``dict``, or an ``sqlite3.Row``)."""

    def __getitem__(self, key: str, /) -> Any:
        """The column ``key``."""
        ...


class RunStore(Protocol):
    """The runs of every workflow a server or worker handles: accepted, started, ended.

    Attributes:
        path: Where the runs are (a file, or a Redis URL without its password), for messages.
    """

    path: Any

    def create(
        self,
        run_id: str,
        workflow: str,
        inputs: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        session_id: str | None = None,
        task: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a :data:`QUEUED` run of the session ``session_id``, if any; ``task`` is what its
        execution is given beyond the inputs and tags (kept where it may be sent again)."""
        ...

    def reopen(self, run_id: str, task: Mapping[str, Any] | None = None) -> bool:
        """Make an ended, :data:`RESUMABLE` run :data:`QUEUED` again for another attempt (given
        ``task``), atomically; whether it was (not: no such run, it has not ended, or it
        succeeded). Its last summary is kept for :meth:`restore`."""
        ...

    def restore(self, run_id: str) -> None:
        """Undo :meth:`reopen` (the attempt was refused before it changed anything): the run is
        again as its last summary says."""
        ...

    def start(self, run_id: str) -> None:
        """Mark a queued run :data:`RUNNING`."""
        ...

    def finish(self, run_id: str, summary: Mapping[str, Any]) -> Any:
        """Store an ended run's summary (see :func:`summarize`); its ``status`` is the run's."""
        ...

    def fail(self, run_id: str, status: RunStatus, error: str) -> Any:
        """End a run that produced no result (e.g. cancelled before it started)."""
        ...

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run's view (see :func:`run_view`), or ``None`` if there is no such run."""
        ...

    def list(
        self,
        workflow: str,
        *,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The workflow's most recent runs first, filtered by status and tag values."""
        ...

    def recover(self) -> int:
        """End the runs that no process will end any more; how many."""
        ...


def summarize(result: RunResult) -> dict[str, Any]:
    """What a store keeps of a finished run: everything but the per-node records."""
    summary = result.to_dict()
    summary["node_executions"] = len(summary.pop("nodes"))
    return summary


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


def run_view(record: Record) -> dict[str, Any]:
    """A run as the API shows it: id, status, times, inputs, tags, session, then its summary
    (``None`` while it has not ended, a resumed run's last summary included).

    Args:
        record: The stored run: ``id``, ``workflow``, ``status``, ``created`` and ``finished``
            (epoch seconds, ``finished`` ``None`` until it ends), ``inputs`` and ``tags`` (JSON
            text), ``summary`` (JSON text, or ``None`` until it ends) and, if the store keeps
            it, ``session_id``.
    """
    status = record["status"]
    ended = status not in UNFINISHED  # a resumed run's last summary is not its current one
    summary = json.loads(record["summary"]) if ended and record["summary"] else {}
    view: dict[str, Any] = {
        "run_id": record["id"],
        "workflow": record["workflow"],
        "status": status,
        "created_at": _iso(record["created"]),
        "finished_at": _iso(record["finished"]) if ended else None,
        "inputs": json.loads(record["inputs"]),
        "tags": json.loads(record["tags"]),
        "session_id": _column(record, "session_id") or summary.get("session_id"),
    }
    for key in SUMMARY_FIELDS:
        view[key] = summary.get(key)
    return view


def _column(record: Record, key: str) -> Any:
    """``record[key]``, or ``None`` for a record written before the column existed."""
    try:
        return record[key]
    except (KeyError, IndexError):
        return None


def ended_event(view: Mapping[str, Any]) -> dict[str, Any]:
    """A ``run_finished`` event (as ``RunEvent.to_dict()`` gives it) made from an ended run's
    view, for a stream whose own events are gone (expired, or the run ended without any)."""
    return {
        "type": "run_finished",
        "run_id": view["run_id"],
        "status": view["status"],
        "error": view.get("error"),
        "cost_usd": view.get("cost_usd"),
        "tokens": view.get("tokens"),
        "trace_id": view.get("trace_id"),
    }


class AsyncRuns:
    """A :class:`RunStore` for coroutines: each call runs in a thread, off the event loop.

    A write that has begun is finished before the caller sees a cancellation, so a cancelled
    task never leaves its run's row behind what it did.
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store

    async def create(
        self,
        run_id: str,
        workflow: str,
        inputs: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        session_id: str | None = None,
        task: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`RunStore.create` (a run without a session or task options is created
        without them, so a store written before they existed still takes it)."""
        options: dict[str, Any] = {}
        if session_id is not None:
            options["session_id"] = session_id
        if task:
            options["task"] = task
        await _settled(lambda: self.store.create(run_id, workflow, inputs, tags, **options))

    async def reopen(self, run_id: str, task: Mapping[str, Any] | None = None) -> bool:
        """See :meth:`RunStore.reopen`."""
        return await _settled(lambda: self.store.reopen(run_id, task))

    async def restore(self, run_id: str) -> None:
        """See :meth:`RunStore.restore`."""
        await _settled(lambda: self.store.restore(run_id))

    async def start(self, run_id: str) -> None:
        """See :meth:`RunStore.start`."""
        await _settled(lambda: self.store.start(run_id))

    async def finish(self, run_id: str, summary: Mapping[str, Any]) -> Any:
        """See :meth:`RunStore.finish`."""
        return await _settled(lambda: self.store.finish(run_id, summary))

    async def fail(self, run_id: str, status: RunStatus, error: str) -> Any:
        """See :meth:`RunStore.fail`."""
        return await _settled(lambda: self.store.fail(run_id, status, error))

    async def get(self, run_id: str) -> dict[str, Any] | None:
        """See :meth:`RunStore.get`."""
        return await asyncio.to_thread(self.store.get, run_id)

    async def list(
        self,
        workflow: str,
        *,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """See :meth:`RunStore.list`."""
        return await asyncio.to_thread(
            self.store.list, workflow, status=status, tags=tags, limit=limit
        )

    async def recover(self) -> int:
        """See :meth:`RunStore.recover`."""
        return await _settled(self.store.recover)

    async def call(self, function: Callable[[], _T]) -> _T:
        """Any other blocking call (``function()``) in a thread, ended even if the caller is
        cancelled meanwhile."""
        return await _settled(function)


async def _settled(write: Callable[[], _T]) -> _T:
    """``write()`` in a thread; if the caller is cancelled meanwhile, the write still ends before
    the cancellation goes on."""
    future = asyncio.ensure_future(asyncio.to_thread(write))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:
                continue
        raise
