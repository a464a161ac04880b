"""`configurable-agents mcp`: workflows served as MCP tools, on stdio or streamable HTTP.

Option parsing and error reporting only; :mod:`configurable_agents.server.mcp` serves. On stdio,
stdout is the protocol's channel: everything this command says goes to stderr.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import FILE, fail_input, no_exit_wait, runnable

if TYPE_CHECKING:
    from ..config.loader import Workflow
    from ..server.mcp import WorkflowTools

__all__ = ["mcp"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@click.command()
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=FILE)
@click.option("--http", is_flag=True, help="Serve streamable HTTP (at /mcp) instead of stdio.")
@click.option("--host", help=f"With --http: the interface to listen on.  [default: {DEFAULT_HOST}]")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help=f"With --http: the port; 0: any.  [default: {DEFAULT_PORT}]",
)
@click.option(
    "--llm", metavar="PROVIDER[:MODEL]", help="Use this model for every node (mock: offline)."
)
@click.option("--trace", is_flag=True, help="Record every call in MLflow (whatever the files say).")
def mcp(
    files: tuple[Path, ...],
    http: bool,
    host: str | None,
    port: int | None,
    llm: str | None,
    trace: bool,
) -> None:
    """Serve each workflow FILE as an MCP tool, on stdio (default) or streamable HTTP.

    A tool is named after its workflow's flow.name and described by its flow.description; its
    arguments are the workflow's input fields and its result the run's outputs. A run that does
    not succeed is a tool error with its status, error and run_id. Every call is a run, traced,
    costed and budgeted as the file says. With --http and $CONFIGURABLE_AGENTS_API_TOKEN set,
    requests need `Authorization: Bearer <token>`; a host that is not loopback needs the token.

    Exit codes: 0 stopped (the client closed stdin, or SIGTERM), 2 bad input, 130 interrupted.
    """
    import importlib.util

    if not http and (host is not None or port is not None):
        fail_input("--host and --port go with --http (without it, the tools are served on stdio)")
    if importlib.util.find_spec("mcp") is None:
        fail_input(
            "`configurable-agents mcp` needs the MCP SDK: pip install 'configurable-agents[mcp]'"
        )
    workflows = [runnable(file, llm) for file in files]
    _check_names(files, workflows)
    listener = (
        _listen(host or DEFAULT_HOST, DEFAULT_PORT if port is None else port) if http else None
    )
    tools = _prepare(files, workflows, llm, trace)
    say = _to_stderr
    if listener is None:
        import asyncio

        from ..server.mcp import serve_stdio

        say(f"serving MCP tools {', '.join(tools.tools)} on stdio")
        no_exit_wait()  # spooled traces are written by the background writer, which outlives this
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a client's stop: calls cancelled
        try:
            asyncio.run(serve_stdio(tools))
        finally:
            tools.close()
        tools.wait_for_scoring(10.0)
        return
    from ..environment import TOKEN_ENV
    from ..server.mcp import serve_http

    token = os.environ.get(TOKEN_ENV) or None
    serve_http(tools, listener, host=host or DEFAULT_HOST, token=token, announce=say)


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)


def _check_names(files: tuple[Path, ...], workflows: list[Workflow]) -> None:
    """Exit 2, each problem located at its `flow.name`, unless every workflow's name can name an
    MCP tool and no two are the same."""
    from ..server.mcp import TOOL_NAME

    seen: dict[str, Path] = {}
    problems = []
    for file, workflow in zip(files, workflows, strict=True):
        name = workflow.name
        if not TOOL_NAME.fullmatch(name):
            why = "letters, digits, '_', '-' and '.' only, at most 128"
            problems.append(_at_name(file, f"{name!r} cannot name an MCP tool ({why})"))
        elif name in seen:
            why = "the tools served together need distinct names"
            problems.append(_at_name(file, f"{name!r} is also the name of {seen[name]}; {why}"))
        else:
            seen[name] = file
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(2)


def _at_name(file: Path, message: str) -> str:
    """``message`` about the `flow.name` of ``file``, as a located diagnostic."""
    from ..config.diagnostics import Diagnostic
    from ..config.source import SourceError, read_source

    try:
        line, column = read_source(file).locate(("flow", "name")) or (None, None)
    except SourceError:
        line = column = None
    return Diagnostic(message, "flow.name", str(file), line, column).format()


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; exit 2 if it cannot, or if ``host`` is not loopback
    and no token is set."""
    import ipaddress

    from ..environment import TOKEN_ENV
    from ..server.process import listen

    try:
        listener = listen(host, port)
    except OSError as exc:
        fail_input(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    address = str(listener.getsockname()[0]).split("%", 1)[0]
    if not ipaddress.ip_address(address).is_loopback and not os.environ.get(TOKEN_ENV):
        listener.close()
        fail_input(
            f"--host {host} is not a loopback address: set ${TOKEN_ENV} so that callers need a "
            "bearer token, or serve on 127.0.0.1"
        )
    return listener


def _prepare(
    files: tuple[Path, ...], workflows: list[Workflow], llm: str | None, trace: bool
) -> WorkflowTools:
    """Each workflow prepared once, as a tool; exit 2 if one cannot be."""
    from ..api import prepare_workflow
    from ..engine import SetupError
    from ..evaluation import EvaluationSetupError
    from ..server.mcp import WorkflowTool, WorkflowTools

    tools = []
    with redirect_stdout(sys.stderr):  # stdout is the protocol's on stdio
        for file, workflow in zip(files, workflows, strict=True):
            try:
                prepared = prepare_workflow(workflow, llm=llm, trace=trace or None)
            except SetupError as exc:
                fail_input(f"{file}: {exc}")
            try:
                tools.append(WorkflowTool.attach(prepared, file, llm, _to_stderr))
            except EvaluationSetupError as exc:
                fail_input(f"{file}: evaluation.online: {exc}")
    return WorkflowTools(tools)
