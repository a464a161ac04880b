"""A durable local spool of finished runs waiting to be written to MLflow.

Each finished run is one row (its trace's spans and its run record, as JSON), committed to a
SQLite file in WAL mode before the run returns, so a crash or SIGKILL loses nothing that finished.
Writers claim rows before writing them, so several processes can drain one spool without writing
a run twice; the claim of a process that no longer runs, or older than :data:`CLAIM_TIMEOUT_S`, is
taken over.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLAIM_TIMEOUT_S",
    "SPOOL_ENV",
    "Spool",
    "SpoolItem",
    "WriterLock",
    "default_spool_path",
    "process_alive",
]

SPOOL_ENV = "CONFIGURABLE_AGENTS_SPOOL"
"""Environment variable naming the spool file."""

CLAIM_TIMEOUT_S = 120.0
"""Seconds after which a claimed row whose writer vanished may be claimed again."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    experiment TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    claimed_by TEXT,
    claimed_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    claims INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_destination ON items (destination, experiment, id);
CREATE TABLE IF NOT EXISTS written_runs (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    written REAL NOT NULL
);
"""


def process_alive(pid: int) -> bool:
    """Whether a process of this machine still runs (a writer killed mid-batch does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """The lock a background writer holds for as long as it drains one destination of a spool:
    held means a writer is alive for it (the kernel drops the lock of a process that dies)."""

    def __init__(self, spool_path: str | os.PathLike[str], destination: str) -> None:
        digest = hashlib.sha256(destination.encode()).hexdigest()[:16]
        self.path = Path(f"{spool_path}.{digest}.writer")
        self._handle: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no writer holds it; whether this process now holds it."""
        if self._handle is not None:
            return True
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None

    def writer_alive(self) -> bool:
        """Whether some writer holds the lock (this process included)."""
        if self._handle is not None:
            return True
        if not self.acquire():
            return True
        self.release()
        return False


def default_spool_path() -> Path:
    """``$CONFIGURABLE_AGENTS_SPOOL``, else ``~/.configurable-agents/spool.db``."""
    configured = os.environ.get(SPOOL_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".configurable-agents" / "spool.db"


@dataclass(frozen=True)
class SpoolItem:
    """A spooled run: where it goes and what to write."""

    id: int
    destination: str
    experiment: str
    payload: dict[str, Any]
    attempts: int
    claims: int = 0
    """How often the row was claimed before: a row claimed again may be partly written already."""


class Spool:
    """The spool file; safe to use from several threads and processes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_spool_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.owner = f"{os.getpid()}-{threading.get_ident()}-{time.time_ns()}"
        with self._connection() as connection:
            connection.executescript(_SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
            if "claims" not in columns:  # a spool written by an older version
                connection.execute("ALTER TABLE items ADD COLUMN claims INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        yield connection

    def put(self, destination: str, experiment: str, payload: dict[str, Any]) -> int:
        """Append a run; returns its row id once it is committed to disk."""
        text = json.dumps(payload, default=str, ensure_ascii=False)
        with self._connection() as connection:
            cursor = connection.execute(
                "INSERT INTO items (destination, experiment, payload, created) VALUES (?, ?, ?, ?)",
                (destination, experiment, text, time.time()),
            )
        return int(cursor.lastrowid or 0)

    def claim(self, limit: int = 200, destination: str | None = None) -> list[SpoolItem]:
        """Take up to ``limit`` unclaimed (or abandoned) rows, oldest first."""
        now = time.time()
        where = "(claimed_by IS NULL OR claimed_at < ?)"
        params: list[Any] = [now - CLAIM_TIMEOUT_S]
        if destination is not None:
            where += " AND destination = ?"
            params.append(destination)
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                self._release_dead_claims(connection)
                rows = connection.execute(
                    f"SELECT id, destination, experiment, payload, attempts, claims FROM items "
                    f"WHERE {where} ORDER BY id LIMIT ?",
                    (*params, limit),
                ).fetchall()
                connection.executemany(
                    "UPDATE items SET claimed_by = ?, claimed_at = ?, claims = claims + 1 "
                    "WHERE id = ?",
                    [(self.owner, now, row[0]) for row in rows],
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return [SpoolItem(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    @staticmethod
    def _release_dead_claims(connection: sqlite3.Connection) -> None:
        owners = connection.execute(
            "SELECT DISTINCT claimed_by FROM items WHERE claimed_by IS NOT NULL"
        ).fetchall()
        for (owner,) in owners:
            if not process_alive(int(owner.split("-", 1)[0])):
                connection.execute(
                    "UPDATE items SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?",
                    (owner,),
                )

    def done(self, ids: list[int]) -> None:
        """Remove rows that were written."""
        with self._connection() as connection:
            connection.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])

    def release(self, ids: list[int], error: str) -> None:
        """Give rows back after a failed write, noting why."""
        with self._connection() as connection:
            connection.executemany(
                "UPDATE items SET claimed_by = NULL, claimed_at = NULL, "
                "attempts = attempts + 1, last_error = ? WHERE id = ?",
                [(error[:500], i) for i in ids],
            )

    def pending(self, destination: str | None = None) -> int:
        """Rows not yet written (to ``destination``, or anywhere)."""
        query, params = "SELECT COUNT(*) FROM items", tuple[str, ...]()
        if destination is not None:
            query, params = query + " WHERE destination = ?", (destination,)
        with self._connection() as connection:
            return int(connection.execute(query, params).fetchone()[0])

    def note_runs(self, run_ids: dict[str, str]) -> None:
        """Remember the MLflow run id each written record ``key`` became."""
        now = time.time()
        with self._connection() as connection:
            connection.executemany(
                "INSERT OR REPLACE INTO written_runs (key, run_id, written) VALUES (?, ?, ?)",
                [(key, run_id, now) for key, run_id in run_ids.items()],
            )

    def run_id(self, key: str) -> str | None:
        """The MLflow run id the record ``key`` was written as, once it was."""
        with self._connection() as connection:
            row = connection.execute(
                "SELECT run_id FROM written_runs WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def backlog(self) -> dict[str, Any]:
        """Rows waiting, the oldest one's age in seconds, and the last error seen."""
        with self._connection() as connection:
            count, oldest = connection.execute(
                "SELECT COUNT(*), MIN(created) FROM items"
            ).fetchone()
            error = connection.execute(
                "SELECT last_error FROM items WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return {
            "items": int(count),
            "oldest_age_s": round(time.time() - oldest, 1) if oldest else None,
            "last_error": error[0] if error else None,
        }
