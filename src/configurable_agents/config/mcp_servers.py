"""MCP servers declared in `config.tools.mcp_servers`, and the `mcp:SERVER/TOOL` tools nodes name.

A server is a program started on stdio (``{command, args, env, cwd}``) or a streamable HTTP
endpoint (``{url, headers}``), each with a per-call ``timeout`` and a ``connect_timeout``. Its
``args``, ``env`` values, ``url`` and ``headers`` values may hold ``${VAR}``: the environment
variable's value, read when the workflow is prepared (never written anywhere: see
``tools.mcp``). Offline validation checks the placeholders' form and that every tool names a
declared server; ``validate --resolve`` connects and checks that the tools exist.

Light on purpose (pydantic and the config package only), so that ``validate`` imports no MCP SDK.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import AfterValidator, Discriminator, Field, Tag
from pydantic_core import PydanticCustomError

from ._model import ConfigModel
from .diagnostics import closest
from .issues import Issue

if TYPE_CHECKING:
    from .schema import WorkflowConfig

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MCP_PREFIX",
    "McpHttpServer",
    "McpServerConfig",
    "McpStdioServer",
    "UnsetVariable",
    "expand_variables",
    "is_mcp_tool",
    "mcp_server_names_issues",
    "mcp_tool_issue",
    "parse_mcp_tool",
    "referenced_mcp_tools",
    "variables_of",
]

MCP_PREFIX = "mcp:"
"""How a node's tool names an MCP server's tool: ``mcp:SERVER/TOOL``."""

DEFAULT_TIMEOUT = 60.0
"""Seconds one tool call may take, unless the server's `timeout` says otherwise."""

DEFAULT_CONNECT_TIMEOUT = 30.0
"""Seconds starting (or reaching) a server and listing its tools may take, unless its
`connect_timeout` says otherwise."""

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[^\s/][^\s]*$")


def _placeholders(text: str) -> str:
    """Refuse a ``${`` that does not start a ``${VAR}`` placeholder."""
    rest = _VARIABLE.sub("", text)
    if "${" in rest:
        start = rest.index("${")
        end = rest.find("}", start)
        bad = rest[start : end + 1 if end >= 0 else len(rest)]
        raise PydanticCustomError(
            "placeholder",
            "{bad} is not a ${VAR} placeholder (VAR: letters, digits and _, not first a digit)",
            {"bad": repr(bad)},
        )
    return text


Expanded = Annotated[str, AfterValidator(_placeholders)]
"""A string in which ``${VAR}`` is replaced by the environment variable's value."""


class McpStdioServer(ConfigModel):
    """An MCP server started as a program that speaks MCP on its stdin and stdout."""

    command: str
    """The program, found on `PATH` unless it is a path (e.g. `python`, `npx`,
    `/opt/tools/tickets-mcp`)."""

    args: list[Expanded] = []
    """Its command-line arguments; `${VAR}` is replaced by the environment variable's value."""

    env: dict[str, Expanded] = {}
    """Environment variables it gets, besides `HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM` and
    `USER` (it inherits no others). Values may be `${VAR}`, read from the environment when the
    workflow is prepared, e.g. `{TICKETS_TOKEN: "${TICKETS_TOKEN}"}`."""

    cwd: str | None = None
    """Directory it runs in, relative to the workflow file. Default: the working directory."""

    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    """Seconds one tool call may take; a call that takes longer is a tool error (the node's
    `on_error` applies)."""

    connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)
    """Seconds starting the server and listing its tools may take."""


class McpHttpServer(ConfigModel):
    """An MCP server reached over streamable HTTP."""

    url: Expanded
    """Its endpoint, e.g. `http://127.0.0.1:8765/mcp`; `${VAR}` is replaced by the environment
    variable's value (keep secrets in `headers`)."""

    headers: dict[str, Expanded] = {}
    """HTTP headers sent with every request; values may be `${VAR}`, read from the environment
    when the workflow is prepared, e.g. `{Authorization: "Bearer ${SEARCH_TOKEN}"}`."""

    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    """Seconds one tool call may take; a call that takes longer is a tool error (the node's
    `on_error` applies)."""

    connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)
    """Seconds reaching the server and listing its tools may take."""


