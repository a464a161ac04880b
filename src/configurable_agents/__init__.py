"""configurable-agents: declare an LLM workflow in one YAML file; validate, run, serve and deploy it.

The package's top level stays light: importing it loads no LLM, graph or tracking library.
"""

from ._version import __version__
from .config import (
    Diagnostic,
    Workflow,
    WorkflowConfig,
    WorkflowValidationError,
    load_workflow,
    validate_workflow,
)

__all__ = [
    "Diagnostic",
    "Workflow",
    "WorkflowConfig",
    "WorkflowValidationError",
    "__version__",
    "load_workflow",
    "validate_workflow",
]
