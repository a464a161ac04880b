"""Workflows served as MCP tools (`configurable-agents mcp`), with the official MCP SDK.

Each workflow is one tool: its name is the workflow's `flow.name`, its description
`flow.description`, its input schema the workflow's input fields (:func:`input_fields`) and its
output schema its outputs. A call is one run of the prepared workflow (``arun``): recorded,
costed and budgeted like any other, each a trace (an MLflow run too only with
`observability.mlflow.request_runs`, as for ``serve``). A run that succeeds answers its outputs
(structured content, and the same JSON as text); any other ends as a tool error (``isError``)
naming its status, error and run id (a waiting run: what it waits for, and how to resume it).
Every answer carries the run's id, trace, cost and tokens in ``_meta`` under :data:`META_KEY`.

Transports: stdio (:func:`serve_stdio`, stdout is the protocol's, so nothing else is printed
there) and streamable HTTP (:func:`serve_http`, at ``/mcp``, with a bearer token when one is
given). The module imports the SDK: import it only to serve (the ``mcp`` extra).
"""

from __future__ import annotations

import hmac
import json
import re
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server import Server
from mcp.shared.exceptions import MCPError

from .._version import __version__
from ..config.diagnostics import closest
from ..engine import InputError, outputs_of
from .schemas import inputs_schema, io_schemas

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext

    from ..config.loader import Workflow
    from ..engine import PreparedWorkflow, RunResult
    from ..evaluation.online import OnlineEvaluator
    from ..observability.prometheus import Metrics

__all__ = [
    "META_KEY",
    "TOOL_NAME",
    "BearerToken",
    "WorkflowTool",
    "WorkflowTools",
    "input_fields",
    "serve_http",
    "serve_stdio",
    "tool_error",
]

TOOL_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
"""What MCP allows as a tool name (and so as the `flow.name` of a served workflow)."""

META_KEY = "configurable-agents/run"
"""The ``_meta`` key of every call's answer: the run's id, status, trace, cost and tokens."""

SHUTDOWN_S = 10.0
"""At shutdown (HTTP), seconds calls in progress get to finish, then online scoring as long."""


def input_fields(workflow: Workflow) -> list[str]:
    """The fields a call gives: the required state fields and those no node writes (the fields
    nodes write are the outputs)."""
    written = outputs_of(workflow, dict.fromkeys(workflow.fields))
    return [name for name, spec in workflow.fields.items() if spec.required or name not in written]


def _input_schema(workflow: Workflow) -> dict[str, Any]:
    """JSON Schema of a call's arguments: the input fields, typed, described, with their
    defaults; the required ones required; no other names."""
    schema = inputs_schema(workflow)
    names = input_fields(workflow)
    schema["properties"] = {name: schema["properties"][name] for name in names}
    return schema


