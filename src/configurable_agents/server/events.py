"""Runs' live events as Server-Sent Events: the in-process buffer, and the stream the API sends.

The engine tells a listener of each step of a run (``RunEvent``: ``run_started``,
``node_started``, ``token``, ``node_finished``, ``waiting``, ``run_finished``). The executor
numbers them per run (1, 2, ... across a resumed run's attempts) and keeps them where the API
reads them (:class:`EventSource`): :class:`LocalEvents` in this process, or a Redis stream per
run with ``--queue`` (:class:`~configurable_agents.queue.events.RedisEvents`).

:func:`follow` is the stream: the run's events after a number (``Last-Event-ID``), then each
new one as it comes, up to the ``run_finished`` of its attempt. Each message is ``id:`` (the
number), ``event:`` (the type) and ``data:`` (``RunEvent.to_dict()`` as JSON). A client that
reconnects with the last id it saw misses nothing and gets nothing twice, as long as the events
are kept: :class:`LocalEvents` keeps :data:`MAX_EVENTS` per run, and a finished run's for
:data:`KEEP_FINISHED_S` seconds (at most :data:`KEEP_FINISHED_RUNS` runs). A stream of a run
whose events are gone ends with one ``run_finished`` made from the stored run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from ..engine.events import RunEvent
from .store import UNFINISHED, AsyncRuns, ended_event
from .wire import json_safe

__all__ = [
    "END_GRACE_S",
    "KEEPALIVE_S",
    "KEEP_FINISHED_RUNS",
    "KEEP_FINISHED_S",
    "MAX_EVENTS",
    "SSE_HEADERS",
    "EventSource",
    "LocalEvents",
    "follow",
    "sse_message",
]

MAX_EVENTS = 5000
"""Events kept per run (the oldest go first; a stream says how many it could not send)."""

KEEP_FINISHED_S = 600.0
"""Seconds a finished run's events stay in :class:`LocalEvents`."""

KEEP_FINISHED_RUNS = 200
"""Most finished runs whose events :class:`LocalEvents` keeps (the first finished go first)."""

QUIET_S = 1.0
"""Seconds without an event after which a stream looks whether its run ended in the store."""

END_GRACE_S = 0.5
"""Seconds a stream waits for an ended run's ``run_finished`` (it is added just after the run's
end is stored) before it makes one from the stored run."""

KEEPALIVE_S = 15.0
"""Seconds without an event after which a stream sends a comment (proxies close idle streams)."""

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers of every event stream (no cache, no proxy buffering)."""

Numbered = tuple[int, dict[str, Any]]
"""An event's number in its run, and the event (``RunEvent.to_dict()``)."""


class EventSource(Protocol):
    """Where the API reads runs' numbered events."""

    async def read(self, run_id: str, after: int, timeout: float) -> list[Numbered]:
        """The run's events numbered above ``after``, in order; waits up to ``timeout`` seconds
        for one when there is none yet (``[]`` then)."""
        ...

    async def last_id(self, run_id: str) -> int:
        """The number of the run's last event (0: none kept)."""
        ...


class _Log:
    """One run's events: the last :data:`MAX_EVENTS`, their count, and readers to wake."""

    def __init__(self, size: int) -> None:
        self.events: deque[Numbered] = deque(maxlen=size)
        self.last = 0
        self.attempts = 0  # attempts under way (a resume may begin as the last one ends)
        self.began = 0  # the last event before the latest attempt began
        self.wake = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        self.last += 1
        self.events.append((self.last, event))
        self.wake.set()
        self.wake = asyncio.Event()

    def after(self, number: int) -> list[Numbered]:
        if number >= self.last:
            return []
        skip = max(0, number - self.events[0][0] + 1) if self.events else 0
        return list(self.events)[skip:]


