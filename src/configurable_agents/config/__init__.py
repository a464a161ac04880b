"""The workflow language: models, loading and validation. Imports nothing heavy."""

from .diagnostics import Diagnostic, WorkflowValidationError
from .loader import Workflow, load_workflow, validate_workflow
from .schema import Edge, Node, WorkflowConfig
from .state import StateField

__all__ = [
    "Diagnostic",
    "Edge",
    "Node",
    "StateField",
    "Workflow",
    "WorkflowConfig",
    "WorkflowValidationError",
    "load_workflow",
    "validate_workflow",
]
