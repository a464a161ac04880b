"""Prompts kept in MLflow's prompt registry: the reference forms a node's `prompt` may take, and
the conversion between MLflow's template syntax (``{{ticket}}``) and ours (``{ticket}``).

Pure and offline: fetching a referenced version is :mod:`configurable_agents.prompts`' job.
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from ._model import ConfigModel

__all__ = [
    "PROMPT_URI_PREFIX",
    "PromptRef",
    "from_mlflow_template",
    "parse_prompt_uri",
    "to_mlflow_template",
]

PROMPT_URI_PREFIX = "prompts:/"
"""How a prompt given as text refers to the registry: ``prompts:/name/3``, ``prompts:/name@a``."""

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"
_URI = re.compile(rf"^prompts:/(?P<name>{_NAME})(?:/(?P<version>[1-9][0-9]*)|@(?P<alias>{_NAME}))$")
_MLFLOW_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_OUR_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}")


class PromptRef(ConfigModel):
    """A prompt registered in MLflow's prompt registry, by version or by alias."""

    name: str = Field(pattern=rf"^{_NAME}$")
    """Registered prompt name, e.g. `ticket_triage.reply`."""

    version: int | None = Field(default=None, ge=1)
    """Version number (immutable)."""

    alias: str | None = Field(default=None, pattern=rf"^{_NAME}$")
    """Alias such as `production`, resolved when the workflow is prepared."""

    @model_validator(mode="after")
    def _one_of(self) -> PromptRef:
        if (self.version is None) == (self.alias is None):
            raise PydanticCustomError("prompt_ref", "give exactly one of `version` or `alias`")
        return self

    @property
    def uri(self) -> str:
        """``prompts:/name/3`` or ``prompts:/name@alias``."""
        tail = f"/{self.version}" if self.version is not None else f"@{self.alias}"
        return f"{PROMPT_URI_PREFIX}{self.name}{tail}"


def parse_prompt_uri(text: str) -> PromptRef | None:
    """The reference a prompt text makes, or None for inline text.

    Raises:
        ValueError: the text starts with ``prompts:/`` but is not a valid reference.
    """
    if not text.startswith(PROMPT_URI_PREFIX):
        return None
    found = _URI.match(text.strip())
    if found is None:
        raise ValueError(
            f"{text[:80]!r} is not a prompt reference: write prompts:/NAME/VERSION or "
            "prompts:/NAME@ALIAS"
        )
    version = found.group("version")
    return PromptRef(
        name=found.group("name"),
        version=int(version) if version else None,
        alias=found.group("alias"),
    )


def from_mlflow_template(template: str) -> str:
    """MLflow's ``{{name}}`` placeholders as ours (``{name}``), other braces made literal."""
    parts = _MLFLOW_PLACEHOLDER.split(template)
    pieces = []
    for index, part in enumerate(parts):
        if index % 2:
            pieces.append("{" + part + "}")
        else:
            pieces.append(part.replace("{", "{{").replace("}", "}}"))
    return "".join(pieces)


def to_mlflow_template(template: str) -> str:
    """Our ``{name}`` placeholders as MLflow's ``{{name}}``, our literal ``{{``/``}}`` as single
    braces."""

    def convert(match: re.Match[str]) -> str:
        if match.group(0) == "{{":
            return "{"
        if match.group(0) == "}}":
            return "}"
        return "{{" + match.group(1) + "}}"

    return _OUR_PLACEHOLDER.sub(convert, template)
