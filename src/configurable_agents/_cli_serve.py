"""`configurable-agents serve`: a workflow behind an HTTP API (FastAPI on uvicorn)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli import _FILE, _fail_input, _runnable, app

if TYPE_CHECKING:
    from .engine import PreparedWorkflow
    from .server.executor import Executor
    from .server.jobs import JobStore

__all__ = ["run_metrics", "serve"]


@app.command()
@click.argument("file", type=_FILE)
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
    import sqlite3

    from .api import prepare_workflow
    from .engine import SetupError
    from .server.jobs import JobStore, default_runs_db

    workflow = _runnable(file, llm)
    try:
        prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
    except SetupError as exc:
        _fail_input(str(exc))
    executor = None
    if queue and db:
        _fail_input("--db and --queue: with --queue, runs are kept in the queue's Redis")
    if queue:
        from .queue.app import QueueError, open_queue
        from .queue.executors import QueueExecutor

        try:
            runs, celery = open_queue(queue)
        except QueueError as exc:
            _fail_input(str(exc))
        jobs: Any = runs
        executor = QueueExecutor(prepared, runs, celery)
    else:
        try:
            jobs = JobStore(db)
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            where = db or default_runs_db()
            _fail_input(f"--db {where}: cannot use it as the job table: {reason}")
    try:
        listener = _listen(host, port)
    except OSError as exc:
        _fail_input(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    _run_server(prepared, jobs, listener, max_body_bytes, max_runs, shutdown_timeout, executor)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket. Made with protocol ``IPPROTO_TCP`` on purpose: asyncio sets
    TCP_NODELAY only on connections of such sockets, and without it every response waits ~40 ms
    (Nagle's algorithm against delayed ACKs)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError:
        listener.close()
        raise
    return listener


def _run_server(
    prepared: PreparedWorkflow,
    jobs: JobStore,
    listener: socket.socket,
    max_body_bytes: int,
    max_runs: int,
    shutdown_timeout: float,
    executor: Executor | None = None,
) -> None:
    import uvicorn

    from .observability.prometheus import serve_metrics
    from .server.app import TOKEN_ENV, create_app

    token = os.environ.get(TOKEN_ENV) or None
    api = create_app(
        prepared,
        jobs=jobs,
        token=token,
        max_body_bytes=max_body_bytes,
        shutdown_timeout=shutdown_timeout,
        max_runs=max_runs,
        executor=executor,
    )
    host, port = listener.getsockname()[:2]
    notes = ["API docs at /docs", f"job table {jobs.path}"]
    notes += ["bearer token required"] if token else []
    prometheus = prepared.workflow.config.config.observability.prometheus
    if prometheus.enabled:
        try:
            serve_metrics(api.state.metrics, prometheus)
            notes.append(f"metrics also on :{prometheus.port}{prometheus.path}")
        except OSError as exc:
            notes.append(f"metrics NOT on :{prometheus.port}: {exc.strerror or exc}")
    click.echo(
        f"serving {prepared.workflow.name} on http://{host}:{port} ({'; '.join(notes)})", err=True
    )
    config = uvicorn.Config(
        api, log_level="info", timeout_graceful_shutdown=shutdown_timeout, lifespan="on"
    )
    # uvicorn shuts down gracefully on SIGTERM and SIGINT (runs finished or cancelled, traces
    # flushed), then raises the signal again: these handlers then end the process.
    signal.signal(signal.SIGTERM, lambda *_: _exit_now(0))
    signal.signal(signal.SIGINT, lambda *_: _exit_now(130))
    uvicorn.Server(config).run(sockets=[listener])


def _exit_now(code: int) -> None:
    """Exit after the exit handlers, skipping the interpreter's teardown of the LangChain and
    FastAPI modules (seconds on a busy machine, for nothing)."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_metrics(prepared: PreparedWorkflow) -> AbstractContextManager[None]:
    """For `run`: serve the workflow's metrics as `config.observability.prometheus` says.

    Returns a context manager counting the run as active while it runs. A missing package or a
    busy port is reported on stderr; the run goes on without metrics.
    """
    config = prepared.workflow.config.config.observability.prometheus
    try:
        from .observability.prometheus import Metrics, serve_metrics
    except ImportError:
        click.echo(
            "warning: observability.prometheus needs `pip install 'configurable-agents[server]'`",
            err=True,
        )
        return nullcontext()
    metrics = Metrics.for_workflow(prepared)
    try:
        serve_metrics(metrics, config)
    except OSError as exc:
        click.echo(
            f"warning: metrics not served on :{config.port}: {exc.strerror or exc}", err=True
        )
        return nullcontext()
    click.echo(f"metrics on http://0.0.0.0:{config.port}{config.path}", err=True)
    return metrics.running()