@dataclass
class WorkflowTool:
    """One served workflow.

    Attributes:
        prepared: The workflow, prepared once for every call.
        file: The file it was read from (named in the resume hint of a waiting run).
        llm: The ``--llm`` it runs with, if any (repeated in that hint).
        metrics: Its Prometheus metrics, when its config serves them.
        online: Its online scoring, when its `evaluation.online` asks for it.
        inputs: Its input fields (:func:`input_fields`).
    """

    prepared: PreparedWorkflow
    file: Path
    llm: str | None = None
    metrics: Metrics | None = None
    online: OnlineEvaluator | None = None
    inputs: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = input_fields(self.prepared.workflow)

    @classmethod
    def attach(
        cls,
        prepared: PreparedWorkflow,
        file: Path,
        llm: str | None,
        say: Callable[[str], None],
    ) -> WorkflowTool:
        """Serve ``prepared`` as a tool, with what its config asks for besides recording: a
        trace per call (an MLflow run too only with `request_runs`), Prometheus metrics on their
        port, online scoring.

        Args:
            prepared: The workflow, prepared.
            file: Its file.
            llm: The ``--llm`` it runs with, if any.
            say: Told, in one line, where its metrics are served, or why they are not (calls
                go on without).

        Raises:
            EvaluationSetupError: a scorer of its `evaluation.online` cannot be prepared.
        """
        from ..evaluation.online import OnlineEvaluator
        from .recording import per_request_runs

        per_request_runs(prepared)
        metrics = _metrics(prepared, say)
        registry = metrics.registry if metrics is not None else None
        online = OnlineEvaluator.attach(prepared, registry)
        return cls(prepared, file, llm, metrics, online)

    @property
    def name(self) -> str:
        """The tool's name: the workflow's `flow.name`."""
        return self.prepared.workflow.name

    def definition(self) -> types.Tool:
        """The tool as ``tools/list`` describes it."""
        workflow = self.prepared.workflow
        flow = workflow.config.flow
        return types.Tool(
            name=self.name,
            description=flow.description or f"Runs the workflow {self.name}.",
            input_schema=_input_schema(workflow),
            output_schema=io_schemas(workflow)["output"],
        )

    def running(self) -> AbstractContextManager[None]:
        """Counts a call as an active run in the metrics, if any."""
        return self.metrics.running() if self.metrics is not None else nullcontext()

    async def call(self, arguments: dict[str, Any]) -> types.CallToolResult:
        """Run the workflow on ``arguments``; its outputs, or a tool error."""
        unknown = [name for name in arguments if name not in self.inputs]
        try:
            if unknown:
                raise InputError([_unknown(name, self.inputs) for name in unknown])
            with self.running():
                result = await self.prepared.arun(arguments)
        except InputError as exc:
            details = {"status": "invalid_input", "error": str(exc), "problems": exc.problems}
            return tool_error(f"Invalid arguments: {exc}.", details)
        return self._answer(result)

    def _answer(self, result: RunResult) -> types.CallToolResult:
        usage = result.usage
        meta = {
            "run_id": result.run_id,
            "status": result.status.value,
            "trace_id": result.trace_id,
            "cost_usd": float(result.cost_usd),
            "unpriced": result.unpriced,
            "tokens": {
                "input": usage.input_tokens,
                "output": usage.output_tokens,
                "total": usage.total_tokens,
            },
            "duration_s": round(result.duration_s, 6),
        }
        if result.status.value == "success":
            outputs = _json_ready(result.outputs)
            return types.CallToolResult(
                content=[types.TextContent(text=json.dumps(outputs, ensure_ascii=False))],
                structured_content=outputs,
                meta={META_KEY: meta},
            )
        details: dict[str, Any] = {
            "status": result.status.value,
            "error": result.error,
            "run_id": result.run_id,
            "trace_id": result.trace_id,
        }
        if result.waiting:
            details["waiting"] = [_json_ready(w.to_dict()) for w in result.waiting]
            return tool_error(self._waiting_text(result), details, meta)
        return tool_error(
            f"The run {result.run_id} ended with status {result.status.value}: "
            f"{result.error or 'no error given'}.",
            details,
            meta,
        )

    def _waiting_text(self, result: RunResult) -> str:
        """Says that the run waits, for what, and how a person resumes it."""
        asks = "; ".join(
            f"{w.kind} at node {w.node!r}"
            + (f" (item {w.item_index})" if w.item_index is not None else "")
            + f": {w.prompt.strip()}"
            for w in result.waiting
        )
        again = f"configurable-agents resume {self.file} {result.run_id}"
        again += f" --llm {self.llm}" if self.llm else ""
        first = result.waiting[0]
        if first.kind == "approval":
            answer = "(-i approved=false declines)"
        else:
            answer = " ".join(f"-i {name}=..." for name in first.outputs.get("properties") or {})
        return (
            f"The run {result.run_id} is waiting for a person: {asks}. "
            f"A person goes on with it: {again} {answer}".rstrip()
        )


def tool_error(
    text: str, details: dict[str, Any], meta: dict[str, Any] | None = None
) -> types.CallToolResult:
    """A tool error: ``text`` for a reader, then ``details`` as JSON."""
    blocks = [text, json.dumps(_json_ready(details), ensure_ascii=False)]
    return types.CallToolResult(
        content=[types.TextContent(text=block) for block in blocks],
        is_error=True,
        meta={META_KEY: meta} if meta is not None else None,
    )


def _unknown(name: str, inputs: Sequence[str]) -> str:
    guess = closest(name, inputs)
    return f"unknown input {name!r}" + (f" (did you mean {guess!r}?)" if guess else "")


def _json_ready(value: Any) -> Any:
    """``value`` as plain JSON types (what is not JSON becomes its text)."""
    return json.loads(json.dumps(value, default=str))


