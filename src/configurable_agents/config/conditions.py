"""Route conditions: a small, safe expression language over state.

Comparisons (``== != < <= > >=``), ``in`` / ``not in``, ``and``, ``or``, ``not``, parentheses,
string / number / bool / null literals, list literals and dotted paths (``state.review.score`` or
``review.score``; ``{state.score}`` means the same). The text is parsed with Python's own ``ast``
parser and only these forms are accepted; nothing is ever passed to ``eval``. A condition nests
at most :data:`~.limits.MAX_NESTING` levels, so that checking and evaluating it never recurses
deeply.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .limits import MAX_NESTING
from .templates import resolve

__all__ = ["Comparison", "Condition", "ConditionError", "Literal", "Path", "parse_condition"]


class ConditionError(ValueError):
    """A condition that cannot be parsed, or cannot be evaluated on the given state."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Path:
    """A dotted path into state, without the optional leading ``state.``."""

    parts: tuple[str, ...]
    offset: int


@dataclass(frozen=True)
class Literal:
    """A constant: str, int, float, bool, None, or a list of those."""

    value: Any


@dataclass(frozen=True)
class Comparison:
    """``left op right [op right ...]``, chained as in Python."""

    left: Any
    ops: tuple[str, ...]
    rights: tuple[Any, ...]


@dataclass(frozen=True)
class _Arithmetic:
    op: str
    left: Any
    right: Any


_ARITHMETIC: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}
_COMPUTE: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@dataclass(frozen=True)
class _Not:
    operand: Any


@dataclass(frozen=True)
class _BoolOp:
    op: str
    operands: tuple[Any, ...]


_BRACED = re.compile(r"\{(\s*[A-Za-z_][A-Za-z0-9_.]*\s*)\}")
_NAMED_CONSTANTS = {"true": True, "false": False, "null": None, "none": None}
_COMPARE_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FORBIDDEN = {
    ast.Call: "function calls",
    ast.Subscript: "indexing",
    ast.BinOp: "arithmetic",
    ast.Lambda: "lambdas",
    ast.IfExp: "if-expressions",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.NamedExpr: "assignments",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
}


@dataclass(frozen=True)
class Condition:
    """A parsed condition, ready to be checked against a schema and evaluated on state."""

    source: str
    tree: Any

    def paths(self) -> Iterator[Path]:
        """Every state path the condition reads."""
        yield from (node for node in _walk(self.tree) if isinstance(node, Path))

    def comparisons(self) -> Iterator[Comparison]:
        """Every comparison in the condition."""
        yield from (node for node in _walk(self.tree) if isinstance(node, Comparison))

    def evaluate(self, state: Mapping[str, Any]) -> bool:
        """Evaluate on ``state``; a missing field reads as ``None``.

        Raises:
            ConditionError: values that cannot be compared (``None < 3``, ``"a" > 1``).
        """
        return bool(_eval(self.tree, state))


