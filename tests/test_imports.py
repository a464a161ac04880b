"""`validate`, `schema`, `graph` and `--help` stay fast: no LLM, graph or MLflow import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("langgraph", "langchain", "langchain_core", "mlflow", "openai", "fastapi", "opentelemetry")

PROBE = """
import sys
from configurable_agents.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
print("HEAVY:" + ",".join(heavy))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["validate", str(ROOT / "examples" / "fan_out.yaml")],
        ["schema"],
        ["graph", str(ROOT / "examples" / "routing.yaml")],
    ],
)
def test_light_commands_import_nothing_heavy(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "HEAVY:"


def test_package_import_is_lazy() -> None:
    code = "import sys, configurable_agents; print('pydantic' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
