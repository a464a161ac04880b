"""The names a recorded run is written under in MLflow: written by the recorder, read by reports.

Defined once here, so that a renamed tag, metric or param cannot leave the reports reading a name
that is no longer written. Documented in docs/OBSERVABILITY.md.
"""

from __future__ import annotations

__all__ = [
    "ARTIFACT_COST_SUMMARY",
    "METRIC_TOTAL_COST",
    "METRIC_TOTAL_TOKENS",
    "PROMPTS_ATTRIBUTE",
    "RUN_TAG_RUN_ID",
    "RUN_TAG_STATUS",
    "RUN_TAG_TRACE",
    "SPAN_ATTEMPT",
    "SPAN_NODE_COST",
    "SPAN_NODE_LABEL",
    "SPAN_RESUMED_FROM",
    "SPAN_SESSION",
    "SPAN_TOTAL_COST",
    "SPAN_WAITING",
    "TAG_ATTEMPT",
    "TAG_PARENT_SPAN",
    "TAG_PARENT_TRACE",
    "TAG_RESUMED_FROM",
    "TAG_STATUS",
    "TAG_UNPRICED",
    "TAG_WORKFLOW",
    "TAG_WORKFLOW_VERSION",
    "TRACE_COST",
    "TRACE_NAME",
    "TRACE_SESSION",
    "TRACE_TOKENS",
    "TRACE_USER",
    "node_key",
    "node_keys",
]

# Trace tags (and, for TAG_WORKFLOW, run tags too).
TAG_WORKFLOW = "workflow"
"""The workflow's name: trace tag and run tag."""
TAG_WORKFLOW_VERSION = "workflow_version"
TAG_STATUS = "status"
"""Trace tag: the run's status (`success`, `failed`, ...)."""
TAG_UNPRICED = "unpriced"
"""Trace tag: `true` when a model of the run has no known price."""
TAG_ATTEMPT = "attempt"
"""Trace and run tag of a resumed run: its attempt (`2`, `3`...; absent on a first attempt)."""
TAG_RESUMED_FROM = "resumed_from"
"""Trace and run tag of a resumed run: the trace of the attempt it resumed (``tr-...``)."""
TAG_PARENT_TRACE = "traceparent.trace_id"
"""Trace and run tag of a run given a W3C ``traceparent``: the caller's trace id (32 hex)."""
TAG_PARENT_SPAN = "traceparent.span_id"
"""Trace and run tag of a run given a W3C ``traceparent``: the caller's span id (16 hex)."""
TRACE_NAME = "mlflow.traceName"
"""MLflow's trace name: the workflow's, which trace metrics group by."""

# MLflow run tags.
RUN_TAG_STATUS = "run_status"
RUN_TAG_RUN_ID = "configurable_agents.run_id"
RUN_TAG_TRACE = "mlflow.trace_id"
"""MLflow's link from a run to its trace."""

# MLflow run metrics and params.
METRIC_TOTAL_COST = "total_cost_usd"
METRIC_TOTAL_TOKENS = "total_tokens"
ARTIFACT_COST_SUMMARY = "cost_summary.json"

# Span attributes (ours) and trace metadata (MLflow's, computed from the spans).
SPAN_TOTAL_COST = "workflow.total_cost_usd"
"""Root span: the run's cost."""
SPAN_NODE_COST = "node.cost_usd"
"""Node span: the execution's cost (absent when unpriced)."""
SPAN_NODE_LABEL = "node.label"
"""Node span: the node's display `name`, when it has one (the span is named after it)."""
SPAN_SESSION = "session.id"
"""Root span: the run's session (OpenTelemetry's name), which MLflow keeps as the trace's
``mlflow.trace.session`` metadata: its Sessions page groups the traces by it."""
SPAN_ATTEMPT = "workflow.attempt"
"""Root span: the attempt (1 for a first run, one more at each resume)."""
SPAN_RESUMED_FROM = "workflow.resumed_from"
"""Root span of a resumed run: the trace of the attempt it resumed."""
SPAN_WAITING = "workflow.waiting"
"""Root span of a `waiting` run: what it waits for (a list of ``WaitingFor.to_dict()``)."""
TRACE_SESSION = "mlflow.trace.session"
"""MLflow's trace metadata naming the trace's session."""
TRACE_USER = "mlflow.trace.user"
"""MLflow's trace metadata naming the trace's user (root span attribute ``user.id``)."""
PROMPTS_ATTRIBUTE = "workflow.prompts"
"""Root span: the registry prompt versions the run used (``name/3``), linked to the trace."""
TRACE_COST = "mlflow.trace.cost"
TRACE_TOKENS = "mlflow.trace.tokenUsage"


def node_key(node_id: str, what: str) -> str:
    """The run metric or param ``node_<id>_<what>`` (what: `cost_usd`, `duration_ms`, `provider`,
    `model`)."""
    return f"node_{node_id}_{what}"


def node_keys(keys: list[str] | set[str], what: str) -> dict[str, str]:
    """``{node id: key}`` of the ``node_<id>_<what>`` keys among ``keys``."""
    prefix, suffix = "node_", f"_{what}"
    return {
        key[len(prefix) : -len(suffix)]: key
        for key in keys
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix + suffix)
    }
