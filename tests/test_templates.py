"""Templates: placeholders, dotted paths, literal braces, JSON rendering, and nothing executable."""

from __future__ import annotations

import pytest

from configurable_agents.config.templates import (
    Placeholder,
    TemplateError,
    parse_template,
    render_template,
)


def test_parses_fields_paths_and_literal_braces() -> None:
    parts = parse_template("Hi {name}, {state.profile.bio} {{literal}} }}")
    assert parts == [
        "Hi ",
        Placeholder(("name",), 3),
        ", ",
        Placeholder(("state", "profile", "bio"), 11),
        " {literal} }",
    ]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{a[0]}", "invalid placeholder"),
        ("{a.__class__()}", "invalid placeholder"),
        ("{a!r}", "invalid placeholder"),
        ("{}", "invalid placeholder"),
        ("open {brace", "never closed"),
        ("a } b", "single '}'"),
        ("{1abc}", "invalid placeholder"),
    ],
)
def test_rejects_anything_but_dotted_paths(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_template(template)


def test_renders_state_paths_and_json_for_collections() -> None:
    values = {
        "topic": "bees",
        "tags": ["a", "b"],
        "profile": {"bio": "x", "age": 3, "nested": {"ok": True}},
        "n": 2.5,
        "flag": False,
        "missing": None,
    }
    text = render_template(
        "{topic}|{state.topic}|{tags}|{profile.nested}|{state.profile.age}|{n}|{flag}|{missing}|{{x}}",
        values,
    )
    assert text == 'bees|bees|["a", "b"]|{"ok": true}|3|2.5|false||{x}'


def test_a_name_with_no_value_renders_as_empty_text() -> None:
    assert render_template("[{nope}]", {}) == "[]"


def test_unicode_is_kept_in_json() -> None:
    assert render_template("{x}", {"x": ["café"]}) == '["café"]'
