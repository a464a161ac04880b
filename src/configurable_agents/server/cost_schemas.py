"""The answer of ``GET /costs``: a cost report (:class:`~configurable_agents.reports.CostReport`)
as its ``to_dict()`` gives it, described field by field for the OpenAPI document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CostFilters",
    "CostReport",
    "ModelCost",
    "NodeCost",
    "PeriodCost",
    "TagCost",
    "Unpriced",
    "WorkflowCost",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class WorkflowCost(_Strict):
    """A workflow's runs and what they cost."""

    workflow: str
    runs: int
    successful: int
    failed: int
    """Runs that did not succeed (failed, budget or time exceeded, cancelled)."""
    tokens: int
    cost_usd: float


class ModelCost(_Strict):
    """What the calls of one model (or priced tool, provider ``tool``) cost."""

    model: str
    provider: str
    cost_usd: float


class NodeCost(_Strict):
    """What one node of a workflow cost."""

    workflow: str
    node: str
    cost_usd: float


class TagCost(_Strict):
    """The runs carrying one value of a tag (``(none)``: runs without the tag)."""

    value: str
    runs: int
    successful: int
    failed: int
    tokens: int
    cost_usd: float


class PeriodCost(_Strict):
    """One UTC day (``2026-11-25``), ISO week (``2026-W48``) or month (``2026-11``)."""

    period: str
    runs: int
    cost_usd: float
    by_workflow: dict[str, float]
    """Cost per workflow."""
    by_model: dict[str, float]
    """Cost per model."""


class Unpriced(_Strict):
    """Runs that called a model with no known price: counted, never costed as $0."""

    runs: int
    models: list[str]
    """``provider/model`` of the unpriced models of the runs listed."""
    trace_ids: list[str]
    """Up to 20 of those runs, newest first."""


class CostFilters(_Strict):
    """What the report covers."""

    tracking_uri: str
    """The MLflow store (without its password)."""
    experiment: str | None
    workflow: str | None
    start: str | None
    """First instant covered (ISO 8601, UTC), ``null`` for no bound."""
    end: str | None
    """Last instant covered (ISO 8601, UTC), ``null`` for no bound."""
    status: Literal["success", "failure"] | None


class CostReport(_Strict):
    """What the runs covered cost (USD) and used (tokens). ``total_cost_usd`` is the cost of
    every priced call; the breakdowns not asked for are empty."""

    total_cost_usd: float
    total_runs: int
    successful: int
    failed: int
    total_tokens: int
    avg_cost_per_run: float
    avg_tokens_per_run: float
    by_workflow: list[WorkflowCost]
    by_model: list[ModelCost]
    by_node: list[NodeCost]
    by_tag: dict[str, list[TagCost]]
    """Per tag key asked for (``breakdown=tag:KEY``), one row per value, costliest first."""
    periods: list[PeriodCost]
    """Per period, with ``aggregate_by``."""
    unpriced: Unpriced
    source: Literal["traces", "runs"]
    """How the figures were read: MLflow's trace metrics, or paging runs."""
    filters: CostFilters
