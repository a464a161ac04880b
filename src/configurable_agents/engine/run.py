"""Running a workflow: checks before any call, the graph run, and a result whatever happens.

A run that fails, times out, is cancelled or reaches a budget still returns its partial state, its
records and its spend so far.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..config.loader import Workflow, load_workflow
from ..llm.outputs import FINAL_ANSWER, output_model
from ..llm.settings import parse_llm_override, resolve_llm
from ..pricing import PriceBook, PricingError, TokenUsage, load_price_book
from .calls import describe_error
from .context import BudgetExceeded, NodeFailed, RunContext, tell
from .inputs import check_inputs
from .node import NodePlan
from .observe import RunObserver, RunStart
from .records import NodeRecord, RunResult, RunStatus

T = TypeVar("T")

__all__ = ["PreparedWorkflow", "SetupError", "load", "outputs_of", "prepare_workflow"]


class SetupError(Exception):
    """The workflow cannot start: a provider's package or key, or a tool, is missing."""


def _price_book(workflow: Workflow) -> PriceBook:
    name = workflow.config.config.observability.pricing_file
    if name is not None and workflow.source and not Path(name).is_absolute():
        name = str(Path(workflow.source).parent / name)
    try:
        return load_price_book(name)
    except PricingError as exc:
        raise SetupError(f"price file: {exc}") from None


def _plans(
    workflow: Workflow, llm: str | None, env: Mapping[str, str], prices: PriceBook
) -> dict[str, NodePlan]:
    from ..llm.providers import ProviderError, check_provider

    override = parse_llm_override(llm) if llm else None
    config = workflow.config.config
    plans: dict[str, NodePlan] = {}
    problems: dict[str, list[str]] = {}  # problem -> nodes it affects
    for node in workflow.config.nodes:
        if node.prompt_ref is not None:
            problem = (
                "the prompt is a registry reference: prepare the workflow with "
                "configurable_agents.prepare_workflow, which resolves it"
            )
            problems.setdefault(problem, []).append(node.id)
        settings = resolve_llm(config.llm, node, override)
        try:
            check_provider(settings, env)
        except ProviderError as exc:
            problems.setdefault(str(exc), []).append(node.id)
        if config.execution.max_cost_usd is not None and not _priced(prices, settings):
            problem = (
                f"max_cost_usd is set but {settings.provider}/{settings.model} has no known "
                "price, so the budget cannot be enforced"
            )
            problems.setdefault(problem, []).append(node.id)
        tools: list[Any] = []
        if node.tools:
            from ..tools import ToolError, build_tools

            try:
                tools = build_tools(node.tool_refs, config.tools, env=env)
            except ToolError as exc:
                problems.setdefault(str(exc), []).append(node.id)
            if any(tool.name == FINAL_ANSWER for tool in tools):
                problem = f"a tool may not be named {FINAL_ANSWER!r}: the engine uses that name"
                problems.setdefault(problem, []).append(node.id)
        plans[node.id] = NodePlan(
            node=node,
            settings=settings,
            output_model=output_model(workflow, node),
            tools=tools,
            max_retries=(
                node.max_retries if node.max_retries is not None else config.execution.max_retries
            ),
        )
    if problems:
        raise SetupError(
            "; ".join(f"{problem} (nodes: {', '.join(ids)})" for problem, ids in problems.items())
        )
    return plans


def _priced(prices: PriceBook, settings: Any) -> bool:
    return prices.price(settings.provider, settings.model, TokenUsage(1)).cost_usd is not None


def load(workflow_or_path: Workflow | str | os.PathLike[str]) -> Workflow:
    """The workflow itself, or the one loaded from the path.

    Raises:
        WorkflowValidationError: the workflow file is invalid.
    """
    if isinstance(workflow_or_path, Workflow):
        return workflow_or_path
    return load_workflow(Path(workflow_or_path))


def outputs_of(workflow: Workflow, state: dict[str, Any]) -> dict[str, Any]:
    """The values of ``state`` that are outputs: fields some node (or a fan-out) writes."""
    written = {name for node in workflow.config.nodes for name in node.outputs}
    written |= {e.parallel.collect_field for e in workflow.config.edges if e.parallel is not None}
    return {name: state[name] for name in workflow.fields if name in written and name in state}


def _failure(ctx: RunContext, exc: BaseException) -> str:
    """One line for a run that failed on ``exc``, naming the node that failed if one did."""
    failed = next((r for r in reversed(ctx.records) if r.error), None)
    where = f"node {failed.node_id!r}: " if failed else ""
    return f"{where}{describe_error(exc)}"


