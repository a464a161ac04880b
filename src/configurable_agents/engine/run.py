"""Running a workflow: checks before any call, the graph run, and a result whatever happens.

A run that fails, times out, is cancelled or reaches a budget still returns its partial state, its
records and its spend so far.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config.loader import Workflow, load_workflow
from ..config.schema import END
from ..llm.outputs import FINAL_ANSWER, output_model
from ..llm.settings import parse_llm_override, resolve_llm
from ..pricing import PriceBook, PricingError, TokenUsage, load_price_book
from .attempt import Attempt, execute
from .durable import (
    DurableStore,
    ResumeError,
    checkpoints_enabled,
    open_store,
    session_fields,
    store_uri,
)
from .events import EventListener
from .inputs import check_inputs
from .node import NodePlan
from .observe import RunObserver
from .records import NodeRecord, RunResult

if TYPE_CHECKING:
    from ..tools.mcp import McpServers

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
    workflow: Workflow,
    llm: str | None,
    env: Mapping[str, str],
    prices: PriceBook,
    mcp: McpServers | None = None,
) -> dict[str, NodePlan]:
    from ..llm.providers import ProviderError, check_provider

    override = parse_llm_override(llm) if llm else None
    config = workflow.config.config
    plans: dict[str, NodePlan] = {}
    problems: dict[str, list[str]] = {}  # problem -> nodes it affects
    final = {e.from_ for e in workflow.config.edges if END in e.targets}
    for node in workflow.config.nodes:
        if node.type == "workflow":  # its sub-workflow's own nodes, prepared the same way
            from .subworkflow import prepare_subworkflow

            plans[node.id] = prepare_subworkflow(
                workflow,
                node,
                lambda child, servers: _plans(child, llm, env, prices, servers),
                prices,
                problems,
                env,
            )
            continue
        if node.prompt_ref is not None:
            problem = (
                "the prompt is a registry reference: prepare the workflow with "
                "configurable_agents.prepare_workflow, which resolves it"
            )
            problems.setdefault(problem, []).append(node.id)
        settings = resolve_llm(config.llm, node, override)
        if node.type == "human":
            settings = dataclasses.replace(settings, provider="mock", model="human")
        try:
            check_provider(settings, env)
        except ProviderError as exc:
            problems.setdefault(str(exc), []).append(node.id)
        budget = config.execution.max_cost_usd is not None and node.type != "human"
        if budget and not _priced(prices, settings):
            problem = (
                f"max_cost_usd is set but {settings.provider}/{settings.model} has no known "
                "price, so the budget cannot be enforced"
            )
            problems.setdefault(problem, []).append(node.id)
        tools: list[Any] = []
        if node.tools:
            from ..tools import ToolError, build_tools

            try:
                tools = build_tools(node.tool_refs, config.tools, env=env, mcp=mcp)
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
            final=node.id in final,
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
        tags: Labels every run gets (a run's own tags win).
        closing: What it holds open (the MCP servers its tools call), stopped by
            :meth:`aclose` (or ``async with``, or :meth:`close`).
    """

    workflow: Workflow
    llm: str | None
    plans: dict[str, NodePlan]
    env: Mapping[str, str]
    prices: PriceBook
    graph: Any = None
    observers: list[RunObserver] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    closing: list[Any] = field(default_factory=list)
    _models: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )

    async def aclose(self) -> None:
        """Stop what it holds open (its MCP servers); idempotent. A later run starts them
        again."""
        for item in reversed(self.closing):
            await item.aclose()

    def close(self) -> None:
        """:meth:`aclose` for code that runs no event loop."""
        for item in reversed(self.closing):
            item.close()

    async def __aenter__(self) -> PreparedWorkflow:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def observer(self, kind: type[T]) -> T | None:
        """The first attached observer of type ``kind``, if any."""
        return next((o for o in self.observers if isinstance(o, kind)), None)

    def unpriced_models(self) -> list[str]:
        """``provider/model`` of each model the nodes (sub-workflows' included) call that has
        no known price."""
        from .subworkflow import all_plans

        plans = (plan for _, plan in all_plans(self.plans))
        found = (p.settings for p in plans if not _priced(self.prices, p.settings))
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
        session_id: str | None = None,
        on_event: EventListener | None = None,
        traceparent: str | None = None,
    ) -> RunResult:
        """Run once; see :func:`run_workflow`. ``run_id`` names the run (default: a new id);
        ``session_id`` puts it in a session (whose `scope: session` fields it reads and
        writes); ``on_event`` is told of each step as it happens; ``traceparent`` (W3C) is
        the caller's trace, which the run's spans continue."""
        workflow = self.workflow
        state = check_inputs(workflow, inputs or {})
        run_id = run_id or uuid.uuid4().hex
        durable = checkpoints_enabled(workflow)
        if durable and session_id is None:
            session_id = run_id  # the attempts of a durable run share a session
        attempt = Attempt(
            run_id,
            dict(inputs or {}),
            {**self.tags, **(tags or {})},
            dict(state),
            state,
            session_id=session_id,
            traceparent=traceparent,
            durable=durable,
        )
        if not durable and not (session_id and session_fields(workflow)):
            return await self._execute(attempt, None, on_record, on_event)
        async with open_store(store_uri(workflow, self.env)) as store:
            if session_id and session_fields(workflow):
                remembered = await store.session(session_id, workflow.name)
                given = set(inputs or {})
                kept = {
                    k: v
                    for k, v in remembered.items()
                    if k in session_fields(workflow) and k not in given
                }
                attempt.state.update(kept)
                attempt.graph_input = attempt.state
            return await self._execute(attempt, store, on_record, on_event)

    async def aresume(
        self,
        run_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        on_record: Callable[[NodeRecord], None] | None = None,
        on_event: EventListener | None = None,
        traceparent: str | None = None,
    ) -> RunResult:
        """Go on with run ``run_id`` from its last checkpoint: a run that failed, timed out,
        reached its budget, was interrupted or cancelled, or waits for a person (``inputs``
        answer it). Calls that completed are never made again; the result's cost and tokens
        are the whole run's.

        Raises:
            ResumeError: the run is unknown, has nothing left to do, or the workflow keeps no
                checkpoints.
            ResumeInputError: ``inputs`` do not fit what the run waits for (nothing changed).
        """
        async with self._resumable(run_id, inputs) as (store, attempt):
            attempt.tags.update(tags or {})
            attempt.traceparent = traceparent
            return await self._execute(attempt, store, on_record, on_event)

    async def acheck_resume(self, run_id: str, inputs: Mapping[str, Any] | None = None) -> None:
        """Raise what :meth:`aresume` would raise before running anything; else nothing."""
        async with self._resumable(run_id, inputs):
            pass

    @asynccontextmanager
    async def _resumable(
        self, run_id: str, inputs: Mapping[str, Any] | None
    ) -> AsyncIterator[tuple[DurableStore, Attempt]]:
        from .resume import plan_resume

        if not checkpoints_enabled(self.workflow):
            raise ResumeError(
                f"workflow {self.workflow.name!r} keeps no checkpoints: set "
                "config.execution.checkpoints.enabled: true to make its runs resumable"
            )
        async with open_store(store_uri(self.workflow, self.env)) as store:
            graph = self.graph.copy(update={"checkpointer": store.saver})
            yield store, await plan_resume(self, graph, store, run_id, dict(inputs or {}))

    async def _execute(
        self,
        attempt: Attempt,
        store: DurableStore | None,
        on_record: Callable[[NodeRecord], None] | None,
        on_event: EventListener | None,
    ) -> RunResult:
        models = self._models.setdefault(asyncio.get_running_loop(), {})
        return await execute(
            self, attempt, store=store, on_record=on_record, on_event=on_event, models=models
        )


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

    The MCP servers its nodes' tools name are started here; :meth:`PreparedWorkflow.aclose`
    stops them.

    Raises:
        WorkflowValidationError: the workflow file is invalid.
        SetupError: a provider's package or key, or a tool, is missing, or an MCP server cannot
            be used (nothing was called).
        ValueError: ``llm`` names an unknown provider.
    """
    from ..tools.mcp import open_mcp_servers
    from .graph import build_graph

    workflow = load(workflow_or_path)
    env = os.environ if env is None else env
    prices = _price_book(workflow)
    base_dir = Path(workflow.source).parent if workflow.source else None
    mcp = open_mcp_servers(workflow.config, env, base_dir)
    try:
        plans = _plans(workflow, llm, env, prices, mcp)
        graph = build_graph(workflow, plans)
    except BaseException:
        if mcp is not None:
            mcp.close()
        raise
    prepared = PreparedWorkflow(workflow, llm, plans, env, prices, graph, list(observers))
    prepared.closing += [mcp] if mcp is not None else []
    from .subworkflow import subworkflow_servers

    prepared.closing += subworkflow_servers(plans)
    return prepared
