"""The optional top-level `evaluation:` section: scorers, the judge model and the quality gate.

Each scorer gives every evaluated run a value (a bool, or a number from 0 to 1) and, for LLM
judges, a rationale. Cross-references (outputs, tools, dataset columns, `pass_if` names) are
checked with the whole file in :mod:`.evaluation_checks`.
"""

from __future__ import annotations

import keyword
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ._model import ConfigModel
from .settings import LLMConfig

__all__ = [
    "DETERMINISTIC_TYPES",
    "JUDGE_TYPES",
    "SCORER_TYPES",
    "ContainsScorer",
    "CorrectnessScorer",
    "EqualsScorer",
    "EvaluationConfig",
    "FunctionScorer",
    "GuidelinesScorer",
    "InRangeScorer",
    "JsonSchemaScorer",
    "MaxCostScorer",
    "MaxLatencyScorer",
    "MaxTokensScorer",
    "OnlineConfig",
    "RegexScorer",
    "Scorer",
    "ToolCalledScorer",
    "ToolSequenceScorer",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UNREADABLE = {
    "baseline": "the baseline's means (baseline.<scorer>)",
    "state": "a prefix (state.<name>)",
    "true": "a constant",
    "false": "a constant",
    "null": "a constant",
    "none": "a constant",
}


class _Scorer(ConfigModel):
    name: str
    """Name of the scorer: the assessment's name on each trace, `<name>/mean` on the evaluation
    run, and the name `pass_if` reads. An identifier."""

    description: str | None = None
    """What the scorer checks."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value) or keyword.iskeyword(value):
            raise PydanticCustomError(
                "not_identifier",
                "a scorer name must be an identifier (letters, digits and _), not {v}",
                {"v": repr(value[:80])},
            )
        if value.lower() in _UNREADABLE:
            raise PydanticCustomError(
                "reserved_name",
                "{v} cannot name a scorer: pass_if reads it as {meaning}",
                {"v": repr(value), "meaning": _UNREADABLE[value.lower()]},
            )
        return value


class _OutputScorer(_Scorer):
    output: str
    """Output field the scorer reads (a dotted path reaches into an object: `review.score`)."""


class _Reference(_OutputScorer):
    expected: str | None = None
    """Dataset column holding the expected value, per row."""

    value: Any = None
    """A fixed expected value, the same for every row (instead of `expected`)."""

    @model_validator(mode="after")
    def _one_reference(self) -> _Reference:
        if (self.expected is None) == ("value" not in self.model_fields_set):
            raise PydanticCustomError(
                "reference", "give exactly one of `expected` (a dataset column) or `value`"
            )
        return self


class EqualsScorer(_Reference):
    """1 when the output equals the expected value (text compared after trimming spaces)."""

    type: Literal["equals"]
    """`equals`."""

    ignore_case: bool = False
    """Compare text without regard to case."""


class ContainsScorer(_Reference):
    """1 when the output (text, or a list) contains the expected value."""

    type: Literal["contains"]
    """`contains`."""

    ignore_case: bool = False
    """Compare text without regard to case."""


class RegexScorer(_OutputScorer):
    """1 when the output, as text, matches a regular expression (anywhere in it)."""

    type: Literal["regex"]
    """`regex`."""

    pattern: str
    """Python regular expression."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise PydanticCustomError(
                "regex", "invalid regular expression: {e}", {"e": str(exc)}
            ) from None
        return value


class JsonSchemaScorer(_OutputScorer):
    """1 when the output validates against a JSON Schema."""

    type: Literal["json_schema"]
    """`json_schema`."""

    schema_: dict[str, Any] = Field(alias="schema")
    """The JSON Schema (draft 2020-12) the output must satisfy."""


