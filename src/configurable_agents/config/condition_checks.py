"""Checking route conditions against the state schema: syntax, fields, never-true tests."""

from __future__ import annotations

from .conditions import Comparison, ConditionError, Literal, Path, parse_condition
from .scope import Scope
from .types import TypeExpr

__all__ = ["condition_problem"]


def condition_problem(text: str, scope: Scope) -> tuple[str, str | None] | None:
    """What is wrong with a condition, as (message tail, suggestion), or ``None``.

    The message tail follows the quoted condition: ``": no state field 'x'"`` or
    ``" can never be true: ..."``.
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
        problem = _never_true(comparison, scope)
        if problem:
            return f" can never be true: {problem}", None
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
