"""Durable runs: LangGraph's checkpointers, and a ledger of each run beside the checkpoints.

The checkpoints (LangGraph's ``AsyncSqliteSaver`` or ``AsyncPostgresSaver``, thread id = run id)
hold the state after every node execution, and with it what the executions whose writes it holds
cost (a hidden channel). The ledger, a table in the same database, holds what a checkpoint does
not: the run's workflow, inputs, tags and session, its status, what it waits for, the trace of
its last attempt, and what every call of every attempt cost, failed calls included — written
when an attempt starts and ends, with the checkpoint's spend at that moment. A resumed run's
earlier spend is then the ledger's plus what the checkpoint gained since (nodes completed by an
attempt that was killed before it could write its end), so each call is counted exactly once.
Session-scoped state fields (`scope: session`) are kept there too, per session and workflow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.loader import Workflow
from .events import WaitingFor
from .records import Spend

__all__ = [
    "CHECKPOINTS_ENV",
    "DEFAULT_STORE",
    "DurableStore",
    "ResumeError",
    "ResumeInputError",
    "RunSummary",
    "alist_runs",
    "checkpoints_enabled",
    "open_store",
    "session_fields",
    "store_uri",
]

CHECKPOINTS_ENV = "CONFIGURABLE_AGENTS_CHECKPOINTS"
"""Checkpoint store used when `config.execution.checkpoints.store` is not set."""

DEFAULT_STORE = "sqlite:///checkpoints.db"
"""The default checkpoint store: beside the default MLflow store (`sqlite:///mlflow.db`)."""

_TABLES = (
    """CREATE TABLE IF NOT EXISTS configurable_agents_runs (
        run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
        session_id TEXT, attempt INTEGER NOT NULL, inputs TEXT NOT NULL, tags TEXT NOT NULL,
        spent TEXT NOT NULL, saved TEXT NOT NULL, waiting TEXT NOT NULL, trace_id TEXT,
        updated DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS configurable_agents_sessions (
        session_id TEXT NOT NULL, workflow TEXT NOT NULL, state TEXT NOT NULL,
        updated DOUBLE PRECISION, PRIMARY KEY (session_id, workflow))""",
)
_COLUMNS = (
    "run_id, workflow, status, session_id, attempt, inputs, tags, spent, saved, waiting, "
    "trace_id, updated"
)


class ResumeError(Exception):
    """A run cannot be resumed: unknown, finished, or its workflow keeps no checkpoints."""


class ResumeInputError(ResumeError):
    """The inputs given to a waiting run do not fit what it waits for; nothing changed.

    Attributes:
        errors: One ``{"loc": [...], "msg": ...}`` per problem, ``loc`` naming the field.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass
class RunSummary:
    """A run as the ledger knows it.

    Attributes:
        run_id: The run (and its checkpoint thread).
        workflow: Its workflow's name.
        status: How its last attempt ended (``running`` while one goes on).
        session_id: Its session.
        attempt: How many attempts it has had.
        inputs: The inputs of its first attempt.
        tags: Its labels.
        spent: What all its attempts' calls cost, as known when the ledger last changed.
        saved: What the checkpoint's state said its completed node executions cost then.
        waiting: What it waits for, when ``waiting``.
        trace_id: The trace of its last recorded attempt.
        updated: When the ledger last changed (seconds since the epoch).
    """

    run_id: str
    workflow: str
    status: str
    session_id: str | None
    attempt: int
    inputs: dict[str, Any]
    tags: dict[str, str]
    spent: Spend
    saved: Spend = field(default_factory=Spend)
    waiting: list[WaitingFor] = field(default_factory=list)
    trace_id: str | None = None
    updated: float = 0.0

    @property
    def expired(self) -> bool:
        """Whether a waiting run's wait has timed out."""
        now = time.time()
        return any(w.deadline is not None and w.deadline < now for w in self.waiting)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "session_id": self.session_id,
            "attempt": self.attempt,
            "cost_usd": float(self.spent.cost_usd),
            "tokens": self.spent.usage.total_tokens,
            "waiting": [w.to_dict() for w in self.waiting],
            "trace_id": self.trace_id,
            "updated": self.updated,
        }


def checkpoints_enabled(workflow: Workflow) -> bool:
    """Whether runs of ``workflow`` keep checkpoints (on by default when a node pauses, one of
    a sub-workflow's included)."""
    from ..config.subworkflows import pausing_node

    enabled = workflow.config.config.execution.checkpoints.enabled
    return pausing_node(workflow) is not None if enabled is None else enabled


def session_fields(workflow: Workflow) -> set[str]:
    """State fields carried from one run of a session to the next (`scope: session`, and what
    nodes with `memory` write)."""
    from ..config.memory import session_fields as of_config

    return of_config(workflow.config)


def store_uri(workflow: Workflow, env: Mapping[str, str]) -> str:
    """Where the workflow's checkpoints and ledger are: its config, else
    ``$CONFIGURABLE_AGENTS_CHECKPOINTS``, else :data:`DEFAULT_STORE`."""
    return (
        workflow.config.config.execution.checkpoints.store
        or env.get(CHECKPOINTS_ENV)
        or os.environ.get(CHECKPOINTS_ENV)
        or DEFAULT_STORE
    )


