"""Evaluation: score runs with the workflow's `evaluation:` scorers, gate changes on the scores.

:func:`evaluate` runs the workflow on every row of a dataset and scores each run;
:func:`score_traces` scores runs already recorded in MLflow; :class:`~.online.OnlineEvaluator`
scores a sample of the runs `serve` and `worker` finish. Every score becomes an MLflow assessment
on the run's trace. See docs/EVALUATION.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from ..config.loader import Workflow
from .baseline import Baseline, BaselineError
from .observation import Observation
from .results import Comparison, EvaluationResult, ScorerSummary
from .scores import Score
from .scoring import EvaluationSetupError, Scoring

__all__ = [
    "Baseline",
    "BaselineError",
    "Comparison",
    "EvaluationResult",
    "EvaluationSetupError",
    "Observation",
    "Score",
    "ScorerSummary",
    "Scoring",
    "evaluate",
]


def evaluate(
    workflow: Workflow | str | os.PathLike[str],
    dataset: str | os.PathLike[str] | None = None,
    *,
    llm: str | None = None,
    judge_llm: str | None = None,
    concurrency: int = 16,
    baseline: str | None = None,
    output: str | os.PathLike[str] | None = None,
    resume: bool = False,
    max_cost_usd: float | None = None,
    tags: Mapping[str, str] | None = None,
    trace: bool | None = None,
) -> EvaluationResult:
    """Run ``workflow`` on every row of ``dataset`` (default `evaluation.dataset`), score every
    run with the `evaluation:` scorers, compare with ``baseline`` (an MLflow run id of an
    earlier evaluation, or ``latest``) and decide `pass_if`.

    Each run's trace gets one assessment per scorer and the row's expected values; one MLflow
    evaluation run holds the means, totals and the dataset (see docs/EVALUATION.md).

    Raises:
        WorkflowValidationError: the workflow file is invalid.
        EvaluationSetupError: no scorers, a dataset column or a function scorer is missing, a
            judge cannot be prepared, or `pass_if` needs a baseline.
        BaselineError: the baseline cannot be read.
        DatasetError: the dataset cannot be read, or ``output`` exists without ``resume``.
        SetupError: a provider or tool of the workflow is missing, or ``max_cost_usd`` cannot be
            enforced.
    """
    from ..api import prepare_workflow
    from ..batch import read_rows
    from ..engine import load
    from .run import aevaluate, dataset_path

    loaded = load(workflow)
    scoring = Scoring(loaded, judge_llm=judge_llm, trace=trace)
    path = dataset_path(loaded, dataset)
    rows = read_rows(path, loaded)
    prepared = prepare_workflow(loaded, llm=llm, trace=trace)
    try:
        if max_cost_usd is not None:
            prepared.check_budget_enforceable("max_cost_usd")
            for judge in scoring.judges.all_prepared(scoring.scorers):
                judge.check_budget_enforceable("max_cost_usd (a judge's model)")
        return asyncio.run(
            aevaluate(
                prepared, scoring, rows, dataset=path, output=Path(output) if output else None,
                resume=resume, concurrency=concurrency, max_cost_usd=max_cost_usd,
                baseline=baseline, tags=tags,
            )
        )  # fmt: skip
    finally:
        prepared.close()  # its MCP servers
