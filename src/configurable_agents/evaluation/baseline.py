"""The baseline an evaluation is compared with: an earlier evaluation run in MLflow, its means and
its per-row values, and the paired test that tells a real change from noise."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .results import Comparison, ScorerSummary
from .scores import PASS_AT

__all__ = [
    "EVAL_ROWS_ARTIFACT",
    "TAG_DATASET_DIGEST",
    "TAG_EVAL_WORKFLOW",
    "Baseline",
    "BaselineError",
    "NoBaselineYet",
    "compare",
    "find_baseline",
]

EVAL_ROWS_ARTIFACT = "eval_rows.json"
"""Artifact of an evaluation run: ``{row id: {scorer: value}}``, what a later run pairs with."""

TAG_EVAL_WORKFLOW = "eval.workflow"
"""Run tag of an evaluation run: the workflow evaluated."""

TAG_DATASET_DIGEST = "eval.dataset_digest"
"""Run tag of an evaluation run: the digest of its dataset."""


class BaselineError(Exception):
    """The baseline cannot be found or read."""


class NoBaselineYet(BaselineError):
    """``--baseline latest`` found no earlier evaluation of the workflow on the dataset."""


@dataclass
class Baseline:
    """An earlier evaluation run.

    Attributes:
        run_id: Its MLflow run id.
        means: ``{scorer: mean}`` from its ``<scorer>/mean`` metrics.
        rows: ``{row id: {scorer: value}}`` (values None where skipped or in error).
    """

    run_id: str
    means: dict[str, float]
    rows: dict[str, dict[str, float | None]]


def find_baseline(
    tracking_uri: str, experiment: str, workflow: str, digest: str, ref: str
) -> Baseline:
    """Read the baseline ``ref``: a run id, or ``latest`` (the newest evaluation run of the same
    workflow and dataset digest in ``experiment``).

    Raises:
        BaselineError: no such run, or it is not an evaluation run.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        if ref == "latest":
            found = client.get_experiment_by_name(experiment)
            runs = [] if found is None else client.search_runs(
                [found.experiment_id],
                filter_string=f"tags.`{TAG_EVAL_WORKFLOW}` = '{_quoted(workflow)}' and "
                f"tags.`{TAG_DATASET_DIGEST}` = '{_quoted(digest)}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )  # fmt: skip
            if not runs:
                raise NoBaselineYet(
                    f"--baseline latest: no earlier evaluation of {workflow!r} on this dataset "
                    f"(digest {digest}) in experiment {experiment!r} of {tracking_uri}"
                )
            run = runs[0]
        else:
            run = client.get_run(ref)
        if TAG_EVAL_WORKFLOW not in run.data.tags:
            raise BaselineError(f"--baseline {ref}: run {run.info.run_id} is not an evaluation run")
        rows_path = client.download_artifacts(run.info.run_id, EVAL_ROWS_ARTIFACT)
        with open(rows_path, encoding="utf-8") as handle:
            rows = json.load(handle)
    except MlflowException as exc:
        raise BaselineError(f"--baseline {ref}: {exc.message.splitlines()[0]}") from None
    except (OSError, ValueError) as exc:
        raise BaselineError(
            f"--baseline {ref}: cannot read its {EVAL_ROWS_ARTIFACT}: {exc}"
        ) from None
    means = {
        key.removesuffix("/mean"): value
        for key, value in run.data.metrics.items()
        if key.endswith("/mean")
    }
    return Baseline(run.info.run_id, means, rows)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _sign_test(better: int, worse: int) -> float | None:
    if better + worse == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(better, better + worse, 0.5).pvalue)


def compare(
    summaries: Mapping[str, ScorerSummary],
    rows: Mapping[str, Mapping[str, Any]],
    baseline: Baseline,
) -> dict[str, Comparison]:
    """Each scorer against the baseline: the delta of the means, and over the rows scored in
    both, which got better or worse, a two-sided exact sign test and the regressions (passed
    before, fail now). ``rows`` is ``{row id: {scorer: value}}`` of this evaluation."""
    comparisons = {}
    for name, summary in summaries.items():
        before = baseline.means.get(name)
        delta = None if before is None or summary.mean is None else summary.mean - before
        comparison = Comparison(before, delta)
        for row_id, values in rows.items():
            now, then = values.get(name), baseline.rows.get(row_id, {}).get(name)
            if now is None or then is None:
                continue
            comparison.better += now > then
            comparison.worse += now < then
            if then >= PASS_AT > now:
                comparison.regressions.append(row_id)
        comparison.p_value = _sign_test(comparison.better, comparison.worse)
        comparisons[name] = comparison
    return comparisons
