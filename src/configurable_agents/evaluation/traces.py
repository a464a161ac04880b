"""Scoring runs already in the store (production traffic) without running anything again.

The workflow's traces are read back from MLflow, turned into :class:`~.observation.Observation`
objects from their spans, scored, and the assessments attached to them, with one evaluation run
linking them. Traces that already carry a feedback of every scorer that applies to them (those
reading no dataset column) are left alone, so scoring a period twice does not score its traces
twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..observability import layout
from .executor import assessments_of
from .observation import Observation
from .recording import record_evaluation
from .results import EvaluationResult, summarise
from .run import gate, row_values

if TYPE_CHECKING:
    from ..observability.recorder import Recorder
    from .scoring import Scoring

__all__ = ["observation_of", "score_traces", "traces_gate"]


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def observation_of(trace: Any) -> Observation:
    """What a recorded trace says its run did."""
    spans = trace.data.spans
    root = next(span for span in spans if span.parent_id is None)
    tags = trace.info.tags
    tokens = 0
    for span in spans:
        usage = _json(span.attributes.get("mlflow.chat.tokenUsage"))
        if isinstance(usage, dict):
            tokens += int(usage.get("total_tokens") or 0)
    tools = sorted((s for s in spans if s.span_type == "TOOL"), key=lambda s: s.start_time_ns)
    outputs, inputs = root.outputs, root.inputs
    return Observation(
        inputs=inputs if isinstance(inputs, dict) else {},
        outputs=outputs if isinstance(outputs, dict) else {},
        status=tags.get(layout.TAG_STATUS, "success"),
        error=root.status.description or None,
        cost_usd=_float(root.attributes.get(layout.SPAN_TOTAL_COST)),
        unpriced=tags.get(layout.TAG_UNPRICED) == "true",
        duration_s=(trace.info.execution_duration or 0) / 1000,
        tokens=tokens,
        tool_calls=[span.name for span in tools],
        trace_id=trace.info.trace_id,
    )


def _scored(trace: Any, names: set[str]) -> bool:
    return names <= {a.name for a in trace.info.assessments or [] if a.feedback is not None}


_PAGE = 100
"""Traces read per request while looking for unscored ones."""


def _unscored(recorder: Recorder, names: set[str], *, start_ms: int | None,
              end_ms: int | None, tags: Mapping[str, str], limit: int) -> list[Any]:  # fmt: skip
    """Up to ``limit`` of the workflow's traces (newest first) not yet scored by ``names``,
    paging past the scored ones."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(recorder.destination)
    experiment = client.get_experiment_by_name(recorder.config.experiment_name)
    if experiment is None:
        return []
    quoted = {**tags, layout.TAG_WORKFLOW: recorder.workflow.name}
    clauses = [f"tags.`{k}` = '{v.replace(chr(39), chr(92) + chr(39))}'" for k, v in quoted.items()]
    if start_ms is not None:
        clauses.append(f"attributes.timestamp_ms >= {start_ms}")
    if end_ms is not None:
        clauses.append(f"attributes.timestamp_ms < {end_ms}")
    found: list[Any] = []
    token = None
    while len(found) < limit:
        page = client.search_traces(
            locations=[experiment.experiment_id], filter_string=" and ".join(clauses),
            order_by=["timestamp_ms DESC"], max_results=_PAGE, page_token=token,
        )  # fmt: skip
        found += [trace for trace in page if not _scored(trace, names)]
        token = page.token
        if not token:
            break
    return found[:limit]


async def score_traces(
    recorder: Recorder,
    scoring: Scoring,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    tags: Mapping[str, str] | None = None,
    limit: int = 100,
) -> EvaluationResult:
    """Score up to ``limit`` of the workflow's unscored traces (newest first) in the period and
    with the tags given, attach the assessments and record an evaluation run linking them.
    Scorers that read a dataset column are skipped (traces have no expected values); the gate is
    `pass_if` only when it reads none of them and no baseline (:func:`traces_gate`), and with
    no gate the result passes."""
    from ..batch import BatchStats

    started = time.monotonic()
    names = {s.name for s in scoring.scorers if getattr(s, "expected", None) is None}
    found = _unscored(recorder, names, start_ms=start_ms, end_ms=end_ms, tags=tags or {},
                      limit=limit)  # fmt: skip
    lines: dict[str, dict[str, Any]] = {}
    assessments: list[dict[str, Any]] = []
    numeric = {s.name for s in scoring.scorers if s.type == "function"}
    for trace in found:
        obs = observation_of(trace)
        scores = await scoring.score(obs, tags={"eval.mode": "traces"})
        lines[obs.trace_id or ""] = {
            "status": obs.status, "cost_usd": obs.cost_usd, "trace_id": obs.trace_id,
            "scoring_cost_usd": sum(s.cost_usd for s in scores.values()),
            "scores": {name: score.to_dict() for name, score in scores.items()},
        }  # fmt: skip
        assessments += assessments_of(obs.trace_id or "", scores, {}, dataset="traces",
                                      numeric=numeric)  # fmt: skip
    result = EvaluationResult(
        workflow=recorder.workflow.name,
        dataset="traces",
        dataset_digest="traces",
        rows=len(lines),
        rows_failed=sum(line["status"] != "success" for line in lines.values()),
        scorers=summarise(((s.name, s.type) for s in scoring.scorers), lines.values()),
        workflow_cost_usd=sum(line["cost_usd"] for line in lines.values()),
        judge_cost_usd=sum(line["scoring_cost_usd"] for line in lines.values()),
        pass_if=traces_gate(scoring),
        trace_ids=[trace_id for trace_id in lines if trace_id],
    )
    result.passed, result.gate_error = gate(result, None)
    if result.pass_if is None:  # production runs that failed are scored, not a failed gate
        result.passed = True
    stats = BatchStats(total=len(lines), done=len(lines))
    stats.started = started
    stats.ended = time.monotonic()
    if lines:
        result.record_key = record_evaluation(
            recorder, result, stats, row_values(lines), assessments, workflow_hash="",
            tags={**(tags or {}), "eval.mode": "traces"}, with_dataset=False,
        )  # fmt: skip
    return result


def traces_gate(scoring: Scoring) -> str | None:
    """`pass_if` when it can hold on recorded traces: it reads only scorers that need no dataset
    column, and no baseline. Otherwise None: scoring traces then gates nothing."""
    from ..config.conditions import parse_condition

    text = scoring.evaluation.pass_if
    if text is None:
        return None
    applicable = {s.name for s in scoring.scorers if getattr(s, "expected", None) is None}
    paths = parse_condition(text, arithmetic=True).paths()
    return text if all(path.parts[0] in applicable for path in paths) else None
