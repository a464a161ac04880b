"""Deterministic scorers: computed from the run alone, in microseconds, with a one-line reason.

A score's value is 1.0 or 0.0 for pass/fail scorers, or a number from 0 to 1 for function
scorers; a value of at least :data:`PASS_AT` counts as passed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..config.evaluation import (
    ContainsScorer,
    EqualsScorer,
    InRangeScorer,
    JsonSchemaScorer,
    MaxCostScorer,
    MaxLatencyScorer,
    MaxTokensScorer,
    RegexScorer,
    Scorer,
    ToolCalledScorer,
    ToolSequenceScorer,
)
from ..config.templates import resolve
from .observation import Observation

__all__ = ["PASS_AT", "Score", "output_value", "score_deterministic", "skipped_for"]

PASS_AT = 0.5
"""Least value that counts as passed."""


@dataclass
class Score:
    """One scorer's verdict on one run.

    Attributes:
        value: 1.0/0.0 (pass/fail), or a number from 0 to 1; None when skipped or in error.
        rationale: Why, in a sentence.
        error: Why the scorer could not score (a judge reply that never parsed ...).
        skipped: Why the scorer did not apply (the row has no expected value ...).
        run_failed: The run itself failed, so the score is a fail counted apart.
        cost_usd: What scoring cost (judges).
        source: Who scored: ``code``, or the judge's ``provider/model``.
    """

    value: float | None
    rationale: str | None = None
    error: str | None = None
    skipped: str | None = None
    run_failed: bool = False
    cost_usd: float = 0.0
    source: str = "code"

    @property
    def passed(self) -> bool | None:
        """Whether it passed (None when skipped or in error)."""
        return None if self.value is None else self.value >= PASS_AT

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as `eval -o` writes it."""
        return {k: v for k, v in vars(self).items() if v not in (None, False) or k == "value"}


def _verdict(ok: bool, why: str) -> Score:
    return Score(1.0 if ok else 0.0, rationale=why)


