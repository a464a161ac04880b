"""Turning pydantic's validation errors into config-path issues, one per mistake."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .diagnostics import closest
from .issues import Issue, Loc

__all__ = ["structure_issues"]

_LEAF_TYPES = {"missing", "extra_forbidden"}
_SHAPE_TAGS = {"text", "mapping", "list"}  # branch names given by ``by_shape``


def structure_issues(error: ValidationError, data: Any, root: type[BaseModel]) -> list[Issue]:
    """One issue per distinct config path, with pydantic's union branch names removed."""
    issues: dict[Loc, Issue] = {}
    for err in error.errors(include_url=False):
        loc = _data_path(data, err["loc"], err["type"])
        if loc in issues:
            continue
        issues[loc] = _issue(err, loc, root)
    # A misspelt key is one mistake: report the unknown key with its suggestion, not also the
    # required key it was meant to be.
    meant = {(*i.loc[:-1], i.suggestion) for i in issues.values() if i.code == "unknown_key"}
    return [i for loc, i in issues.items() if not (i.code == "missing_key" and loc in meant)]


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> Loc:
    """The parts of a pydantic ``loc`` that exist in the data (plus a missing or unknown key)."""
    path: list[str | int] = []
    current = data
    for position, part in enumerate(loc):
        if position and isinstance(loc[position - 1], int) and _is_tag(current, part):
            continue  # a discriminated union's branch name, even where it is also a key
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
        elif position == len(loc) - 1 and kind in _LEAF_TYPES:
            pass
        else:
            continue
        path.append(part)
    return tuple(path)


def _is_tag(item: Any, part: Any) -> bool:
    """Whether ``part`` is the `type` of a list item, as pydantic names a union branch."""
    return isinstance(item, dict) and isinstance(part, str) and item.get("type") == part


def _issue(err: ErrorDetails, loc: Loc, root: type[BaseModel]) -> Issue:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(root, err["loc"][:-1])
        options = _keys(model) if model else []
        return Issue(
            loc,
            f"unknown key {loc[-1]!r}"
            + (f"; expected one of {', '.join(options)}" if options else ""),
            suggestion=closest(str(loc[-1]), options),
            at_key=True,
            code="unknown_key",
        )
    if kind == "missing":
        return Issue(loc, f"missing required key {loc[-1]!r}", code="missing_key")
    if kind == "union_tag_not_found":
        return Issue(loc, f"missing required key {ctx.get('discriminator')}", code="missing_key")
    if kind == "union_tag_invalid":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        return Issue(
            (*loc, str(ctx.get("discriminator", "")).strip("'")),
            f"unknown {ctx.get('discriminator')} {ctx.get('tag')!r}; expected one of "
            f"{', '.join(expected)}",
            suggestion=closest(str(ctx.get("tag")), expected),
            code="unknown_value",
        )
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        given = err.get("input")
        if not isinstance(given, str) and str(given) in expected:
            return Issue(
                loc, f"must be the string '{given}': put it in quotes", code="unknown_value"
            )
        return Issue(
            loc,
            f"unknown value {given!r}; expected {ctx.get('expected')}",
            suggestion=closest(str(given), expected),
            code="unknown_value",
        )
    message = str(err["msg"])
    message = message.removeprefix("Value error, ")
    if message.startswith("Input should be") and "input" in err:
        message += f", got {_describe(err['input'])}"
    return Issue(
        loc, message[:1].lower() + message[1:], suggestion=ctx.get("suggestion"), code=kind
    )


def _describe(value: Any) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "a mapping",
        type(None): "nothing",
    }
    return names.get(type(value), type(value).__name__)


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (pydantic's own loc)."""
    current: Any = root
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    current = _unwrap(current)
    candidates = [c for c in _union_args(current) if _is_model(c)]
    return candidates[0] if candidates else None


def _tag(model: type[BaseModel]) -> str | None:
    """The `type` a branch of a discriminated union stands for."""
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_args(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [member for arg in typing.get_args(tp) for member in _union_args(arg)]
    return [tp]


def _step(tp: Any, part: Any) -> Any:
    for option in _union_args(tp):
        if _is_model(option) and _tag(option) == part:  # a discriminated union's branch
            return option
        if _is_model(option):
            for name, info in option.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        origin = typing.get_origin(option)
        if origin is list and isinstance(part, int):
            return typing.get_args(option)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(option)[1]
    return tp if part in _SHAPE_TAGS else None
