"""Scale-out: runs on Celery workers through a Redis broker, their status and results in Redis.

``serve --queue`` and ``batch --queue`` enqueue runs (:mod:`.executors`); ``worker`` consumes
them (:mod:`.worker`); every process reads and writes runs in :class:`~.runs.RedisRuns`.
See docs/SCALING.md.
"""

from __future__ import annotations

from .app import celery_app, workflow_key
from .runs import RedisRuns

__all__ = ["RedisRuns", "celery_app", "workflow_key"]
