"""The background writer process: ``python -m configurable_agents.observability.drainer SPOOL
DESTINATION PARENT_PID``.

Drains the spool's rows for one destination as they arrive. Once the parent process is gone it
writes what is left (for at most :data:`GRACE_S` seconds) and exits; failures are noted on the
rows (see ``observability status``) and retried with backoff.
"""

from __future__ import annotations

import sys
import time

from .spool import Spool, process_alive
from .writer import drain

__all__ = ["GRACE_S", "main"]

GRACE_S = 60.0
"""How long the writer keeps trying after its parent has exited."""

POLL_S = 0.1
"""How often an idle writer looks for new rows."""


def main(spool_path: str, destination: str, parent: int) -> int:
    """Drain until the parent is gone and the destination's rows are written (or time is up)."""
    spool = Spool(spool_path)
    failures = 0
    orphaned_at: float | None = None
    while True:
        if orphaned_at is None and not process_alive(parent):
            orphaned_at = time.monotonic()
        if orphaned_at is not None and (
            spool.pending(destination) == 0 or time.monotonic() - orphaned_at > GRACE_S
        ):
            return 0
        try:
            written = drain(spool, destination=destination)
            failures = 0
        except Exception:  # the rows keep the error; try again later
            failures += 1
            time.sleep(min(30.0, 0.5 * 2**failures))
            continue
        if not written:
            time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
