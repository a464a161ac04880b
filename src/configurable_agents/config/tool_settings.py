"""Settings of the built-in tools: what a tool's `config` mapping may contain.

Light on purpose (pydantic and the config package only), so that validating a workflow checks
tool settings without importing LangChain or an HTTP client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from ..config._model import ConfigModel
from ..config.issues import Issue, Loc
from ..config.structure import structure_issues

__all__ = [
    "BUILTIN_TOOL_CONFIGS",
    "CalculatorConfig",
    "HttpGetConfig",
    "ReadFileConfig",
    "WebSearchConfig",
    "WriteFileConfig",
    "tool_config_issues",
    "validate_tool_config",
]

DEFAULT_MAX_BYTES = 1_000_000


class WebSearchConfig(ConfigModel):
    """Settings of `web_search` (and its alias `serper_search`)."""

    provider: Literal["auto", "serper", "tavily"] = "auto"
    """Search API: `serper` (needs `SERPER_API_KEY`), `tavily` (needs `TAVILY_API_KEY`), or
    `auto`: whichever key is set, Serper first."""

    max_results: int = Field(default=5, ge=1, le=20)
    """Most results returned to the model, 1 to 20."""

    timeout: float = Field(default=10.0, gt=0)
    """Seconds one search request may take."""

    endpoint: str | None = None
    """URL that replaces the provider's search URL, e.g. a proxy or a test server."""


class HttpGetConfig(ConfigModel):
    """Settings of `http_get`."""

    timeout: float = Field(default=10.0, gt=0)
    """Seconds one request may take."""

    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    """Most bytes of the body read; a longer body is cut off, with a note saying so."""

    allowed_hosts: list[str] | None = None
    """Hosts the tool may fetch from, redirects included (exact match, case and a trailing dot
    aside). A host listed here may also be on loopback or a private network, which is otherwise
    refused. Default: any host whose addresses are all public."""


class ReadFileConfig(ConfigModel):
    """Settings of `read_file`."""

    root: str = "."
    """Directory files are confined to, relative to the working directory; paths that lead
    outside it, symbolic links included, are refused."""

    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    """Most bytes read from a file; a longer file is cut off, with a note saying so."""


class WriteFileConfig(ReadFileConfig):
    """Settings of `write_file`."""

    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    """Most bytes one call may write; larger content is refused."""

    overwrite: bool = True
    """Allow replacing an existing file."""


class CalculatorConfig(ConfigModel):
    """`calculator` takes no settings."""


BUILTIN_TOOL_CONFIGS: dict[str, type[ConfigModel]] = {
    "web_search": WebSearchConfig,
    "serper_search": WebSearchConfig,
    "http_get": HttpGetConfig,
    "read_file": ReadFileConfig,
    "write_file": WriteFileConfig,
    "calculator": CalculatorConfig,
}
"""Every built-in tool, with the model of its `config` mapping."""


def tool_config_issues(name: str, config: Any) -> list[Issue]:
    """Problems in a built-in tool's `config`, located relative to that mapping.

    Args:
        name: A key of :data:`BUILTIN_TOOL_CONFIGS`.
        config: The tool's `config` value.

    Returns:
        One :class:`~configurable_agents.config.issues.Issue` per mistake, with a suggestion for
        a misspelt key; empty when the settings are valid.

    Raises:
        KeyError: ``name`` is not a built-in tool.
    """
    model = BUILTIN_TOOL_CONFIGS[name]
    if isinstance(config, dict) and config and not model.model_fields:
        return [Issue((), f"{name} takes no config; remove it", code="unknown_key")]
    try:
        model.model_validate(config)
    except ValidationError as exc:
        return structure_issues(exc, config, model)
    return []


def validate_tool_config(name: str, config: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Check a built-in tool's `config` mapping.

    Args:
        name: A key of :data:`BUILTIN_TOOL_CONFIGS`.
        config: The tool's `config` mapping.

    Returns:
        ``(path inside config, message)`` per problem, e.g.
        ``(("timout",), "unknown key 'timout'; expected one of timeout, max_bytes, ...")``;
        empty when the settings are valid.

    Raises:
        KeyError: ``name`` is not a built-in tool.
    """
    return [(issue.loc, issue.message) for issue in tool_config_issues(name, config)]
