"""`eval` over a dataset: run every row with the batch machinery, score it, compare with the
baseline, decide the gate, and record the evaluation run in MLflow."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.conditions import ConditionError, parse_condition
from ..config.diagnostics import closest
from ..config.loader import Workflow
from ..observability.models import workflow_hash
from .baseline import Baseline, BaselineError, NoBaselineYet, compare, find_baseline
from .executor import EvalExecutor
from .recording import record_evaluation
from .results import EvaluationResult, summarise
from .scoring import EvaluationSetupError, Scoring

if TYPE_CHECKING:
    from ..batch import BatchStats, Row
    from ..engine import PreparedWorkflow

__all__ = [
    "aevaluate",
    "check_columns",
    "dataset_path",
    "digest_of",
    "gate",
    "row_values",
    "uses_baseline",
]


def dataset_path(workflow: Workflow, dataset: str | os.PathLike[str] | None) -> Path:
    """The dataset to evaluate: ``dataset``, else `evaluation.dataset` (relative to the file).

    Raises:
        EvaluationSetupError: neither is given.
    """
    if dataset is not None:
        return Path(dataset)
    evaluation = workflow.config.evaluation
    if evaluation is None or evaluation.dataset is None:
        raise EvaluationSetupError("no dataset: give --dataset or set evaluation.dataset")
    path = Path(evaluation.dataset)
    if not path.is_absolute() and workflow.source:
        path = Path(workflow.source).parent / path
    return path


def digest_of(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def check_columns(scoring: Scoring, rows: list[Row], dataset: Path) -> None:
    """Every expected column the scorers read must be in some row of the dataset.

    Raises:
        EvaluationSetupError: a column no row has, located at its scorer, with did-you-mean.
    """
    present = {key for row in rows for key in row.inputs}
    for index, scorer in enumerate(scoring.evaluation.scorers):
        column = getattr(scorer, "expected", None)
        if scorer in scoring.scorers and column is not None and column not in present:
            guess = closest(column, sorted(present))
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise EvaluationSetupError(
                f"evaluation.scorers[{index}].expected: column {column!r} is in no row of "
                f"{dataset}{hint}"
            )


def uses_baseline(text: str | None) -> bool:
    """Whether a `pass_if` reads ``baseline.<scorer>``."""
    if text is None:
        return False
    return any(
        path.parts[0] == "baseline" for path in parse_condition(text, arithmetic=True).paths()
    )


def gate(result: EvaluationResult, baseline: Baseline | None) -> tuple[bool, str | None]:
    """The verdict of `pass_if` (without one: every row ran and succeeded), and why it could not
    be evaluated, if it could not. With nothing to compare with yet (``baseline_note``),
    ``baseline.<scorer>`` reads this evaluation's own mean."""
    if result.pass_if is None:
        return result.rows_failed == 0 and result.stopped is None, None
    values: dict[str, Any] = dict(result.means())
    if baseline is not None:
        values["baseline"] = dict(baseline.means)
    else:
        values["baseline"] = dict(result.means()) if result.baseline_note else {}
    try:
        return parse_condition(result.pass_if, arithmetic=True).evaluate(values), None
    except ConditionError as exc:
        return False, f"pass_if cannot be evaluated: {exc} (a scorer that scored no row?)"


def row_values(lines: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """``{row id: {scorer: value}}`` of result lines (None where skipped or in error)."""
    return {
        row_id: {
            name: None if score.get("skipped") or score.get("error") else score.get("value")
            for name, score in (line.get("scores") or {}).items()
        }
        for row_id, line in lines.items()
    }


async def aevaluate(
    prepared: PreparedWorkflow,
    scoring: Scoring,
    rows: list[Row],
    *,
    dataset: Path,
    output: Path | None = None,
    resume: bool = False,
    concurrency: int = 16,
    max_cost_usd: float | None = None,
    baseline: str | None = None,
    tags: Mapping[str, str] | None = None,
    on_progress: Callable[[BatchStats], None] | None = None,
    on_start: Callable[[BatchStats], None] | None = None,
) -> EvaluationResult:
    """Run and score every pending row of ``rows``; see :func:`configurable_agents.evaluate`.

    Raises:
        EvaluationSetupError: a dataset column is missing, or the gate needs a baseline.
        BaselineError: the baseline cannot be read.
        DatasetError: ``output`` exists without ``resume``, or cannot be written.
    """
    from ..batch import run_batch
    from ..batch.output import read_results
    from ..observability.recorder import Recorder

    workflow = prepared.workflow
    check_columns(scoring, rows, dataset)
    if uses_baseline(scoring.evaluation.pass_if) and baseline is None:
        raise EvaluationSetupError("evaluation.pass_if reads baseline.<scorer>: give --baseline")
    digest = digest_of(dataset)
    recorder = prepared.observer(Recorder)
    found, note = None, None
    if baseline is not None:
        if recorder is None:
            raise BaselineError("--baseline needs the runs recorded in MLflow (tracing is off)")
        try:
            found = find_baseline(recorder.destination, recorder.config.experiment_name,
                                  workflow.name, digest, baseline)  # fmt: skip
        except NoBaselineYet as exc:
            note = f"{exc}: nothing to compare with, this evaluation becomes the baseline"
    labels = dict(tags or {})
    executors: list[EvalExecutor] = []

    def executor(row_tags: Mapping[str, str], batch_id: str) -> EvalExecutor:
        made = EvalExecutor(prepared, row_tags, batch_id, scoring, str(dataset))
        executors.append(made)
        return made

    with tempfile.TemporaryDirectory() as scratch:
        results_path = output or Path(scratch) / "results.jsonl"
        stats = await run_batch(
            prepared, rows, results_path, inputs=dataset, resume=resume, concurrency=concurrency,
            max_cost_usd=max_cost_usd, tags=labels, on_progress=on_progress, on_start=on_start,
            executor=executor, parent_run=False,
        )  # fmt: skip
        lines = read_results(results_path)
    summaries = summarise(((s.name, s.type) for s in scoring.scorers), lines.values())
    result = EvaluationResult(
        workflow=workflow.name,
        dataset=str(dataset),
        dataset_digest=digest,
        rows=len(lines),
        rows_failed=sum(line.get("status") != "success" for line in lines.values()),
        scorers=summaries,
        workflow_cost_usd=sum(line.get("cost_usd", 0.0) for line in lines.values()),
        judge_cost_usd=sum(line.get("scoring_cost_usd", 0.0) for line in lines.values()),
        pass_if=scoring.evaluation.pass_if,
        stopped=stats.stopped,
        output=str(output) if output else None,
        trace_ids=[line["trace_id"] for line in lines.values() if line.get("trace_id")],
        baseline_note=note,
    )
    values = row_values(lines)
    if found is not None:
        result.baseline_run_id = found.run_id
        result.comparisons = compare(summaries, values, found)
    result.passed, result.gate_error = gate(result, found)
    if recorder is not None:
        assessments = [a for made in executors for a in made.assessments]
        result.record_key = record_evaluation(
            recorder, result, stats, values, assessments, tags=labels,
            workflow_hash=workflow_hash(workflow),
        )  # fmt: skip
    return result
