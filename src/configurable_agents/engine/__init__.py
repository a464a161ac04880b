"""The execution engine: a workflow run on LangGraph, with budgets, retries, tools and records."""

from .context import BudgetExceeded, NodeFailed
from .inputs import InputError, check_inputs, coerce_text
from .records import NodeRecord, RunResult, RunStatus, ToolCallRecord
from .run import PreparedWorkflow, SetupError, arun_workflow, prepare_workflow, run_workflow

__all__ = [
    "BudgetExceeded",
    "InputError",
    "NodeFailed",
    "NodeRecord",
    "PreparedWorkflow",
    "RunResult",
    "RunStatus",
    "SetupError",
    "ToolCallRecord",
    "arun_workflow",
    "check_inputs",
    "coerce_text",
    "prepare_workflow",
    "run_workflow",
]
