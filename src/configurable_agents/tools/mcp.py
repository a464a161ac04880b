"""Tools of MCP servers: `mcp:SERVER/TOOL`, called through the official MCP SDK (the `mcp` extra).

:class:`McpServers` holds the servers one prepared workflow uses (those its nodes name). They are
started together the first time their tools are needed (when the workflow is prepared: a tool's
arguments are the server's input schema) and kept open, each by a task of its own on an event
loop that runs in a thread of its own, so that the runs of any event loop or thread share them
(the SDK's clients must be entered and left in one task). :meth:`McpServers.aclose` (or
:meth:`~McpServers.close`) stops them; a call made afterwards starts them again.

Every failure is a :class:`~.errors.ToolError` with one line: a server that cannot start or
cannot be reached within its `connect_timeout`, a call that takes longer than its `timeout`, a
server that exits (or drops the connection) during a call, or a result the tool marks as an
error. The engine applies the node's `on_error` to it. A server that went away is started again
at the next call.

``${VAR}`` in a server's `args`, `env`, `url` and `headers` is read from the environment when the
servers start; an unset variable is a :class:`McpSetupError` naming it. The values are kept out
of everything written: the tools' results and errors (and the server's stderr quoted in them)
have them replaced by ``[REDACTED]``, and nothing here logs or stores the settings.

Importing this module loads neither the SDK nor LangChain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import threading
import weakref
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ..config.diagnostics import closest
from ..config.issues import Issue, Loc
from ..config.mcp_servers import (
    McpHttpServer,
    McpServerConfig,
    McpStdioServer,
    UnsetVariable,
    expand_variables,
    parse_mcp_tool,
    referenced_mcp_tools,
    variables_of,
)
from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from ..config.schema import WorkflowConfig

__all__ = [
    "McpServers",
    "McpSetupError",
    "McpTool",
    "check_mcp_tools",
    "make_mcp_tool",
    "model_tool_name",
    "open_mcp_servers",
]

T = TypeVar("T")

REDACTED = "[REDACTED]"
"""What a ``${VAR}`` value is replaced by in results and errors."""

MIN_SECRET_LENGTH = 4
"""Shorter ``${VAR}`` values are not masked (they would mangle ordinary words)."""

STDERR_TAIL_BYTES = 2048
"""How much of a stdio server's latest stderr is kept, to quote when it fails."""

CLOSE_TIMEOUT = 5.0
"""Seconds stopping the servers may take before they are left to the SDK's kill."""

_CALL_MARGIN = 5.0
"""Seconds added to a call's `timeout` before the call is abandoned from this side too."""

_NAME = re.compile(r"[^A-Za-z0-9_-]")
_NAME_LENGTH = 64  # what OpenAI and others accept as a function name


class McpSetupError(ToolError):
    """An MCP server cannot be used: a ``${VAR}`` is unset, it cannot start or be reached, or
    it does not list a tool a node names.

    Attributes:
        server: The server's name.
        loc: Where in the server's settings the problem is (``("env", "TOKEN")``), if there.
    """

    def __init__(self, message: str, server: str, loc: Loc = ()) -> None:
        super().__init__(message)
        self.server = server
        self.loc = loc


@dataclass(frozen=True)
class McpTool:
    """A tool a server lists.

    Attributes:
        server: The server's name in the workflow.
        name: The tool's name on the server.
        description: What it does (its description, else its title).
        input_schema: The JSON Schema of its arguments.
    """

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]


