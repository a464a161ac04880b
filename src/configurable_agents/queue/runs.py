"""Runs handed to the queue, kept in Redis so that every API replica, batch and worker sees them.

Each run is two keys: its record (workflow, status, times, inputs, tags, session, and what its
task was sent with), written when it is enqueued and when a worker starts it, and its summary,
written once when it ends with ``SET NX``: the first end wins, so a run redelivered after a
worker died is never recorded twice as ended. Resuming a run moves its summary aside (atomically,
so two resumes cannot both begin) until the next attempt ends, or puts it back if the engine
refused the attempt. :class:`RedisRuns` is a :class:`~configurable_agents.server.store.RunStore`,
like the server's job table, and gives the same views, so the API reads runs the same way in both
modes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ..engine.records import RunStatus
from ..server.store import QUEUED, RESUMABLE, RUNNING, UNFINISHED, run_view

if TYPE_CHECKING:
    from .events import RedisEvents

__all__ = ["KEY_PREFIX", "RedisRuns", "Task"]

KEY_PREFIX = "configurable-agents:"
"""Prefix of every key this package writes in Redis (the Celery queue included)."""

_KEEP_S = 7 * 24 * 3600  # runs are forgotten a week after they were enqueued
_ANSWER_KEEP_S = 3600  # a worker's answer to a resume, for the API that waits for it

_REOPEN = """
local summary = redis.call('GET', KEYS[1])
if not summary then return 0 end
local status = cjson.decode(summary)['status']
for i = 1, #ARGV do
    if ARGV[i] == status then
        redis.call('RENAME', KEYS[1], KEYS[2])
        return 1
    end
end
return 0
"""
"""Move an ended run's summary aside if its status is one of ARGV (KEYS: summary, previous)."""

Task = tuple[Any, dict[str, str], dict[str, Any]]
"""What a run's task is sent with: inputs, tags and options (``session_id``, ``traceparent``,
``resume``: the id of a resume's answer)."""


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
        self._url = url
        self._redis = redis.Redis.from_url(url)
        self._reopen = self._redis.register_script(_REOPEN)

    def events(self) -> RedisEvents:
        """The runs' live events, kept beside them in the same Redis."""
        from .events import RedisEvents

        return RedisEvents(self._url)

    def _record_key(self, run_id: str) -> str:
        return f"{KEY_PREFIX}run:{run_id}"

    def _summary_key(self, run_id: str) -> str:
        return f"{KEY_PREFIX}summary:{run_id}"

    def _previous_key(self, run_id: str) -> str:
        return f"{KEY_PREFIX}previous:{run_id}"

    def _answer_key(self, resume_id: str) -> str:
        return f"{KEY_PREFIX}resume:{resume_id}"

    def ping(self) -> None:
        """Raise ``redis.RedisError`` if Redis does not answer."""
        self._redis.ping()

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
        """Add a ``queued`` run; ``task``: the options its task is sent with (see :data:`Task`),
        to send it again the same way."""
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
            "session_id": session_id,
            "task": {"options": dict(task or {})},
        }
        pipe = self._redis.pipeline()
        pipe.set(self._record_key(run_id), json.dumps(record), ex=_KEEP_S)
        pipe.zadd(f"{KEY_PREFIX}runs:{workflow}", {run_id: created})
        pipe.execute()

    def _update(self, run_id: str, **changes: Any) -> bool:
        raw = self._redis.get(self._record_key(run_id))
        if raw is None:
            return False
        record = {**json.loads(raw), **changes}
        self._redis.set(self._record_key(run_id), json.dumps(record), ex=_KEEP_S)
        return True

    def start(self, run_id: str) -> None:
        """Mark a run ``running`` (a worker took it)."""
        self._update(run_id, status=RUNNING)

    def finish(self, run_id: str, summary: Mapping[str, Any]) -> bool:
        """Store an ended run's summary unless it has one already; whether this one was kept."""
        value = json.dumps({**summary, "finished": time.time()}, default=str, ensure_ascii=False)
        kept = bool(self._redis.set(self._summary_key(run_id), value, nx=True, ex=_KEEP_S))
        if kept:
            self._redis.delete(self._previous_key(run_id))
        return kept

    def reopen(self, run_id: str, task: Mapping[str, Any] | None = None) -> bool:
        """See :meth:`~configurable_agents.server.store.RunStore.reopen`; ``task``: ``inputs``
        and ``options`` the attempt's task is sent with (see :data:`Task`)."""
        keys = [self._summary_key(run_id), self._previous_key(run_id)]
        if not self._reopen(keys=keys, args=list(RESUMABLE)):
            return False
        self._update(run_id, status=QUEUED, task=dict(task or {}))
        return True

    def restore(self, run_id: str) -> None:
        """See :meth:`~configurable_agents.server.store.RunStore.restore`."""
        from redis.exceptions import ResponseError

        with contextlib.suppress(ResponseError):  # no summary aside: nothing to put back
            self._redis.renamenx(self._previous_key(run_id), self._summary_key(run_id))

    def task(self, run_id: str) -> Task | None:
        """What the run's (latest) task was sent with, to send it again; ``None``: no run."""
        raw = self._redis.get(self._record_key(run_id))
        if raw is None:
            return None
        record = json.loads(raw)
        sent = record.get("task") or {}
        inputs = sent["inputs"] if "inputs" in sent else json.loads(record["inputs"])
        return inputs, json.loads(record["tags"]), dict(sent.get("options") or {})

    def answer_resume(
        self, resume_id: str, answer: Mapping[str, Any], *, restore: str | None = None
    ) -> None:
        """A worker's answer to the resume ``resume_id``: ``{"taken": true}``, or why the engine
        refused it (``refused``, ``detail``, ``errors``) and, in the same transaction, the run
        ``restore`` put back as it was (see :meth:`restore`)."""
        value = json.dumps(dict(answer), default=str, ensure_ascii=False)
        pipe = self._redis.pipeline(transaction=True)
        if restore is not None:  # fails alone (nothing to put back) if no summary is aside
            pipe.renamenx(self._previous_key(restore), self._summary_key(restore))
        pipe.set(self._answer_key(resume_id), value, ex=_ANSWER_KEEP_S)
        pipe.execute(raise_on_error=False)

    def resume_answer(self, resume_id: str) -> dict[str, Any] | None:
        """The answer to the resume ``resume_id``, or ``None`` while no worker took it."""
        raw = self._redis.get(self._answer_key(resume_id))
        return None if raw is None else json.loads(raw)

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
