"""The `evaluation:` section of a workflow file: what loads, and one located error per mistake.

Structural mistakes (a misspelt scorer `type`, a missing key, a bad regex ...) come from the
models in ``config.evaluation``; cross-references (outputs, tools, function modules, `pass_if`,
online scorers) from ``config.evaluation_checks``. Either way a mistake gives exactly one error
at the key that is wrong, with a did-you-mean where a likely intended name exists.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, note, settings
from hypothesis import strategies as st

from configurable_agents.config import Diagnostic, validate_workflow
from configurable_agents.config.conditions import ConditionError, parse_condition
from configurable_agents.config.evaluation import (
    DETERMINISTIC_TYPES,
    JUDGE_TYPES,
    SCORER_TYPES,
    EqualsScorer,
    GuidelinesScorer,
    ToolSequenceScorer,
)

BASE_TEXT = """\
schema_version: "1.0"
flow: {name: reviewer, version: "1.0.0"}
config:
  llm: {provider: openai, model: gpt-4o-mini}
  tools: {allowed_modules: [my_scorers]}
state:
  fields:
    topic: {type: str, required: true}
nodes:
  - id: draft
    prompt: "Write about {topic}"
    outputs: [article]
    tools: [calculator, "my_scorers:lookup"]
  - id: review
    prompt: "Review this: {article}"
    outputs: [review, tags]
    output_schema:
      type: object
      fields:
        - {name: review, type: object, schema: {score: int, verdict: str}}
        - {name: tags, type: "list[str]"}
edges:
  - {from: START, to: draft}
  - {from: draft, to: review}
  - {from: review, to: END}