def open_mcp_servers(
    config: WorkflowConfig,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> McpServers | None:
    """The MCP servers the workflow's nodes name (not started yet), or ``None`` if none.

    Args:
        config: The workflow.
        env: Environment ``${VAR}`` is read from. Default: ``os.environ``.
        base_dir: Directory a server's relative `cwd` is relative to (the workflow file's).
    """
    wanted = referenced_mcp_tools(config)
    if not wanted:
        return None
    servers = config.config.tools.mcp_servers
    return McpServers({name: servers[name] for name in wanted if name in servers}, env, base_dir)


class McpServers:
    """The MCP servers of one prepared workflow; see the module's docstring."""

    def __init__(
        self,
        servers: Mapping[str, McpServerConfig],
        env: Mapping[str, str] | None = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        environment = os.environ if env is None else env
        self._hub = _Hub(
            {name: _Session(name, c, environment, base_dir) for name, c in servers.items()}
        )
        self._listings: dict[str, dict[str, McpTool] | McpSetupError] | None = None
        self._finalizer = weakref.finalize(self, self._hub.close)  # also at exit

    @property
    def names(self) -> list[str]:
        """The servers' names."""
        return list(self._hub.sessions)

    def listings(self) -> dict[str, dict[str, McpTool] | McpSetupError]:
        """Each server's tools by name, or why it cannot be used; the servers are started (all
        at once) the first time."""
        if self._listings is None:
            longest = max(
                (s.config.connect_timeout for s in self._hub.sessions.values()), default=0
            )
            try:
                self._listings = self._hub.run(self._hub.open_all(), longest + 3 * CLOSE_TIMEOUT)
            except TimeoutError:  # the connections time out first; this guards the hub
                self._listings = {
                    name: McpSetupError(f"MCP server {name!r} did not start in time", name)
                    for name in self._hub.sessions
                }
        return self._listings

    def tools(self, server: str) -> dict[str, McpTool]:
        """The tools ``server`` lists, by name.

        Raises:
            McpSetupError: the server is not one of these, or cannot be used.
        """
        if server not in self._hub.sessions:
            raise McpSetupError(f"MCP server {server!r} is not declared", server)
        listing = self.listings()[server]
        if isinstance(listing, McpSetupError):
            raise listing
        return listing

    def tool(self, server: str, name: str) -> McpTool:
        """The tool ``name`` of ``server``.

        Raises:
            McpSetupError: the server cannot be used or lists no such tool (did-you-mean).
        """
        tools = self.tools(server)
        if name not in tools:
            guess = closest(name, tools)
            raise McpSetupError(
                f"MCP server {server!r} has no tool {name!r}"
                + (f" (did you mean {guess!r}?)" if guess else "")
                + f"; its tools: {', '.join(sorted(tools)) or 'none'}",
                server,
            )
        return tools[name]

    async def call(self, server: str, tool: str, arguments: Mapping[str, Any]) -> str:
        """Call ``tool`` of ``server`` from any event loop; its result as text.

        Raises:
            ToolError: the call failed, timed out, or the tool reported an error.
        """
        future = self._hub.submit(self._call(server, tool, arguments))
        try:  # the hub answers within the timeouts; this guards against a hub that cannot
            return await asyncio.wait_for(asyncio.wrap_future(future), self._guard(server))
        except TimeoutError:
            raise ToolError(f"mcp:{server}/{tool}: no answer from the MCP client") from None

    def call_sync(self, server: str, tool: str, arguments: Mapping[str, Any]) -> str:
        """:meth:`call`, for a thread that runs no event loop."""
        future = self._hub.submit(self._call(server, tool, arguments))
        try:
            return future.result(self._guard(server))
        except TimeoutError:
            future.cancel()
            raise ToolError(f"mcp:{server}/{tool}: no answer from the MCP client") from None

    def _guard(self, server: str) -> float:
        """Seconds after which a call is abandoned even if the hub has not ended it."""
        config = self._hub.sessions[server].config
        return config.connect_timeout + config.timeout + 2 * _CALL_MARGIN + 2 * CLOSE_TIMEOUT

    async def _call(self, server: str, tool: str, arguments: Mapping[str, Any]) -> str:
        return await self._hub.sessions[server].call(tool, dict(arguments))

    def mask(self, text: str) -> str:
        """``text`` with every ``${VAR}`` value of the servers replaced by ``[REDACTED]``."""
        return self._hub.mask(text)

    def close(self) -> None:
        """Stop the servers (each gets :data:`CLOSE_TIMEOUT` seconds); idempotent."""
        self._hub.close()

    async def aclose(self) -> None:
        """:meth:`close`, without blocking the event loop."""
        await asyncio.to_thread(self._hub.close)

    async def __aenter__(self) -> McpServers:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Hub:
    """The event loop thread the sessions live on, started when first needed."""

    def __init__(self, sessions: dict[str, _Session]) -> None:
        self.sessions = sessions
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        _HUBS.add(self)

    def forget(self) -> None:
        """Drop the loop and the connections without stopping them: in a forked child, where
        they are the parent's (the next call starts the servers again)."""
        self._lock = threading.Lock()
        self._loop = self._thread = None
        for session in self.sessions.values():
            session.forget()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="configurable-agents-mcp", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the hub's loop and wait for it (from any other thread)."""
        return self.submit(coroutine).result(timeout)

    async def open_all(self) -> dict[str, dict[str, McpTool] | McpSetupError]:
        async def listing(session: _Session) -> dict[str, McpTool] | McpSetupError:
            try:
                return (await session.connection()).tools
            except McpSetupError as exc:
                return exc

        found = await asyncio.gather(*(listing(s) for s in self.sessions.values()))
        return dict(zip(self.sessions, found, strict=True))

    def mask(self, text: str) -> str:
        for session in self.sessions.values():
            text = session.mask(text)
        return text

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:  # finalised on the hub's own thread
            loop.call_soon(loop.stop)
            return

        async def shut() -> None:
            await asyncio.gather(*(s.close() for s in self.sessions.values()))

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(CLOSE_TIMEOUT + 1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        for session in self.sessions.values():
            session.forget()  # whatever did not close in time belongs to the stopped loop


_HUBS: weakref.WeakSet[_Hub] = weakref.WeakSet()


def _forget_after_fork() -> None:
    for hub in list(_HUBS):
        hub.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@dataclass
class _Connection:
    """One connection to a server, held open by ``task`` until ``stop`` is set."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    client: Any = None
    tools: dict[str, McpTool] = field(default_factory=dict)
    alive: bool = False


class _Session:
    """One server: its settings (``${VAR}`` expanded when it first starts) and its connection,
    which lives on the hub's loop."""

    def __init__(
        self,
        name: str,
        config: McpServerConfig,
        env: Mapping[str, str],
        base_dir: str | os.PathLike[str] | None,
    ) -> None:
        self.name = name
        self.config = config
        self._env = env
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._secrets: list[str] = []
        self._current: _Connection | None = None
        self._opening: asyncio.Future[_Connection] | None = None
        self._stderr = _StderrTail()

    # -- settings --------------------------------------------------------------------------

    def _expand(self, text: str, loc: Loc) -> str:
        try:
            value = expand_variables(text, self._env)
        except UnsetVariable as exc:
            where = ".".join(str(part) for part in ("config.tools.mcp_servers", self.name, *loc))
            raise McpSetupError(
                f"MCP server {self.name!r}: environment variable {exc.name} is not set ({where})",
                self.name,
                loc,
            ) from None
        for variable in variables_of([text]):
            secret = self._env[variable]
            if len(secret) >= MIN_SECRET_LENGTH and secret not in self._secrets:
                self._secrets.append(secret)
        self._secrets.sort(key=len, reverse=True)
        return value

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _client(self, stack: contextlib.AsyncExitStack) -> Any:
        """The SDK client of a new connection (not entered yet), and its transport's parts on
        ``stack``."""
        from mcp import Client, StdioServerParameters
        from mcp.types import Implementation

        from .._version import __version__

        config = self.config
        transport: Any
        if isinstance(config, McpStdioServer):
            from mcp.client.stdio import stdio_client

            cwd = config.cwd
            if cwd is not None and self._base_dir is not None and not Path(cwd).is_absolute():
                cwd = str(self._base_dir / cwd)
            parameters = StdioServerParameters(
                command=config.command,
                args=[self._expand(arg, ("args", i)) for i, arg in enumerate(config.args)],
                env={k: self._expand(v, ("env", k)) for k, v in config.env.items()},
                cwd=cwd,
            )
            transport = stdio_client(parameters, errlog=stack.enter_context(self._stderr.open()))
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            assert isinstance(config, McpHttpServer)
            url = self._expand(config.url, ("url",))
            headers = {k: self._expand(v, ("headers", k)) for k, v in config.headers.items()}
            timeout = httpx2.Timeout(config.connect_timeout, read=max(config.timeout, 300.0))
            http = httpx2.AsyncClient(headers=headers, timeout=timeout)
            transport = streamable_http_client(url, http_client=http)
            stack.push_async_callback(http.aclose)
        return Client(
            transport,
            read_timeout_seconds=config.timeout,
            client_info=Implementation(name="configurable-agents", version=__version__),
            cache=None,
        )

    # -- the connection --------------------------------------------------------------------

    async def connection(self) -> _Connection:
        """The open connection, made now if there is none (or it went away).

        Raises:
            McpSetupError: the server cannot be started or reached, or does not answer within
                its `connect_timeout`.
        """
        current = self._current
        if current is not None and current.alive:
            return current
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())
        opening = self._opening
        try:
            self._current = await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None
        return self._current

    async def _connect(self) -> _Connection:
        connection = _Connection()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connection.task = asyncio.create_task(self._hold(connection, ready))
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            await self._end(connection)
            raise self._setup_error(
                f"did not answer within its connect_timeout of {self.config.connect_timeout:g} s"
            ) from None
        except McpSetupError:
            raise
        except BaseException:
            await self._end(connection)
            raise
        return connection

    async def _hold(self, connection: _Connection, ready: asyncio.Future[None]) -> None:
        """Open the connection, list the tools, and keep it open until told to stop (one task,
        as the SDK's task groups require)."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(self._client(stack))
                connection.client = client
                connection.tools = await _list_tools(self.name, client)
                connection.alive = True
                ready.set_result(None)
                await connection.stop.wait()
        except McpSetupError as exc:
            if not ready.done():
                ready.set_exception(exc)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(self._setup_error(self._start_problem(exc)))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            connection.alive = False

    async def _end(self, connection: _Connection) -> None:
        """Close ``connection``: its task leaves the SDK's client (stopping a stdio server)."""
        connection.alive = False
        connection.stop.set()
        task = connection.task
        if task is None or task.done():
            return
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT)
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, CLOSE_TIMEOUT)

    def forget(self) -> None:
        """Drop the connection's state (its loop is gone or not this process's)."""
        self._current = None
        self._opening = None

    async def close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        self._opening = None
        current, self._current = self._current, None
        if current is not None:
            await self._end(current)

    def _start_problem(self, exc: BaseException) -> str:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        verb = "could not start" if isinstance(self.config, McpStdioServer) else "was not reached"
        if isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            return f"{verb}: it closed the connection before it answered"
        return f"{verb}: {_describe(exc)}"

    def _setup_error(self, problem: str) -> McpSetupError:
        return McpSetupError(
            self.mask(f"MCP server {self.name!r} {problem}{self._tail()}"), self.name
        )

    def _tail(self) -> str:
        tail = self._stderr.last_line()
        return f"; its stderr ends: {tail}" if tail else ""

    # -- calls -----------------------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool``; its text, or a :class:`ToolError` (masked)."""
        spec = f"mcp:{self.name}/{tool}"
        timeout = self.config.timeout
        try:
            connection = await self.connection()
        except McpSetupError as exc:
            raise ToolError(f"{spec}: {exc}") from None
        try:
            async with asyncio.timeout(timeout + _CALL_MARGIN):
                result = await connection.client.call_tool(
                    tool, arguments, read_timeout_seconds=timeout
                )
        except Exception as exc:
            raise self._call_error(spec, connection, exc) from None
        text = self.mask(_text(result))
        if result.is_error:
            raise ToolError(f"{spec}: {_one_line(text) or 'the tool reported an error'}")
        return text

    def _call_error(self, spec: str, connection: _Connection, exc: Exception) -> ToolError:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        timed_out = isinstance(exc, TimeoutError) or (
            isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT
        )
        if timed_out:
            problem = f"no answer within {self.config.timeout:g} s (the server's timeout)"
        elif isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED:
            problem = f"MCP server {self.name!r} closed the connection{self._tail()}"
        elif isinstance(exc, MCPError):
            problem = f"MCP error {exc.code}: {exc.message}"
        else:
            problem = _describe(exc)
        closed = isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED
        if closed or not (timed_out or isinstance(exc, MCPError)):
            connection.alive = False  # the server is started again at the next call
            connection.stop.set()
        return ToolError(self.mask(f"{spec}: {_one_line(problem)}"))