class InRangeScorer(_OutputScorer):
    """1 when a numeric output lies within `min` and `max` (inclusive)."""

    type: Literal["in_range"]
    """`in_range`."""

    min: float | None = Field(default=None, strict=False)
    """Lowest value that passes."""

    max: float | None = Field(default=None, strict=False)
    """Highest value that passes."""

    @model_validator(mode="after")
    def _bounds(self) -> InRangeScorer:
        if self.min is None and self.max is None:
            raise PydanticCustomError("bounds", "give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("bounds", "`min` is greater than `max`")
        return self


class MaxCostScorer(_Scorer):
    """1 when the run cost at most `usd` (an unpriced run fails it)."""

    type: Literal["max_cost"]
    """`max_cost`."""

    usd: float = Field(ge=0, strict=False)
    """Most US dollars a run may cost."""


class MaxLatencyScorer(_Scorer):
    """1 when the run took at most `seconds` of wall time."""

    type: Literal["max_latency"]
    """`max_latency`."""

    seconds: float = Field(gt=0, strict=False)
    """Most seconds a run may take."""


class MaxTokensScorer(_Scorer):
    """1 when the run used at most `tokens` tokens (input and output of every call)."""

    type: Literal["max_tokens"]
    """`max_tokens`."""

    tokens: int = Field(gt=0)
    """Most tokens a run may use."""


class ToolCalledScorer(_Scorer):
    """1 when the run called a tool at least `min_calls` times (and at most `max_calls`)."""

    type: Literal["tool_called"]
    """`tool_called`."""

    tool: str
    """Tool name, as a node's `tools` lists it."""

    min_calls: int = Field(default=1, ge=0)
    """Fewest calls that pass (0 with `max_calls: 0` checks that it was never called)."""

    max_calls: int | None = Field(default=None, ge=0)
    """Most calls that pass. Default: no limit."""

    @model_validator(mode="after")
    def _bounds(self) -> ToolCalledScorer:
        if self.max_calls is not None and self.min_calls > self.max_calls:
            raise PydanticCustomError("bounds", "`min_calls` is greater than `max_calls`")
        return self


class ToolSequenceScorer(_Scorer):
    """1 when the run's tool calls follow `tools` in order (the trajectory)."""

    type: Literal["tool_sequence"]
    """`tool_sequence`."""

    tools: list[str] = Field(min_length=1)
    """Tool names in the order they must be called."""

    exact: bool = False
    """Require exactly this sequence; by default other calls may come between and around."""


class _JudgeScorer(_Scorer):
    output: str | None = None
    """Output field to judge. Default: all of the run's outputs."""

    judge: LLMConfig | None = None
    """Overrides of `evaluation.judge` for this scorer, field by field."""


class GuidelinesScorer(_JudgeScorer):
    """An LLM judge: passes when the output follows the guidelines (a verdict and a rationale)."""

    type: Literal["guidelines"]
    """`guidelines`."""

    guidelines: str | list[str]
    """What a good answer does (or never does); a list is judged as one set."""


class CorrectnessScorer(_JudgeScorer):
    """An LLM judge: passes when the output agrees with the expected answer of the row."""

    type: Literal["correctness"]
    """`correctness`."""

    expected: str
    """Dataset column holding the expected answer (or the facts it must contain)."""


class FunctionScorer(_Scorer):
    """A Python scorer: `module:function` from a module in `config.tools.allowed_modules`, called
    with the run (an :class:`~configurable_agents.evaluation.Observation`); it returns a bool, a
    number from 0 to 1, or ``(value, rationale)``."""

    type: Literal["function"]
    """`function`."""

    function: str
    """`module:function` of the scorer."""


if TYPE_CHECKING:
    Scorer = (
        EqualsScorer | ContainsScorer | RegexScorer | JsonSchemaScorer | InRangeScorer
        | MaxCostScorer | MaxLatencyScorer | MaxTokensScorer | ToolCalledScorer
        | ToolSequenceScorer | GuidelinesScorer | CorrectnessScorer | FunctionScorer
    )  # fmt: skip
else:
    Scorer = Annotated[
        Union[  # noqa: UP007 - a discriminated union
            EqualsScorer,
            ContainsScorer,
            RegexScorer,
            JsonSchemaScorer,
            InRangeScorer,
            MaxCostScorer,
            MaxLatencyScorer,
            MaxTokensScorer,
            ToolCalledScorer,
            ToolSequenceScorer,
            GuidelinesScorer,
            CorrectnessScorer,
            FunctionScorer,
        ],
        Field(discriminator="type"),
    ]

SCORER_TYPES = (
    "equals", "contains", "regex", "json_schema", "in_range", "max_cost", "max_latency",
    "max_tokens", "tool_called", "tool_sequence", "guidelines", "correctness", "function",
)  # fmt: skip
"""Every scorer `type`."""

JUDGE_TYPES = ("guidelines", "correctness")
"""Scorer types that ask a model (they cost money and take time)."""

DETERMINISTIC_TYPES = tuple(t for t in SCORER_TYPES if t not in (*JUDGE_TYPES, "function"))
"""Scorer types computed from the run alone."""


class OnlineConfig(ConfigModel):
    """Scoring a sample of the runs `serve` and `worker` finish, in the background."""

    sample: float = Field(ge=0, le=1, strict=False)
    """Share of finished runs to score, 0 to 1; which runs is decided by the run id, so the same
    run is always in or out of the sample."""

    scorers: list[str] | None = None
    """Names of the scorers to apply (scorers needing a dataset column are skipped). Default:
    every scorer that needs no column."""

    max_cost_usd_per_day: float | None = Field(default=None, gt=0, strict=False)
    """Judge budget per UTC day; once spent, judges stop until the next day (deterministic
    scorers go on). Default: no limit."""


class EvaluationConfig(ConfigModel):
    """How runs of the workflow are scored: by `configurable-agents eval`, and online by
    `serve` and `worker`."""

    dataset: str | None = None
    """Default dataset for `eval` (JSONL, CSV or JSON; relative to the workflow file); `--dataset`
    overrides it."""

    judge: LLMConfig | None = None
    """Model the LLM judges use. Default: `config.llm`."""

    scorers: list[Scorer] = Field(min_length=1)
    """The scorers, applied to every evaluated run."""

    pass_if: str | None = None
    """Quality gate: an expression over scorer means (`polite >= 0.8 and cheap == 1`), where
    `baseline.<name>` is the baseline's mean and `+`, `-` and `*` are allowed
    (`correct >= baseline.correct - 0.05`). Without it, `eval` passes when every row ran."""

    online: OnlineConfig | None = None
    """Score a sample of production runs (`serve`, `worker`)."""
