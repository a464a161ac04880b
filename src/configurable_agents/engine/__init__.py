"""The execution engine: a workflow run on LangGraph, with budgets, retries, tools and records.

It imports nothing from the layers above it: observers (:mod:`.observe`) are attached by whoever
runs a workflow.
"""

from .context import BudgetExceeded, NodeFailed
from .durable import ResumeError, ResumeInputError, RunSummary, alist_runs
from .events import RunEvent, WaitingFor
from .inputs import InputError, check_inputs, coerce_text
from .observe import NullObserver, RunObserver, RunStart
from .records import NodeRecord, RunResult, RunStatus, Spend, ToolCallRecord
from .run import PreparedWorkflow, SetupError, load, outputs_of, prepare_workflow

__all__ = [
    "BudgetExceeded",
    "InputError",
    "NodeFailed",
    "NodeRecord",
    "NullObserver",
    "PreparedWorkflow",
    "ResumeError",
    "ResumeInputError",
    "RunEvent",
    "RunObserver",
    "RunResult",
    "RunStart",
    "RunStatus",
    "RunSummary",
    "SetupError",
    "Spend",
    "ToolCallRecord",
    "WaitingFor",
    "alist_runs",
    "check_inputs",
    "coerce_text",
    "load",
    "outputs_of",
    "prepare_workflow",
]