class WorkflowTools:
    """The MCP server of some workflows, one tool each (their names distinct)."""

    def __init__(self, tools: Sequence[WorkflowTool]) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.definitions = [tool.definition() for tool in tools]

    def server(self) -> Server[Any]:
        """A low-level MCP server listing and calling the tools."""
        schemas = {d.name: d.input_schema for d in self.definitions}
        return Server(
            "configurable-agents",
            version=__version__,
            instructions="Each tool runs a workflow of configurable-agents on its arguments "
            "and answers its outputs.",
            get_tool_input_schema=schemas.get,
            on_list_tools=self._list,
            on_call_tool=self._call,
        )

    async def _list(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.definitions)

    async def _call(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            guess = closest(params.name, self.tools)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}{hint}")
        return await tool.call(dict(params.arguments or {}))

    def close(self) -> None:
        """Stop what the workflows hold open (the MCP servers their nodes use); idempotent."""
        for tool in self.tools.values():
            tool.prepared.close()

    def wait_for_scoring(self, timeout: float) -> None:
        """Give the online scoring of the last calls up to ``timeout`` seconds."""
        for tool in self.tools.values():
            if tool.online is not None:
                tool.online.wait(timeout)


async def serve_stdio(tools: WorkflowTools) -> None:
    """Serve the tools on this process's stdin and stdout until the client closes stdin (the
    caller closes them, :meth:`WorkflowTools.close`).

    While serving, the SDK points file descriptor 1 at stderr, so nothing else reaches the
    protocol's channel.
    """
    from mcp.server.stdio import stdio_server

    server = tools.server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BearerToken:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (compared in
    constant time), else 401 with ``WWW-Authenticate: Bearer``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if not (scheme.lower() == b"bearer" and hmac.compare_digest(value, self.token)):
                body = b'{"detail": "missing or wrong bearer token"}'
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve_http(
    tools: WorkflowTools,
    listener: socket.socket,
    *,
    host: str,
    token: str | None,
    announce: Callable[[str], None],
) -> None:
    """Serve the tools over streamable HTTP at ``/mcp`` on ``listener`` until SIGTERM or SIGINT,
    then exit the process (0 or 130) once calls in progress had :data:`SHUTDOWN_S` seconds to
    finish and traces were flushed.

    Args:
        tools: The tools.
        listener: A listening socket (:func:`.process.listen`).
        host: The ``--host`` it listens on: on a loopback one, requests must name a loopback
            host and origin (the SDK's protection against DNS rebinding).
        token: The bearer token every request needs, if any.
        announce: Told the one line saying where the tools are served.
    """
    import uvicorn

    from .process import _exit_now

    app: Any = tools.server().streamable_http_app(host=host)
    if token:
        app = BearerToken(app, token)
    address, port = listener.getsockname()[:2]
    where = f"[{address}]" if ":" in address else address
    names = ", ".join(tools.tools)
    suffix = " (bearer token required)" if token else ""
    announce(f"serving MCP tools {names} on http://{where}:{port}/mcp{suffix}")
    config = uvicorn.Config(
        app,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_S,  # type: ignore[arg-type]  # fractions work
        lifespan="on",
    )

    def stop(code: int) -> None:
        tools.close()
        tools.wait_for_scoring(SHUTDOWN_S)
        _exit_now(code)

    # uvicorn shuts down gracefully on SIGTERM and SIGINT, then raises the signal again.
    signal.signal(signal.SIGTERM, lambda *_: stop(0))
    signal.signal(signal.SIGINT, lambda *_: stop(130))
    uvicorn.Server(config).run(sockets=[listener])


def _metrics(prepared: PreparedWorkflow, say: Callable[[str], None]) -> Metrics | None:
    """The workflow's Prometheus metrics, served on their port, when its config asks for them."""
    config = prepared.workflow.config.config.observability.prometheus
    if not config.enabled:
        return None
    name = prepared.workflow.name
    try:
        from ..observability.prometheus import Metrics, serve_metrics
    except ImportError:
        extra = "pip install 'configurable-agents[server]'"
        say(f"warning: {name}: observability.prometheus needs `{extra}`")
        return None
    metrics = Metrics.for_workflow(prepared)
    try:
        serve_metrics(metrics, config)
    except OSError as exc:
        say(f"warning: {name}: metrics not served on :{config.port}: {exc.strerror or exc}")
        return None
    say(f"{name}: metrics on http://0.0.0.0:{config.port}{config.path}")
    return metrics
