"""State fields: the typed variables a workflow reads and writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from ._model import ConfigModel, by_shape
from .diagnostics import closest
from .types import TYPE_NAMES, TypeExpr, TypeSyntaxError, parse_type

__all__ = [
    "StateField",
    "StateSchema",
    "TypeName",
    "check_schema_present",
    "check_value",
    "field_spec",
    "parse_type_field",
    "schema_mismatch",
]


def parse_type_field(value: str) -> TypeExpr:
    """Parse a ``type`` key, raising a pydantic error with a suggestion for a misspelt name."""
    try:
        return parse_type(value)
    except TypeSyntaxError as exc:
        head = value.split("[", 1)[0].strip()
        suggestion = closest(head, TYPE_NAMES) if head not in TYPE_NAMES else None
        raise PydanticCustomError(
            "unknown_type", str(exc), {"suggestion": suggestion} if suggestion else None
        ) from None


def _type_name(value: str) -> str:
    parse_type_field(value)
    return value


TypeName = Annotated[str, AfterValidator(_type_name)]
"""A type string of the workflow language, checked when the file is loaded."""


def check_schema_present(type_text: str | None, schema: dict[str, Any] | None) -> Any:
    """``schema`` is required by `object` types and allowed on nothing else."""
    if type_text is None:
        return schema
    has_object = parse_type(type_text).contains_object()
    if has_object and not schema:
        raise PydanticCustomError(
            "missing_schema",
            "type {type} needs a `schema` listing its fields (use `dict` for free-form data)",
            {"type": type_text},
        )
    if schema and not has_object:
        raise PydanticCustomError(
            "unexpected_schema",
            "`schema` is only allowed on `object` types, not {type}",
            {"type": type_text},
        )
    return schema


def _bare_type(value: str) -> str:
    parse_type_field(value)
    if parse_type(value).contains_object():
        raise PydanticCustomError(
            "missing_schema",
            "type {type} needs a `schema`: write the field as a mapping with `type` and `schema`",
            {"type": value},
        )
    return value


class StateField(ConfigModel):
    """A typed state field, or a field of an ``object`` schema.

    In a ``schema`` mapping, an entry may be written as a bare type string (``age: int``).
    """

    type: TypeName
    """Type of the value: `str`, `int`, `float`, `bool`, `list`, `dict`, `list[T]`,
    `dict[K, V]` or `object` (which needs `schema`)."""

    required: bool = False
    """Whether a value must be supplied as a workflow input. A required field has no default."""

    description: str | None = None
    """What the field holds; shown to the model for structured outputs."""

    schema_: dict[str, SchemaEntry] | None = Field(
        default=None, alias="schema", validate_default=True
    )
    """Fields of an `object` type (also the items of `list[object]`), each a type string or a
    full field, nested to any depth."""

    default: Any = None
    """Value the field holds before anything writes it. Must be of the field's type."""

    scope: Literal["run", "session"] = "run"
    """`session`: the value is carried from one run of a session to the next (a conversation's
    memory), stored with the checkpoints; only for top-level state fields."""

    _type: TypeExpr = PrivateAttr()

    @field_validator("default")
    @classmethod
    def _check_default(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("required"):
            raise PydanticCustomError(
                "required_with_default",
                "a required field cannot have a default; remove `default` or `required: true`",
            )
        if "type" in info.data and "schema_" in info.data:
            problem = _check(parse_type(info.data["type"]), info.data["schema_"], value)
            if problem:
                raise PydanticCustomError(
                    "bad_default",
                    "default does not match the type: {problem}",
                    {"problem": problem},
                )
        return value

    @field_validator("schema_")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        return check_schema_present(info.data.get("type"), value)

    def model_post_init(self, context: Any, /) -> None:
        self._type = parse_type(self.type)

    @property
    def type_expr(self) -> TypeExpr:
        """The parsed ``type``."""
        return self._type


if TYPE_CHECKING:  # what the union below holds, for type checkers
    SchemaEntry = str | StateField
else:
    SchemaEntry = by_shape(
        "expected a type string or a field mapping",
        text=Annotated[str, AfterValidator(_bare_type)],
        mapping=StateField,
    )


def field_spec(entry: str | StateField) -> StateField:
    """A schema entry as a full field (a bare type string becomes ``{type: ...}``)."""
    return StateField(type=entry) if isinstance(entry, str) else entry


def check_value(spec: StateField, value: Any) -> str | None:
    """Why ``value`` does not fit the field (type and, for objects, schema), or ``None``."""
    return _check(spec.type_expr, spec.schema_, value)


def _check(expr: TypeExpr, schema: dict[str, Any] | None, value: Any) -> str | None:
    problem = expr.check(value)
    if problem or value is None:
        return problem
    if expr.kind == "object" and schema:
        unknown = sorted(set(value) - set(schema))
        if unknown:
            return f"unknown key {unknown[0]!r}"
        for name, entry in schema.items():
            sub = field_spec(entry)
            if name not in value:
                continue
            problem = _check(sub.type_expr, sub.schema_, value[name])
            if problem:
                return f"{name}: {problem}"
        return None
    if expr.kind == "list":
        for index, item in enumerate(value):
            problem = _check(expr.item, schema, item)
            if problem:
                return f"item {index}: {problem}"
    if expr.kind == "dict" and expr.args:
        for key, item in value.items():
            problem = _check(expr.value, schema, item)
            if problem:
                return f"key {key!r}: {problem}"
    return None


def schema_mismatch(target: StateField, written: StateField) -> str | None:
    """Why values of ``written`` cannot be stored in ``target`` (types, and object fields), or
    ``None`` when they can."""
    if not target.type_expr.accepts(written.type_expr):
        return f"is {written.type}, not {target.type}"
    if not (target.schema_ and written.schema_):
        return None
    for name, entry in written.schema_.items():
        if name not in target.schema_:
            return f"has field {name!r}, which the declared object lacks"
        problem = schema_mismatch(field_spec(target.schema_[name]), field_spec(entry))
        if problem:
            return f"field {name!r} {problem}"
    missing = sorted(set(target.schema_) - set(written.schema_))
    return f"lacks field {missing[0]!r} of the declared object" if missing else None


class StateSchema(ConfigModel):
    """The workflow's state: every field its nodes read or write."""

    fields: dict[str, StateField] = {}
    """Field name -> field. Node outputs missing here are declared implicitly with the type their
    `output_schema` gives."""


StateField.model_rebuild()