def parse_condition(text: str, *, arithmetic: bool = False) -> Condition:
    """Parse a condition expression; with ``arithmetic``, numbers may also be added, subtracted
    and multiplied (`pass_if` gates: ``correct >= baseline.correct - 0.05``).

    Raises:
        ConditionError: a syntax error or a form the language does not allow, with its offset.
    """
    cleaned = _BRACED.sub(lambda m: f" {m.group(1)} ", text)
    if not cleaned.strip():
        raise ConditionError("condition is empty")
    try:
        expression = ast.parse(cleaned.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(
            f"invalid condition syntax: {exc.msg}", (exc.offset or 1) - 1
        ) from None
    except (RecursionError, MemoryError):  # Python's parser gives up on extreme nesting
        raise ConditionError(_TOO_DEEP) from None
    if _depth(expression.body) > MAX_NESTING:
        raise ConditionError(_TOO_DEEP)
    lead = len(cleaned) - len(cleaned.lstrip())
    return Condition(text, _convert(expression.body, lead, arithmetic))


_TOO_DEEP = f"condition is nested deeper than {MAX_NESTING} levels"
_NOT_EXPRESSIONS = (ast.expr_context, ast.boolop, ast.cmpop, ast.unaryop, ast.operator)


def _depth(tree: ast.expr) -> int:
    """How deep ``tree`` nests (a dotted path counts once), without recursing; stops counting
    past the limit."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack and deepest <= MAX_NESTING:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        step = 0 if isinstance(node, ast.Attribute) else 1
        stack.extend(
            (child, depth + step)
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, _NOT_EXPRESSIONS)
        )
    return deepest


def _convert(node: ast.expr, lead: int, arithmetic: bool = False) -> Any:
    offset = lead + getattr(node, "col_offset", 0)
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return _BoolOp(op, tuple(_convert(v, lead, arithmetic) for v in node.values))
    if isinstance(node, ast.BinOp) and arithmetic:
        if type(node.op) not in _ARITHMETIC:
            raise ConditionError("only +, - and * are allowed between numbers", offset)
        left, right = _convert(node.left, lead, True), _convert(node.right, lead, True)
        return _Arithmetic(_ARITHMETIC[type(node.op)], left, right)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return _Not(_convert(node.operand, lead, arithmetic))
        inner = _convert(node.operand, lead, arithmetic)
        if isinstance(node.op, ast.USub | ast.UAdd) and _is_number(inner):
            return Literal(-inner.value if isinstance(node.op, ast.USub) else inner.value)
        raise ConditionError("only 'not' and a sign before a number are allowed here", offset)
    if isinstance(node, ast.Compare):
        ops: list[str] = []
        for compare in node.ops:
            if type(compare) not in _COMPARE_OPS:
                raise ConditionError(f"operator '{type(compare).__name__}' is not allowed", offset)
            ops.append(_COMPARE_OPS[type(compare)])
        rights = tuple(_convert(c, lead, arithmetic) for c in node.comparators)
        return Comparison(_convert(node.left, lead, arithmetic), tuple(ops), rights)
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ConditionError(f"literal {node.value!r} is not allowed", offset)
        return Literal(node.value)
    if isinstance(node, ast.List | ast.Tuple):
        items = [_convert(item, lead) for item in node.elts]
        if not all(isinstance(item, Literal) for item in items):
            raise ConditionError("list literals may only hold constants", offset)
        return Literal([item.value for item in items])
    if isinstance(node, ast.Name | ast.Attribute):
        return _path(node, offset)
    what = next((name for kind, name in _FORBIDDEN.items() if isinstance(node, kind)), None)
    raise ConditionError(f"{what or type(node).__name__} not allowed in a condition", offset)


def _path(node: ast.expr, offset: int) -> Path | Literal:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ConditionError("a path must be made of field names", offset)
    parts.append(node.id)
    parts.reverse()
    if len(parts) - (parts[0] == "state") > MAX_NESTING:
        shown = ".".join(parts[:3])
        raise ConditionError(f"path {shown}... has more than {MAX_NESTING} parts", offset)
    if len(parts) == 1 and parts[0].lower() in _NAMED_CONSTANTS:
        return Literal(_NAMED_CONSTANTS[parts[0].lower()])
    if parts[0] == "state":
        if len(parts) == 1:
            raise ConditionError("'state' needs a field name, as in state.score", offset)
        parts = parts[1:]
    return Path(tuple(parts), offset)


def _is_number(node: Any) -> bool:
    return (
        isinstance(node, Literal)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, _BoolOp):
        for child in node.operands:
            yield from _walk(child)
    elif isinstance(node, _Not):
        yield from _walk(node.operand)
    elif isinstance(node, _Arithmetic):
        yield from _walk(node.left)
        yield from _walk(node.right)
    elif isinstance(node, Comparison):
        yield from _walk(node.left)
        for child in node.rights:
            yield from _walk(child)


def _eval(node: Any, state: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        try:
            return resolve(node.parts, state)
        except KeyError:
            return None
    if isinstance(node, _Not):
        return not _eval(node.operand, state)
    if isinstance(node, _Arithmetic):
        left, right = _eval(node.left, state), _eval(node.right, state)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
            raise ConditionError(f"cannot compute {_shown(left)} {node.op} {_shown(right)}")
        return _COMPUTE[node.op](left, right)
    if isinstance(node, _BoolOp):
        if node.op == "and":
            return all(_eval(child, state) for child in node.operands)
        return any(_eval(child, state) for child in node.operands)
    left = _eval(node.left, state)
    for op, right_node in zip(node.ops, node.rights, strict=True):
        right = _eval(right_node, state)
        if not _compare(op, left, right):
            return False
        left = right
    return True


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op in ("in", "not in"):
        if right is None:
            found = False
        elif isinstance(right, str | list | dict | tuple):
            if isinstance(right, str) and not isinstance(left, str):
                raise ConditionError(f"cannot look for {_shown(left)} in the text {_shown(right)}")
            found = left in right
        else:
            raise ConditionError(f"cannot look for a value in {_shown(right)}")
        return found if op == "in" else not found
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not (numbers or (isinstance(left, str) and isinstance(right, str))):
        # only two numbers or two strings can be ordered (not bools, lists or null)
        raise ConditionError(f"cannot compare {_shown(left)} {op} {_shown(right)}")
    return bool(_ORDERING[op](left, right))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