def _short(value: Any) -> str:
    """A value as a rationale shows it: text quoted, numbers, bools and JSON as JSON."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def output_value(obs: Observation, path: str) -> tuple[bool, Any]:
    """``(found, value)`` of an output, by dotted path."""
    try:
        return True, resolve(tuple(path.split(".")), obs.outputs)
    except KeyError:
        return False, None


def skipped_for(scorer: Scorer, obs: Observation) -> str | None:
    """Why ``scorer`` does not apply to ``obs`` (its row has no expected value), if so."""
    column = getattr(scorer, "expected", None)
    if column is not None and obs.expectations.get(column) in (None, ""):
        return f"no expected value in column {column!r}"
    return None


def _reference(scorer: EqualsScorer | ContainsScorer, obs: Observation) -> Any:
    return obs.expectations[scorer.expected] if scorer.expected is not None else scorer.value


def _text(value: Any, ignore_case: bool) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.strip()
    return text.casefold() if ignore_case else text


def same(actual: Any, expected: Any, ignore_case: bool = False) -> bool:
    """Whether an output equals an expected value; text from a CSV cell (``"3"``, ``"true"``)
    equals the number or bool it spells."""
    if isinstance(actual, bool) != isinstance(expected, bool) and not isinstance(expected, str):
        return False  # 1 is not true, nor 0 false
    if isinstance(expected, str) and not isinstance(actual, str):
        if isinstance(actual, bool):
            return expected.strip().lower() == str(actual).lower()
        if isinstance(actual, int | float):
            try:
                return float(expected) == float(actual)
            except ValueError:
                return False
    if isinstance(actual, str) or isinstance(expected, str):
        return _text(actual, ignore_case) == _text(expected, ignore_case)
    return bool(actual == expected)


def _equals(scorer: EqualsScorer, obs: Observation, actual: Any) -> Score:
    expected = _reference(scorer, obs)
    ok = same(actual, expected, scorer.ignore_case)
    return _verdict(ok, f"{scorer.output} is {_short(actual)}"
                    + ("" if ok else f", expected {_short(expected)}"))  # fmt: skip


def _contains(scorer: ContainsScorer, obs: Observation, actual: Any) -> Score:
    expected = _reference(scorer, obs)
    if isinstance(actual, list):
        ok = any(same(item, expected, scorer.ignore_case) for item in actual)
    elif isinstance(actual, dict):
        ok = str(expected) in actual
    else:
        ok = _text(expected, scorer.ignore_case) in _text(actual, scorer.ignore_case)
    verb = "contains" if ok else "does not contain"
    return _verdict(ok, f"{scorer.output} {verb} {_short(expected)}")


def _regex(scorer: RegexScorer, obs: Observation, actual: Any) -> Score:
    text = actual if isinstance(actual, str) else json.dumps(actual, default=str)
    ok = re.search(scorer.pattern, text) is not None
    return _verdict(ok, f"{scorer.output} {'matches' if ok else 'does not match'} "
                    f"/{scorer.pattern}/")  # fmt: skip


@cache
def _validator(schema_text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_text))


def _json_schema(scorer: JsonSchemaScorer, obs: Observation, actual: Any) -> Score:
    validator = _validator(json.dumps(scorer.schema_, sort_keys=True))
    error = next(iter(validator.iter_errors(actual)), None)
    if error is None:
        return _verdict(True, f"{scorer.output} validates against the schema")
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return _verdict(False, f"{scorer.output} at {where}: {error.message[:200]}")


def _in_range(scorer: InRangeScorer, obs: Observation, actual: Any) -> Score:
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return _verdict(False, f"{scorer.output} is {_short(actual)}, not a number")
    low = -float("inf") if scorer.min is None else scorer.min
    high = float("inf") if scorer.max is None else scorer.max
    ok = low <= actual <= high
    return _verdict(ok, f"{scorer.output} is {actual:g}, "
                    f"{'within' if ok else 'outside'} [{scorer.min}, {scorer.max}]")  # fmt: skip


_ON_OUTPUT: dict[str, Callable[[Any, Observation, Any], Score]] = {
    "equals": _equals,
    "contains": _contains,
    "regex": _regex,
    "json_schema": _json_schema,
    "in_range": _in_range,
}


def _on_run(scorer: Scorer, obs: Observation) -> Score:
    if isinstance(scorer, MaxCostScorer):
        if obs.unpriced:
            return _verdict(False, "a model of the run has no known price")
        ok = obs.cost_usd <= scorer.usd
        return _verdict(ok, f"cost ${obs.cost_usd:.6f} (limit ${scorer.usd:g})")
    if isinstance(scorer, MaxLatencyScorer):
        ok = obs.duration_s <= scorer.seconds
        return _verdict(ok, f"took {obs.duration_s:.3f} s (limit {scorer.seconds:g} s)")
    if isinstance(scorer, MaxTokensScorer):
        ok = obs.tokens <= scorer.tokens
        return _verdict(ok, f"used {obs.tokens} tokens (limit {scorer.tokens})")
    if isinstance(scorer, ToolCalledScorer):
        count = obs.tool_calls.count(scorer.tool)
        high = scorer.max_calls if scorer.max_calls is not None else count
        ok = scorer.min_calls <= count <= high
        return _verdict(ok, f"{scorer.tool} called {count} time(s)")
    if isinstance(scorer, ToolSequenceScorer):
        ok = _follows(obs.tool_calls, scorer.tools, scorer.exact)
        return _verdict(ok, f"tools called: {', '.join(obs.tool_calls) or 'none'}")
    raise TypeError(f"{scorer.type} is not a deterministic scorer")


def _follows(calls: list[str], wanted: list[str], exact: bool) -> bool:
    if exact:
        return calls == wanted
    remaining = iter(calls)
    return all(any(call == tool for call in remaining) for tool in wanted)


def score_deterministic(scorer: Scorer, obs: Observation) -> Score:
    """Score a successful run with a deterministic scorer (see :data:`DETERMINISTIC_TYPES`)."""
    output = getattr(scorer, "output", None)
    if scorer.type in _ON_OUTPUT and output is not None:
        found, actual = output_value(obs, output)
        if not found or actual is None:
            return _verdict(False, f"the run has no output {output!r}")
        return _ON_OUTPUT[scorer.type](scorer, obs, actual)
    return _on_run(scorer, obs)
