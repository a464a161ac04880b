"""One attempt of a run: the graph invoked (fresh, or resumed from its checkpoint), and a result
whatever happens.

A run that fails, times out, is cancelled, reaches a budget or waits for a person still returns
its partial state, its records and its spend so far; with checkpoints, the ledger notes how it
ended and what it cost, so a later attempt goes on from there without paying twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .calls import describe_error
from .context import BudgetExceeded, NodeFailed, RunContext, tell
from .durable import DurableStore, RunSummary, session_fields
from .events import EventListener, WaitingFor
from .observe import RunStart
from .records import NodeRecord, RunResult, RunStatus, Spend
from .steps import SPENT_KEY

if TYPE_CHECKING:
    from .run import PreparedWorkflow

__all__ = ["Attempt", "execute", "saved_spend", "waiting_interrupts"]


@dataclass
class Attempt:
    """What an attempt starts from.

    Attributes:
        run_id: The run (the checkpoint thread).
        inputs: The run's inputs (its first attempt's).
        tags: Its labels.
        state: The state it starts from (inputs, or the last checkpoint's values).
        graph_input: What LangGraph is invoked with: the initial state, ``None`` to go on from
            the checkpoint, or a ``Command`` answering what the run waits for.
        session_id: Its session.
        attempt: 1, then one more at each resume.
        earlier: What earlier attempts spent.
        saved: What the checkpoint it starts from says its completed executions cost.
        resumed_from: The trace of the attempt it resumes.
        traceparent: The caller's W3C ``traceparent``.
        expired: Set when the wait being answered has timed out: the run ends with status
            `timeout` and nothing runs.
        durable: Whether the run keeps checkpoints (else the store, if any, only keeps its
            session's fields).
    """

    run_id: str
    inputs: dict[str, Any]
    tags: dict[str, str]
    state: dict[str, Any]
    graph_input: Any
    session_id: str | None = None
    attempt: int = 1
    earlier: Spend = field(default_factory=Spend)
    saved: Spend = field(default_factory=Spend)
    resumed_from: str | None = None
    traceparent: str | None = None
    expired: str | None = None
    durable: bool = True


def _failure(ctx: RunContext, exc: BaseException) -> str:
    """One line for a run that failed on ``exc``, naming the node that failed if one did."""
    failed = next((r for r in reversed(ctx.records) if r.error), None)
    where = f"node {failed.node_id!r}: " if failed else ""
    return f"{where}{describe_error(exc)}"


async def execute(
    prepared: PreparedWorkflow,
    attempt: Attempt,
    *,
    store: DurableStore | None,
    on_record: Callable[[NodeRecord], None] | None,
    on_event: EventListener | None,
    models: dict[Any, Any],
) -> RunResult:
    """Run one attempt and return its result (see :meth:`PreparedWorkflow.arun`)."""
    workflow = prepared.workflow
    sessions, store = store, (store if attempt.durable else None)
    observers = list(prepared.observers)
    start = RunStart(
        attempt.run_id,
        workflow.name,
        attempt.inputs,
        attempt.tags,
        session_id=attempt.session_id,
        attempt=attempt.attempt,
        resumed_from=attempt.resumed_from,
        traceparent=attempt.traceparent,
    )
    tell(observers, "run_started", start)
    ctx = RunContext(
        workflow,
        env=prepared.env,
        prices=prepared.prices,
        on_record=on_record,
        models=models,
        observers=observers,
        run_id=attempt.run_id,
        on_event=on_event,
        store=store,
        earlier=attempt.earlier,
    )
    ctx.state = dict(attempt.state)
    ctx.emit(
        "run_started",
        {
            "workflow": workflow.name,
            "attempt": attempt.attempt,
            "session_id": attempt.session_id,
            "inputs": attempt.inputs,
        },
    )
    if store is not None:
        await store.put(_summary(attempt, workflow.name, "running", attempt.earlier))
    started, started_ns = time.perf_counter(), time.time_ns()
    status, error, waiting, saved = await _invoke(prepared, attempt, ctx, store)
    state_out = {k: v for k, v in ctx.state.items() if k in workflow.fields}
    from .run import outputs_of

    result = RunResult(
        run_id=attempt.run_id,
        workflow=workflow.name,
        status=status,
        state=state_out,
        outputs=outputs_of(workflow, state_out),
        records=list(ctx.records),
        error=error,
        duration_s=time.perf_counter() - started,
        started_ns=started_ns,
        inputs=attempt.inputs,
        tags=attempt.tags,
        session_id=attempt.session_id,
        attempt=attempt.attempt,
        resumed_from=attempt.resumed_from,
        earlier=attempt.earlier,
        waiting=waiting,
        traceparent=attempt.traceparent,
    )
    tell(observers, "run_finished", result)
    if store is not None:
        await _settle(store, attempt, result, workflow, saved)
    await _keep_session(sessions, attempt, result, workflow)
    if waiting:
        ctx.emit("waiting", {"waiting": [w.to_dict() for w in waiting]})
    usage = result.usage
    ctx.emit(
        "run_finished",
        {
            "status": status.value,
            "error": error,
            "cost_usd": float(result.cost_usd),
            "tokens": {
                "input": usage.input_tokens,
                "output": usage.output_tokens,
                "total": usage.total_tokens,
            },
            "trace_id": result.trace_id,
        },
    )
    return result


async def _invoke(
    prepared: PreparedWorkflow, attempt: Attempt, ctx: RunContext, store: DurableStore | None
) -> tuple[RunStatus, str | None, list[WaitingFor], Spend]:
    """Invoke the graph; how the attempt ended, why, what it waits for, and what its last
    checkpoint says the completed executions cost."""
    if attempt.expired is not None:
        return RunStatus.TIMEOUT, attempt.expired, [], attempt.saved
    graph, run_config = _graph(prepared, attempt, ctx, store)
    status, error, waiting = await _run_graph(prepared, graph, attempt.graph_input, run_config, ctx)
    saved = attempt.saved
    if store is not None:
        saved = saved_spend(await graph.aget_state(run_config, subgraphs=True))
    return status, error, waiting, saved


def _graph(
    prepared: PreparedWorkflow, attempt: Attempt, ctx: RunContext, store: DurableStore | None
) -> tuple[Any, dict[str, Any]]:
    """The graph to invoke (with the checkpointer, for a durable run) and its run config."""
    from .graph import CONTEXT_KEY

    execution = prepared.workflow.config.config.execution
    graph = prepared.graph
    configurable: dict[str, Any] = {CONTEXT_KEY: ctx}
    if store is not None:
        graph = graph.copy(update={"checkpointer": store.saver})
        configurable["thread_id"] = attempt.run_id
    run_config = {
        "recursion_limit": execution.recursion_limit,
        "max_concurrency": execution.max_concurrency,
        "configurable": configurable,
    }
    return graph, run_config


async def _run_graph(
    prepared: PreparedWorkflow,
    graph: Any,
    graph_input: Any,
    run_config: dict[str, Any],
    ctx: RunContext,
) -> tuple[RunStatus, str | None, list[WaitingFor]]:
    """Invoke the graph; how the attempt ended, why, and what it waits for."""
    from langgraph.errors import GraphRecursionError

    execution = prepared.workflow.config.config.execution
    deadline = asyncio.timeout(execution.timeout)
    try:
        async with deadline:
            # "sync": a node's checkpoint is written before the next node starts, so a process
            # killed during a call has every earlier node saved (LangGraph's default, "async",
            # writes it while the next step runs: a SIGKILL then loses it, and that node's
            # calls are made and paid again on resume)
            durability = "sync" if graph.checkpointer is not None else None
            final = await graph.ainvoke(graph_input, run_config, durability=durability)
        ctx.state = {k: v for k, v in final.items() if k in prepared.workflow.fields}
        waiting = [WaitingFor.from_dict(i.value) for i in final.get("__interrupt__") or ()]
        return (RunStatus.WAITING if waiting else RunStatus.SUCCESS), None, waiting
    except BudgetExceeded as exc:
        return RunStatus.BUDGET_EXCEEDED, str(exc), []
    except TimeoutError as exc:
        if deadline.expired() and execution.timeout is not None:
            limit = f"run timed out after {execution.timeout:g} s (execution.timeout)"
            return RunStatus.TIMEOUT, limit, []
        # a timeout of some call inside the run, not the run's own limit
        return RunStatus.FAILED, _failure(ctx, exc), []
    except asyncio.CancelledError:
        return RunStatus.CANCELLED, "run cancelled", []
    except GraphRecursionError:
        return RunStatus.FAILED, f"recursion_limit of {execution.recursion_limit} steps reached", []
    except NodeFailed as exc:
        return RunStatus.FAILED, str(exc), []
    except Exception as exc:
        return RunStatus.FAILED, _failure(ctx, exc), []


def _summary(attempt: Attempt, workflow: str, status: str, spent: Spend) -> RunSummary:
    return RunSummary(
        run_id=attempt.run_id,
        workflow=workflow,
        status=status,
        session_id=attempt.session_id,
        attempt=attempt.attempt,
        inputs=attempt.inputs,
        tags=attempt.tags,
        spent=spent,
        saved=attempt.saved,
        trace_id=attempt.resumed_from,
    )


async def _settle(
    store: DurableStore, attempt: Attempt, result: RunResult, workflow: Any, saved: Spend
) -> None:
    """Note how the attempt ended in the ledger, with the checkpoint's spend then."""
    summary = _summary(
        attempt,
        workflow.name,
        result.status.value,
        attempt.earlier + Spend.of_records(result.records),
    )
    summary.saved = saved
    summary.waiting = result.waiting
    summary.trace_id = result.trace_id or attempt.resumed_from
    await store.put(summary)


async def _keep_session(
    store: DurableStore | None, attempt: Attempt, result: RunResult, workflow: Any
) -> None:
    """Keep the session-scoped fields for the session's next run."""
    kept = session_fields(workflow)
    if store is not None and attempt.session_id and kept:
        values = {k: v for k, v in result.state.items() if k in kept}
        await store.save_session(attempt.session_id, workflow.name, values)


def saved_spend(snapshot: Any) -> Spend:
    """What a checkpoint (a LangGraph ``StateSnapshot``) says its completed node executions
    cost. The snapshot is the thread's latest (``aget_state`` without a checkpoint id), whose
    values already hold the writes kept for tasks of an unfinished step that completed (a
    fan-out's finished items, a fork's finished branch): adding ``snapshot.tasks``' results
    again would count those twice.

    Read with ``subgraphs=True``, an unfinished workflow node's task holds its sub-workflow's
    snapshot: what its completed nodes cost is added (the workflow node adds it to the
    parent's state when it completes)."""
    spent = Spend.from_dict((snapshot.values or {}).get(SPENT_KEY) or {})
    for task in snapshot.tasks or ():
        inner = getattr(task, "state", None)
        if task.result is None and hasattr(inner, "values"):
            spent += saved_spend(inner)
    return spent


def waiting_interrupts(snapshot: Any, depth: int = 0) -> list[Any]:
    """The interrupts a run read with ``aget_state(subgraphs=True)`` still waits on. A
    workflow node's task keeps the interrupts its sub-workflow raised even once they were
    answered; the sub-workflow's own snapshot says which still wait (a node's own interrupt,
    its approval, is named by a path as deep as the node's)."""
    found: list[Any] = []
    for task in snapshot.tasks or ():
        inner = getattr(task, "state", None)
        if not hasattr(inner, "tasks"):
            found += task.interrupts
            continue
        found += [i for i in task.interrupts if _depth(i) == depth]
        found += waiting_interrupts(inner, depth + 1)
    return found


def _depth(interrupt: Any) -> int:
    value = interrupt.value if isinstance(interrupt.value, dict) else {}
    return str(value.get("node", "")).count("/")
