"""The background writer process: ``python -m configurable_agents.observability.drainer SPOOL
DESTINATION``.

Drains the spool's rows for one destination as they arrive, holding the destination's
:class:`~.spool.WriterLock` so that one writer serves every process recording there. It stays warm
between commands: once no row has come for :data:`IDLE_S` seconds
(``$CONFIGURABLE_AGENTS_WRITER_IDLE``) it exits, so that the next ``run`` finds MLflow already
imported and the store open. Failures are noted on the rows (see ``observability status``) and
retried with backoff.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .spool import Spool, WriterLock
from .writer import MlflowWriter, drain

__all__ = ["IDLE_ENV", "IDLE_S", "main"]

IDLE_ENV = "CONFIGURABLE_AGENTS_WRITER_IDLE"
"""Environment variable overriding :data:`IDLE_S`."""

IDLE_S = 300.0
"""How long an idle writer waits for new rows before it exits."""

POLL_S = 0.05
"""How often an idle writer looks for new rows."""


def main(spool_path: str, destination: str) -> int:
    """Drain until no row has come for the idle time; at once if another writer holds the lock."""
    lock = WriterLock(spool_path, destination)
    if not lock.acquire():
        return 0  # another writer drains this destination
    spool = Spool(spool_path)
    idle_s = float(os.environ.get(IDLE_ENV, IDLE_S))
    writers: dict[str, MlflowWriter] = {}  # the store stays open between batches
    failures = 0
    last_row = time.monotonic()
    while True:
        try:
            written = drain(spool, destination=destination, writers=writers)
            failures = 0
        except Exception:  # the rows keep the error; try again later, with the store reopened
            written, failures = 0, failures + 1
            writers.clear()
        now = time.monotonic()
        if written:
            last_row = now
            continue
        if not Path(spool_path).exists():
            return 0  # the spool was deleted (a temporary one): nothing will come
        if now - last_row > idle_s:
            lock.release()
            # A row spooled just before the release finds no writer only if its process checked
            # before this one let go: look once more, and carry on if one came. A store that kept
            # failing is left alone: its rows stay spooled for the next writer.
            if failures or not spool.pending(destination) or not lock.acquire():
                return 0
            last_row = now
        time.sleep(min(30.0, 0.5 * 2**failures) if failures else POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
