"""configurable-agents: declare an LLM workflow in one YAML file; validate, run, serve it.

The top level is lazy: ``import configurable_agents`` loads nothing until a name is used, so the
command line starts fast, and no LLM, graph or tracking library is imported by validation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import arun_workflow, prepare_workflow, run_workflow
    from .batch import BatchStats, read_rows, run_batch
    from .config import (
        Diagnostic,
        Workflow,
        WorkflowConfig,
        WorkflowValidationError,
        load_workflow,
        validate_workflow,
    )
    from .engine import (
        InputError,
        NodeRecord,
        PreparedWorkflow,
        ResumeError,
        ResumeInputError,
        RunEvent,
        RunResult,
        RunStatus,
        SetupError,
        WaitingFor,
    )
    from .evaluation import EvaluationResult, evaluate
    from .reports import CostReport, ReportQuery, cost_report, list_runs, profile_run

_HOMES = {
    **dict.fromkeys(("BatchStats", "read_rows", "run_batch"), ".batch"),
    **dict.fromkeys(
        (
            "Diagnostic",
            "Workflow",
            "WorkflowConfig",
            "WorkflowValidationError",
            "load_workflow",
            "validate_workflow",
        ),
        ".config",
    ),
    **dict.fromkeys(
        (
            "InputError",
            "NodeRecord",
            "PreparedWorkflow",
            "ResumeError",
            "ResumeInputError",
            "RunEvent",
            "RunResult",
            "RunStatus",
            "SetupError",
            "WaitingFor",
        ),
        ".engine",
    ),
    **dict.fromkeys(("arun_workflow", "prepare_workflow", "run_workflow"), ".api"),
    **dict.fromkeys(("EvaluationResult", "evaluate"), ".evaluation"),
    **dict.fromkeys(
        ("CostReport", "ReportQuery", "cost_report", "list_runs", "profile_run"), ".reports"
    ),
}
"""Where each public name lives; it is imported from there on first use."""

__all__ = [
    "BatchStats",
    "CostReport",
    "Diagnostic",
    "EvaluationResult",
    "InputError",
    "NodeRecord",
    "PreparedWorkflow",
    "ReportQuery",
    "ResumeError",
    "ResumeInputError",
    "RunEvent",
    "RunResult",
    "RunStatus",
    "SetupError",
    "WaitingFor",
    "Workflow",
    "WorkflowConfig",
    "WorkflowValidationError",
    "__version__",
    "arun_workflow",
    "cost_report",
    "evaluate",
    "list_runs",
    "load_workflow",
    "prepare_workflow",
    "profile_run",
    "read_rows",
    "run_batch",
    "run_workflow",
    "validate_workflow",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
