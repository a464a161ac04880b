"""`configurable-agents serve`: a workflow behind an HTTP API (FastAPI on uvicorn).

Option parsing and error reporting only; :mod:`configurable_agents.server.process` starts the
server.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import FILE, fail_input, runnable

if TYPE_CHECKING:
    from ..engine import PreparedWorkflow
    from ..server.executor import Executor
    from ..server.jobs import JobStore

__all__ = ["serve"]


@click.command()
@click.argument("file", type=FILE)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any."
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Job table (SQLite). Default: $CONFIGURABLE_AGENTS_RUNS_DB, else "
    "~/.configurable-agents/runs.db.",
)
@click.option(
    "--llm", metavar="PROVIDER[:MODEL]", help="Use this model for every node (mock: offline)."
)
@click.option("--trace", is_flag=True, help="Record every run in MLflow (whatever the file says).")
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=1 << 20,
    show_default=True,
    help="Larger request bodies get 413.",
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Most runs in progress at once; more wait, queued, for a free slot.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds running runs get to finish at shutdown before they are cancelled.",
)
@click.option(
    "--queue",
    metavar="REDIS_URL",
    help="Enqueue runs for `worker` processes through this Redis, which also keeps the runs "
    "(instead of --db); see docs/SCALING.md.",
)
def serve(
    file: Path,
    host: str,
    port: int,
    db: Path | None,
    llm: str | None,
    trace: bool,
    max_body_bytes: int,
    max_runs: int,
    shutdown_timeout: float,
    queue: str | None,
) -> None:
    """Serve a workflow FILE over HTTP: POST /runs, GET /runs/{id}, /schema, /metrics, /docs.

    With $CONFIGURABLE_AGENTS_API_TOKEN set, requests need `Authorization: Bearer <token>`.
    """
    from ..api import prepare_workflow
    from ..engine import SetupError
    from ..evaluation import EvaluationSetupError
    from ..server import process

    workflow = runnable(file, llm)
    try:
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
    except SetupError as exc:
        fail_input(str(exc))
    if queue and db:
        fail_input("--db and --queue: with --queue, runs are kept in the queue's Redis")
    jobs, executor = _queued(prepared, queue) if queue else (_job_table(db), None)
    try:
        listener = process.listen(host, port)
    except OSError as exc:
        fail_input(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        process.serve(
            prepared,
            jobs,
            listener,
            max_body_bytes=max_body_bytes,
            max_runs=max_runs,
            shutdown_timeout=shutdown_timeout,
            executor=executor,
            announce=lambda line: click.echo(line, err=True),
        )
    except EvaluationSetupError as exc:  # online scoring's judge or function cannot be set up
        fail_input(f"evaluation.online: {exc}")
    finally:
        prepared.close()  # its MCP servers


def _queued(prepared: PreparedWorkflow, url: str) -> tuple[Any, Executor]:
    """The runs kept in the Redis at ``url`` and the executor enqueueing runs there; exit 2 if
    it does not answer.

    Args:
        prepared: The workflow served.
        url: The ``--queue`` Redis URL.

    Returns:
        The queue's run store (the server's job table) and its executor.
    """
    from ..queue.app import QueueError, open_queue
    from ..queue.executors import QueueExecutor

    try:
        runs, celery = open_queue(url)
    except QueueError as exc:
        fail_input(str(exc))
    return runs, QueueExecutor(prepared, runs, celery)


def _job_table(db: Path | None) -> JobStore:
    """The SQLite job table at ``db`` (default: $CONFIGURABLE_AGENTS_RUNS_DB, else the home
    one); exit 2 if it cannot be used.

    Args:
        db: The ``--db`` option, if given.

    Returns:
        The job table.
    """
    import sqlite3

    from ..server.jobs import JobStore, default_runs_db

    try:
        return JobStore(db)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        where = db or default_runs_db()
        fail_input(f"--db {where}: cannot use it as the job table: {reason}")
