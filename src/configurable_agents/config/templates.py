"""Prompt templates: ``{field}``, ``{state.field}``, ``{state.obj.sub}``; ``{{`` ``}}`` are braces.

A template is data, not code: a placeholder is a dotted path of identifiers and nothing else, so no
attribute access, indexing or call can run. A path has at most :data:`~.limits.MAX_NESTING` parts,
and a template at most :data:`~.limits.MAX_PLACEHOLDERS` placeholders.
Lists and objects render as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .limits import MAX_NESTING, MAX_PLACEHOLDERS

__all__ = [
    "Placeholder",
    "TemplateError",
    "parse_template",
    "render_template",
    "resolve",
    "to_text",
]

_BRACE = re.compile(r"[{}]")
_PATH = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*")


class TemplateError(ValueError):
    """A malformed template; ``offset`` is where in the template the problem starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Placeholder:
    """A ``{dotted.path}`` in a template, with its character offset."""

    path: tuple[str, ...]
    offset: int

    @property
    def text(self) -> str:
        """The path as written, without braces."""
        return ".".join(self.path)


def parse_template(template: str) -> list[str | Placeholder]:
    """Split a template into literal text and placeholders.

    Raises:
        TemplateError: an unclosed ``{``, a lone ``}``, or a placeholder that is not a dotted path.
    """
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    i, n, count = 0, len(template), 0
    while i < n:
        brace = _BRACE.search(template, i)
        if brace is None:
            literal.append(template[i:])
            break
        literal.append(template[i : brace.start()])
        i = brace.start()
        char = template[i]
        if template.startswith(char * 2, i):
            literal.append(char)
            i += 2
            continue
        if char == "}":
            raise TemplateError("single '}' in template; write '}}' for a literal brace", i)
        end = template.find("}", i)
        if end < 0:
            raise TemplateError("'{' is never closed; write '{{' for a literal brace", i)
        inner = template[i + 1 : end]
        match = _PATH.fullmatch(inner)
        if not match:
            shown = inner if len(inner) <= 40 else inner[:37] + "..."
            raise TemplateError(
                f"invalid placeholder {{{shown}}}: only field names and dotted paths such as "
                "{state.topic} are allowed; write '{{' and '}}' for literal braces",
                i,
            )
        if count == MAX_PLACEHOLDERS:
            raise TemplateError(f"a template may have at most {MAX_PLACEHOLDERS} placeholders", i)
        count += 1
        path = tuple(match.group(1).split("."))
        if len(path) > MAX_NESTING + (path[0] == "state"):
            raise TemplateError(
                f"placeholder {{{'.'.join(path[:3])}...}} has more than {MAX_NESTING} parts", i
            )
        _flush(literal, parts)
        parts.append(Placeholder(path, i))
        i = end + 1
    _flush(literal, parts)
    return parts


def _flush(literal: list[str], parts: list[str | Placeholder]) -> None:
    """Move the literal text gathered so far into ``parts``."""
    text = "".join(literal)
    literal.clear()
    if text:
        parts.append(text)


def to_text(value: Any) -> str:
    """Render a value for a prompt: strings as they are, ``None`` as empty, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template from ``values``; ``{state.x}`` and ``{x}`` both look up ``x``.

    A placeholder whose field has no value yet (an optional field without a default that nothing
    has written) renders as empty text, as ``null`` does; validation warns where that can happen.

    Raises:
        TemplateError: the template is malformed.
    """
    out: list[str] = []
    for part in parse_template(template):
        if isinstance(part, str):
            out.append(part)
            continue
        try:
            value = resolve(part.path, values)
        except KeyError:
            value = None
        out.append(to_text(value))
    return "".join(out)


def resolve(path: tuple[str, ...], values: Mapping[str, Any]) -> Any:
    """Follow a dotted path through mappings (and pydantic models)."""
    if path[0] == "state" and len(path) > 1 and "state" not in values:
        path = path[1:]
    value: Any = values[path[0]]
    for name in path[1:]:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get(name)
        else:
            declared = getattr(type(value), "model_fields", {})
            value = getattr(value, name) if name in declared else None
    return value
