"""Tools a node's model may call: built-in ones and custom `module:function` ones.

:func:`build_tools` turns a node's tool list into LangChain tools for the engine to bind to a chat
model and run. Every failure, at build time or while a tool runs, is a :class:`ToolError` with a
one-line message; a custom tool's own exceptions are turned into :class:`ToolError` too (arguments
that do not fit a tool's schema raise pydantic's ``ValidationError``, as in LangChain). Tools
always raise: applying `on_error` is the engine's job. Each tool's ``metadata`` holds ``tool``
(the name as written in the workflow, e.g. ``my_tools:lookup``, while the tool's own ``name`` is
``lookup``) and ``on_error``.

Their settings, and which modules custom tools may come from, are part of the workflow language
(``config.tool_settings``, ``config.tool_modules``). Importing this package loads neither LangChain
nor httpx; :func:`build_tools` does.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config.schema import ToolRef
from ..config.tool_settings import BUILTIN_TOOL_CONFIGS, validate_tool_config
from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from ..config.settings import ToolsConfig

__all__ = ["BUILTIN_TOOL_CONFIGS", "ToolError", "build_tools", "validate_tool_config"]


def build_tools(
    refs: Sequence[ToolRef | str],
    settings: ToolsConfig,
    *,
    env: Mapping[str, str] | None = None,
) -> list[BaseTool]:
    """Build the LangChain tools of one node.

    Args:
        refs: The node's tools (``node.tool_refs``); a bare name stands for ``ToolRef(name=...)``.
        settings: The workflow's `config.tools` (its `allowed_modules` are checked again here).
        env: Environment API keys are read from. Default: ``os.environ``.

    Returns:
        One tool per entry, in order.

    Raises:
        ToolError: A tool is unknown, misconfigured, not importable, listed twice, or needs an
            API key that is not set (reported now, before any model call).
    """
    from .builtin import make_builtin_tool
    from .custom import make_custom_tool

    environment = os.environ if env is None else env
    tools: list[BaseTool] = []
    names: dict[str, str] = {}
    for entry in refs:
        ref = ToolRef(name=entry) if isinstance(entry, str) else entry
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
        tools.append(_finish(tool, ref, custom=custom))
    return tools


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
