"""configurable-agents: declare an LLM workflow in one YAML file; validate, run, serve it.

The top level is lazy: ``import configurable_agents`` loads nothing until a name is used, so the
command line starts fast, and no LLM, graph or tracking library is imported by validation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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
        RunResult,
        RunStatus,
        SetupError,
        arun_workflow,
        run_workflow,
    )

__all__ = [
    "Diagnostic",
    "InputError",
    "NodeRecord",
    "RunResult",
    "RunStatus",
    "SetupError",
    "Workflow",
    "WorkflowConfig",
    "WorkflowValidationError",
    "__version__",
    "arun_workflow",
    "load_workflow",
    "run_workflow",
    "validate_workflow",
]

_ENGINE = {"InputError", "NodeRecord", "RunResult", "RunStatus", "SetupError"}
_ENGINE |= {"arun_workflow", "run_workflow"}
_HOMES = {
    name: ".engine" if name in _ENGINE else ".config" for name in __all__ if name != "__version__"
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
