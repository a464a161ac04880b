"""The package's public names: pinned, each importable from the top level, lazily."""

from __future__ import annotations

import subprocess
import sys

import configurable_agents

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert configurable_agents.__all__ == PUBLIC


def test_every_public_name_resolves_from_the_top_level() -> None:
    code = (
        "import configurable_agents as ca\n"
        "missing = [n for n in ca.__all__ if getattr(ca, n, None) is None]\n"
        "print(missing)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
    assert sorted(dir(configurable_agents)) == sorted(PUBLIC)


def test_the_package_says_it_is_typed() -> None:
    from pathlib import Path

    assert (Path(configurable_agents.__file__).parent / "py.typed").is_file()
