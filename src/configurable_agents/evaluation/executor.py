"""Running and scoring one dataset row: the batch's row executor, plus the row's scores and the
assessments that carry them to its trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..batch.runner import LocalExecutor
from .observation import Observation
from .scores import Score

if TYPE_CHECKING:
    from ..batch import Row
    from ..engine import PreparedWorkflow
    from .scoring import Scoring

__all__ = ["EvalExecutor", "assessments_of"]


def assessments_of(
    trace_id: str,
    scores: Mapping[str, Score],
    expectations: Mapping[str, Any],
    *,
    dataset: str,
    numeric: set[str],
) -> list[dict[str, Any]]:
    """A row's assessments: one MLflow ``Feedback`` per score that applied (its value a bool,
    or a number for the scorers in ``numeric``), one ``Expectation`` per expected value."""
    found: list[dict[str, Any]] = []
    for name, score in scores.items():
        if score.skipped is not None:
            continue
        judge = score.source != "code"
        value: Any = score.value
        if value is not None and name not in numeric:
            value = value >= 0.5
        metadata: dict[str, Any] = {}
        if judge:
            metadata["mlflow.assessment.judgeCost"] = score.cost_usd
        found.append({
            "trace_id": trace_id, "kind": "feedback", "name": name, "value": value,
            "rationale": score.rationale, "error": score.error, "metadata": metadata,
            "source_type": "LLM_JUDGE" if judge else "CODE",
            "source_id": score.source if judge else "configurable-agents",
        })  # fmt: skip
    for column, value in expectations.items():
        found.append({
            "trace_id": trace_id, "kind": "expectation", "name": column, "value": value,
            "source_type": "HUMAN", "source_id": dataset,
        })  # fmt: skip
    return found


class EvalExecutor(LocalExecutor):
    """Runs a row with its expected columns taken out of its inputs, then scores the run.

    The row's line gains ``expected``, ``scores`` and ``scoring_cost_usd``; the assessments of
    rows with a trace collect in :attr:`assessments` for the evaluation run to record.
    """

    def __init__(
        self,
        prepared: PreparedWorkflow,
        tags: Mapping[str, str],
        batch_id: str,
        scoring: Scoring,
        dataset: str,
    ) -> None:
        super().__init__(prepared, tags, batch_id)
        self.scoring = scoring
        self.dataset = dataset
        self.columns = scoring.columns
        self.numeric = {s.name for s in scoring.scorers if s.type == "function"}
        self.assessments: list[dict[str, Any]] = []

    async def __call__(self, row: Row) -> dict[str, Any]:
        """Run and score ``row``."""
        expectations = {c: row.inputs.pop(c) for c in self.columns if c in row.inputs}
        line, result = await self.result_of(row)
        if result is not None:
            obs = Observation.of(result, expectations)
        else:  # it could not start: a failed run, scored as one
            obs = Observation(dict(row.inputs), {}, expectations, "failed", line["error"])
        scores = await self.scoring.score(obs, tags={**self.tags, "eval.row_id": row.id})
        line["expected"] = expectations
        line["scores"] = {name: score.to_dict() for name, score in scores.items()}
        line["scoring_cost_usd"] = sum(score.cost_usd for score in scores.values())
        if obs.trace_id:
            self.assessments += assessments_of(
                obs.trace_id, scores, expectations, dataset=self.dataset, numeric=self.numeric
            )
        return line
