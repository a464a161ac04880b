"""Per-run shared state: budgets with reservations, chat models, records, last known state."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..config.loader import Workflow
from ..llm.outputs import FINAL_ANSWER
from ..llm.settings import LLMSettings
from ..pricing import PriceBook, TokenUsage
from .events import EventListener, RunEvent, emit
from .observe import RunObserver
from .records import LangChainRun, ModelCallRecord, NodeRecord, Spend

if TYPE_CHECKING:
    from .durable import DurableStore
    from .node import NodePlan

__all__ = ["BudgetExceeded", "NodeFailed", "Reservation", "RunContext", "spend_of_step", "tell"]

_log = logging.getLogger(__name__)

_spend_sink: ContextVar[list[Spend] | None] = ContextVar("configurable_agents_spend", default=None)
"""Where the records of the graph step running in this task note their spend."""


@contextmanager
def spend_of_step() -> Iterator[list[Spend]]:
    """Collect the spend of the node executions recorded inside the block (this task's)."""
    sink: list[Spend] = []
    token = _spend_sink.set(sink)
    try:
        yield sink
    finally:
        _spend_sink.reset(token)


class BudgetExceeded(Exception):
    """A model call would take the run over `max_cost_usd` or `max_tokens`."""


class NodeFailed(Exception):
    """A node could not produce its output; the message says why in one line."""


@dataclass
class Reservation:
    """Budget held for a call in flight, released when its real usage is known."""

    tokens: int
    cost: Decimal


class RunContext:
    """Everything the nodes of one run share.

    A sub-workflow's nodes run with a child of it (:meth:`child`): their budget, records,
    observers and live events are the run's, their ids are paths (``classify/label``).
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        env: Mapping[str, str],
        prices: PriceBook | None = None,
        on_record: Callable[[NodeRecord], None] | None = None,
        models: dict[Any, Any] | None = None,
        observers: Sequence[RunObserver] = (),
        run_id: str = "",
        on_event: EventListener | None = None,
        store: DurableStore | None = None,
        earlier: Spend | None = None,
    ) -> None:
        execution = workflow.config.config.execution
        self.workflow = workflow
        self.env = env
        self.prices = prices or PriceBook()
        self.on_record = on_record
        self.max_cost = (
            Decimal(str(execution.max_cost_usd)) if execution.max_cost_usd is not None else None
        )
        self.max_tokens = execution.max_tokens
        self.calls = asyncio.Semaphore(execution.max_concurrency)
        self.records: list[NodeRecord] = []
        self._labels = {n.id: n.name for n in workflow.config.nodes if n.name}
        self.state: dict[str, Any] = {}
        self.spent_cost = Decimal(0)
        self.spent_tokens = 0
        self._held_cost = Decimal(0)
        self._held_tokens = 0
        self._models: dict[Any, Any] = {} if models is None else models
        self.observers = observers
        self.autolog = any(observer.captures_langchain for observer in observers)
        self.run_id = run_id
        self.on_event = on_event
        self.store = store
        self.earlier = earlier or Spend()
        self.spent = Spend()
        """What this attempt's finished node executions cost."""
        # a resumed run's budgets are the whole run's
        self.spent_cost = self.earlier.cost_usd
        self.spent_tokens = self.earlier.usage.total_tokens
        self.prefix = ""
        """Path of the workflow node whose sub-workflow this context runs, with a ``/``."""
        self.parent_execution_id: str | None = None
        """The execution of that workflow node (its record's ``execution_id``)."""
        self._root = self

    def child(self, workflow: Workflow, node_id: str, execution_id: str) -> RunContext:
        """The context of the sub-workflow ``workflow`` run by this context's node ``node_id``
        in its execution ``execution_id``: the same budget, records, chat models, observers and
        listener; its own state; its nodes named ``<path of node_id>/<id>``."""
        child = copy.copy(self)
        child.workflow = workflow
        child.prefix = f"{self.path(node_id)}/"
        child.parent_execution_id = execution_id
        child.state = {}
        child._labels = {n.id: n.name for n in workflow.config.nodes if n.name}
        return child

    def path(self, node_id: str) -> str:
        """A node of this context's workflow as the run names it: ``label``, or
        ``classify/label`` inside the sub-workflow of node ``classify``."""
        return f"{self.prefix}{node_id}"

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Tell the run's live listener of ``event``; a ``node`` in ``data`` is named by its
        path."""
        if self.on_event is not None:
            if self.prefix and isinstance(data.get("node"), str):
                data = {**data, "node": self.path(data["node"])}
            emit(self.on_event, RunEvent(event, self.run_id, data))

    def callbacks(self, runs: list[LangChainRun]) -> dict[str, Any] | None:
        """The LangChain config of a model or tool call: with autolog, one that also keeps
        LangChain's runs in ``runs``; else ``None`` (LangChain's defaults)."""
        if not self.autolog:
            return None
        from .capture import capture_config

        return capture_config(runs)

    def chat_model(self, settings: LLMSettings) -> Any:
        """The chat model for ``settings``, shared by the runs of one event loop."""
        if settings not in self._models:
            from ..llm.providers import create_chat_model

            self._models[settings] = create_chat_model(settings, self.env)
        return self._models[settings]

    def bound_model(self, plan: NodePlan, use_tools: bool) -> Any:
        """The node's chat model with its tools bound (`final_answer` forced unless the model may
        still call tools); binding converts schemas, so it is done once per event loop."""
        key = (self.path(plan.node.id), use_tools)
        if key not in self._models:
            model = self.chat_model(plan.settings)
            if use_tools:
                bound = model.bind_tools([*plan.tools, plan.output_model], tool_choice="any")
            else:
                bound = model.bind_tools([plan.output_model], tool_choice=FINAL_ANSWER)
            self._models[key] = bound
        return self._models[key]

    def reserve(self, node_id: str, settings: LLMSettings, prompt_tokens: int) -> Reservation:
        """Hold budget for a call whose prompt has about ``prompt_tokens`` tokens.

        Raises:
            BudgetExceeded: spend so far, plus what calls in flight hold, plus this call's input
                would exceed a budget.
        """
        root, node_id = self._root, self.path(node_id)
        cost = Decimal(0)
        if self.max_cost is not None:
            price = self.prices.price(settings.provider, settings.model, TokenUsage(prompt_tokens))
            cost = price.cost_usd or Decimal(0)
            self._check_cost(cost, f"the next call of node {node_id!r} needs about")
        if self.max_tokens is not None:
            committed_tokens = root.spent_tokens + root._held_tokens
            if committed_tokens + prompt_tokens > self.max_tokens:
                raise BudgetExceeded(
                    f"token budget of {self.max_tokens} reached: {committed_tokens} used or "
                    f"committed, the next call of node {node_id!r} needs about {prompt_tokens}"
                )
        root._held_cost += cost
        root._held_tokens += prompt_tokens
        return Reservation(prompt_tokens, cost)

    def reserve_tool(self, node_id: str, tool: str, cost: Decimal) -> Reservation:
        """Hold budget for a call of a tool that costs ``cost`` per call.

        Raises:
            BudgetExceeded: spend so far, plus what calls in flight hold, plus this call's price
                would exceed the cost budget.
        """
        if self.max_cost is not None:
            where = f"the next call of tool {tool!r} of node {self.path(node_id)!r} costs"
            self._check_cost(cost, where)
        self._root._held_cost += cost
        return Reservation(0, cost)

    def _check_cost(self, cost: Decimal, next_call: str) -> None:
        committed = self._root.spent_cost + self._root._held_cost
        if self.max_cost is not None and committed + cost > self.max_cost:
            raise BudgetExceeded(
                f"budget of ${self.max_cost} reached: ${committed:.6f} spent or committed, "
                f"{next_call} ${cost:.6f}"
            )

    def settle(self, reservation: Reservation, usage: TokenUsage, cost: Decimal | None) -> None:
        """Replace a reservation by what the call really used."""
        root = self._root
        root._held_cost -= reservation.cost
        root._held_tokens -= reservation.tokens
        root.spent_tokens += usage.total_tokens
        root.spent_cost += cost or Decimal(0)

    def record(self, record: NodeRecord) -> None:
        """Keep a finished node execution and tell the listener and the observers; a
        sub-workflow's record is named by its path, under its workflow node's execution."""
        if self.prefix:
            record.node_id = self.path(record.node_id)
            record.parent_execution_id = self.parent_execution_id
        self.records.append(record)
        spend = Spend.of(record)
        self._root.spent += spend
        sink = _spend_sink.get()
        if sink is not None:
            sink.append(spend)
        if self.on_record is not None:
            self.on_record(record)
        tell(self.observers, "node_finished", record)
        if self.on_event is not None:
            usage = record.usage
            self._root.emit(  # the record is named by its path already
                "node_finished",
                {
                    "node": record.node_id,
                    "label": self._labels.get(record.node_id.removeprefix(self.prefix)),
                    "iteration": record.iteration,
                    "item_index": record.item_index,
                    "outputs": record.output,
                    "error": record.error,
                    "tokens": {
                        "input": usage.input_tokens,
                        "output": usage.output_tokens,
                        "total": usage.total_tokens,
                    },
                    "cost_usd": float(record.known_cost_usd),
                    "duration_s": record.duration_s,
                },
            )

    def call_finished(self, node_id: str, call: ModelCallRecord) -> None:
        """Tell the observers that a model call of ``node_id`` ended."""
        tell(self.observers, "call_finished", self.path(node_id), call)


def tell(observers: Sequence[RunObserver], event: str, *args: Any) -> None:
    """Call ``event`` on each observer in order; one that raises is logged, never propagated."""
    for observer in observers:
        try:
            getattr(observer, event)(*args)
        except Exception as exc:  # observing never fails a run
            _log.warning("observer %r failed on %s: %s", observer, event, exc)