async def _list_tools(server: str, client: Any) -> dict[str, McpTool]:
    """Every tool the server lists (all pages)."""
    tools: dict[str, McpTool] = {}
    cursor: str | None = None
    for _ in range(100):
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            description = tool.description or tool.title or f"Calls mcp:{server}/{tool.name}."
            tools[tool.name] = McpTool(server, tool.name, description, dict(tool.input_schema))
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _text(result: Any) -> str:
    """A tool result as text: its text blocks, a note for each other block; its structured
    content when it has no content."""
    parts: list[str] = []
    for block in result.content or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}]")
        else:
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}]".replace(" ]", "]"))
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, default=str)
    return "\n".join(parts)


def _describe(exc: BaseException) -> str:
    """One line for ``exc``, an exception group's first leaf standing for it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"no such program: {exc.filename or exc}"
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return _one_line(text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _StderrTail:
    """A stdio server's stderr, of which only the end is kept (on POSIX; elsewhere it goes to
    this process's stderr)."""

    def __init__(self) -> None:
        self._tail = b""
        self._fd: int | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[TextIO]:
        """A file for the server's stderr, read on the running loop while the block lasts."""
        if sys.platform == "win32":
            yield sys.stderr
            return
        self._tail = b""
        read, write = os.pipe()
        os.set_blocking(read, False)
        self._fd = read
        loop = asyncio.get_running_loop()
        loop.add_reader(read, self._drain)
        writer = os.fdopen(write, "w")
        try:
            yield writer
        finally:
            writer.close()
            loop.remove_reader(read)
            self._drain()
            self._fd = None
            os.close(read)

    def _drain(self) -> None:
        """Read what the pipe holds now, keeping the end."""
        while self._fd is not None:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # nothing more now (BlockingIOError) or closed
                return
            if not chunk:
                return
            self._tail = (self._tail + chunk)[-STDERR_TAIL_BYTES:]

    def last_line(self) -> str:
        """The last line the server wrote to stderr (up to 300 characters), if any."""
        self._drain()
        lines = [line.strip() for line in self._tail.decode(errors="replace").splitlines()]
        return next((line for line in reversed(lines) if line), "")[:300]


