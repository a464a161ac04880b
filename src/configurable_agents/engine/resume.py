"""Planning a resumed attempt: what the run's checkpoint and ledger say, and the answer to what it
waits for, checked before anything changes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .attempt import Attempt, saved_spend, waiting_interrupts
from .durable import DurableStore, ResumeError, ResumeInputError
from .events import WaitingFor
from .inputs import check_inputs
from .subworkflow import find_plan

if TYPE_CHECKING:
    from .run import PreparedWorkflow

__all__ = ["plan_resume"]


async def plan_resume(
    prepared: PreparedWorkflow, graph: Any, store: DurableStore, run_id: str, inputs: dict[str, Any]
) -> Attempt:
    """The next attempt of run ``run_id``, from its last checkpoint.

    Raises:
        ResumeError: the run is unknown, of another workflow, or has nothing left to do.
        ResumeInputError: ``inputs`` do not fit what the run waits for.
    """
    from langgraph.types import Command

    workflow = prepared.workflow
    entry = await store.get(run_id)
    if entry is None:
        raise ResumeError(f"no run {run_id!r} in the checkpoint store")
    if entry.workflow != workflow.name:
        raise ResumeError(
            f"run {run_id!r} is a run of workflow {entry.workflow!r}, not {workflow.name!r}"
        )
    if entry.status == "success":
        raise ResumeError(f"run {run_id!r} succeeded: there is nothing to resume")
    snapshot = await graph.aget_state({"configurable": {"thread_id": run_id}}, subgraphs=True)
    values = {k: v for k, v in (snapshot.values or {}).items() if k in workflow.fields}
    saved = saved_spend(snapshot)
    # what the ledger knew, plus what the checkpoint gained since (an attempt killed before its
    # end was noted)
    earlier = entry.spent + (saved - entry.saved)
    attempt = Attempt(
        run_id,
        entry.inputs,
        dict(entry.tags),
        values,
        None,
        session_id=entry.session_id,
        attempt=entry.attempt + 1,
        earlier=earlier,
        saved=saved,
        resumed_from=entry.trace_id,
    )
    pending = waiting_interrupts(snapshot)
    if pending:
        waiting = WaitingFor.from_dict(pending[0].value)
        if waiting.deadline is not None and waiting.deadline < time.time():
            if entry.status == "timeout":
                raise ResumeError(f"run {run_id!r} timed out waiting for input at node "
                                  f"{waiting.node!r}: it cannot go on")  # fmt: skip
            node = find_plan(prepared.plans, waiting.node).node
            attempt.expired = (
                f"node {waiting.node!r} waited for its input longer than its "
                f"timeout of {node.timeout:g} s"
            )
            return attempt
        answer = _answer(prepared, waiting, inputs)
        attempt.graph_input = Command(resume={pending[0].id: answer})
    elif inputs:
        raise ResumeError(
            f"run {run_id!r} is {entry.status}, not waiting for input: resume it without inputs"
        )
    elif snapshot.config is None or not snapshot.values:
        # stopped before its first checkpoint: start again from its inputs
        attempt.state = attempt.graph_input = check_inputs(workflow, entry.inputs)
    elif not snapshot.next:
        raise ResumeError(f"run {run_id!r} has no node left to run")
    return attempt


def _answer(prepared: PreparedWorkflow, waiting: WaitingFor, inputs: dict[str, Any]) -> Any:
    """``inputs`` checked against what ``waiting`` asks for."""
    if waiting.kind == "approval":
        unknown = [k for k in inputs if k != "approved"]
        if unknown or not isinstance(inputs.get("approved", True), bool):
            errors = [
                {"loc": [k], "msg": "an approval takes no inputs but `approved` (true or false)"}
                for k in unknown or ["approved"]
            ]
            raise ResumeInputError(_summary(waiting, errors), errors)
        return {"approved": inputs.get("approved", True)}
    plan = find_plan(prepared.plans, waiting.node)
    declared = list(plan.node.outputs)
    errors = [
        {
            "loc": [k],
            "msg": f"not an output of node {waiting.node!r} (it asks for {', '.join(declared)})",
        }
        for k in inputs
        if k not in declared
    ]
    try:
        plan.output_model.model_validate(inputs)
    except ValidationError as exc:
        errors += [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
    if errors:
        raise ResumeInputError(_summary(waiting, errors), errors)
    return inputs


def _summary(waiting: WaitingFor, errors: list[dict[str, Any]]) -> str:
    shown = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
    return f"the input for node {waiting.node!r} does not fit its outputs: {shown}"
