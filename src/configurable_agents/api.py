"""The Python API: the engine, with the observers a workflow's `config.observability` asks for.

:func:`prepare_workflow` is the engine's, plus MLflow recording (when tracing is on) and
OpenTelemetry export (when enabled); the CLI, the server, batches and workers prepare workflows
through it, and attach more observers (Prometheus metrics) themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

from .config.loader import Workflow
from .engine import NodeRecord, PreparedWorkflow, RunObserver, RunResult, check_inputs, load
from .engine import prepare_workflow as prepare_engine
from .engine.events import EventListener

__all__ = [
    "TAGS_ENV",
    "TRACING_ENV",
    "arun_workflow",
    "observers_for",
    "prepare_workflow",
    "run_workflow",
]

TRACING_ENV = "CONFIGURABLE_AGENTS_TRACING"
"""`on` or `off`: overrides `config.observability.mlflow.enabled`; `trace=` overrides both."""

TAGS_ENV = "CONFIGURABLE_AGENTS_TAGS"
"""`K=V,K2=V2`: labels every run of a prepared workflow gets (a container's, say); a run's own
tags win."""


def env_tags(env: Mapping[str, str]) -> dict[str, str]:
    """The tags ``$CONFIGURABLE_AGENTS_TAGS`` gives every run.

    Raises:
        SetupError: an entry is not ``KEY=VALUE``.
    """
    from .engine import SetupError

    tags: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in env.get(TAGS_ENV, "").split(","))):
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise SetupError(f"${TAGS_ENV}: {entry!r} is not KEY=VALUE")
        tags[key.strip()] = value.strip()
    return tags


def observers_for(
    workflow: Workflow, *, env: Mapping[str, str], trace: bool | None = None
) -> list[RunObserver]:
    """The observers the workflow's `config.observability` asks for: the MLflow recorder first
    (it gives each run its trace id), then the OpenTelemetry exporter.

    ``trace`` records runs in MLflow (``True``), or not (``False``), whatever
    `config.observability.mlflow.enabled` says; ``None`` follows ``$CONFIGURABLE_AGENTS_TRACING``
    (``on``/``off``) if set, else the config.

    Raises:
        SetupError: OpenTelemetry export is enabled but its package is missing.
    """
    observability = workflow.config.config.observability
    if trace is None:
        switch = os.environ.get(TRACING_ENV, "").strip().lower()
        trace = {"on": True, "off": False}.get(switch, observability.mlflow.enabled)
    observers: list[RunObserver] = []
    if trace:
        from .observability.recorder import Recorder

        observers.append(Recorder(workflow, observability.mlflow, env=env))
    if observability.opentelemetry.enabled:
        from .observability.otel import OtlpExporter

        observers.append(OtlpExporter(workflow, env=env))
    return observers


def prepare_workflow(
    workflow_or_path: Workflow | str | os.PathLike[str],
    *,
    llm: str | None = None,
    env: Mapping[str, str] | None = None,
    trace: bool | None = None,
) -> PreparedWorkflow:
    """Load (if given a path), resolve the prompts it takes from MLflow's prompt registry, check
    providers and tools, compile the graph, and attach the observers the workflow's config asks
    for (see :func:`observers_for` for ``trace``).

    Raises:
        WorkflowValidationError: the workflow file is invalid.
        SetupError: a provider's package or key, or a tool, is missing, a registry prompt
            cannot be resolved, or ``$CONFIGURABLE_AGENTS_TAGS`` is malformed (nothing was
            called).
        ValueError: ``llm`` names an unknown provider.
    """
    env = os.environ if env is None else env
    workflow = load(workflow_or_path)
    if _takes_registry_prompts(workflow):
        from .engine import SetupError
        from .prompts import PromptResolutionError, resolve_prompts

        try:
            workflow = resolve_prompts(workflow, env=env)
        except PromptResolutionError as exc:
            raise SetupError(f"prompt {exc}") from None
    prepared = prepare_engine(workflow, llm=llm, env=env)
    prepared.tags = env_tags(env)
    prepared.observers.extend(observers_for(prepared.workflow, env=env, trace=trace))
    return prepared


def _takes_registry_prompts(workflow: Workflow) -> bool:
    """Whether the workflow, or one of its sub-workflows, has a registry prompt."""
    return any(node.prompt_ref is not None for node in workflow.config.nodes) or any(
        _takes_registry_prompts(child) for child in workflow.subworkflows.values()
    )


async def arun_workflow(
    workflow_or_path: Workflow | str | os.PathLike[str],
    inputs: Mapping[str, Any] | None = None,
    *,
    llm: str | None = None,
    tags: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    on_record: Callable[[NodeRecord], None] | None = None,
    trace: bool | None = None,
    resume: str | None = None,
    session_id: str | None = None,
    on_event: EventListener | None = None,
    traceparent: str | None = None,
) -> RunResult:
    """Run a workflow and return its result; see :func:`run_workflow`."""
    workflow = load(workflow_or_path)
    if resume is None:
        check_inputs(workflow, inputs or {})
    async with prepare_workflow(workflow, llm=llm, env=env, trace=trace) as prepared:
        if resume is not None:
            return await prepared.aresume(
                resume,
                inputs,
                tags=tags,
                on_record=on_record,
                on_event=on_event,
                traceparent=traceparent,
            )
        return await prepared.arun(
            inputs,
            tags=tags,
            on_record=on_record,
            session_id=session_id,
            on_event=on_event,
            traceparent=traceparent,
        )


def run_workflow(
    workflow_or_path: Workflow | str | os.PathLike[str],
    inputs: Mapping[str, Any] | None = None,
    *,
    llm: str | None = None,
    tags: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    on_record: Callable[[NodeRecord], None] | None = None,
    trace: bool | None = None,
    resume: str | None = None,
    session_id: str | None = None,
    on_event: EventListener | None = None,
    traceparent: str | None = None,
) -> RunResult:
    """Run a workflow to completion (or until it waits for a person).

    Args:
        workflow_or_path: A loaded :class:`Workflow` or the path of a workflow file.
        inputs: Initial values of state fields; required fields must be given.
        llm: ``PROVIDER[:MODEL]`` to use for every node instead of the configured models
            (``"mock"`` runs offline).
        tags: Labels for the run (recorded by observability).
        env: Environment to read API keys from (default: ``os.environ``).
        on_record: Called with each node execution's record as it finishes.
        trace: Record the run in MLflow (``True``) or not (``False``) whatever the workflow's
            `config.observability.mlflow.enabled` says; ``None`` follows the config.
        resume: The id of a run to go on with from its last checkpoint (a failed, timed-out,
            interrupted or waiting run); ``inputs`` then answer what it waits for. Calls that
            completed are not made again; the result's cost and tokens are the whole run's.
        session_id: The session the run belongs to: its traces are grouped by it, and its
            `scope: session` fields carry over from the session's previous run.
        on_event: Told of each step of the run as it happens (:class:`RunEvent`).
        traceparent: A W3C ``traceparent`` whose trace the run's spans continue.

    A recorded run that starts inside an open span of the caller (``@mlflow.trace``,
    ``mlflow.start_span``, ``configurable_agents.tracing.trace``) whose trace is in the same
    store is recorded in that trace, under that span: its ``trace_id`` is the caller's.

    Returns:
        The result; its ``status`` says whether the run succeeded, and it holds the (partial)
        state, the outputs, one record per node execution and the spend.

    Raises:
        WorkflowValidationError: the workflow file is invalid.
        InputError: the inputs do not fit the workflow's state.
        SetupError: a provider or tool cannot be used (nothing was called).
        ResumeError: ``resume`` names a run that cannot be resumed.
        ResumeInputError: ``inputs`` do not fit what the resumed run waits for.
    """
    return asyncio.run(
        arun_workflow(
            workflow_or_path,
            inputs,
            llm=llm,
            tags=tags,
            env=env,
            on_record=on_record,
            trace=trace,
            resume=resume,
            session_id=session_id,
            on_event=on_event,
            traceparent=traceparent,
        )
    )
