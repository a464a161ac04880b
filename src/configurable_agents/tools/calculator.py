"""Safe arithmetic for the `calculator` tool: a small `ast` walker, never `eval`."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from .errors import ToolError

__all__ = ["MAX_EXPRESSION_LENGTH", "MAX_RESULT_BITS", "evaluate", "format_number"]

MAX_EXPRESSION_LENGTH = 1000
"""Longest expression accepted, in characters."""

MAX_RESULT_BITS = 4096
"""Largest integer any step may produce, in bits (about 1,200 decimal digits)."""

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression.

    Numbers, ``+ - * / // % **``, unary ``+``/``-`` and parentheses are allowed; names, calls,
    attributes and everything else are refused. Integer results are capped at
    :data:`MAX_RESULT_BITS` bits, checked before each multiplication or power is computed, and
    no step may give an infinite float or NaN: the answer is an error the model can read instead.

    Args:
        expression: For example ``"(2 + 3) * 4 ** 0.5"``.

    Returns:
        The value, an ``int`` or a ``float``.

    Raises:
        ToolError: The expression is not allowed arithmetic, or cannot be computed.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolError(f"calculator: expression longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        return _eval(tree.body)
    except SyntaxError as exc:
        raise ToolError(f"calculator: not an arithmetic expression: {exc.msg}") from None
    except ZeroDivisionError:
        raise ToolError("calculator: division by zero") from None
    except (OverflowError, RecursionError, MemoryError, ValueError) as exc:
        raise ToolError(f"calculator: cannot compute: {exc or type(exc).__name__}") from None


def format_number(value: Number) -> str:
    """Render a result: integers exactly, whole floats without the ``.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError(f"calculator: only numbers are allowed, not {value!r}")
        _check(value)
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        _check_size(node.op, left, right)
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ToolError("calculator: the result is not a real number")
        _check(result)
        return result
    raise ToolError(
        f"calculator: {_describe(node)} is not allowed; use numbers and + - * / // % **"
    )


def _check_size(op: ast.operator, left: Number, right: Number) -> None:
    """Refuse a multiplication or power whose integer result would exceed the cap."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    bits: float
    if isinstance(op, ast.Mult):
        bits = left.bit_length() + right.bit_length()
    elif isinstance(op, ast.Pow) and right > 0 and abs(left) > 1:
        bits = right * math.log2(abs(left))
    else:
        return
    if bits > MAX_RESULT_BITS:
        raise ToolError(f"calculator: the result would exceed {MAX_RESULT_BITS} bits")


def _check(value: Number) -> None:
    """Refuse a value too large to answer with: a huge integer, an infinite float, or NaN."""
    if isinstance(value, int) and value.bit_length() > MAX_RESULT_BITS:
        raise ToolError(f"calculator: the result would exceed {MAX_RESULT_BITS} bits")
    if isinstance(value, float) and math.isinf(value):
        raise ToolError(
            "calculator: a value is too large for a floating-point number (beyond about "
            "1.8e308); use whole numbers, which are exact, or smaller units"
        )
    if isinstance(value, float) and math.isnan(value):
        raise ToolError("calculator: the result is not a number (NaN)")


def _describe(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Attribute):
        return "an attribute"
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        return f"the operator {type(node.op).__name__}"
    return f"{type(node).__name__}"
