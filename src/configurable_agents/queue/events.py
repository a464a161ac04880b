"""Runs' live events across processes, with ``--queue``: one Redis stream per run.

The worker running an attempt adds each event (``XADD``) to ``configurable-agents:events:<run>``
under the stream id ``0-<n>``, ``n`` its number in the run, taken from a counter in the same
script (so a resumed run's attempts, on any worker, number on from the last). The stream keeps
about :data:`MAX_EVENTS` events; it and its counter expire :data:`KEEP_S` seconds after the
run's last event. Any API replica reads them (``XREAD`` from ``0-<after>``, blocking, with
``redis.asyncio`` so a waiting stream holds no thread), the stream id's ``n`` being the
Server-Sent Events ``id``: a :class:`~configurable_agents.server.events.EventSource`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from ..engine.events import RunEvent
from .runs import KEY_PREFIX

__all__ = ["KEEP_S", "MAX_EVENTS", "EventWriter", "RedisEvents"]

_log = logging.getLogger(__name__)

MAX_EVENTS = 5000
"""Events kept per run (about: Redis trims whole nodes of the stream)."""

KEEP_S = 24 * 3600
"""Seconds a run's events are kept after its last one."""

_READ_COUNT = 500

_ADD = """
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '0-' .. n, 'event', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return n
"""
"""Number an event and add it (KEYS: stream, counter; ARGV: event, max length, expiry)."""

Numbered = tuple[int, dict[str, Any]]


def _stream_key(run_id: str) -> str:
    return f"{KEY_PREFIX}events:{run_id}"


def _counter_key(run_id: str) -> str:
    return f"{KEY_PREFIX}events-n:{run_id}"


class RedisEvents:
    """The events of the runs in the Redis at ``url``: added by workers (:meth:`writer`), read
    by the API (:meth:`read`, :meth:`last_id`)."""

    def __init__(self, url: str) -> None:
        import redis

        self._url = url
        self._redis = redis.Redis.from_url(url)
        self._add = self._redis.register_script(_ADD)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def add(self, run_id: str, event: Mapping[str, Any]) -> int:
        """Add ``event`` as the run's next one; its number."""
        text = json.dumps(dict(event), default=str, ensure_ascii=False)
        keys = [_stream_key(run_id), _counter_key(run_id)]
        return int(self._add(keys=keys, args=[text, MAX_EVENTS, int(KEEP_S)]))

    def writer(self, run_id: str) -> EventWriter:
        """The ``on_event`` listener of one attempt of the run."""
        return EventWriter(self, run_id)

    def _client(self) -> Any:
        """This event loop's ``redis.asyncio`` client (a client serves one loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            import redis.asyncio

            client = self._clients[loop] = redis.asyncio.Redis.from_url(self._url)
        return client

    async def read(self, run_id: str, after: int, timeout: float) -> list[Numbered]:
        """See :meth:`~configurable_agents.server.events.EventSource.read`."""
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        reply = await self._client().xread(
            {_stream_key(run_id): f"0-{after}"}, count=_READ_COUNT, block=block
        )
        found: list[Numbered] = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                number = int(entry_id.split(b"-", 1)[1])
                found.append((number, json.loads(fields[b"event"])))
        return found

    async def last_id(self, run_id: str) -> int:
        """See :meth:`~configurable_agents.server.events.EventSource.last_id`."""
        raw = await self._client().get(_counter_key(run_id))
        return 0 if raw is None else int(raw)


class EventWriter:
    """Adds one attempt's events to its run's stream (the engine's ``on_event``); a Redis error
    is logged, never raised (a live view never fails a run). The attempt's ``run_finished`` is
    held until :meth:`close`, called once the run's end is stored, so a client who saw it reads
    the run ended."""

    def __init__(self, events: RedisEvents, run_id: str) -> None:
        self.events = events
        self.run_id = run_id
        self.count = 0
        self.finished = False
        self.ending: dict[str, Any] | None = None

    def __call__(self, event: RunEvent) -> None:
        """Add the engine's ``event`` (hold its ``run_finished``)."""
        if event.type == "run_finished":
            self.ending = event.to_dict()
        else:
            self.publish(event.to_dict())

    def publish(self, event: Mapping[str, Any]) -> None:
        """Add ``event`` (JSON-ready)."""
        try:
            self.events.add(self.run_id, event)
        except Exception as exc:
            _log.warning("run %s: event %s not kept: %s", self.run_id, event.get("type"), exc)
            return
        self.count += 1
        self.finished = event.get("type") == "run_finished"

    def close(self, final: Mapping[str, Any]) -> None:
        """End the attempt's events with the engine's ``run_finished``, else ``final``."""
        if not self.finished:
            self.publish(self.ending or final)
