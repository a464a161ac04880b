"""The job table: every run the server accepted, in SQLite, readable by any replica.

One row per run: its inputs and tags when it is accepted (status ``queued``, then ``running``
once it has a slot), its summary (status, outputs, state, cost, tokens, trace id, error) when it
ends. Each row names the server process that owns it (``host:pid:token``). A server that starts
marks the unfinished rows of owners that no longer run on its host as ``failed`` — a restart
reports interrupted runs instead of forgetting them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..engine.records import RunStatus
from ..environment import RUNS_DB_ENV
from ..observability.spool import process_alive
from .store import QUEUED, RESUMABLE, RUNNING, UNFINISHED, run_view, summarize

__all__ = [
    "INTERRUPTED",
    "QUEUED",
    "RUNNING",
    "RUNS_DB_ENV",
    "UNFINISHED",
    "JobStore",
    "default_runs_db",
    "summarize",
]

INTERRUPTED = "interrupted: the server stopped before the run finished"
"""Error of a run found unfinished by a server started after its owner died."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    inputs TEXT NOT NULL,
    tags TEXT NOT NULL,
    summary TEXT,
    session_id TEXT
);
CREATE INDEX IF NOT EXISTS runs_recent ON runs (workflow, created);
"""

_ADDED_COLUMNS = {"session_id": "TEXT"}
"""Columns added since the first table: a table made before gets them at start."""


def default_runs_db() -> Path:
    """``$CONFIGURABLE_AGENTS_RUNS_DB``, else ``~/.configurable-agents/runs.db``."""
    configured = os.environ.get(RUNS_DB_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".configurable-agents" / "runs.db"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_text(value: Any) -> str:
    """``value`` as JSON text SQLite can store: a lone surrogate (a model or tool may produce
    one; UTF-8 cannot carry it) becomes U+FFFD instead of failing the write."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _has_tags(stored: str, wanted: Mapping[str, str]) -> bool:
    tags = json.loads(stored)
    return all(tags.get(key) == value for key, value in wanted.items())


class JobStore:
    """The job table of one SQLite file, a :class:`~.store.RunStore`; safe to use from several
    threads and processes.

    Attributes:
        path: The SQLite file.
        owner: This process's name in the table, ``host:pid:token``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_runs_db()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        with self._connection() as connection:
            connection.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            # No fsync per commit: a killed server loses nothing, a power cut the last moments.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            have = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:  # another process may add it meanwhile
                    with contextlib.suppress(sqlite3.OperationalError):
                        connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The one connection, for one thread at a time (each statement takes ~0.1 ms)."""
        with self._lock:
            yield self._db

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
        """Add a ``queued`` run owned by this process (``task`` is not kept: this process runs
        it, and nothing sends it again)."""
        with self._connection() as connection:
            connection.execute(
                "INSERT INTO runs (id, workflow, status, owner, created, inputs, tags, "
                "session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    workflow,
                    QUEUED,
                    self.owner,
                    time.time(),
                    _json_text(dict(inputs)),
                    _json_text(dict(tags)),
                    session_id,
                ),
            )

    def reopen(self, run_id: str, task: Mapping[str, Any] | None = None) -> bool:
        """See :meth:`~.store.RunStore.reopen`; the run is owned by this process from now on."""
        marks = ", ".join("?" * len(RESUMABLE))
        with self._connection() as connection:
            cursor = connection.execute(
                f"UPDATE runs SET status = ?, owner = ? WHERE id = ? AND status IN ({marks})",
                (QUEUED, self.owner, run_id, *RESUMABLE),
            )
        return cursor.rowcount == 1

    def restore(self, run_id: str) -> None:
        """See :meth:`~.store.RunStore.restore`."""
        with self._connection() as connection:
            connection.execute(
                "UPDATE runs SET status = json_extract(summary, '$.status') "
                "WHERE id = ? AND summary IS NOT NULL",
                (run_id,),
            )

    def start(self, run_id: str) -> None:
        """Mark a queued run ``running``."""
        with self._connection() as connection:
            connection.execute("UPDATE runs SET status = ? WHERE id = ?", (RUNNING, run_id))

    def finish(self, run_id: str, summary: Mapping[str, Any]) -> None:
        """Store a finished run's summary (its ``status`` becomes the row's)."""
        with self._connection() as connection:
            connection.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = ? WHERE id = ?",
                (
                    summary["status"],
                    time.time(),
                    _json_text(dict(summary)),
                    run_id,
                ),
            )

    def fail(self, run_id: str, status: RunStatus, error: str) -> None:
        """End a run that produced no result (e.g. cancelled before it started)."""
        self.finish(run_id, {"run_id": run_id, "status": status.value, "error": error})

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run's view (see :func:`~.store.run_view`), or ``None`` if there is no such run."""
        with self._connection() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else run_view(row)

    def list(
        self,
        workflow: str,
        *,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The workflow's most recent runs first, filtered by status and tag values.

        Tags are matched as text, whatever characters they hold: SQLite finds rows whose stored
        tags contain each pair as written (no JSON path, which quotes and NUL would break),
        then each candidate's decoded tags confirm it.
        """
        query = "SELECT * FROM runs WHERE workflow = ?"
        params: list[str | int] = [workflow]
        if status is not None:
            query += " AND status = ?"
            params.append(status)
        wanted = dict(tags or {})
        for key, value in wanted.items():
            query += " AND instr(tags, ?) > 0"
            params.append(_json_text({key: value})[1:-1])  # as create() wrote it
        query += " ORDER BY created DESC"
        if not wanted:
            query += " LIMIT ?"
            params.append(limit)
        rows: list[sqlite3.Row] = []
        with self._connection() as connection:
            cursor = connection.execute(query, params)
            try:
                for row in cursor:
                    if wanted and not _has_tags(row["tags"], wanted):
                        continue
                    rows.append(row)
                    if len(rows) >= limit:
                        break
            finally:
                cursor.close()  # ends the read at once, even when it stopped early
        return [run_view(row) for row in rows]

    def recover(self) -> int:
        """Mark unfinished runs of dead owners on this host as failed; returns how many.

        An owner is dead when its process is gone, or when it has this process's pid (a restarted
        container's server is often pid 1 again). Owners on other hosts are left alone.
        """
        host, pid = socket.gethostname(), os.getpid()
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT id, owner FROM runs WHERE status IN (?, ?)", UNFINISHED
            ).fetchall()
        lost = []
        for run_id, owner in rows:
            owner_host, _, rest = owner.partition(":")
            owner_pid = int(rest.partition(":")[0] or 0)
            mine = owner != self.owner and owner_host == host
            if mine and (owner_pid == pid or not process_alive(owner_pid)):
                lost.append(run_id)
        for run_id in lost:
            self.fail(run_id, RunStatus.FAILED, INTERRUPTED)
        return len(lost)
