"""Resolving dotted paths (`state.profile.name`) against the workflow's state fields."""

from __future__ import annotations

from .diagnostics import closest
from .state import StateField, field_spec
from .types import ANY, TypeExpr

__all__ = ["Scope"]


class Scope:
    """The state fields a template or condition can name.

    Args:
        fields: Declared and implicit fields (the dict is shared and may still grow).
        unknown: Fields whose declaration was left out after an error: any path into them is
            accepted, so that one mistake is reported once.
    """

    def __init__(self, fields: dict[str, StateField], unknown: set[str]) -> None:
        self.fields = fields
        self.unknown = unknown

    def resolve(
        self, path: tuple[str, ...], extra: dict[str, TypeExpr]
    ) -> tuple[str | None, str | None]:
        """Check a dotted path; return (problem, suggestion), or (None, None) when it resolves."""
        parts = path
        if parts[0] == "state":
            if len(parts) == 1:
                return "'state' needs a field name, as in {state.topic}", None
            parts = parts[1:]
            names = list(self.fields)
        else:
            if parts[0] in extra:
                return self.walk(parts, extra[parts[0]], None)
            names = [*self.fields, *extra]
        head = parts[0]
        if head in self.unknown and head not in self.fields:
            return None, None
        if head not in self.fields:
            return f"no state field {head!r}", closest(head, names)
        spec = self.fields[head]
        return self.walk(parts, spec.type_expr, spec.schema_)

    def walk(
        self, parts: tuple[str, ...], expr: TypeExpr, schema: dict | None
    ) -> tuple[str | None, str | None]:
        """Follow ``parts[1:]`` into a value of type ``expr``; (problem, suggestion) as above."""
        for depth, name in enumerate(parts[1:], start=1):
            if expr.kind in ("any", "dict"):
                return None, None
            if expr.kind != "object" or not schema:
                return f"{'.'.join(parts[:depth])} is {expr}; it has no field {name!r}", None
            if name not in schema:
                return f"{'.'.join(parts[:depth])} has no field {name!r}", closest(name, schema)
            sub = field_spec(schema[name])
            expr, schema = sub.type_expr, sub.schema_
        return None, None

    def path_type(self, parts: tuple[str, ...]) -> TypeExpr | None:
        """The type at a path (``any`` inside free-form values), or ``None`` for no such field."""
        head = parts[0]
        if head not in self.fields:
            return None
        spec = self.fields[head]
        expr, schema = spec.type_expr, spec.schema_
        for name in parts[1:]:
            if expr.kind != "object" or not schema or name not in schema:
                return ANY
            sub = field_spec(schema[name])
            expr, schema = sub.type_expr, sub.schema_
        return expr
