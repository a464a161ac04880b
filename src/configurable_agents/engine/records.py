"""What a run produces: its status, state, outputs, and one record per node execution."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ..pricing import Price, TokenUsage
from .events import WaitingFor

__all__ = [
    "FailedAttempt",
    "LangChainRun",
    "ModelCallRecord",
    "NodeRecord",
    "RunResult",
    "RunStatus",
    "Spend",
    "ToolCallRecord",
]


class RunStatus(StrEnum):
    """How a run ended."""

    SUCCESS = "success"
    FAILED = "failed"
    BUDGET_EXCEEDED = "budget_exceeded"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    WAITING = "waiting"
    """Paused for a person (a `human` node or `interrupt_before`); `resume` goes on."""


@dataclass
class LangChainRun:
    """A run LangChain reported during a model or tool call, kept as a span to be (autolog).

    Attributes:
        run_id: LangChain's id of the run.
        parent_run_id: The captured run it ran in; ``None`` for the call's own run.
        name: What LangChain calls it (``ChatOpenAI``, a tool's or a chain's name).
        span_type: The MLflow span type autolog gives it (``CHAT_MODEL``, ``TOOL``, ...).
        started_ns: Wall-clock start, nanoseconds since the epoch.
        ended_ns: Wall-clock end; 0 while (or if it never stopped) running.
        attributes: MLflow span attributes, inputs and outputs included, JSON-ready.
        error: Why it failed, if it did.
    """

    run_id: str
    parent_run_id: str | None
    name: str
    span_type: str
    started_ns: int
    ended_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ToolCallRecord:
    """One tool call made by the model during a node execution.

    ``cost_usd`` is the tool's per-call price from the price file, for a call that returned a
    result (0 otherwise). ``runs`` holds what LangChain reported while the tool ran, when autolog
    is on. ``attributes`` are what its span carries besides (an MCP tool's ``mcp.server`` and
    ``mcp.tool``).
    """

    name: str
    args: dict[str, Any]
    result: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    started_ns: int = 0
    cost_usd: Decimal = Decimal(0)
    attributes: dict[str, str] = field(default_factory=dict)
    runs: list[LangChainRun] = field(default_factory=list, repr=False, compare=False)


@dataclass
class FailedAttempt:
    """One attempt of a model call that failed (and was retried, unless it was the last).

    Attributes:
        started_ns: Wall-clock start, nanoseconds since the epoch.
        duration_s: How long it ran before it failed.
        error: Why it failed, in one line.
    """

    started_ns: int
    duration_s: float
    error: str


@dataclass
class ModelCallRecord:
    """One model call (retries of a transient error included) of a node execution.

    Attributes:
        started_ns: Wall-clock start, nanoseconds since the epoch.
        duration_s: How long it took.
        usage: Tokens it used.
        reply: What the model answered: its tool calls, or its text.
        error: Why it failed, if it did.
        pricer: Prices the usage; called once, when the cost is first needed (pricing is kept
            off the run's path unless a cost budget needs it there).
        runs: What LangChain reported during the call (one chat-model run per attempt), when
            autolog is on.
        failed_attempts: Each attempt that failed, the last one included if the call failed.
    """

    started_ns: int
    duration_s: float = 0.0
    usage: TokenUsage = field(default_factory=TokenUsage)
    reply: Any = None
    error: str | None = None
    pricer: Callable[[TokenUsage], Price] | None = field(default=None, repr=False, compare=False)
    runs: list[LangChainRun] = field(default_factory=list, repr=False, compare=False)
    failed_attempts: list[FailedAttempt] = field(default_factory=list)
    _price: Price | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def price(self) -> Price:
        """The call's price (computed on first use)."""
        if self._price is None:
            self._price = (
                self.pricer(self.usage) if self.pricer else Price.of(Decimal(0), Decimal(0), "")
            )
        return self._price

    @property
    def cost_usd(self) -> Decimal | None:
        """The call's cost, or ``None`` when the model is unpriced."""
        return self.price.cost_usd


@dataclass
class NodeRecord:
    """One execution of a node (a loop iteration or fan-out item is an execution of its own).

    Attributes:
        node_id: The node.
        iteration: 1-based loop iteration, for nodes repeated by a `loop` edge.
        item_index: 0-based fan-out item, for nodes run by a `parallel` edge.
        provider: LLM provider called.
        model: Model called.
        duration_s: Wall time of the execution.
        tool_calls: Tools the model called.
        output: What the node wrote to state.
        error: Why the execution failed, if it did.
        prompt: The rendered prompt.
        started_ns: Wall-clock start, nanoseconds since the epoch.
        calls: Each model call; the execution's usage and cost are theirs summed.
        execution_id: Names this execution among the run's (16 hex digits).
        parent_execution_id: For a node of a sub-workflow, the execution of the workflow node
            it ran in (its ``node_id`` is then its path, ``classify/label``).
        inputs: For a workflow node, what its sub-workflow was given.
    """

    node_id: str
    provider: str
    model: str
    iteration: int | None = None
    item_index: int | None = None
    duration_s: float = 0.0
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    output: dict[str, Any] | None = None
    error: str | None = None
    prompt: str = ""
    started_ns: int = 0
    calls: list[ModelCallRecord] = field(default_factory=list)
    execution_id: str = field(default_factory=lambda: secrets.token_hex(8))
    parent_execution_id: str | None = None
    inputs: dict[str, Any] | None = None

    @property
    def model_calls(self) -> int:
        """Model calls made, retries of invalid replies included."""
        return len(self.calls)

    @property
    def usage(self) -> TokenUsage:
        """Tokens of every model call of the execution."""
        return sum((call.usage for call in self.calls), TokenUsage())

    @property
    def tool_cost_usd(self) -> Decimal:
        """Cost of the execution's priced tool calls."""
        return sum((tool.cost_usd for tool in self.tool_calls), Decimal(0))

    @property
    def known_cost_usd(self) -> Decimal:
        """Cost of the execution's priced model calls and of its tool calls."""
        costs = (call.cost_usd for call in self.calls if call.cost_usd is not None)
        return sum(costs, self.tool_cost_usd)

    @property
    def unpriced(self) -> bool:
        """Whether a model call of the execution has no known price."""
        return any(call.cost_usd is None for call in self.calls)

    @property
    def cost_usd(self) -> Decimal | None:
        """Cost of the execution's model and tool calls, or ``None`` when a model call is
        unpriced (see :attr:`known_cost_usd` for what is known)."""
        return None if self.unpriced else self.known_cost_usd

    @property
    def price_source(self) -> str:
        """Where the price of the execution's calls came from."""
        return self.calls[-1].price.source if self.calls else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; tokens flattened, cost as a float."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "calls"}
        data["tool_calls"] = [
            {f.name: getattr(c, f.name) for f in fields(c) if f.name not in ("runs", "cost_usd")}
            | {"cost_usd": float(c.cost_usd)}
            for c in self.tool_calls
        ]
        data.update(
            model_calls=self.model_calls,
            price_source=self.price_source,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            cached_tokens=self.usage.cached_tokens,
            reasoning_tokens=self.usage.reasoning_tokens,
            cost_usd=None if self.cost_usd is None else float(self.cost_usd),
        )
        return data


_TOKEN_KINDS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
                "reasoning_tokens")  # fmt: skip


