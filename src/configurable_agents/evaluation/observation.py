"""A finished run as scorers see it, whether it ran just now or was read back from a trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine import RunResult

__all__ = ["Observation"]


@dataclass
class Observation:
    """What one run did, handed to every scorer (a function scorer receives it as its argument).

    Attributes:
        inputs: The run's inputs.
        outputs: The values of every field some node writes.
        expectations: The row's expected values, by dataset column (empty for production traces).
        status: How the run ended (`success`, `failed`, `timeout`, ...).
        error: Why it did not succeed, if it did not.
        cost_usd: Cost of its priced calls, USD.
        unpriced: Whether some model of the run has no known price.
        duration_s: Wall time of the run.
        tokens: Tokens of every model call of the run.
        tool_calls: Names of the tools it called, in the order they started.
        trace_id: Its MLflow trace, when recorded.
        run_id: Its run id.
    """

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    expectations: dict[str, Any] = field(default_factory=dict)
    status: str = "success"
    error: str | None = None
    cost_usd: float = 0.0
    unpriced: bool = False
    duration_s: float = 0.0
    tokens: int = 0
    tool_calls: list[str] = field(default_factory=list)
    trace_id: str | None = None
    run_id: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run ended with status `success`."""
        return self.status == "success"

    @classmethod
    def of(cls, result: RunResult, expectations: dict[str, Any] | None = None) -> Observation:
        """The observation of a run result."""
        calls = sorted(
            (call for record in result.records for call in record.tool_calls),
            key=lambda call: call.started_ns,
        )
        return cls(
            inputs=dict(result.inputs),
            outputs=dict(result.outputs),
            expectations=dict(expectations or {}),
            status=result.status.value,
            error=result.error,
            cost_usd=float(result.cost_usd),
            unpriced=result.unpriced,
            duration_s=result.duration_s,
            tokens=result.usage.total_tokens,
            tool_calls=[call.name for call in calls],
            trace_id=result.trace_id,
            run_id=result.run_id,
        )
