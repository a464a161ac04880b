"""Type strings: parsing, value checks and assignability."""

from __future__ import annotations

import pytest

from configurable_agents.config.types import TypeSyntaxError, parse_type


@pytest.mark.parametrize(
    "text",
    [
        "str",
        "int",
        "float",
        "bool",
        "list",
        "dict",
        "object",
        "list[int]",
        "dict[str, int]",
        "list[dict[str, list[float]]]",
        "dict[int, object]",
    ],
)
def test_round_trips(text: str) -> None:
    assert str(parse_type(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sting", "unknown type 'sting'"),
        ("list[int, str]", "list takes 1"),
        ("dict[str]", "dict takes 2"),
        ("list[int", "missing ']'"),
        ("str[int]", "takes no parameters"),
        ("dict[float, int]", "keys must be str or int"),
        ("list[]", "expected a type name"),
        ("", "not a type"),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(TypeSyntaxError, match=message):
        parse_type(text)


def test_item_types_are_real() -> None:
    assert parse_type("list[int]").check([1, 2]) is None
    assert "item 1: expected int" in str(parse_type("list[int]").check([1, "2"]))
    assert "expected int" in str(parse_type("int").check(True))
    assert parse_type("float").check(3) is None
    assert "key 'a'" in str(parse_type("dict[str, int]").check({"a": "x"}))


def test_assignability() -> None:
    assert parse_type("float").accepts(parse_type("int"))
    assert not parse_type("int").accepts(parse_type("float"))
    assert parse_type("list").accepts(parse_type("list[str]"))
    assert not parse_type("list[int]").accepts(parse_type("list[str]"))
    assert parse_type("dict").accepts(parse_type("object"))