@dataclass
class Spend:
    """What calls cost, carried from one attempt of a run to the next.

    Attributes:
        cost_usd: Cost of the priced calls.
        usage: Tokens.
        calls: Model calls made.
        unpriced: Whether a model call had no known price.
    """

    cost_usd: Decimal = Decimal(0)
    usage: TokenUsage = field(default_factory=TokenUsage)
    calls: int = 0
    unpriced: bool = False

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.cost_usd + other.cost_usd,
            self.usage + other.usage,
            self.calls + other.calls,
            self.unpriced or other.unpriced,
        )

    def __sub__(self, other: Spend) -> Spend:
        usage = TokenUsage(**{k: getattr(self.usage, k) - getattr(other.usage, k)
                              for k in _TOKEN_KINDS})  # fmt: skip
        return Spend(self.cost_usd - other.cost_usd, usage, self.calls - other.calls,
                     self.unpriced)  # fmt: skip

    @classmethod
    def of(cls, record: NodeRecord) -> Spend:
        """What one node execution spent."""
        return cls(record.known_cost_usd, record.usage, len(record.calls), record.unpriced)

    @classmethod
    def of_records(cls, records: list[NodeRecord]) -> Spend:
        """What the node executions spent."""
        return sum((cls.of(record) for record in records), cls())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the cost as a string, exact)."""
        return {
            "cost_usd": str(self.cost_usd),
            **{kind: getattr(self.usage, kind) for kind in _TOKEN_KINDS},
            "calls": self.calls,
            "unpriced": self.unpriced,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Spend:
        """The inverse of :meth:`to_dict`."""
        usage = TokenUsage(**{k: int(data.get(k, 0)) for k in _TOKEN_KINDS})
        return cls(Decimal(str(data.get("cost_usd", "0"))), usage, int(data.get("calls", 0)),
                   bool(data.get("unpriced", False)))  # fmt: skip


@dataclass
class RunResult:
    """The outcome of :func:`configurable_agents.run_workflow`; partial if the run did not succeed.

    Attributes:
        run_id: Unique id of the run.
        workflow: The workflow's name.
        status: How the run ended.
        state: The final (or last known) state.
        outputs: The values of every field some node writes.
        records: One record per node execution, in completion order.
        error: Why the run did not succeed, in one line.
        duration_s: Wall time of the run.
        started_ns: Wall-clock start, nanoseconds since the epoch.
        inputs: The inputs the run was given.
        tags: Labels the run was given.
        trace_id: The MLflow trace of the run (``tr-...``), when it is recorded.
        session_id: The session the run belongs to, if any.
        attempt: 1 for a first run, then one more at each resume.
        resumed_from: The trace of the attempt this one resumed, when known.
        earlier: What the earlier attempts of a resumed run spent (their calls are never made
            again): :attr:`cost_usd` and :attr:`usage` include it, :attr:`records` do not.
        waiting: What a `waiting` run waits for.
        traceparent: The caller's W3C ``traceparent`` the run continues, if any.
    """

    run_id: str
    workflow: str
    status: RunStatus
    state: dict[str, Any]
    outputs: dict[str, Any]
    records: list[NodeRecord]
    error: str | None = None
    duration_s: float = 0.0
    started_ns: int = 0
    inputs: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    trace_id: str | None = None
    session_id: str | None = None
    attempt: int = 1
    resumed_from: str | None = None
    earlier: Spend = field(default_factory=lambda: Spend())
    waiting: list[WaitingFor] = field(default_factory=list)
    traceparent: str | None = None

    @property
    def attempt_usage(self) -> TokenUsage:
        """Tokens of this attempt's calls (what its trace records)."""
        return sum((record.usage for record in self.records), TokenUsage())

    @property
    def attempt_cost_usd(self) -> Decimal:
        """Cost of this attempt's priced model calls and tool calls (what its trace records)."""
        return sum((r.known_cost_usd for r in self.records), Decimal(0))

    @property
    def usage(self) -> TokenUsage:
        """Tokens of the whole run, earlier attempts included."""
        return self.earlier.usage + self.attempt_usage

    @property
    def cost_usd(self) -> Decimal:
        """Cost of the priced model calls and the tool calls of the whole run, earlier attempts
        included (see :attr:`unpriced` for the others)."""
        return self.earlier.cost_usd + self.attempt_cost_usd

    @property
    def unpriced(self) -> bool:
        """Whether some model of the run has no known price (so its cost is not in the total)."""
        return self.earlier.unpriced or any(r.unpriced for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written by ``run -o``."""
        usage = self.usage
        return {
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "workflow": self.workflow,
            "status": self.status.value,
            "error": self.error,
            "duration_s": round(self.duration_s, 6),
            "cost_usd": float(self.cost_usd),
            "unpriced": self.unpriced,
            "tokens": {
                "input": usage.input_tokens,
                "output": usage.output_tokens,
                "total": usage.total_tokens,
                "cached": usage.cached_tokens,
                "reasoning": usage.reasoning_tokens,
            },
            "session_id": self.session_id,
            "attempt": self.attempt,
            "resumed_from": self.resumed_from,
            "waiting": [w.to_dict() for w in self.waiting],
            "outputs": self.outputs,
            "state": self.state,
            "nodes": [record.to_dict() for record in self.records],
        }
