"""Scoring one run: every deterministic scorer's pass and fail, function scorers, failed runs and
missing expected values; then the summaries, the baseline comparison and the `pass_if` gate.

Runs are :class:`Observation` objects built by hand: no model is called (judges use the offline
``mock`` provider).
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from configurable_agents.config import Workflow, load_workflow
from configurable_agents.config.evaluation import SCORER_TYPES, Scorer
from configurable_agents.evaluation.baseline import Baseline, compare
from configurable_agents.evaluation.observation import Observation
from configurable_agents.evaluation.results import EvaluationResult, ScorerSummary, summarise
from configurable_agents.evaluation.run import gate
from configurable_agents.evaluation.scores import Score, score_deterministic
from configurable_agents.evaluation.scoring import EvaluationSetupError, Scoring

SCORER: TypeAdapter[Any] = TypeAdapter(Scorer)

BASE: dict[str, Any] = {
    "schema_version": "1.0",
    "flow": {"name": "reviewer"},
    "config": {"llm": {"provider": "openai", "model": "gpt-4o-mini"}},
    "state": {"fields": {"topic": {"type": "str", "required": True}}},
    "nodes": [
        {
            "id": "draft",
            "prompt": "Write about {topic}",
            "outputs": ["article"],
            "tools": ["calculator"],
        },
        {
            "id": "review",
            "prompt": "Review: {article}",
            "outputs": ["review", "tags"],
            "output_schema": {
                "type": "object",
                "fields": [
                    {"name": "review", "type": "object", "schema": {"score": "int", "ok": "bool"}},
                    {"name": "tags", "type": "list[str]"},
                ],
            },
        },
    ],
    "edges": [
        {"from": "START", "to": "draft"},
        {"from": "draft", "to": "review"},
        {"from": "review", "to": "END"},
    ],
}


def _scorer(**fields: Any) -> Any:
    fields.setdefault("name", "s")
    return SCORER.validate_python(fields)


def _obs(outputs: dict[str, Any] | None = None, **fields: Any) -> Observation:
    return Observation(inputs={"topic": "bees"}, outputs=outputs or {}, **fields)


def _score(scorer: dict[str, Any], outputs: dict[str, Any] | None = None, **fields: Any) -> Score:
    return score_deterministic(_scorer(**scorer), _obs(outputs, **fields))


def _passes(scorer: dict[str, Any], outputs: dict[str, Any] | None = None, **fields: Any) -> bool:
    score = _score(scorer, outputs, **fields)
    assert score.value in (0.0, 1.0) and score.rationale and score.error is None
    return score.value == 1.0


def _workflow(evaluation: dict[str, Any], allowed: list[str] | None = None) -> Workflow:
    data = copy.deepcopy(BASE)
    data["config"]["tools"] = {"allowed_modules": allowed or []}
    data["evaluation"] = evaluation
    return load_workflow(data)


def _run(scoring: Scoring, obs: Observation, **kwargs: Any) -> dict[str, Score]:
    return asyncio.run(scoring.score(obs, **kwargs))


# --- equals -----------------------------------------------------------------------------------

EQ = {"type": "equals", "output": "article"}
EQ_COL = {"type": "equals", "output": "review.score", "expected": "answer"}


@pytest.mark.parametrize(
    ("value", "output", "ignore_case", "passes"),
    [
        ("Paris", "Paris", False, True),
        ("Paris", "  Paris\n", False, True),  # text is compared trimmed
        ("Paris", "paris", False, False),
        ("Paris", "PARIS ", True, True),
        ("Paris", "Lyon", True, False),
        (3, "3", False, True),  # the output is text, the value a number
        (3, "three", False, False),
        ({"a": 1}, {"a": 1}, False, True),
        ({"a": 1}, {"a": 2}, False, False),
        ([1, 2], [1, 2], False, True),
        ([1, 2], [2, 1], False, False),
    ],
)
def test_equals_with_a_fixed_value(
    value: Any, output: Any, ignore_case: bool, passes: bool
) -> None:
    scorer = {**EQ, "value": value, "ignore_case": ignore_case}
    assert _passes(scorer, {"article": output}) is passes


@pytest.mark.parametrize(
    ("cell", "output", "passes"),
    [
        ("3", 3, True),  # a CSV cell is text: "3" equals the number 3
        ("3", 3.0, True),
        (" 3 ", 3, True),
        ("3", 4, False),
        ("3.5", 3.5, True),
        ("three", 3, False),
        ("true", True, True),
        ("True", True, True),
        (" TRUE ", True, True),
        ("false", False, True),
        ("false", True, False),
        ("true", False, False),
        ("1", True, False),  # a bool equals only the words true/false
        (3, 3, True),  # a JSONL cell keeps its type
        (3, 4, False),
    ],
)
def test_equals_with_a_dataset_column(cell: Any, output: Any, passes: bool) -> None:
    score = _score(EQ_COL, {"review": {"score": output}}, expectations={"answer": cell})
    assert score.value == (1.0 if passes else 0.0)
    assert "review.score is" in (score.rationale or "")
    assert ("expected" in (score.rationale or "")) is not passes


def test_equals_fails_when_the_output_is_missing_or_null() -> None:
    for outputs in ({}, {"article": None}, {"other": "x"}):
        score = _score({**EQ, "value": "x"}, outputs)
        assert score.value == 0.0
        assert score.rationale == "the run has no output 'article'"
    score = _score(EQ_COL, {"review": {"ok": True}}, expectations={"answer": "3"})
    assert score.value == 0.0 and "no output 'review.score'" in (score.rationale or "")


# --- contains ---------------------------------------------------------------------------------

CONTAINS = {"type": "contains", "output": "article"}


@pytest.mark.parametrize(
    ("output", "value", "ignore_case", "passes"),
    [
        ("Bees are insects.", "insects", False, True),
        ("Bees are insects.", "ants", False, False),
        ("Bees are insects.", "BEES", False, False),
        ("Bees are insects.", "BEES", True, True),
        (["a", "b"], "b", False, True),
        (["a", "b"], "c", False, False),
        (["Alpha"], "alpha", False, False),
        (["Alpha"], "alpha", True, True),
        ([1, 2, 3], "3", False, True),  # a CSV cell in a list of numbers
        ([1, 2, 3], 4, False, False),
        ("call 555 1234", 555, False, True),  # a number in text
    ],
)
def test_contains(output: Any, value: Any, ignore_case: bool, passes: bool) -> None:
    scorer = {**CONTAINS, "value": value, "ignore_case": ignore_case}
    score = _score(scorer, {"article": output})
    assert score.value == (1.0 if passes else 0.0)
    assert ("does not contain" in (score.rationale or "")) is not passes


def test_contains_reads_the_expected_column() -> None:
    scorer = {**CONTAINS, "output": "tags", "expected": "tag"}
    assert _passes(scorer, {"tags": ["x", "y"]}, expectations={"tag": "y"})
    assert not _passes(scorer, {"tags": ["x", "y"]}, expectations={"tag": "z"})


# --- regex, json_schema, in_range -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "output", "passes"),
    [
        (r"\d{3}", "call 555 now", True),  # anywhere in the text
        (r"\d{3}", "call now", False),
        (r"^call", "call now", True),
        (r"^now", "call now", False),
        (r"^\d+$", 12345, True),  # a number as text
        (r'"ok": true', {"ok": True}, True),  # an object as JSON text
    ],
)
def test_regex(pattern: str, output: Any, passes: bool) -> None:
    score = _score({"type": "regex", "output": "article", "pattern": pattern}, {"article": output})
    assert score.value == (1.0 if passes else 0.0)
    assert ("does not match" in (score.rationale or "")) is not passes


SCHEMA = {
    "type": "object",
    "required": ["score"],
    "properties": {"score": {"type": "integer", "minimum": 0}, "ok": {"type": "boolean"}},
}


@pytest.mark.parametrize(
    ("output", "where"),
    [
        ({"score": 3, "ok": True}, None),
        ({"score": 3}, None),
        ({"score": "3"}, "at score"),
        ({"score": -1}, "at score"),
        ({"ok": True}, "at (top)"),
        ([1, 2], "at (top)"),
    ],
)
def test_json_schema(output: Any, where: str | None) -> None:
    scorer = {"type": "json_schema", "output": "review", "schema": SCHEMA}
    score = _score(scorer, {"review": output})
    assert score.value == (1.0 if where is None else 0.0)
    if where is None:
        assert score.rationale == "review validates against the schema"
    else:
        assert (score.rationale or "").startswith(f"review {where}:")


@pytest.mark.parametrize(
    ("bounds", "output", "passes"),
    [
        ({"min": 1, "max": 10}, 5, True),
        ({"min": 1, "max": 10}, 1, True),  # inclusive
        ({"min": 1, "max": 10}, 10, True),
        ({"min": 1, "max": 10}, 10.5, False),
        ({"min": 1, "max": 10}, 0, False),
        ({"min": 0.5}, 1e9, True),
        ({"min": 0.5}, 0.4, False),
        ({"max": 0}, -3, True),
        ({"max": 0}, 0.1, False),
        ({"min": 0, "max": 10}, True, False),  # a bool is not a number
        ({"min": 0, "max": 10}, "5", False),  # nor is text
        ({"min": 0, "max": 10}, float("nan"), False),
    ],
)
def test_in_range(bounds: dict[str, Any], output: Any, passes: bool) -> None:
    scorer = {"type": "in_range", "output": "review.score", **bounds}
    score = _score(scorer, {"review": {"score": output}})
    assert score.value == (1.0 if passes else 0.0)


def test_in_range_says_why_a_value_is_not_a_number() -> None:
    scorer = {"type": "in_range", "output": "article", "min": 0}
    score = _score(scorer, {"article": "five"})
    assert score.rationale == "article is 'five', not a number"


# --- run-level scorers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "unpriced", "passes"),
    [(0.01, False, True), (0.05, False, True), (0.0501, False, False), (0.0, True, False)],
)
def test_max_cost(cost: float, unpriced: bool, passes: bool) -> None:
    score = _score({"type": "max_cost", "usd": 0.05}, cost_usd=cost, unpriced=unpriced)
    assert score.value == (1.0 if passes else 0.0)
    if unpriced:
        assert score.rationale == "a model of the run has no known price"


def test_max_cost_of_zero_passes_a_free_run() -> None:
    assert _passes({"type": "max_cost", "usd": 0}, cost_usd=0.0)
    assert not _passes({"type": "max_cost", "usd": 0}, cost_usd=1e-9)


@pytest.mark.parametrize(("duration", "passes"), [(0.2, True), (2.5, True), (2.51, False)])
def test_max_latency(duration: float, passes: bool) -> None:
    assert _passes({"type": "max_latency", "seconds": 2.5}, duration_s=duration) is passes


@pytest.mark.parametrize(("tokens", "passes"), [(0, True), (100, True), (101, False)])
def test_max_tokens(tokens: int, passes: bool) -> None:
    assert _passes({"type": "max_tokens", "tokens": 100}, tokens=tokens) is passes


@pytest.mark.parametrize(
    ("limits", "calls", "passes"),
    [
        ({}, ["calculator"], True),
        ({}, ["lookup", "calculator", "calculator"], True),
        ({}, [], False),
        ({}, ["lookup"], False),
        ({"min_calls": 2}, ["calculator"], False),
        ({"min_calls": 2}, ["calculator", "calculator"], True),
        ({"max_calls": 1}, ["calculator"], True),
        ({"max_calls": 1}, ["calculator", "calculator"], False),
        ({"min_calls": 0, "max_calls": 0}, [], True),  # never called
        ({"min_calls": 0, "max_calls": 0}, ["lookup"], True),
        ({"min_calls": 0, "max_calls": 0}, ["calculator"], False),
        ({"min_calls": 0}, [], True),
    ],
)
def test_tool_called(limits: dict[str, Any], calls: list[str], passes: bool) -> None:
    scorer = {"type": "tool_called", "tool": "calculator", **limits}
    score = _score(scorer, tool_calls=calls)
    assert score.value == (1.0 if passes else 0.0)
    assert score.rationale == f"calculator called {calls.count('calculator')} time(s)"


@pytest.mark.parametrize(
    ("wanted", "calls", "in_order", "exact"),
    [
        (["lookup", "calculator"], ["lookup", "calculator"], True, True),
        (["lookup", "calculator"], ["lookup", "search", "calculator"], True, False),
        (["lookup", "calculator"], ["search", "lookup", "calculator", "search"], True, False),
        (["lookup", "calculator"], ["calculator", "lookup"], False, False),
        (["lookup", "calculator"], ["lookup"], False, False),
        (["lookup", "calculator"], [], False, False),
        (["lookup", "lookup"], ["lookup"], False, False),  # a repeat needs two calls
        (["lookup", "lookup"], ["lookup", "x", "lookup"], True, False),
        (["lookup"], ["lookup", "lookup"], True, False),
    ],
)
def test_tool_sequence(wanted: list[str], calls: list[str], in_order: bool, exact: bool) -> None:
    scorer = {"type": "tool_sequence", "tools": wanted}
    assert _passes(scorer, tool_calls=calls) is in_order
    assert _passes({**scorer, "exact": True}, tool_calls=calls) is exact
    assert _score(scorer, tool_calls=[]).rationale == "tools called: none"


def test_judges_and_functions_are_not_deterministic() -> None:
    with pytest.raises(TypeError, match="not a deterministic scorer"):
        score_deterministic(_scorer(type="guidelines", guidelines="x"), _obs())


# --- Scoring: failed runs, missing columns, judges skipped ------------------------------------

EVERY_KIND: list[dict[str, Any]] = [
    {"name": "eq", "type": "equals", "output": "article", "expected": "answer"},
    {"name": "has", "type": "contains", "output": "tags", "value": "x"},
    {"name": "rx", "type": "regex", "output": "article", "pattern": "."},
    {"name": "js", "type": "json_schema", "output": "review", "schema": {"type": "object"}},
    {"name": "rng", "type": "in_range", "output": "review.score", "min": 0},
    {"name": "cost", "type": "max_cost", "usd": 1},
    {"name": "fast", "type": "max_latency", "seconds": 10},
    {"name": "tok", "type": "max_tokens", "tokens": 1000},
    {"name": "calc", "type": "tool_called", "tool": "calculator", "min_calls": 0},
    {"name": "seq", "type": "tool_sequence", "tools": ["calculator"]},
    {"name": "polite", "type": "guidelines", "guidelines": "be polite"},
    {"name": "right", "type": "correctness", "expected": "answer"},
    {"name": "fn", "type": "function", "function": "eval_scorers_fixture:as_bool"},
]
MOCK_JUDGE = {"provider": "mock", "model": "judge"}

SCORERS_MODULE = """
import asyncio
import threading

