"""What an evaluation found: per-scorer summaries over the rows, the baseline comparison and
the `pass_if` verdict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .scores import PASS_AT

__all__ = ["Comparison", "EvaluationResult", "ScorerSummary", "summarise"]


@dataclass
class ScorerSummary:
    """One scorer over every evaluated row.

    Attributes:
        name: The scorer's name.
        type: Its type (`equals`, `guidelines` ...).
        mean: Mean value over the rows it scored (runs that failed count as 0); None if none.
        passed: Rows with a value of at least 0.5.
        failed: Rows below 0.5, runs that failed included.
        skipped: Rows it did not apply to (no expected value, judge budget spent).
        errors: Rows it could not score (a judge reply that never parsed ...).
        run_failed: Rows whose run failed (counted in ``failed``).
    """

    name: str
    type: str
    mean: float | None = None
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    run_failed: int = 0


@dataclass
class Comparison:
    """One scorer against the baseline evaluation.

    Attributes:
        baseline_mean: The baseline's mean (None if it had no such scorer).
        delta: This mean minus the baseline's.
        better: Rows scored higher than in the baseline.
        worse: Rows scored lower.
        p_value: Two-sided exact sign test over the rows scored in both (McNemar's exact test
            for pass/fail scorers); None with no changed row.
        regressions: Ids of the rows that passed in the baseline and fail now.
    """

    baseline_mean: float | None
    delta: float | None
    better: int = 0
    worse: int = 0
    p_value: float | None = None
    regressions: list[str] = field(default_factory=list)

    @property
    def significant(self) -> bool:
        """Whether the change is beyond noise (p < 0.05)."""
        return self.p_value is not None and self.p_value < 0.05


@dataclass
class EvaluationResult:
    """The outcome of :func:`configurable_agents.evaluate`.

    Attributes:
        workflow: The workflow's name.
        dataset: The dataset evaluated (or ``traces`` when scoring recorded traces).
        dataset_digest: Digest of the dataset file's bytes.
        rows: Rows evaluated (this invocation and any resumed earlier one).
        rows_failed: Rows whose run did not succeed.
        scorers: Per-scorer summaries, in the order the file declares them.
        workflow_cost_usd: What the workflow's runs cost.
        judge_cost_usd: What the judges cost.
        pass_if: The gate, as written.
        passed: Whether the gate holds (with no gate: whether every row ran).
        gate_error: Why the gate could not be evaluated (a mean that is missing ...).
        baseline_run_id: The MLflow run compared with, if any.
        comparisons: Per-scorer comparison with the baseline.
        stopped: ``budget`` or ``interrupted`` when the evaluation ended early.
        output: The results file (one line per row).
        trace_ids: Traces of the evaluated runs.
        baseline_note: Why there was nothing to compare with (the first ``--baseline latest``).
        record_key: Names the evaluation run until MLflow gives it an id (it is the run's
            ``configurable_agents.record_key`` tag); None when not recorded.
    """

    workflow: str
    dataset: str
    dataset_digest: str
    rows: int
    rows_failed: int
    scorers: dict[str, ScorerSummary]
    workflow_cost_usd: float = 0.0
    judge_cost_usd: float = 0.0
    pass_if: str | None = None
    passed: bool = False
    gate_error: str | None = None
    baseline_run_id: str | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    stopped: str | None = None
    output: str | None = None
    trace_ids: list[str] = field(default_factory=list)
    baseline_note: str | None = None
    record_key: str | None = None

    @property
    def exit_code(self) -> int:
        """`eval`'s exit code: 0 passed, 1 not, 3 budget reached, 130 interrupted."""
        if self.stopped == "interrupted":
            return 130
        if self.stopped == "budget":
            return 3
        return 0 if self.passed else 1

    def means(self) -> dict[str, float | None]:
        """Each scorer's mean."""
        return {name: summary.mean for name, summary in self.scorers.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the evaluation run's summary artifact)."""
        from dataclasses import asdict

        return asdict(self)


def summarise(
    scorers: Iterable[tuple[str, str]], lines: Iterable[Mapping[str, Any]]
) -> dict[str, ScorerSummary]:
    """Per-scorer summaries of result lines (each with ``scores``), for ``(name, type)`` pairs."""
    summaries = {name: ScorerSummary(name, kind) for name, kind in scorers}
    totals = dict.fromkeys(summaries, 0.0)
    for line in lines:
        for name, score in (line.get("scores") or {}).items():
            summary = summaries.get(name)
            if summary is None:
                continue
            value = score.get("value")
            if score.get("skipped"):
                summary.skipped += 1
            elif score.get("error") or value is None:
                summary.errors += 1
            else:
                totals[name] += value
                summary.passed += value >= PASS_AT
                summary.failed += value < PASS_AT
                summary.run_failed += bool(score.get("run_failed"))
    for name, summary in summaries.items():
        scored = summary.passed + summary.failed
        summary.mean = totals[name] / scored if scored else None
    return summaries
