"""The built-in tools, as LangChain tools built from their validated settings.

=============== ====================================================================
Tool            What the model can do with it
=============== ====================================================================
web_search      ``web_search(query)``: search with Serper or Tavily (API key needed)
serper_search   alias of `web_search`, same settings
http_get        ``http_get(url)``: fetch an http(s) URL, body cut at ``max_bytes``
read_file       ``read_file(path)``: read a text file inside ``root``
write_file      ``write_file(path, content)``: write a text file inside ``root``
calculator      ``calculator(expression)``: arithmetic, evaluated safely
=============== ====================================================================

The implementations live in :mod:`.web`, :mod:`.files` and :mod:`.calculator`; settings are
described in ``config.tool_settings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..config.tool_settings import (
    BUILTIN_TOOL_CONFIGS,
    HttpGetConfig,
    ReadFileConfig,
    WebSearchConfig,
    WriteFileConfig,
    tool_config_issues,
)
from .calculator import evaluate, format_number
from .errors import ToolError

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["make_builtin_tool", "make_calculator"]


def make_builtin_tool(name: str, config: Mapping[str, Any], env: Mapping[str, str]) -> BaseTool:
    """Build one built-in tool.

    Args:
        name: A key of :data:`~configurable_agents.config.tool_settings.BUILTIN_TOOL_CONFIGS`.
        config: The tool's `config` mapping, validated here again.
        env: Environment the API keys of `web_search` are read from.

    Raises:
        ToolError: Unknown tool, invalid settings, or a missing API key.
    """
    from .files import make_read_file, make_write_file
    from .web import make_http_get, make_web_search

    model = BUILTIN_TOOL_CONFIGS.get(name)
    if model is None:
        raise ToolError(
            f"unknown tool {name!r}; built-in tools are {', '.join(BUILTIN_TOOL_CONFIGS)}, "
            "custom tools are written module:function"
        )
    data = dict(config) if isinstance(config, Mapping) else config
    try:
        settings = model.model_validate(data)
    except ValidationError:
        issue = tool_config_issues(name, data)[0]
        where = ".".join(map(str, issue.loc))
        raise ToolError(f"{name}: config{'.' + where if where else ''}: {issue.message}") from None
    if isinstance(settings, WebSearchConfig):
        return make_web_search(settings, env, name)
    if isinstance(settings, HttpGetConfig):
        return make_http_get(settings)
    if isinstance(settings, WriteFileConfig):
        return make_write_file(settings)
    if isinstance(settings, ReadFileConfig):
        return make_read_file(settings)
    return make_calculator()


def make_calculator() -> BaseTool:
    """Build the `calculator` tool."""
    from langchain_core.tools import StructuredTool

    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: Numbers with + - * / // % ** and parentheses, e.g. "(2 + 3) * 4 ** 0.5".
        """
        return format_number(evaluate(expression))

    return StructuredTool.from_function(
        calculator,
        description="Evaluate an arithmetic expression exactly: numbers, + - * / // % ** and "
        "parentheses; no variables or functions.",
        parse_docstring=True,
    )