# -- LangChain tools -----------------------------------------------------------------------


def model_tool_name(name: str) -> str:
    """A name a model can call: letters, digits, ``_`` and ``-``, at most 64 characters."""
    return _NAME.sub("_", name)[:_NAME_LENGTH] or "tool"


def make_mcp_tool(spec: str, config: Mapping[str, Any], servers: McpServers) -> BaseTool:
    """The LangChain tool that calls ``mcp:SERVER/TOOL``, named after the tool (see
    :func:`model_tool_name`), with the server's input schema. Keys of ``config`` are fixed
    arguments: hidden from the model, sent with every call.

    Raises:
        ToolError: the name is malformed, the server cannot be used, it lists no such tool, or
            ``config`` names an argument the tool does not take.
    """
    from langchain_core.tools import StructuredTool

    parsed = parse_mcp_tool(spec)
    if parsed is None:
        raise ToolError(f"MCP tool {spec!r} must be written mcp:SERVER/TOOL")
    server, name = parsed
    tool = servers.tool(server, name)
    schema = _without(tool.input_schema, config, spec)
    fixed = dict(config)

    async def call(**arguments: Any) -> str:
        return await servers.call(server, name, {**arguments, **fixed})

    def call_sync(**arguments: Any) -> str:
        return servers.call_sync(server, name, {**arguments, **fixed})

    return StructuredTool(
        name=model_tool_name(name),
        description=tool.description,
        args_schema=schema,
        func=call_sync,
        coroutine=call,
        metadata={
            "mcp_server": server,
            "span_attributes": {"mcp.server": server, "mcp.tool": name},
        },
    )