MAIN = threading.get_ident()


def as_bool(obs):
    return obs.outputs.get("article", "").startswith("B")


def as_float(obs):
    return 0.25


def as_int(obs):
    return 1


def with_reason(obs):
    return (0.75, "mostly fine")


def bool_with_reason(obs):
    return False, "too long"


def too_big(obs):
    return 7


def negative(obs):
    return -0.1


def not_a_number(obs):
    return float("nan")


def as_none(obs):
    return None


def as_text(obs):
    return "yes"


def raises(obs):
    raise RuntimeError("boom")


async def is_async(obs):
    await asyncio.sleep(0)
    return 0.5, "awaited"


async def async_raises(obs):
    raise ValueError("async boom")


def in_a_thread(obs):
    return threading.get_ident() != MAIN
"""


@pytest.fixture
def scorers_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An allow-listable module of function scorers, importable as ``eval_scorers_fixture``."""
    (tmp_path / "eval_scorers_fixture.py").write_text(SCORERS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("eval_scorers_fixture", None)
    yield "eval_scorers_fixture"
    sys.modules.pop("eval_scorers_fixture", None)


GOOD = {
    "article": "Bees make honey.",
    "tags": ["x"],
    "review": {"score": 4, "ok": True},
}


def test_every_kind_scores_a_successful_run(scorers_module: str) -> None:
    assert {s["type"] for s in EVERY_KIND} == set(SCORER_TYPES)
    workflow = _workflow({"judge": MOCK_JUDGE, "scorers": EVERY_KIND}, [scorers_module])
    scoring = Scoring(workflow)
    assert scoring.columns == {"answer"}
    obs = _obs(GOOD, expectations={"answer": "Bees make honey."}, tool_calls=["calculator"])
    scores = _run(scoring, obs)
    assert list(scores) == [s["name"] for s in EVERY_KIND]  # in the file's order
    assert {name: s.value for name, s in scores.items()} == dict.fromkeys(scores, 1.0)
    assert not any(s.run_failed or s.skipped or s.error for s in scores.values())
    assert scores["polite"].source == "mock/judge" and scores["eq"].source == "code"


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_a_failed_run_scores_zero_on_every_scorer(scorers_module: str, status: str) -> None:
    workflow = _workflow({"judge": MOCK_JUDGE, "scorers": EVERY_KIND}, [scorers_module])
    obs = _obs({}, expectations={"answer": "x"}, status=status, error="provider said no")
    scores = _run(Scoring(workflow), obs)
    assert len(scores) == len(EVERY_KIND)
    for name, score in scores.items():
        assert score.value == 0.0 and score.run_failed, name
        assert score.passed is False
        assert score.rationale == f"the run ended {status}: provider said no"
        assert score.to_dict()["run_failed"] is True


@pytest.mark.parametrize("cell", [None, ""], ids=["absent", "empty"])
def test_a_missing_expected_value_skips_only_the_scorers_reading_it(
    scorers_module: str, cell: Any
) -> None:
    workflow = _workflow({"judge": MOCK_JUDGE, "scorers": EVERY_KIND}, [scorers_module])
    expectations = {} if cell is None else {"answer": cell}
    for status in ("success", "failed"):  # skipped even when the run failed
        scores = _run(Scoring(workflow), _obs(GOOD, expectations=expectations, status=status))
        skipped = {name for name, s in scores.items() if s.skipped}
        assert skipped == {"eq", "right"}
        for name in skipped:
            assert scores[name].value is None and scores[name].passed is None
            assert scores[name].skipped == "no expected value in column 'answer'"
            assert not scores[name].run_failed


@pytest.mark.parametrize("cell", [0, False])
def test_a_falsy_expected_value_is_not_missing(cell: Any) -> None:
    workflow = _workflow({"scorers": [{"name": "eq", **EQ_COL}]})
    scores = _run(
        Scoring(workflow), _obs({"review": {"score": cell}}, expectations={"answer": cell})
    )
    assert scores["eq"].value == 1.0 and scores["eq"].skipped is None


def test_judges_are_skipped_when_the_budget_is_spent() -> None:
    evaluation = {
        "judge": MOCK_JUDGE,
        "scorers": [EVERY_KIND[5], EVERY_KIND[10], EVERY_KIND[11]],
    }
    scores = _run(
        Scoring(_workflow(evaluation)), _obs(GOOD, expectations={"answer": "x"}), judges=False
    )
    assert scores["cost"].value == 1.0
    assert scores["polite"].skipped == scores["right"].skipped == "the daily judge budget is spent"


def test_only_the_named_scorers() -> None:
    workflow = _workflow({"scorers": EVERY_KIND[5:8]})
    scoring = Scoring(workflow, names=["tok", "cost"])
    assert [s.name for s in scoring.scorers] == ["cost", "tok"]
    assert list(_run(scoring, _obs(GOOD))) == ["cost", "tok"]


def test_a_workflow_without_evaluation_cannot_be_scored() -> None:
    workflow = load_workflow(copy.deepcopy(BASE))
    with pytest.raises(EvaluationSetupError, match="no `evaluation:` section"):
        Scoring(workflow)


# --- function scorers -------------------------------------------------------------------------


def _function_scores(
    module: str, *functions: str, obs: Observation | None = None
) -> dict[str, Score]:
    scorers = [{"name": f, "type": "function", "function": f"{module}:{f}"} for f in functions]
    scoring = Scoring(_workflow({"scorers": scorers}, [module]))
    return _run(scoring, obs or _obs(GOOD))


def test_function_scorers_return_values(scorers_module: str) -> None:
    scores = _function_scores(
        scorers_module,
        "as_bool", "as_float", "as_int", "with_reason", "bool_with_reason", "is_async",
        "in_a_thread",
    )  # fmt: skip
    assert {name: (s.value, s.rationale) for name, s in scores.items()} == {
        "as_bool": (1.0, None),
        "as_float": (0.25, None),
        "as_int": (1.0, None),
        "with_reason": (0.75, "mostly fine"),
        "bool_with_reason": (0.0, "too long"),
        "is_async": (0.5, "awaited"),
        "in_a_thread": (1.0, None),  # a plain function runs off the event loop's thread
    }
    assert all(s.error is None and s.source == "code" for s in scores.values())
    assert scores["as_float"].passed is False and scores["is_async"].passed is True


def test_function_scorer_sees_the_observation(scorers_module: str) -> None:
    scores = _function_scores(scorers_module, "as_bool", obs=_obs({"article": "Ants"}))
    assert scores["as_bool"].value == 0.0


@pytest.mark.parametrize(
    ("function", "shown"),
    [("too_big", "7"), ("negative", "-0.1"), ("not_a_number", "nan"), ("as_none", "None"),
     ("as_text", "'yes'")],
)  # fmt: skip
def test_function_scorer_returning_something_else_is_a_scorer_error(
    scorers_module: str, function: str, shown: str
) -> None:
    score = _function_scores(scorers_module, function)[function]
    assert score.value is None and score.passed is None and not score.run_failed
    assert score.error is not None and score.error.startswith(f"returned {shown};")
    assert "expected a bool, a number from 0 to 1" in score.error


@pytest.mark.parametrize(
    ("function", "message"),
    [("raises", "raised RuntimeError: boom"), ("async_raises", "raised ValueError: async boom")],
)
def test_a_raising_function_scorer_is_an_error_not_a_crash(
    scorers_module: str, function: str, message: str
) -> None:
    scores = _function_scores(scorers_module, function, "as_float")
    assert scores[function].value is None
    assert scores[function].error == f"{scorers_module}:{function} {message}"
    assert scores["as_float"].value == 0.25  # the others still score


def test_a_function_scorer_that_does_not_exist_stops_the_setup(scorers_module: str) -> None:
    scorers = [{"name": "f", "type": "function", "function": f"{scorers_module}:missing"}]
    workflow = _workflow({"scorers": scorers}, [scorers_module])
    with pytest.raises(
        EvaluationSetupError, match=r"scorer function .* has no attribute 'missing'"
    ):
        Scoring(workflow)


def test_a_function_scorer_module_that_cannot_be_imported_stops_the_setup() -> None:
    scorers = [{"name": "f", "type": "function", "function": "no_such_scorers_mod:f"}]
    workflow = _workflow({"scorers": scorers}, ["no_such_scorers_mod"])
    with pytest.raises(EvaluationSetupError, match="cannot import module 'no_such_scorers_mod'"):
        Scoring(workflow)


# --- summaries --------------------------------------------------------------------------------


def _line(**scores: dict[str, Any]) -> dict[str, Any]:
    return {"scores": scores}


def test_summarise_counts() -> None:
    lines = [
        _line(a={"value": 1.0}, b={"value": 0.25}, c={"value": None, "skipped": "no column"}),
        _line(a={"value": 0.0}, b={"value": 0.75}, c={"value": None, "error": "bad reply"}),
        _line(a={"value": 0.0, "run_failed": True}, b={"value": 0.5}),
        _line(a={"value": 1.0}, unknown={"value": 1.0}),  # a scorer not asked for is ignored
        {"scores": None},
        {},
    ]
    summaries = summarise([("a", "equals"), ("b", "function"), ("c", "correctness")], lines)
    a, b, c = summaries["a"], summaries["b"], summaries["c"]
    assert list(summaries) == ["a", "b", "c"]
    assert (a.type, a.passed, a.failed, a.skipped, a.errors, a.run_failed) == (
        "equals",
        2,
        2,
        0,
        0,
        1,
    )
    assert a.mean == 0.5
    assert (b.passed, b.failed, b.mean) == (2, 1, 0.5)  # 0.5 counts as passed
    assert (c.passed, c.failed, c.skipped, c.errors, c.mean) == (0, 0, 1, 1, None)


def test_summarise_with_no_lines() -> None:
    (summary,) = summarise([("a", "equals")], []).values()
    assert summary.mean is None and summary.passed == summary.failed == 0


# --- baseline comparison ----------------------------------------------------------------------


def _summaries(rows: dict[str, dict[str, float | None]], *names: str) -> dict[str, ScorerSummary]:
    lines = [
        {"scores": {n: {"value": v} for n, v in values.items() if n in names}}
        for values in rows.values()
    ]
    return summarise([(n, "equals") for n in names], lines)


def test_ten_rows_all_worse_is_significant() -> None:
    now = {f"r{i}": {"a": 0.0} for i in range(10)}
    before = Baseline("run-1", {"a": 1.0}, {f"r{i}": {"a": 1.0} for i in range(10)})
    (comparison,) = compare(_summaries(now, "a"), now, before).values()
    assert comparison.baseline_mean == 1.0 and comparison.delta == -1.0
    assert (comparison.better, comparison.worse) == (0, 10)
    assert comparison.p_value == pytest.approx(2 / 1024)  # 0.00195: two-sided exact sign test
    assert comparison.significant
    assert comparison.regressions == [f"r{i}" for i in range(10)]


def test_compare_deltas_and_regressions() -> None:
    now = {
        "r1": {"a": 1.0, "b": 0.9},  # a better
        "r2": {"a": 0.0, "b": 0.4},  # a worse: a regression for a and b
        "r3": {"a": 1.0, "b": 0.6},  # a unchanged, b worse but still passing
        "r4": {"a": 1.0, "b": None},  # b skipped now
        "r5": {"a": 0.0, "b": 0.1},  # not in the baseline
    }
    before = Baseline(
        "run-1",
        {"a": 0.5, "b": 0.5},
        {
            "r1": {"a": 0.0, "b": 0.9},
            "r2": {"a": 1.0, "b": 0.7},
            "r3": {"a": 1.0, "b": 0.8},
            "r4": {"a": 1.0, "b": 0.0},
        },
    )
    summaries = _summaries(now, "a", "b", "c")
    comparisons = compare(summaries, now, before)
    a, b, c = comparisons["a"], comparisons["b"], comparisons["c"]
    assert a.delta == pytest.approx(0.6 - 0.5)
    assert (a.better, a.worse, a.regressions) == (1, 1, ["r2"])
    assert a.p_value == pytest.approx(1.0) and not a.significant
    assert b.delta == pytest.approx(0.5 - 0.5)
    assert (b.better, b.worse, b.regressions) == (0, 2, ["r2"])
    assert b.p_value == pytest.approx(0.5)
    # a scorer the baseline did not have: no mean to compare, no paired rows
    assert (c.baseline_mean, c.delta, c.better, c.worse, c.p_value) == (None, None, 0, 0, None)
    assert not c.significant


def test_compare_with_no_changed_row_has_no_p_value() -> None:
    now = {"r1": {"a": 1.0}, "r2": {"a": 0.0}}
    before = Baseline("run-1", {"a": 0.5}, {"r1": {"a": 1.0}, "r2": {"a": 0.0}})
    (comparison,) = compare(_summaries(now, "a"), now, before).values()
    assert comparison.delta == 0.0 and comparison.p_value is None and not comparison.regressions


# --- the gate ---------------------------------------------------------------------------------


def _result(pass_if: str | None, means: dict[str, float | None], **fields: Any) -> EvaluationResult:
    summaries = {n: ScorerSummary(n, "equals", mean=m) for n, m in means.items()}
    return EvaluationResult("reviewer", "cases.jsonl", "0" * 16, 10, 0, summaries,
                            pass_if=pass_if, **fields)  # fmt: skip


GATE = "correct >= baseline.correct - 0.05 and cheap == 1"


@pytest.mark.parametrize(
    ("correct", "before", "passes"),
    [(0.8, 0.82, True), (0.8, 0.8, True), (0.8, 0.9, False), (0.0, 0.0, True)],
)
def test_gate_against_the_baseline(correct: float, before: float, passes: bool) -> None:
    result = _result(GATE, {"correct": correct, "cheap": 1.0})
    assert gate(result, Baseline("run-1", {"correct": before, "cheap": 1.0}, {})) == (passes, None)


def test_gate_fails_on_another_scorer() -> None:
    result = _result(GATE, {"correct": 0.9, "cheap": 0.5})
    assert gate(result, Baseline("run-1", {"correct": 0.9}, {})) == (False, None)


@pytest.mark.parametrize(
    ("means", "baseline"),
    [
        ({"correct": 0.9, "cheap": 1.0}, None),  # no baseline at all
        ({"correct": 0.9, "cheap": 1.0}, Baseline("run-1", {"cheap": 1.0}, {})),  # not in it
        ({"correct": None, "cheap": 1.0}, Baseline("run-1", {"correct": 0.9}, {})),  # no rows
    ],
)
def test_gate_that_cannot_be_evaluated(
    means: dict[str, float | None], baseline: Baseline | None
) -> None:
    passed, error = gate(_result(GATE, means), baseline)
    assert passed is False
    assert error is not None and error.startswith("pass_if cannot be evaluated: cannot ")
    assert error.endswith("(a scorer that scored no row?)")


def test_gate_arithmetic_on_means() -> None:
    assert gate(_result("a * 2 - b >= 0.5", {"a": 0.5, "b": 0.4}), None) == (True, None)
    assert gate(_result("a * 2 - b >= 0.5", {"a": 0.4, "b": 0.4}), None) == (False, None)


@pytest.mark.parametrize(
    ("rows_failed", "stopped", "passes"),
    [(0, None, True), (1, None, False), (0, "budget", False), (0, "interrupted", False)],
)
def test_gate_without_pass_if(rows_failed: int, stopped: str | None, passes: bool) -> None:
    result = _result(None, {"a": 0.0}, stopped=stopped)
    result.rows_failed = rows_failed
    assert gate(result, None) == (passes, None)