def _transport(value: Any) -> str | None:
    if isinstance(value, McpStdioServer | McpHttpServer):
        return "stdio" if isinstance(value, McpStdioServer) else "http"
    if isinstance(value, dict):
        if "command" in value:
            return "stdio"
        if "url" in value:
            return "http"
    return None


if TYPE_CHECKING:
    McpServerConfig = McpStdioServer | McpHttpServer
else:
    McpServerConfig = Annotated[
        Union[  # noqa: UP007 - Tag needs the subscript form
            Annotated[McpStdioServer, Tag("stdio")], Annotated[McpHttpServer, Tag("http")]
        ],
        Discriminator(
            _transport,
            custom_error_type="mcp_server",
            custom_error_message="expected {command, args, env, cwd} (a program on stdio) or "
            "{url, headers} (streamable HTTP)",
        ),
    ]


def is_mcp_tool(name: str) -> bool:
    """Whether a node's tool ``name`` names an MCP server's tool (``mcp:...``)."""
    return name.startswith(MCP_PREFIX)


def parse_mcp_tool(name: str) -> tuple[str, str] | None:
    """``(SERVER, TOOL)`` of ``mcp:SERVER/TOOL``, or ``None`` if it is not written so."""
    server, slash, tool = name.removeprefix(MCP_PREFIX).partition("/")
    if not (is_mcp_tool(name) and slash and _SERVER_NAME.match(server) and _TOOL_NAME.match(tool)):
        return None
    return server, tool


def mcp_tool_issue(name: str, servers: Mapping[str, Any]) -> Issue | None:
    """What is wrong with the tool ``mcp:SERVER/TOOL`` offline (its form, an undeclared
    server), located at the tool itself; whether TOOL exists is checked by ``--resolve``."""
    parsed = parse_mcp_tool(name)
    if parsed is None:
        return Issue((), f"MCP tool {name!r} must be written mcp:SERVER/TOOL", code="tool")
    server = parsed[0]
    if server not in servers:
        declared = ", ".join(servers) or "none"
        return Issue(
            (),
            f"MCP tool {name!r}: no server {server!r} in config.tools.mcp_servers "
            f"(declared: {declared})",
            suggestion=closest(server, servers),
            code="tool",
        )
    return None


def mcp_server_names_issues(servers: Mapping[str, Any]) -> list[Issue]:
    """One issue per server name that `mcp:SERVER/TOOL` could not name."""
    return [
        Issue(
            ("config", "tools", "mcp_servers", name),
            f"MCP server name {name!r} may hold only letters, digits, _ and -",
            at_key=True,
            code="tool",
        )
        for name in servers
        if not _SERVER_NAME.match(name)
    ]


def referenced_mcp_tools(config: WorkflowConfig) -> dict[str, list[str]]:
    """SERVER -> the TOOLs its nodes name, in first-use order (well-formed names only)."""
    found: dict[str, list[str]] = {}
    for node in config.nodes:
        for ref in node.tool_refs:
            parsed = parse_mcp_tool(ref.name)
            if parsed is not None and parsed[1] not in found.setdefault(parsed[0], []):
                found[parsed[0]].append(parsed[1])
    return found


class UnsetVariable(LookupError):
    """A ``${VAR}`` whose variable is not set; ``name`` is the variable."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def variables_of(texts: Iterable[str]) -> list[str]:
    """The variables the ``${VAR}`` placeholders of ``texts`` name, in order, once each."""
    return list(dict.fromkeys(m.group(1) for text in texts for m in _VARIABLE.finditer(text)))


def expand_variables(text: str, env: Mapping[str, str]) -> str:
    """``text`` with each ``${VAR}`` replaced by ``env[VAR]``.

    Raises:
        UnsetVariable: a variable is not in ``env``.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise UnsetVariable(name)
        return env[name]

    return _VARIABLE.sub(value, text)