"""
BASE: dict[str, Any] = yaml.safe_load(BASE_TEXT)

TOKENS = {"name": "short", "type": "max_tokens", "tokens": 500}


def _check(evaluation: Any, data: dict[str, Any] | None = None) -> tuple[Any, list[Diagnostic]]:
    workflow = copy.deepcopy(data if data is not None else BASE)
    workflow["evaluation"] = evaluation
    return validate_workflow(workflow)


def _errors(evaluation: Any, data: dict[str, Any] | None = None) -> list[Diagnostic]:
    workflow, diagnostics = _check(evaluation, data)
    errors = [d for d in diagnostics if d.severity == "error"]
    assert (workflow is None) == bool(errors)
    return errors


def _one_error(evaluation: Any, data: dict[str, Any] | None = None) -> Diagnostic:
    errors = _errors(evaluation, data)
    assert len(errors) == 1, "\n".join(e.format() for e in errors)
    return errors[0]


def _scorer(**fields: Any) -> dict[str, Any]:
    return {"scorers": [fields]}


# --- what loads ------------------------------------------------------------------------------

EVERY_TYPE: list[dict[str, Any]] = [
    {"name": "exact", "type": "equals", "output": "review.verdict", "expected": "verdict"},
    {"name": "fixed", "type": "equals", "output": "review.score", "value": 3, "ignore_case": True},
    {"name": "null_value", "type": "equals", "output": "article", "value": None},
    {"name": "mentions", "type": "contains", "output": "article", "value": "bees"},
    {"name": "tagged", "type": "contains", "output": "tags", "expected": "tag"},
    {"name": "shaped", "type": "regex", "output": "article", "pattern": r"^\w+"},
    {"name": "valid", "type": "json_schema", "output": "review", "schema": {"type": "object"}},
    {"name": "scored", "type": "in_range", "output": "review.score", "min": 1, "max": 10},
    {"name": "at_least", "type": "in_range", "output": "review.score", "min": 1},
    {"name": "cheap", "type": "max_cost", "usd": 0.01},
    {"name": "free", "type": "max_cost", "usd": 0},
    {"name": "fast", "type": "max_latency", "seconds": 2.5},
    {"name": "short", "type": "max_tokens", "tokens": 1000},
    {"name": "adds", "type": "tool_called", "tool": "calculator", "min_calls": 0, "max_calls": 2},
    {"name": "looks_up", "type": "tool_called", "tool": "lookup"},
    {"name": "order", "type": "tool_sequence", "tools": ["lookup", "calculator"], "exact": True},
    {"name": "polite", "type": "guidelines", "guidelines": ["be polite", "no jargon"]},
    {
        "name": "on_topic",
        "type": "guidelines",
        "guidelines": "stays on topic",
        "output": "article",
        "judge": {"model": "gpt-4o"},
    },
    {"name": "correct", "type": "correctness", "expected": "answer", "output": "article"},
    {"name": "custom", "type": "function", "function": "my_scorers:check"},
    {"name": "collected", "type": "equals", "output": "tags", "value": ["a"]},
]


def test_every_scorer_type_is_covered_and_loads() -> None:
    assert {s["type"] for s in EVERY_TYPE} == set(SCORER_TYPES)
    assert set(DETERMINISTIC_TYPES) | set(JUDGE_TYPES) | {"function"} == set(SCORER_TYPES)
    evaluation = {
        "dataset": "cases.jsonl",
        "judge": {"provider": "openai", "model": "gpt-4o-mini"},
        "scorers": EVERY_TYPE,
        "pass_if": "exact >= 0.8 and cheap == 1 and correct >= baseline.correct - 0.05",
        "online": {"sample": 0.1, "scorers": ["cheap", "polite"], "max_cost_usd_per_day": 2},
    }
    workflow, diagnostics = _check(evaluation)
    assert workflow is not None, "\n".join(d.format() for d in diagnostics)
    assert not diagnostics
    loaded = workflow.config.evaluation
    assert loaded is not None
    assert [s.name for s in loaded.scorers] == [s["name"] for s in EVERY_TYPE]
    assert [s.type for s in loaded.scorers] == [s["type"] for s in EVERY_TYPE]
    exact, fixed, null_value = loaded.scorers[:3]
    assert isinstance(exact, EqualsScorer) and exact.expected == "verdict"
    assert isinstance(fixed, EqualsScorer) and fixed.value == 3 and fixed.ignore_case
    assert isinstance(null_value, EqualsScorer) and null_value.value is None
    assert loaded.scorers[6].schema_ == {"type": "object"}  # type: ignore[union-attr]
    order = loaded.scorers[15]
    assert isinstance(order, ToolSequenceScorer) and order.exact
    polite = loaded.scorers[16]
    assert isinstance(polite, GuidelinesScorer) and polite.output is None
    assert loaded.online is not None and loaded.online.sample == 0.1
    assert loaded.pass_if is not None and "baseline.correct" in loaded.pass_if


def test_a_workflow_without_the_section_has_none() -> None:
    workflow, diagnostics = validate_workflow(copy.deepcopy(BASE))
    assert workflow is not None and not diagnostics
    assert workflow.config.evaluation is None


def test_the_section_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        BASE_TEXT
        + "evaluation:\n"
        + "  scorers:\n"
        + "    - {name: short, type: max_tokens, tokens: 500}\n"
        + "    - {name: valid, type: regex, output: article, pattern: '\\d+'}\n"
        + "  pass_if: short * 2 - valid >= 1\n"
    )
    workflow, diagnostics = validate_workflow(path)
    assert workflow is not None and not diagnostics
    assert workflow.config.evaluation is not None
    assert workflow.config.evaluation.scorers[1].pattern == r"\d+"  # type: ignore[union-attr]


# --- structural mistakes: one located error each -----------------------------------------------


def test_unknown_scorer_type_suggests_the_closest() -> None:
    error = _one_error(_scorer(name="a", type="equls", output="article", value="x"))
    assert error.path == "evaluation.scorers[0].type"
    assert "'equls'" in error.message and "expected one of equals, contains" in error.message
    assert error.suggestion == "equals"
    assert error.code == "unknown_value"


def test_scorer_type_far_from_any_has_no_suggestion() -> None:
    error = _one_error(_scorer(name="a", type="zzzzzz", output="article", value="x"))
    assert error.path == "evaluation.scorers[0].type"
    assert error.suggestion is None


def test_scorer_type_that_is_not_text() -> None:
    error = _one_error(_scorer(name="a", type=3, output="article", value="x"))
    assert error.path == "evaluation.scorers[0].type"
    assert "'3'" in error.message


def test_missing_type() -> None:
    error = _one_error(_scorer(name="a", output="article", value="x"))
    assert error.path == "evaluation.scorers[0]"
    assert "missing required key" in error.message and "type" in error.message
    assert error.code == "missing_key"


def test_unknown_key_in_a_scorer_suggests_the_closest() -> None:
    error = _one_error(_scorer(name="a", type="equals", output="article", value=1, ignore_cse=1))
    assert error.path == "evaluation.scorers[0].ignore_cse"
    assert "unknown key 'ignore_cse'" in error.message
    assert "ignore_case" in error.message  # the keys this scorer type takes
    assert error.suggestion == "ignore_case"


def test_unknown_key_of_another_scorer_type_is_not_offered() -> None:
    # `pattern` belongs to regex: an equals scorer lists its own keys only
    error = _one_error(_scorer(name="a", type="equals", output="article", value=1, pattern="x"))
    assert error.path == "evaluation.scorers[0].pattern"
    assert "pattern" not in error.message.split("expected one of")[1]


def test_missing_key_of_a_scorer() -> None:
    error = _one_error(_scorer(name="a", type="regex", output="article"))
    assert error.path == "evaluation.scorers[0].pattern"
    assert error.message == "missing required key 'pattern'"


def test_invalid_regex() -> None:
    error = _one_error(_scorer(name="a", type="regex", output="article", pattern="(unclosed"))
    assert error.path == "evaluation.scorers[0].pattern"
    assert error.message.startswith("invalid regular expression: missing )")


@pytest.mark.parametrize(
    ("bounds", "message"),
    [({}, "give `min`, `max` or both"), ({"min": 5, "max": 1}, "`min` is greater than `max`")],
)
def test_in_range_bounds(bounds: dict[str, Any], message: str) -> None:
    error = _one_error(_scorer(name="a", type="in_range", output="review.score", **bounds))
    assert error.path == "evaluation.scorers[0]"
    assert error.message == message


def test_in_range_with_equal_bounds_loads() -> None:
    assert not _errors(_scorer(name="a", type="in_range", output="review.score", min=3, max=3))


@pytest.mark.parametrize(
    "reference",
    [{"expected": "answer", "value": "x"}, {}, {"expected": "answer", "value": None}],
    ids=["both", "neither", "both_value_null"],
)
@pytest.mark.parametrize("kind", ["equals", "contains"])
def test_exactly_one_of_expected_and_value(kind: str, reference: dict[str, Any]) -> None:
    error = _one_error(_scorer(name="a", type=kind, output="article", **reference))
    assert error.path == "evaluation.scorers[0]"
    assert "exactly one of `expected`" in error.message and "`value`" in error.message


@pytest.mark.parametrize("name", ["two words", "1st", "with-dash", "", "and", "lambda"])
def test_scorer_name_must_be_an_identifier(name: str) -> None:
    error = _one_error(_scorer(name=name, type="max_tokens", tokens=5))
    assert error.path == "evaluation.scorers[0].name"
    assert f"must be an identifier (letters, digits and _), not {name!r}" in error.message


def test_scorer_name_error_shows_the_name() -> None:
    error = _one_error(_scorer(name="two words", type="max_tokens", tokens=5))
    assert "{v!r}" not in error.message
    assert "'two words'" in error.message


@pytest.mark.parametrize(
    ("scorer", "path"),
    [
        ({"name": "a b", "type": "guidelines", "guidelines": "x"}, "evaluation.scorers[0].name"),
        (
            {"name": "a", "type": "guidelines", "guidelines": "x", "outptu": "article"},
            "evaluation.scorers[0].outptu",
        ),
        (
            {"name": "a", "type": "guidelines", "guidelines": "x", "judge": {"provider": "opnai"}},
            "evaluation.scorers[0].judge.provider",
        ),
        (
            {"name": "a", "type": "function", "function": "my_scorers:f", "bogus": 1},
            "evaluation.scorers[0].bogus",
        ),
        (
            {"name": "a b", "type": "function", "function": "my_scorers:f"},
            "evaluation.scorers[0].name",
        ),
    ],
    ids=[
        "guidelines_name",
        "guidelines_unknown_key",
        "judge_provider",
        "function_key",
        "function_name",
    ],
)
def test_errors_in_scorers_whose_type_is_also_a_key_are_located_at_the_key(
    scorer: dict[str, Any], path: str
) -> None:
    error = _one_error({"scorers": [scorer]})
    assert error.path == path


@pytest.mark.parametrize(
    ("scorer", "path"),
    [
        ({"name": "a", "type": "max_cost", "usd": -1}, "evaluation.scorers[0].usd"),
        ({"name": "a", "type": "max_latency", "seconds": 0}, "evaluation.scorers[0].seconds"),
        ({"name": "a", "type": "max_tokens", "tokens": 0}, "evaluation.scorers[0].tokens"),
        ({"name": "a", "type": "tool_sequence", "tools": []}, "evaluation.scorers[0].tools"),
        (
            {"name": "a", "type": "tool_called", "tool": "calculator", "min_calls": -1},
            "evaluation.scorers[0].min_calls",
        ),
    ],
)
def test_out_of_range_settings(scorer: dict[str, Any], path: str) -> None:
    assert _one_error({"scorers": [scorer]}).path == path


def test_section_level_mistakes() -> None:
    assert _one_error({"scorers": []}).path == "evaluation.scorers"
    assert _one_error({"pass_if": "x > 1"}).message == "missing required key 'scorers'"
    misspelt = _one_error({"scorers": [TOKENS], "pas_if": "short == 1"})
    assert misspelt.path == "evaluation.pas_if" and misspelt.suggestion == "pass_if"
    sample = _one_error({"scorers": [TOKENS], "online": {"sample": 1.5}})
    assert sample.path == "evaluation.online.sample"
    assert _one_error({"scorers": ["equals"]}).path == "evaluation.scorers[0]"


def test_only_the_broken_scorer_is_reported() -> None:
    # A structural error drops the section; its cross-checks must not add errors about the
    # scorers that were fine (an unknown output, a pass_if name that "does not exist").
    evaluation = {
        "scorers": [
            {"name": "a", "type": "equls", "output": "article", "value": 1},
            {"name": "b", "type": "equals", "output": "artcle", "value": 1},
        ],
        "pass_if": "a >= 1 and b >= 1",
    }
    error = _one_error(evaluation)
    assert error.path == "evaluation.scorers[0].type"


def test_a_broken_scorer_does_not_hide_errors_elsewhere() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"][1]["prompt"] = "Review this: {artcle}"
    errors = _errors(_scorer(name="a", type="equls", output="article", value=1), data)
    assert sorted(e.path for e in errors) == ["evaluation.scorers[0].type", "nodes[1].prompt"]
    (placeholder,) = (e for e in errors if e.path == "nodes[1].prompt")
    assert "artcle" in placeholder.message and placeholder.suggestion == "article"


def test_a_broken_scorer_does_not_hide_a_broken_node() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"][0]["promt"] = data["nodes"][0].pop("prompt")
    errors = _errors(_scorer(name="a", type="regex", output="article", pattern="("), data)
    assert sorted(e.path for e in errors) == ["evaluation.scorers[0].pattern", "nodes[0].promt"]


def test_errors_are_located_in_the_file(tmp_path: Path) -> None:
    text = (
        BASE_TEXT
        + "evaluation:\n"  # line 26
        + "  scorers:\n"
        + "    - name: fine\n"
        + "      type: max_tokens\n"
        + "      tokens: 10\n"
        + "    - name: typo\n"  # line 31
        + "      type: equls\n"
        + "      output: article\n"
        + "      value: x\n"
    )
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    workflow, diagnostics = validate_workflow(path)
    assert workflow is None
    (error,) = diagnostics
    assert error.path == "evaluation.scorers[1].type"
    assert error.line == text.splitlines().index("      type: equls") + 1 == 32
    assert error.file == str(path)
    assert error.suggestion == "equals"


# --- cross-checks ------------------------------------------------------------------------------


def test_duplicate_scorer_names() -> None:
    error = _one_error({"scorers": [TOKENS, {"name": "short", "type": "max_cost", "usd": 1}]})
    assert error.path == "evaluation.scorers[1].name"
    assert error.message == "duplicate scorer name 'short' (also evaluation.scorers[0])"


def test_three_scorers_with_one_name_point_at_the_first() -> None:
    errors = _errors({"scorers": [TOKENS, TOKENS, TOKENS]})
    assert [e.path for e in errors] == ["evaluation.scorers[1].name", "evaluation.scorers[2].name"]
    assert all("also evaluation.scorers[0]" in e.message for e in errors)


@pytest.mark.parametrize(
    ("output", "suggestion"),
    [("artcle", "article"), ("reveiw.score", "review"), ("topic", None), ("zzz", None)],
)
def test_output_not_written_by_any_node(output: str, suggestion: str | None) -> None:
    error = _one_error(_scorer(name="a", type="contains", output=output, value="x"))
    assert error.path == "evaluation.scorers[0].output"
    head = output.split(".")[0]
    assert error.message == f"{head!r} is not an output of the workflow"
    assert error.suggestion == suggestion
    assert error.code == "unknown_output"


@pytest.mark.parametrize("kind", ["equals", "regex", "in_range", "json_schema", "guidelines"])
def test_every_output_scorer_checks_its_output(kind: str) -> None:
    extra = {
        "equals": {"value": 1},
        "regex": {"pattern": "x"},
        "in_range": {"min": 1},
        "json_schema": {"schema": {}},
        "guidelines": {"guidelines": "x"},
    }[kind]
    error = _one_error(_scorer(name="a", type=kind, output="artcle", **extra))
    assert error.path == "evaluation.scorers[0].output" and error.suggestion == "article"


def test_a_fan_out_collect_field_is_an_output() -> None:
    data = copy.deepcopy(BASE)
    data["state"]["fields"]["topics"] = {"type": "list[str]", "default": []}
    data["nodes"][0]["outputs"] = ["article", "topics"]
    data["nodes"].append({"id": "each", "prompt": "About {item}", "outputs": ["note"]})
    data["edges"] = [
        {"from": "START", "to": "draft"},
        {"from": "draft", "parallel": {"items_field": "topics", "target_node": "each",
                                       "collect_field": "notes"}},
        {"from": "each", "to": "review"},
        {"from": "review", "to": "END"},
    ]  # fmt: skip
    workflow, diagnostics = _check(
        _scorer(name="a", type="contains", output="notes", value="x"), data
    )
    assert workflow is not None, "\n".join(d.format() for d in diagnostics)


def test_tool_called_names_a_tool_no_node_has() -> None:
    error = _one_error(_scorer(name="a", type="tool_called", tool="calculatr"))
    assert error.path == "evaluation.scorers[0].tool"
    assert error.message == "no node calls a tool named 'calculatr'"
    assert error.suggestion == "calculator"
    assert error.code == "unknown_tool"


def test_a_custom_tool_is_called_by_its_function_name() -> None:
    assert not _errors(_scorer(name="a", type="tool_called", tool="lookup"))
    error = _one_error(_scorer(name="a", type="tool_called", tool="my_scorers:lookup"))
    assert error.path == "evaluation.scorers[0].tool"
    assert error.message == "no node calls a tool named 'my_scorers:lookup'"


def test_tool_sequence_reports_each_unknown_tool_at_its_index() -> None:
    errors = _errors(
        _scorer(name="a", type="tool_sequence", tools=["lokup", "calculator", "web_search"])
    )
    assert [(e.path, e.suggestion) for e in errors] == [
        ("evaluation.scorers[0].tools[0]", "lookup"),
        ("evaluation.scorers[0].tools[2]", None),
    ]
    assert errors[1].message == "no node calls a tool named 'web_search'"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            "other_module:check",
            "scorer function module 'other_module' is not in config.tools.allowed_modules",
        ),
        ("os:system", "scorer function module 'os' cannot be allow-listed: os runs shell commands"),
        ("subprocess:run", "scorer function module 'subprocess' cannot be allow-listed"),
        ("my_scorers:_private", "'_private' is private"),
        ("my_scorers", "must be written module:function"),
    ],
)
def test_function_scorer_module_must_be_allowed(function: str, message: str) -> None:
    error = _one_error(_scorer(name="a", type="function", function=function))
    assert error.path == "evaluation.scorers[0].function"
    assert message in error.message, error.message
    assert "custom tool" not in error.message


def test_function_scorer_in_a_submodule_of_an_allowed_module() -> None:
    assert not _errors(_scorer(name="a", type="function", function="my_scorers.quality:check"))


@pytest.mark.parametrize(
    ("pass_if", "message"),
    [
        ("short >= ", "pass_if: invalid condition syntax"),
        ("short / 2 >= 0.5", "pass_if: only +, - and * are allowed between numbers"),
        ("len(short) > 1", "pass_if: function calls not allowed"),
        ("", "pass_if: condition is empty"),
    ],
)
def test_pass_if_that_does_not_parse(pass_if: str, message: str) -> None:
    error = _one_error({"scorers": [TOKENS], "pass_if": pass_if})
    assert error.path == "evaluation.pass_if"
    assert error.message.startswith(message), error.message
    assert error.code == "condition"


@pytest.mark.parametrize(
    ("pass_if", "shown", "suggestion", "hint"),
    [
        ("shrt >= 0.5", "shrt", "short", True),
        ("short >= baseline.shrt - 0.05", "baseline.shrt", "short", False),
        ("short >= 1 and zzzzzz == 1", "zzzzzz", None, True),
        ("baseline >= 1", "baseline", None, False),
        ("short.mean >= 1", "short.mean", None, True),
        ("short >= baseline.short.mean", "baseline.short.mean", None, False),
    ],
)
def test_pass_if_reading_an_unknown_scorer(
    pass_if: str, shown: str, suggestion: str | None, hint: bool
) -> None:
    error = _one_error({"scorers": [TOKENS], "pass_if": pass_if})
    assert error.path == "evaluation.pass_if"
    assert error.message.startswith(f"pass_if reads {shown!r}, which is not a scorer name")
    assert ("(or baseline.<scorer>)" in error.message) is hint
    assert error.suggestion == suggestion
    assert error.code == "unknown_scorer"


def test_pass_if_reads_means_and_baseline_means() -> None:
    evaluation = {
        "scorers": [TOKENS, {"name": "cheap", "type": "max_cost", "usd": 1}],
        "pass_if": "short >= baseline.short - 0.05 and (cheap == 1 or short * 2 > 1.5)",
    }
    assert not _errors(evaluation)


def test_route_conditions_still_refuse_arithmetic() -> None:
    data = copy.deepcopy(BASE)
    data["edges"][2] = {
        "from": "review",
        "routes": [
            {"condition": "state.review.score + 1 > 5", "to": "END"},
            {"condition": "default", "to": "draft"},
        ],
    }
    workflow, diagnostics = validate_workflow(data)
    assert workflow is None
    assert any("arithmetic" in d.message for d in diagnostics), [d.format() for d in diagnostics]


def test_pass_if_error_is_located_at_the_name_in_the_file(tmp_path: Path) -> None:
    text = (
        BASE_TEXT
        + "evaluation:\n"
        + "  scorers:\n"
        + "    - {name: short, type: max_tokens, tokens: 5}\n"
        + "  pass_if: short >= 0.5 and shrot >= 0.5\n"
    )
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    _, diagnostics = validate_workflow(path)
    (error,) = diagnostics
    assert error.path == "evaluation.pass_if" and error.suggestion == "short"
    assert error.line == len(text.splitlines())
    assert error.column == text.splitlines()[-1].index("shrot") + 1


def test_online_scorers_must_be_declared() -> None:
    evaluation = {"scorers": [TOKENS], "online": {"sample": 0.5, "scorers": ["short", "shrt"]}}
    error = _one_error(evaluation)
    assert error.path == "evaluation.online.scorers[1]"
    assert error.message == "no scorer named 'shrt'"
    assert error.suggestion == "short"


def test_every_cross_check_reports_at_once() -> None:
    evaluation = {
        "scorers": [
            TOKENS,
            TOKENS,
            {"name": "a", "type": "equals", "output": "artcle", "value": 1},
            {"name": "b", "type": "tool_called", "tool": "calculatr"},
            {"name": "c", "type": "function", "function": "os:system"},
        ],
        "pass_if": "shrt >= 1",
        "online": {"sample": 0.5, "scorers": ["d"]},
    }
    errors = _errors(evaluation)
    assert sorted(e.path for e in errors) == [
        "evaluation.online.scorers[0]",
        "evaluation.pass_if",
        "evaluation.scorers[1].name",
        "evaluation.scorers[2].output",
        "evaluation.scorers[3].tool",
        "evaluation.scorers[4].function",
    ]


def test_a_broken_node_does_not_make_the_scorers_reading_it_fail() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"][0]["promt"] = data["nodes"][0].pop("prompt")
    evaluation = {
        "scorers": [
            {"name": "a", "type": "equals", "output": "article", "value": 1},
            {"name": "b", "type": "tool_called", "tool": "calculator"},
        ]
    }
    error = _one_error(evaluation, data)
    assert error.path == "nodes[0].promt"


@pytest.mark.parametrize("name", ["none", "true", "False", "NULL"])
def test_a_scorer_name_pass_if_cannot_read_is_refused(name: str) -> None:
    evaluation = {
        "scorers": [{"name": name, "type": "max_tokens", "tokens": 5}],
        "pass_if": f"{name} >= 0.5",
    }
    assert _errors(evaluation)


def test_tool_called_min_above_max_is_refused() -> None:
    scorer = {
        "name": "a",
        "type": "tool_called",
        "tool": "calculator",
        "min_calls": 3,
        "max_calls": 1,
    }
    assert _errors({"scorers": [scorer]})


# --- pass_if arithmetic, against Python --------------------------------------------------------

_NUMBERS = st.one_of(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.floats(allow_nan=False, allow_infinity=False),
)
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


@settings(max_examples=200, derandomize=True, deadline=None)
@given(a=_NUMBERS, b=_NUMBERS, c=_NUMBERS, op=st.sampled_from(sorted(_OPS)))
def test_pass_if_arithmetic_agrees_with_python(a: float, b: float, c: float, op: str) -> None:
    text = f"{a} {op} {b} >= {c}"
    note(text)
    expected = _OPS[op](a, b) >= c
    assert parse_condition(text, arithmetic=True).evaluate({}) is expected
    with pytest.raises(ConditionError, match="arithmetic not allowed"):
        parse_condition(text)


@pytest.mark.parametrize(
    ("text", "state", "expected"),
    [
        (
            "correct >= baseline.correct - 0.05",
            {"correct": 0.8, "baseline": {"correct": 0.82}},
            True,
        ),
        (
            "correct >= baseline.correct - 0.05",
            {"correct": 0.8, "baseline": {"correct": 0.9}},
            False,
        ),
        ("a - b * 2 >= 0", {"a": 1, "b": 0.5}, True),  # * before -
        ("(a - b) * 2 >= 1", {"a": 1, "b": 0.5}, True),
        ("a * -1 == -2", {"a": 2}, True),
    ],
)
def test_arithmetic_on_state(text: str, state: dict[str, Any], expected: bool) -> None:
    assert parse_condition(text, arithmetic=True).evaluate(state) is expected


@pytest.mark.parametrize(
    ("text", "state", "message"),
    [
        ("a - 0.05 >= 0", {}, "cannot compute None - 0.05"),
        ("a + 1 >= 0", {"a": "x"}, "cannot compute 'x' + 1"),
        ("a * 2 >= 0", {"a": True}, "cannot compute True * 2"),
    ],
)
def test_arithmetic_needs_two_numbers(text: str, state: dict[str, Any], message: str) -> None:
    condition = parse_condition(text, arithmetic=True)
    with pytest.raises(ConditionError, match=re.escape(message)):
        condition.evaluate(state)


def test_a_sign_only_before_a_number() -> None:
    with pytest.raises(ConditionError, match="sign before a number"):
        parse_condition("-a >= 0", arithmetic=True)
    assert parse_condition("0 - a >= -1", arithmetic=True).evaluate({"a": 1})


@pytest.mark.parametrize("text", ["a / 2 >= 0", "a // 2 >= 0", "a % 2 >= 0", "a ** 2 >= 0"])
def test_only_three_operators(text: str) -> None:
    with pytest.raises(ConditionError, match=r"only \+, - and \* are allowed"):
        parse_condition(text, arithmetic=True)
