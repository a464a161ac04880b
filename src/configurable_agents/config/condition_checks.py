"""Checking route conditions against the state schema: syntax, fields, comparisons that can never
be evaluated (ordering anything but two numbers or two strings, `in` on what holds nothing) and
tests that can never be true."""

from __future__ import annotations

from .conditions import Comparison, ConditionError, Literal, Path, parse_condition
from .scope import Scope
from .types import TypeExpr

__all__ = ["condition_problem"]


def condition_problem(text: str, scope: Scope) -> tuple[str, str | None] | None:
    """What is wrong with a condition, as (message tail, suggestion), or ``None``.

    The message tail follows the quoted condition: ``": no state field 'x'"``,
    ``" can never be evaluated: ..."`` or ``" can never be true: ..."``.
    """
    try:
        condition = parse_condition(text)
    except ConditionError as exc:
        return f": {exc}", None
    for path in condition.paths():
        problem, suggestion = scope.resolve(path.parts, {})
        if problem:
            return f": {problem}", suggestion
    for comparison in condition.comparisons():
        problem = _unevaluable(comparison, scope)
        if problem:
            return f" can never be evaluated: {problem}", None
    for comparison in condition.comparisons():
        problem = _never_true(comparison, scope)
        if problem:
            return f" can never be true: {problem}", None
    return None


_UNORDERED = {"null", "bool", "list", "mapping"}


def _kind(operand: object, scope: Scope) -> str | None:
    """What an operand holds: ``null``, ``bool``, ``number``, ``str``, ``list`` or ``mapping``;
    ``None`` when it cannot be known before the run."""
    if isinstance(operand, Literal):
        value = operand.value
        if value is None or isinstance(value, bool):
            return "null" if value is None else "bool"
        if isinstance(value, int | float):
            return "number"
        return "str" if isinstance(value, str) else "list"
    if isinstance(operand, Path):
        expr = scope.path_type(operand.parts)
        kind = expr.kind if expr is not None else "any"
        return {"int": "number", "float": "number", "dict": "mapping", "object": "mapping"}.get(
            kind, None if kind == "any" else kind
        )
    return None


def _describe(operand: object, scope: Scope) -> str:
    if isinstance(operand, Literal):
        value = operand.value
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value]
        return repr(value)
    if isinstance(operand, Path):
        return f"{'.'.join(operand.parts)} ({scope.path_type(operand.parts)})"
    return "a condition"


def _unevaluable(comparison: Comparison, scope: Scope) -> str | None:
    """Why a comparison would fail whenever it is evaluated, or ``None``."""
    operands = [comparison.left, *comparison.rights]
    for op, left, right in zip(comparison.ops, operands, operands[1:], strict=False):
        kinds = (_kind(left, scope), _kind(right, scope))
        if op in ("in", "not in"):
            if kinds[1] in ("number", "bool"):
                return f"cannot look for a value in {_describe(right, scope)}"
            if kinds[1] == "str" and kinds[0] not in (None, "str"):
                return f"only text can be looked for in text, not {_describe(left, scope)}"
            continue
        if op in ("==", "!="):
            continue  # anything can be tested for equality
        for operand, kind in zip((left, right), kinds, strict=True):
            if kind in _UNORDERED:
                return f"{_describe(operand, scope)} cannot be ordered with {op}"
        if set(kinds) == {"str", "number"}:
            return (
                f"{_describe(left, scope)} {op} {_describe(right, scope)} orders text against "
                "a number"
            )
    return None


def _never_true(comparison: Comparison, scope: Scope) -> str | None:
    operands = [comparison.left, *comparison.rights]
    for op, left, right in zip(comparison.ops, operands, operands[1:], strict=False):
        if op in ("in", "not in"):
            if isinstance(left, Path) and isinstance(right, Literal):
                left_type = scope.path_type(left.parts)
                items = right.value if isinstance(right.value, list) else None
                if (
                    left_type
                    and items is not None
                    and items
                    and not any(_literal_fits(left_type, v) for v in items)
                ):
                    return f"{'.'.join(left.parts)} is {left_type}, no listed value is"
            continue
        for path, literal in ((left, right), (right, left)):
            if isinstance(path, Path) and isinstance(literal, Literal):
                path_type = scope.path_type(path.parts)
                if path_type and not _literal_fits(path_type, literal.value):
                    return (
                        f"{'.'.join(path.parts)} is {path_type}, compared with "
                        f"{type(literal.value).__name__} {literal.value!r}"
                    )
    return None


def _literal_fits(expr: TypeExpr, value: object) -> bool:
    if value is None or expr.kind == "any":
        return True
    if expr.kind == "bool":
        return isinstance(value, bool)
    if expr.kind in ("int", "float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expr.kind == "str":
        return isinstance(value, str)
    if expr.kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)