@dataclass
class PreparedWorkflow:
    """A workflow checked against its providers and tools and compiled once, ready for many runs.

    Attributes:
        workflow: The validated workflow.
        llm: The run-wide ``PROVIDER[:MODEL]`` override, if any.
        plans: Per-node settings, output models and tools.
        env: Environment the API keys are read from.
        prices: The price book of its calls.
        graph: The compiled LangGraph graph.
        observers: Told of every run as it goes (:class:`~.observe.RunObserver`), in order: MLflow
            recording, OpenTelemetry export, Prometheus metrics, whatever the caller attached.
    """

    workflow: Workflow
    llm: str | None
    plans: dict[str, NodePlan]
    env: Mapping[str, str]
    prices: PriceBook
    graph: Any = None
    observers: list[RunObserver] = field(default_factory=list)
    _models: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    def observer(self, kind: type[T]) -> T | None:
        """The first attached observer of type ``kind``, if any."""
        return next((o for o in self.observers if isinstance(o, kind)), None)

    def unpriced_models(self) -> list[str]:
        """``provider/model`` of each model the nodes call that has no known price."""
        found = (p.settings for p in self.plans.values() if not _priced(self.prices, p.settings))
        return sorted({f"{settings.provider}/{settings.model}" for settings in found})

    def check_budget_enforceable(self, option: str) -> None:
        """Raise :class:`SetupError` if a cost budget given as ``option`` cannot be enforced
        because a model of the workflow has no known price."""
        unpriced = self.unpriced_models()
        if unpriced:
            raise SetupError(
                f"{option}: {', '.join(unpriced)} has no known price, so the budget cannot be "
                "enforced (price it in a price file)"
            )

    async def arun(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        on_record: Callable[[NodeRecord], None] | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Run once; see :func:`run_workflow`. ``run_id`` names the run (default: a new id)."""
        from langgraph.errors import GraphRecursionError

        from .graph import CONTEXT_KEY

        workflow = self.workflow
        state = check_inputs(workflow, inputs or {})
        run_id = run_id or uuid.uuid4().hex
        tags = dict(tags or {})
        observers = list(self.observers)
        tell(observers, "run_started", RunStart(run_id, workflow.name, dict(inputs or {}), tags))
        models = self._models.setdefault(asyncio.get_running_loop(), {})
        ctx = RunContext(
            workflow,
            env=self.env,
            prices=self.prices,
            on_record=on_record,
            models=models,
            observers=observers,
        )
        ctx.state = dict(state)
        execution = workflow.config.config.execution
        run_config = {
            "recursion_limit": execution.recursion_limit,
            "configurable": {CONTEXT_KEY: ctx},
        }
        started = time.perf_counter()
        started_ns = time.time_ns()
        status, error = RunStatus.SUCCESS, None
        deadline = asyncio.timeout(execution.timeout)
        try:
            async with deadline:
                final = await self.graph.ainvoke(state, run_config)
            ctx.state = {k: v for k, v in final.items() if k in workflow.fields}
        except BudgetExceeded as exc:
            status, error = RunStatus.BUDGET_EXCEEDED, str(exc)
        except TimeoutError as exc:
            if deadline.expired() and execution.timeout is not None:
                status = RunStatus.TIMEOUT
                error = f"run timed out after {execution.timeout:g} s (execution.timeout)"
            else:  # a timeout of some call inside the run, not the run's own limit
                status, error = RunStatus.FAILED, _failure(ctx, exc)
        except asyncio.CancelledError:
            status, error = RunStatus.CANCELLED, "run cancelled"
        except GraphRecursionError:
            status = RunStatus.FAILED
            error = f"recursion_limit of {execution.recursion_limit} steps reached"
        except NodeFailed as exc:
            status, error = RunStatus.FAILED, str(exc)
        except Exception as exc:
            status, error = RunStatus.FAILED, _failure(ctx, exc)
        state_out = {k: v for k, v in ctx.state.items() if k in workflow.fields}
        result = RunResult(
            run_id=run_id,
            workflow=workflow.name,
            status=status,
            state=state_out,
            outputs=outputs_of(workflow, state_out),
            records=list(ctx.records),
            error=error,
            duration_s=time.perf_counter() - started,
            started_ns=started_ns,
            inputs=dict(inputs or {}),
            tags=tags,
        )
        tell(observers, "run_finished", result)
        return result


def prepare_workflow(
    workflow_or_path: Workflow | str | os.PathLike[str],
    *,
    llm: str | None = None,
    env: Mapping[str, str] | None = None,
    observers: Sequence[RunObserver] = (),
) -> PreparedWorkflow:
    """Load (if given a path), check providers and tools, and compile the graph.

    This is the engine's own: it attaches only the ``observers`` given. The package's
    :func:`configurable_agents.prepare_workflow` also attaches what the workflow's
    `config.observability` asks for (MLflow, OpenTelemetry).

    Raises:
        WorkflowValidationError: the workflow file is invalid.
        SetupError: a provider's package or key, or a tool, is missing (nothing was called).
        ValueError: ``llm`` names an unknown provider.
    """
    from .graph import build_graph

    workflow = load(workflow_or_path)
    env = os.environ if env is None else env
    prices = _price_book(workflow)
    plans = _plans(workflow, llm, env, prices)
    graph = build_graph(workflow, plans)
    return PreparedWorkflow(workflow, llm, plans, env, prices, graph, list(observers))