class LocalEvents:
    """Events of the runs of this process, kept in memory (an :class:`EventSource`).

    Every call is made on the server's event loop (the engine calls its listener there).
    """

    def __init__(
        self,
        max_events: int = MAX_EVENTS,
        keep_s: float = KEEP_FINISHED_S,
        keep_runs: int = KEEP_FINISHED_RUNS,
    ) -> None:
        self.max_events = max_events
        self.keep_s = keep_s
        self.keep_runs = keep_runs
        self._logs: dict[str, _Log] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()

    def open(self, run_id: str) -> None:
        """An attempt of the run begins: its events are kept until it ends, numbered after any
        earlier attempt's."""
        self._finished.pop(run_id, None)
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _Log(self.max_events)
        log.attempts += 1
        log.began = log.last

    def publish(self, run_id: str, event: Mapping[str, Any]) -> None:
        """Keep ``event`` as the run's next one and wake its readers."""
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _Log(self.max_events)
        log.add(dict(event))

    def listener(self, run_id: str) -> Callable[[RunEvent], None]:
        """What the engine is given as ``on_event`` for the run."""
        return lambda event: self.publish(run_id, event.to_dict())

    def close(self, run_id: str, final: Mapping[str, Any] | None = None) -> None:
        """The attempt ended and the store has its end: ``final`` (its ``run_finished``, held
        until now so that a client who saw it reads the run ended) is added unless the attempt
        has one already, then the run's events are kept for :data:`KEEP_FINISHED_S` seconds.
        No ``final``: the attempt was refused and told nothing."""
        log = self._logs.get(run_id)
        if log is None:
            log = self._logs[run_id] = _Log(self.max_events)
        number, event = log.events[-1] if log.events else (0, {})
        ended = event.get("type") == "run_finished" and number > log.began
        if final is not None and not ended:
            log.add(dict(final))
        log.attempts = max(0, log.attempts - 1)
        if log.attempts:
            return
        self._finished[run_id] = time.monotonic()
        self._finished.move_to_end(run_id)
        self._prune()

    def _prune(self) -> None:
        horizon = time.monotonic() - self.keep_s
        while self._finished:
            run_id, ended = next(iter(self._finished.items()))
            if ended > horizon and len(self._finished) <= self.keep_runs:
                break
            del self._finished[run_id]
            self._logs.pop(run_id, None)

    async def read(self, run_id: str, after: int, timeout: float) -> list[Numbered]:
        """See :meth:`EventSource.read`."""
        log = self._logs.get(run_id)
        if log is None:
            if timeout > 0:
                await asyncio.sleep(timeout)
            log = self._logs.get(run_id)
            return [] if log is None else log.after(after)
        found = log.after(after)
        if found or timeout <= 0:
            return found
        try:
            await asyncio.wait_for(log.wake.wait(), timeout)
        except TimeoutError:
            return []
        return log.after(after)

    async def last_id(self, run_id: str) -> int:
        """See :meth:`EventSource.last_id`."""
        log = self._logs.get(run_id)
        return 0 if log is None else log.last


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return json.dumps(json_safe(value), ensure_ascii=False, separators=(",", ":"))


def sse_message(number: int, event: Mapping[str, Any]) -> bytes:
    """One Server-Sent Events message: ``id``, ``event`` (the type) and ``data`` (JSON on one
    line: JSON text escapes every line break)."""
    kind = str(event.get("type", "message")).replace("\n", " ").replace("\r", " ")
    return f"id: {number}\nevent: {kind}\ndata: {_dumps(event)}\n\n".encode()


async def follow(
    source: EventSource,
    runs: AsyncRuns,
    run_id: str,
    after: int = 0,
    *,
    quiet_s: float = QUIET_S,
    grace_s: float = END_GRACE_S,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[bytes]:
    """The run's events numbered above ``after`` as Server-Sent Events, live, up to the
    ``run_finished`` of its attempt (or, when none comes, one made from the stored run once the
    store says it ended). Nothing when event ``after`` itself ended the attempt."""
    last, finished, quiet = after, False, 0.0
    if after > 0:  # a client that reconnects after the end gets nothing more
        seen = await source.read(run_id, after - 1, 0)
        number, event = seen[0] if seen else (0, {})
        finished = number == after and event.get("type") == "run_finished"
    while True:
        batch = await source.read(run_id, last, 0 if finished else quiet_s)
        if not batch and not finished:
            view = await runs.get(run_id)
            if view is not None and view["status"] in UNFINISHED:
                quiet += quiet_s
                if quiet >= keepalive_s:
                    yield b": keep-alive\n\n"
                    quiet = 0.0
                continue
            # Ended: its end event follows the store's write at once, unless it is gone.
            batch = await source.read(run_id, last, grace_s)
            if not batch:
                if view is not None:
                    yield sse_message(last + 1, ended_event(view))
                return
        if not batch:  # nothing after the attempt's end: the stream ends with it
            return
        if batch[0][0] > last + 1:
            yield f": {batch[0][0] - 1 - last} earlier event(s) are no longer kept\n\n".encode()
        for number, event in batch:
            yield sse_message(number, event)
            last = number
            finished = event.get("type") == "run_finished"
        quiet = 0.0
