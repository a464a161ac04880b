"""The Celery application shared by producers (serve, batch) and workers, and how a run is sent.

Tasks are acknowledged late (after the run ended) and a worker takes one task per thread at a
time, so a worker that dies mid-run leaves its tasks unacknowledged: Redis hands them to another
worker once ``visibility_timeout`` seconds have passed since they were delivered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .runs import KEY_PREFIX, RedisRuns

if TYPE_CHECKING:
    from celery import Celery

    from ..engine import PreparedWorkflow

__all__ = ["DEFAULT_VISIBILITY_TIMEOUT_S", "QUEUE_NAME", "TASK_NAME", "QueueError", "celery_app",
           "open_queue", "redacted", "send_run", "workflow_key"]  # fmt: skip

QUEUE_NAME = "configurable-agents"
"""The Celery queue every run goes to."""

TASK_NAME = "configurable_agents.run"
"""The task's name: ``(workflow_key, run_id, inputs, tags, options)`` (``options``: see
:data:`~.runs.Task`)."""

DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
"""Seconds after which a task a worker took but did not acknowledge is delivered again."""


class QueueError(Exception):
    """The queue's URL is wrong or its Redis does not answer (the message names it, no secret)."""


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_queue(
    url: str, *, visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT_S
) -> tuple[RedisRuns, Celery]:
    """The runs and the Celery app of the Redis at ``url``, checked to answer.

    Raises:
        QueueError: ``url`` is not a Redis URL, or nothing answers there.
    """
    try:
        import celery  # noqa: F401
        import redis
    except ImportError:
        raise QueueError("--queue needs `pip install 'configurable-agents[queue]'`") from None
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise QueueError(f"--queue {redacted(url)}: expected a Redis URL, redis://HOST:PORT/DB")
    try:
        runs = RedisRuns(url)
        runs.ping()
    except (redis.RedisError, ValueError) as exc:
        raise QueueError(f"--queue {redacted(url)}: Redis does not answer: {exc}") from None
    return runs, celery_app(url, visibility_timeout=visibility_timeout)


def workflow_key(prepared: PreparedWorkflow) -> str:
    """``name@version#hash``: the hash covers the whole validated file and the ``--llm``
    override, so producers and workers agree on exactly what runs."""
    workflow = prepared.workflow
    content = json.dumps(
        [workflow.config.model_dump(mode="json"), prepared.llm], sort_keys=True, default=str
    )
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    return f"{workflow.name}@{workflow.config.flow.version or '-'}#{digest}"


def celery_app(url: str, *, visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT_S) -> Celery:
    """A Celery app on the Redis broker ``url``, its keys prefixed ``configurable-agents:``."""
    from celery import Celery

    app = Celery("configurable_agents", broker=url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results are in RedisRuns, written once
        task_default_queue=QUEUE_NAME,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "global_keyprefix": KEY_PREFIX,
            "visibility_timeout": visibility_timeout,
            # look for tasks of dead workers a few times per visibility timeout
            "unacked_restore_interval": max(0.5, min(10.0, visibility_timeout / 3)),
            "unacked_restore_throttle": 1,
            # a worker killed during a sweep holds its lock this long (Kombu's default: 300 s)
            "unacked_mutex_expire": max(1, int(min(300.0, visibility_timeout))),
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
    )
    return app


def send_run(
    app: Celery,
    key: str,
    run_id: str,
    inputs: Mapping[str, Any] | None,
    tags: Mapping[str, str],
    options: Mapping[str, Any] | None = None,
) -> None:
    """Enqueue one attempt of a run (``options``: see :data:`~.runs.Task`); its task id is the
    run id."""
    given = None if inputs is None else dict(inputs)
    args = [key, run_id, given, dict(tags), dict(options or {})]
    app.send_task(TASK_NAME, args=args, task_id=run_id)