def _without(schema: dict[str, Any], fixed: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """The input schema without the fixed arguments (which it must have)."""
    schema = {"type": "object", "properties": {}, **schema}
    properties = dict(schema.get("properties") or {})
    open_ended = schema.get("additionalProperties") not in (None, False)
    for key in fixed:
        if key not in properties and not open_ended:
            raise ToolError(
                f"{spec}: config key {key!r} is not an argument of the tool "
                f"(arguments: {', '.join(properties) or 'none'})"
            )
        properties.pop(key, None)
    schema["properties"] = properties
    if "required" in schema:
        schema["required"] = [k for k in schema["required"] if k not in fixed]
    return schema


# -- validate --resolve ----------------------------------------------------------------------


def check_mcp_tools(
    config: WorkflowConfig,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> list[Issue]:
    """Start the servers the nodes name and check that each named tool exists and takes its
    `config` keys: one located issue per problem (a server that cannot be used is reported
    once, where it is declared, or where its unset ``${VAR}`` is)."""
    servers = open_mcp_servers(config, env, base_dir)
    if servers is None:
        return []
    issues: list[Issue] = []
    try:
        for server, listing in servers.listings().items():
            if isinstance(listing, McpSetupError):
                loc = ("config", "tools", "mcp_servers", server, *listing.loc)
                issues.append(Issue(loc, str(listing), code="mcp", at_key=not listing.loc))
        for index, node in enumerate(config.nodes):
            for k, ref in enumerate(node.tool_refs):
                parsed = parse_mcp_tool(ref.name)
                if parsed is None or isinstance(servers.listings().get(parsed[0]), McpSetupError):
                    continue
                issues += _tool_issues(
                    servers, parsed, ref.config, ref.name, ("nodes", index, "tools", k)
                )
    finally:
        servers.close()
    return issues


def _tool_issues(
    servers: McpServers, parsed: tuple[str, str], config: Mapping[str, Any], spec: str, loc: Loc
) -> list[Issue]:
    server, name = parsed
    tools = servers.tools(server)
    if name not in tools:
        message = (
            f"MCP server {server!r} has no tool {name!r}; its tools: "
            f"{', '.join(sorted(tools)) or 'none'}"
        )
        return [Issue(loc, message, suggestion=closest(name, tools), code="mcp")]
    try:
        _without(tools[name].input_schema, config, spec)
    except ToolError as exc:
        return [Issue((*loc, "config"), str(exc), code="mcp")]
    return []
