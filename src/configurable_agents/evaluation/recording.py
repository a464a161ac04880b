"""The evaluation's MLflow run: `<scorer>/mean` metrics, totals, the dataset as its input, the
evaluated traces linked, and every row's assessments with the run as their source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..batch.recording import run_frame
from ..batch.runner import BATCH_ID_TAG
from .baseline import EVAL_ROWS_ARTIFACT, TAG_DATASET_DIGEST, TAG_EVAL_WORKFLOW
from .results import EvaluationResult

if TYPE_CHECKING:
    from ..batch import BatchStats
    from ..observability.recorder import Recorder

__all__ = ["RUN_TYPE_TAG", "record_evaluation"]

RUN_TYPE_TAG = ("mlflow.runType", "genai_evaluate")
"""The tag MLflow's own evaluations carry, which its UI lists under Evaluation runs."""


def _metrics(result: EvaluationResult) -> dict[str, float]:
    metrics: dict[str, float] = {
        "rows": result.rows,
        "rows_failed": result.rows_failed,
        "workflow_cost_usd": result.workflow_cost_usd,
        "judge_cost_usd": result.judge_cost_usd,
        "passed": 1.0 if result.passed else 0.0,
    }
    for name, summary in result.scorers.items():
        if summary.mean is not None:
            metrics[f"{name}/mean"] = summary.mean
        metrics[f"{name}/skipped"] = summary.skipped
        metrics[f"{name}/errors"] = summary.errors
        comparison = result.comparisons.get(name)
        if comparison is not None and comparison.delta is not None:
            metrics[f"{name}/delta"] = comparison.delta
    return metrics


def record_evaluation(
    recorder: Recorder,
    result: EvaluationResult,
    stats: BatchStats,
    rows: Mapping[str, Mapping[str, float | None]],
    assessments: list[dict[str, Any]],
    *,
    workflow_hash: str,
    tags: Mapping[str, str],
    with_dataset: bool = True,
) -> str:
    """Spool the evaluation run (written by the recorder's background writer after the traces
    it links; with ``with_dataset``, linked to the workflow version's MLflow model too), then
    the assessments, in records of their own naming the run as their source:
    waiting for the run (:meth:`~configurable_agents.observability.recorder.Recorder.flush_run`)
    does not wait for thousands of assessments. ``with_dataset`` logs the dataset as the run's
    input. Returns the key naming the run until it is written."""
    flow = recorder.workflow.config.flow
    run = {
        **run_frame(stats, flow.name, "eval"),
        "params": {
            "workflow_name": flow.name,
            "workflow_version": flow.version or "",
            "workflow_hash": workflow_hash,
            "dataset": result.dataset,
            "dataset_digest": result.dataset_digest,
            "pass_if": result.pass_if or "",
            "baseline_run_id": result.baseline_run_id or "",
            "scorers": ", ".join(f"{s.name}:{s.type}" for s in result.scorers.values()),
        },
        "metrics": _metrics(result),
        "tags": {
            **recorder.config.tags,
            **tags,
            "workflow": flow.name,
            TAG_EVAL_WORKFLOW: flow.name,
            TAG_DATASET_DIGEST: result.dataset_digest,
            BATCH_ID_TAG: stats.batch_id,
            RUN_TYPE_TAG[0]: RUN_TYPE_TAG[1],
            "eval.passed": "true" if result.passed else "false",
        },
        "artifacts": {EVAL_ROWS_ARTIFACT: dict(rows), "eval_summary.json": result.to_dict()},
    }
    dataset = (
        {
            "name": result.dataset.rsplit("/", 1)[-1],
            "digest": result.dataset_digest,
            "source": result.dataset,
        }
        if with_dataset
        else None
    )
    # an evaluation over a dataset ran this version; scored recorded traces may be of several
    key = recorder.record_run(run, result.trace_ids, dataset=dataset, of_version=with_dataset)
    recorder.record_assessments(assessments, source=key)
    return key
