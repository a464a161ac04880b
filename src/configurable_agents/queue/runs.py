"""Runs handed to the queue, kept in Redis so that every API replica, batch and worker sees them.

Each run is two keys: its record (workflow, status, times, inputs, tags), written when it is
enqueued and when a worker starts it, and its summary, written once when it ends with ``SET NX``:
the first end wins, so a run redelivered after a worker died is never recorded twice as ended.
:class:`RedisRuns` is a :class:`~configurable_agents.server.store.RunStore`, like the server's
job table, and gives the same views, so the API reads runs the same way in both modes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, cast

from ..engine.records import RunStatus
from ..server.store import QUEUED, RUNNING, UNFINISHED, run_view

__all__ = ["KEY_PREFIX", "RedisRuns"]

KEY_PREFIX = "configurable-agents:"
"""Prefix of every key this package writes in Redis (the Celery queue included)."""

_KEEP_S = 7 * 24 * 3600  # runs are forgotten a week after they were enqueued


class RedisRuns:
    """Run records and results in the Redis database of ``url``: a
    :class:`~configurable_agents.server.store.RunStore`.

    Attributes:
        path: The Redis URL (shown where the server names its job table).
    """

    def __init__(self, url: str) -> None:
        import redis

        from .app import redacted

        self.path = redacted(url)
        self._redis = redis.Redis.from_url(url)

    def _record_key(self, run_id: str) -> str:
        return f"{KEY_PREFIX}run:{run_id}"

    def _summary_key(self, run_id: str) -> str:
        return f"{KEY_PREFIX}summary:{run_id}"

    def ping(self) -> None:
        """Raise ``redis.RedisError`` if Redis does not answer."""
        self._redis.ping()

    def create(
        self, run_id: str, workflow: str, inputs: Mapping[str, Any], tags: Mapping[str, str]
    ) -> None:
        """Add a ``queued`` run."""
        created = time.time()
        record = {
            "id": run_id,
            "workflow": workflow,
            "status": QUEUED,
            "created": created,
            "finished": None,
            "inputs": json.dumps(dict(inputs), default=str, ensure_ascii=False),
            "tags": json.dumps(dict(tags), ensure_ascii=False),
            "summary": None,
        }
        pipe = self._redis.pipeline()
        pipe.set(self._record_key(run_id), json.dumps(record), ex=_KEEP_S)
        pipe.zadd(f"{KEY_PREFIX}runs:{workflow}", {run_id: created})
        pipe.execute()

    def start(self, run_id: str) -> None:
        """Mark a run ``running`` (a worker took it)."""
        raw = self._redis.get(self._record_key(run_id))
        if raw is not None:
            record = json.loads(raw)
            record["status"] = RUNNING
            self._redis.set(self._record_key(run_id), json.dumps(record), ex=_KEEP_S)

    def finish(self, run_id: str, summary: Mapping[str, Any]) -> bool:
        """Store an ended run's summary unless it has one already; whether this one was kept."""
        value = json.dumps({**summary, "finished": time.time()}, default=str, ensure_ascii=False)
        return bool(self._redis.set(self._summary_key(run_id), value, nx=True, ex=_KEEP_S))

    def fail(self, run_id: str, status: RunStatus, error: str) -> bool:
        """End a run that produced no result; see :meth:`finish`."""
        return self.finish(run_id, {"run_id": run_id, "status": status.value, "error": error})

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """The ended run's summary, or ``None`` while it has not ended."""
        raw = self._redis.get(self._summary_key(run_id))
        return None if raw is None else json.loads(raw)

    def summaries(self, run_ids: list[str]) -> list[dict[str, Any] | None]:
        """:meth:`summary` of each run, in one round trip."""
        if not run_ids:
            return []
        raws = self._redis.mget([self._summary_key(i) for i in run_ids])
        return [None if raw is None else json.loads(raw) for raw in raws]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run as the API shows it (:func:`~configurable_agents.server.store.run_view`), or
        ``None``."""
        return self.views([run_id])[0]

    def views(self, run_ids: list[str]) -> list[dict[str, Any] | None]:
        """:meth:`get` of each run, in one round trip."""
        if not run_ids:
            return []
        keys = [k for i in run_ids for k in (self._record_key(i), self._summary_key(i))]
        raws = self._redis.mget(keys)
        views: list[dict[str, Any] | None] = []
        for raw_record, raw_summary in zip(raws[::2], raws[1::2], strict=True):
            if raw_record is None:
                views.append(None)
                continue
            record = json.loads(raw_record)
            if raw_summary is not None:
                summary = json.loads(raw_summary)
                record.update(status=summary["status"], finished=summary.pop("finished"))
                record["summary"] = json.dumps(summary)
            views.append(run_view(record))
        return views

    def list(
        self,
        workflow: str,
        *,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The workflow's most recent runs first, filtered by status and tag values."""
        index = f"{KEY_PREFIX}runs:{workflow}"
        self._redis.zremrangebyscore(index, 0, time.time() - _KEEP_S)
        found: list[dict[str, Any]] = []
        start, page = 0, max(limit, 100)
        while len(found) < limit:
            members = self._redis.zrevrange(index, start, start + page - 1)
            ids = [member.decode() for member in cast("list[bytes]", members)]
            if not ids:
                break
            for view in self.views(ids):
                if view is None or (status is not None and view["status"] != status):
                    continue
                if all(view["tags"].get(k) == v for k, v in (tags or {}).items()):
                    found.append(view)
            start += page
        return found[:limit]

    def in_broker(self, queue: str) -> set[str]:
        """Ids of the runs whose task waits in Celery's ``queue`` or was taken by a worker that
        has not acknowledged it yet (Kombu's ``unacked`` hash)."""
        raws = self._redis.lrange(f"{KEY_PREFIX}{queue}", 0, -1)
        raws += self._redis.hvals(f"{KEY_PREFIX}unacked")
        ids = set()
        for raw in raws:
            message = json.loads(raw)
            message = message[0] if isinstance(message, list) else message  # unacked: [msg, ...]
            ids.add(message.get("headers", {}).get("id"))
        return ids

    def recover(self) -> int:
        """Nothing to recover: unfinished runs stay in the queue until a worker runs them."""
        return 0

    def unfinished(self, run_id: str) -> bool:
        """Whether the run exists and has not ended."""
        view = self.get(run_id)
        return view is not None and view["status"] in UNFINISHED
