"""Type expressions of the workflow language: ``str``, ``list[int]``, ``dict[str, object]`` ...

A type string from a workflow file is parsed once into a :class:`TypeExpr`, which knows how to
check a value, print itself and decide whether values of one type may be stored in another. A type
nests at most :data:`~.limits.MAX_NESTING` levels (``list[list[int]]`` is three).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .limits import MAX_NESTING

__all__ = ["SCALAR_TYPES", "TYPE_NAMES", "TypeExpr", "TypeSyntaxError", "parse_type"]

SCALAR_TYPES = ("str", "int", "float", "bool")
"""Types that hold a single scalar value."""

TYPE_NAMES = (*SCALAR_TYPES, "list", "dict", "object")
"""Every type name a workflow may use, bare or parameterised (``list[T]``, ``dict[K, V]``)."""

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[\[\],]))")


class TypeSyntaxError(ValueError):
    """A type string that is not a type of the workflow language."""


@dataclass(frozen=True)
class TypeExpr:
    """A parsed type: a kind (``str``, ``list``, ``object``, ``any`` ...) and its type arguments.

    ``any`` is never written by users; it stands for a value whose type cannot be known, such as
    a member of a free-form ``dict``.
    """

    kind: str
    args: tuple[TypeExpr, ...] = ()

    def __str__(self) -> str:
        if self.kind == "list" and self.args:
            return f"list[{self.args[0]}]"
        if self.kind == "dict" and self.args:
            return f"dict[{self.args[0]}, {self.args[1]}]"
        return self.kind

    @property
    def item(self) -> TypeExpr:
        """The item type of a list (``any`` when the list is untyped)."""
        return self.args[0] if self.kind == "list" and self.args else ANY

    @property
    def value(self) -> TypeExpr:
        """The value type of a dict (``any`` when the dict is untyped)."""
        return self.args[1] if self.kind == "dict" and self.args else ANY

    def contains_object(self) -> bool:
        """Whether ``object`` appears anywhere in this type (so that it needs a ``schema``)."""
        return self.kind == "object" or any(arg.contains_object() for arg in self.args)

    def accepts(self, other: TypeExpr) -> bool:
        """Whether a value of type ``other`` may be stored where this type is declared."""
        if self.kind == "any" or other.kind == "any":
            return True
        if self.kind == "float" and other.kind == "int":
            return True
        if self.kind == "dict" and other.kind == "object" and not self.args:
            return True
        if self.kind != other.kind:
            return False
        if not self.args or not other.args:
            return True
        return all(mine.accepts(theirs) for mine, theirs in zip(self.args, other.args, strict=True))

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not of this type, or ``None`` when it is.

        ``object`` values are only checked to be mappings here; their fields are checked against
        the object's schema by the caller.
        """
        if value is None or self.kind == "any":
            return None
        expected = _PYTHON_TYPES.get(self.kind)
        if expected is not None:
            ok = isinstance(value, expected) and not (
                self.kind in ("int", "float") and isinstance(value, bool)
            )
            return None if ok else f"expected {self}, got {_describe(value)}"
        if self.kind == "list":
            if not isinstance(value, list):
                return f"expected {self}, got {_describe(value)}"
            for index, member in enumerate(value):
                problem = self.item.check(member)
                if problem:
                    return f"item {index}: {problem}"
            return None
        if not isinstance(value, dict):
            return f"expected {self}, got {_describe(value)}"
        if self.kind == "dict" and self.args:
            for key, member in value.items():
                problem = self.args[0].check(key) or self.args[1].check(member)
                if problem:
                    return f"key {key!r}: {problem}"
        return None


ANY = TypeExpr("any")

_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
}


def _describe(value: Any) -> str:
    names = {str: "str", bool: "bool", int: "int", float: "float", list: "list", dict: "dict"}
    return f"{names.get(type(value), type(value).__name__)} {value!r}"[:80]


def parse_type(text: str) -> TypeExpr:
    """Parse a type string such as ``"list[dict[str, int]]"``.

    Raises:
        TypeSyntaxError: the string is not a type; the message says what was expected.
    """
    if _nesting(text) >= MAX_NESTING:
        raise TypeSyntaxError(f"type {_shown(text)} nests deeper than {MAX_NESTING} levels")
    tokens = [(m.group("name") or m.group("punct")) for m in _TOKEN.finditer(text)]
    if "".join(tokens) != re.sub(r"\s+", "", text) or not tokens:
        raise TypeSyntaxError(f"{_shown(text)} is not a type; use one of {', '.join(TYPE_NAMES)}")
    expr, rest = _parse(tokens, text)
    if rest:
        raise TypeSyntaxError(f"unexpected {rest[0]!r} in type {_shown(text)}")
    return expr


def _parse(tokens: list[str], text: str) -> tuple[TypeExpr, list[str]]:
    name, rest = tokens[0], tokens[1:]
    if name in "[],":
        raise TypeSyntaxError(f"expected a type name in {_shown(text)}, found {_shown(name)}")
    if name not in TYPE_NAMES:
        raise TypeSyntaxError(f"unknown type {_shown(name)}")
    if not rest or rest[0] != "[":
        return TypeExpr(name), rest
    if name not in ("list", "dict"):
        raise TypeSyntaxError(f"type {_shown(name)} takes no parameters")
    args: list[TypeExpr] = []
    rest = rest[1:]
    while True:
        if not rest:
            raise TypeSyntaxError(f"missing ']' in type {_shown(text)}")
        arg, rest = _parse(rest, text)
        args.append(arg)
        if rest and rest[0] == ",":
            rest = rest[1:]
            continue
        if rest and rest[0] == "]":
            rest = rest[1:]
            break
        raise TypeSyntaxError(f"missing ']' in type {_shown(text)}")
    expected = 1 if name == "list" else 2
    if len(args) != expected:
        form = "list[T]" if name == "list" else "dict[K, V]"
        raise TypeSyntaxError(f"{name} takes {expected} type parameter(s): {form}")
    if name == "dict" and args[0].kind not in ("str", "int"):
        raise TypeSyntaxError(f"dict keys must be str or int, not {args[0]}")
    return TypeExpr(name, tuple(args)), rest


def _nesting(text: str) -> int:
    """The deepest run of open ``[`` in ``text``."""
    depth = deepest = 0
    for char in text:
        if char == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "]":
            depth -= 1
    return deepest


def _shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message, cut short when long."""
    return repr(text) if len(text) <= limit else repr(text[:limit] + "...")
