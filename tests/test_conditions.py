"""Route conditions: parsed once, evaluated safely, never with eval."""

from __future__ import annotations

import pytest

from configurable_agents.config.conditions import ConditionError, parse_condition

STATE = {"score": 7, "name": "ada", "tags": ["x", "y"], "review": {"ok": True}, "none": None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("state.score >= 7", True),
        ("{state.score} >= 7", True),
        ("score > 7", False),
        ("state.score >= 7 and state.name == 'ada'", True),
        ("state.score < 3 or not state.review.ok", False),
        ("(state.score == 1 or state.score == 7) and true", True),
        ("'x' in state.tags", True),
        ("state.name not in ['bob', 'eve']", True),
        ("state.none == null", True),
        ("state.missing == null", True),
        ("1 < state.score <= 7", True),
        ("state.score == -7", False),
        ("state.review.ok == True", True),
        ("'d' in state.name", True),
    ],
)
def test_evaluates(text: str, expected: bool) -> None:
    assert parse_condition(text).evaluate(STATE) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('x')", "function calls"),
        ("state.tags[0] == 'x'", "indexing"),
        ("state.score + 1 > 2", "arithmetic"),
        ("state.score >>= 1", "syntax"),
        ("state", "needs a field"),
        ("", "empty"),
        ("lambda: 1", "lambdas"),
        ("state.score is None", "not allowed"),
        ("[x for x in state.tags]", "comprehensions"),
    ],
)
def test_rejects_what_is_not_in_the_language(text: str, message: str) -> None:
    with pytest.raises(ConditionError, match=message):
        parse_condition(text)


def test_reports_paths_read() -> None:
    condition = parse_condition("state.a.b > 1 and c == 'x'")
    assert [p.parts for p in condition.paths()] == [("a", "b"), ("c",)]


def test_incomparable_values_raise_a_clear_error() -> None:
    with pytest.raises(ConditionError, match="cannot compare None < 3"):
        parse_condition("state.none < 3").evaluate(STATE)
