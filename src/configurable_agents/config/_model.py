"""Shared base for every user-facing config model, and the shorthand-union helper."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

__all__ = ["ConfigModel", "by_shape"]


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors, types are not coerced, and `.inf` and
    `.nan` are not numbers a setting can take.

    Attribute docstrings become field descriptions, which feed the JSON Schema and
    ``docs/CONFIG_REFERENCE.md``.
    """

    model_config = ConfigDict(
        allow_inf_nan=False,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=True,
        validate_assignment=False,
    )


def _shape(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict | BaseModel):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return None


def by_shape(message: str, **branches: Any) -> Any:
    """A union chosen by the shape of the value: ``text``, ``mapping`` or ``list``.

    Only the branch matching the value's shape is tried, so one mistake gives one error, and a value
    of no listed shape gets ``message``.
    """
    choices = tuple(Annotated[kind, Tag(shape)] for shape, kind in branches.items())
    return Annotated[
        Union[choices],  # noqa: UP007 - a dynamic union needs the subscript form
        Discriminator(_shape, custom_error_type="wrong_shape", custom_error_message=message),
    ]
