"""The execution engine: a workflow run on LangGraph, with budgets, retries, tools and records.

It imports nothing from the layers above it: observers (:mod:`.observe`) are attached by whoever
runs a workflow.
"""

from .context import BudgetExceeded, NodeFailed
from .inputs import InputError, check_inputs, coerce_text
from .observe import NullObserver, RunObserver, RunStart
from .records import NodeRecord, RunResult, RunStatus, ToolCallRecord
from .run import PreparedWorkflow, SetupError, load, outputs_of, prepare_workflow

__all__ = [
    "BudgetExceeded",
    "InputError",
    "NodeFailed",
    "NodeRecord",
    "NullObserver",
    "PreparedWorkflow",
    "RunObserver",
    "RunResult",
    "RunStart",
    "RunStatus",
    "SetupError",
    "ToolCallRecord",
    "check_inputs",
    "coerce_text",
    "load",
    "outputs_of",
    "prepare_workflow",
]
