"""Tools a node's model may call: built-in ones and custom `module:function` ones.

:func:`build_tools` turns a node's tool list into LangChain tools for the engine to bind to a chat
model and run. Every failure, at build time or while a tool runs, is a :class:`ToolError` with a
one-line message; a custom tool's own exceptions are turned into :class:`ToolError` too (arguments
that do not fit a tool's schema raise pydantic's ``ValidationError``, as in LangChain). Tools
always raise: applying `on_error` is the engine's job. Each tool's ``metadata`` holds ``tool``
(the name as written in the workflow, e.g. ``my_tools:lookup``, while the tool's own ``name`` is
``lookup``) and ``on_error``.

Tools of MCP servers, ``mcp:SERVER/TOOL``, come from the servers a :class:`~.mcp.McpServers`
holds (see :mod:`.mcp`); the model calls each by its name on the server, or by
``SERVER_TOOL`` when another tool of the node has that name already.

Their settings, and which modules custom tools may come from, are part of the workflow language
(``config.tool_settings``, ``config.tool_modules``, ``config.mcp_servers``). Importing this
package loads neither LangChain nor httpx nor the MCP SDK; :func:`build_tools` does.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config.mcp_servers import is_mcp_tool, parse_mcp_tool
from ..config.schema import ToolRef
from ..config.tool_settings import BUILTIN_TOOL_CONFIGS, validate_tool_config
from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from ..config.settings import ToolsConfig
    from .mcp import McpServers

__all__ = ["BUILTIN_TOOL_CONFIGS", "ToolError", "build_tools", "validate_tool_config"]


def build_tools(
    refs: Sequence[ToolRef | str],
    settings: ToolsConfig,
    *,
    env: Mapping[str, str] | None = None,
    mcp: McpServers | None = None,
) -> list[BaseTool]:
    """Build the LangChain tools of one node.

    Args:
        refs: The node's tools (``node.tool_refs``); a bare name stands for ``ToolRef(name=...)``.
        settings: The workflow's `config.tools` (its `allowed_modules` are checked again here).
        env: Environment API keys are read from. Default: ``os.environ``.
        mcp: The workflow's MCP servers (``tools.mcp.open_mcp_servers``), for `mcp:` tools;
            they are started now if they are not yet.

    Returns:
        One tool per entry, in order.

    Raises:
        ToolError: A tool is unknown, misconfigured, not importable, listed twice, or needs an
            API key that is not set; or an MCP server cannot be used or lists no such tool
            (reported now, before any model call).
    """
    from .builtin import make_builtin_tool
    from .custom import make_custom_tool

    environment = os.environ if env is None else env
    entries = [ToolRef(name=entry) if isinstance(entry, str) else entry for entry in refs]
    built: dict[int, BaseTool] = {}
    names: dict[str, str] = {}
    for index, ref in enumerate(entries):  # MCP tools are named after the others
        if is_mcp_tool(ref.name):
            continue
        custom = ":" in ref.name
        if custom:
            tool = make_custom_tool(ref.name, ref.config, settings.allowed_modules)
        else:
            tool = make_builtin_tool(ref.name, ref.config, environment)
        if tool.name in names:
            raise ToolError(
                f"tools {names[tool.name]!r} and {ref.name!r} are both called {tool.name!r}; "
                "a node cannot list two tools of the same name"
            )
        names[tool.name] = ref.name
        built[index] = _finish(tool, ref, custom=custom)
    for index, ref in enumerate(entries):
        if is_mcp_tool(ref.name):
            built[index] = _mcp_tool(ref, mcp, names)
    return [built[index] for index in range(len(entries))]


def _mcp_tool(ref: ToolRef, mcp: McpServers | None, names: dict[str, str]) -> BaseTool:
    """The tool ``mcp:SERVER/TOOL``, under a name no other tool of the node has (noted in
    ``names``)."""
    from .mcp import make_mcp_tool, model_tool_name

    if ref.name in names.values():
        raise ToolError(f"tool {ref.name!r} is listed twice")
    if mcp is None:
        raise ToolError(
            f"MCP tool {ref.name!r}: no MCP servers were opened for the workflow (prepare it "
            "with prepare_workflow)"
        )
    tool = make_mcp_tool(ref.name, ref.config, mcp)
    server = (parse_mcp_tool(ref.name) or ("", ""))[0]
    name, number = tool.name, 1
    while name in names or name == "final_answer":
        number += 1
        base = model_tool_name(f"{server}_{tool.name}")
        name = base if number == 2 else model_tool_name(f"{base[:60]}_{number}")
    names[name] = ref.name
    tool.name = name
    tool.metadata = {**(tool.metadata or {}), "tool": ref.name, "on_error": ref.on_error}
    return tool


def _finish(tool: BaseTool, ref: ToolRef, *, custom: bool) -> BaseTool:
    """Record where the tool came from and make its failures :class:`ToolError` (on a copy)."""
    tool = tool.model_copy()
    tool.metadata = {**(tool.metadata or {}), "tool": ref.name, "on_error": ref.on_error}
    if not custom:
        return tool  # the built-in tools raise ToolError themselves

    def failure(exc: Exception) -> ToolError:
        if isinstance(exc, ToolError):
            return exc
        message = f"{ref.name} failed: {type(exc).__name__}: {exc}"
        return ToolError(" ".join(message.split()))

    def guard(call: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(call)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except ToolError:
                raise
            except Exception as exc:
                raise failure(exc) from exc

        @functools.wraps(call)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await call(*args, **kwargs)
            except ToolError:
                raise
            except Exception as exc:
                raise failure(exc) from exc

        return run_async if inspect.iscoroutinefunction(call) else run

    for attribute in ("func", "coroutine"):
        call = getattr(tool, attribute, None)
        if call is not None:
            setattr(tool, attribute, guard(call))
    return tool