class DurableStore:
    """An open checkpointer and the ledger beside it (one database connection)."""

    def __init__(self, saver: Any, postgres: bool) -> None:
        self.saver = saver
        self._postgres = postgres

    async def _sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._postgres:
            async with self.saver.lock, self.saver.conn.cursor() as cur:
                await cur.execute(query.replace("?", "%s"), params)
                rows = await cur.fetchall() if cur.description else []
                return [tuple(row.values()) for row in rows]
        async with self.saver.lock:
            async with self.saver.conn.execute(query, params) as cur:
                rows = await cur.fetchall()
            await self.saver.conn.commit()
            return list(rows)

    async def setup(self) -> None:
        """Create the checkpoint tables and the ledger's, if missing."""
        await self.saver.setup()
        for table in _TABLES:
            await self._sql(table)

    async def get(self, run_id: str) -> RunSummary | None:
        """The ledger's entry of ``run_id``, if any."""
        rows = await self._sql(
            f"SELECT {_COLUMNS} FROM configurable_agents_runs WHERE run_id = ?", (run_id,)
        )
        return _summary(rows[0]) if rows else None

    async def runs(self, workflow: str, status: str | None) -> list[RunSummary]:
        """The ledger's runs of ``workflow`` (with ``status``), newest first."""
        query = f"SELECT {_COLUMNS} FROM configurable_agents_runs WHERE workflow = ?"
        params: tuple[Any, ...] = (workflow,)
        if status is not None:
            query, params = query + " AND status = ?", (*params, status)
        return [_summary(row) for row in await self._sql(query + " ORDER BY updated DESC", params)]

    async def put(self, run: RunSummary) -> None:
        """Write ``run``'s entry (insert or replace)."""
        values = (
            run.run_id,
            run.workflow,
            run.status,
            run.session_id,
            run.attempt,
            json.dumps(run.inputs, default=str),
            json.dumps(run.tags),
            json.dumps(run.spent.to_dict()),
            json.dumps(run.saved.to_dict()),
            json.dumps([w.to_dict() for w in run.waiting]),
            run.trace_id,
            time.time(),
        )
        await self._sql(
            f"INSERT INTO configurable_agents_runs ({_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
            "status = excluded.status, session_id = excluded.session_id, "
            "attempt = excluded.attempt, tags = excluded.tags, spent = excluded.spent, "
            "saved = excluded.saved, "
            "waiting = excluded.waiting, trace_id = excluded.trace_id, "
            "updated = excluded.updated",
            values,
        )

    async def session(self, session_id: str, workflow: str) -> dict[str, Any]:
        """The session-scoped values the session's last run of ``workflow`` left."""
        rows = await self._sql(
            "SELECT state FROM configurable_agents_sessions WHERE session_id = ? AND workflow = ?",
            (session_id, workflow),
        )
        return dict(json.loads(rows[0][0])) if rows else {}

    async def save_session(self, session_id: str, workflow: str, values: dict[str, Any]) -> None:
        """Keep the session-scoped ``values`` for the session's next run of ``workflow``."""
        await self._sql(
            "INSERT INTO configurable_agents_sessions (session_id, workflow, state, updated) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (session_id, workflow) DO UPDATE SET "
            "state = excluded.state, updated = excluded.updated",
            (session_id, workflow, json.dumps(values, default=str), time.time()),
        )


def _summary(row: Any) -> RunSummary:
    run_id, workflow, status, session_id, attempt, inputs, tags, spent, saved, waiting = row[:10]
    trace_id, at = row[10:]
    return RunSummary(
        run_id=run_id,
        workflow=workflow,
        status=status,
        session_id=session_id,
        attempt=int(attempt),
        inputs=json.loads(inputs),
        tags=json.loads(tags),
        spent=Spend.from_dict(json.loads(spent)),
        saved=Spend.from_dict(json.loads(saved)),
        waiting=[WaitingFor.from_dict(w) for w in json.loads(waiting)],
        trace_id=trace_id,
        updated=float(at or 0),
    )


_ready: set[str] = set()
"""Stores whose tables this process has created or found."""


@asynccontextmanager
async def open_store(uri: str) -> AsyncIterator[DurableStore]:
    """Open the checkpoint store at ``uri`` (``sqlite:///PATH`` or ``postgresql://...``),
    creating its tables the first time.

    Raises:
        ResumeError: the store cannot be opened (its package missing, or unreachable).
    """
    if uri.startswith(("postgresql://", "postgres://")):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError:
            raise ResumeError(
                "a postgresql:// checkpoint store needs the `postgres` extra: "
                "pip install 'configurable-agents[postgres]'"
            ) from None
        opened: Any = AsyncPostgresSaver.from_conn_string(uri)
        postgres = True
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = Path(uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        opened, postgres = AsyncSqliteSaver.from_conn_string(str(path)), False
    try:
        saver = await opened.__aenter__()
    except Exception as exc:
        raise ResumeError(f"checkpoint store {_shown(uri)}: {exc}") from None
    try:
        store = DurableStore(saver, postgres)
        if not postgres:
            # WAL (the saver's) with synchronous=NORMAL: a commit survives the process being
            # killed, only a power loss may take the last ones back; 1.1 instead of 1.7 ms of
            # checkpointing per node (bench/bench_durable.py)
            await saver.conn.execute("PRAGMA synchronous=NORMAL")
        if uri not in _ready:
            await store.setup()
            _ready.add(uri)
        yield store
    finally:
        await opened.__aexit__(None, None, None)


def _shown(uri: str) -> str:
    """``uri`` without a password."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.partition(':')[0]}{at}{host}" if at else uri


async def alist_runs(
    workflow: Workflow, *, status: str | None = None, env: Mapping[str, str] | None = None
) -> list[RunSummary]:
    """The runs of ``workflow`` its checkpoint store knows, newest first; ``status`` keeps
    those whose last attempt ended so (``waiting`` runs whose wait has timed out are listed as
    ``timeout``)."""
    async with open_store(store_uri(workflow, os.environ if env is None else env)) as store:
        runs = await store.runs(workflow.name, None)
    for run in runs:
        if run.status == "waiting" and run.expired:
            run.status = "timeout"
    return [run for run in runs if status is None or run.status == status]
