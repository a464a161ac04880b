"""Running the HTTP server of a workflow: the listening socket, uvicorn, signals, shutdown.

`configurable-agents serve` parses its options, opens the job table and calls :func:`listen`
and :func:`serve`. Importing this module imports nothing heavy: :func:`serve` imports uvicorn
and FastAPI.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ..environment import TOKEN_ENV

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..config.settings import PrometheusConfig
    from ..engine import PreparedWorkflow
    from .executor import Executor
    from .store import RunStore

__all__ = ["listen", "serve"]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Made with protocol ``IPPROTO_TCP`` on purpose: asyncio sets TCP_NODELAY only on connections
    of such sockets, and without it every response waits ~40 ms (Nagle's algorithm against
    delayed ACKs).

    Args:
        host: The interface to listen on.
        port: The port; 0 for any free one.

    Returns:
        The bound, listening socket.

    Raises:
        OSError: the address cannot be resolved or bound (e.g. the port is taken).
    """
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


def _to_stderr(line: str) -> None:
    """The default announcer: ``line`` on stderr."""
    print(line, file=sys.stderr, flush=True)


def serve(
    prepared: PreparedWorkflow,
    jobs: RunStore,
    listener: socket.socket,
    *,
    max_body_bytes: int,
    max_runs: int,
    shutdown_timeout: float,
    executor: Executor | None = None,
    announce: Callable[[str], None] = _to_stderr,
) -> None:
    """Serve the API of ``prepared`` on ``listener`` until SIGTERM or SIGINT.

    $CONFIGURABLE_AGENTS_API_TOKEN, if set, is the bearer token requests need. The workflow's
    Prometheus metrics are also served on their own port when its config asks for them. On
    SIGTERM or SIGINT uvicorn shuts down gracefully (runs get ``shutdown_timeout`` seconds to
    finish, then are cancelled; traces are flushed), then the process exits with 0 or 130.

    Args:
        prepared: The workflow, compiled once for every run.
        jobs: The job table.
        listener: The socket from :func:`listen`.
        max_body_bytes: Larger request bodies get 413.
        max_runs: Most runs in progress at once.
        shutdown_timeout: Seconds running runs get to finish at shutdown.
        executor: How runs are executed (default: in this process).
        announce: Told the one line saying where the API is served (default: to stderr).
    """
    import uvicorn

    from .app import create_app

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
        notes.append(_serve_metrics(api, prometheus))
    announce(f"serving {prepared.workflow.name} on http://{host}:{port} ({'; '.join(notes)})")
    config = uvicorn.Config(
        api,
        log_level="info",
        # Annotated int, but uvicorn hands it to asyncio.wait_for: fractions of a second work.
        timeout_graceful_shutdown=shutdown_timeout,  # type: ignore[arg-type]
        lifespan="on",
    )
    # uvicorn shuts down gracefully on SIGTERM and SIGINT (runs finished or cancelled, traces
    # flushed), then raises the signal again: these handlers then end the process.
    signal.signal(signal.SIGTERM, lambda *_: _exit_now(0))
    signal.signal(signal.SIGINT, lambda *_: _exit_now(130))
    uvicorn.Server(config).run(sockets=[listener])


def _serve_metrics(api: FastAPI, config: PrometheusConfig) -> str:
    """Serve the API's metrics on their own port too; a note saying where, or why not."""
    from ..observability.prometheus import serve_metrics

    try:
        serve_metrics(api.state.metrics, config)
    except OSError as exc:
        return f"metrics NOT on :{config.port}: {exc.strerror or exc}"
    return f"metrics also on :{config.port}{config.path}"


def _exit_now(code: int) -> NoReturn:
    """Exit after the exit handlers, skipping the interpreter's teardown of the LangChain and
    FastAPI modules (seconds on a busy machine, for nothing)."""
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
