"""Schemathesis against a live `serve` (uvicorn on 127.0.0.1, the offline ``mock`` model), with
and without a bearer token: every check, in every phase (examples, coverage, fuzzing, stateful),
finds nothing — no 5xx, no answer the OpenAPI document does not describe.

Bounded and reproducible: deterministic generation (no random seed), a fixed number of examples
per operation, no shrinking. A finding becomes an explicit case in ``test_server_http.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from configurable_agents.server.app import TOKEN_ENV

from .conftest import require
from .test_server import Server, server_env
from .test_server_http import write_typed

TOKEN = "fuzz-token"
MAX_EXAMPLES = 35
"""Cases per operation and phase."""

OPERATIONS = {
    "POST /runs", "GET /runs", "GET /runs/{run_id}", "DELETE /runs/{run_id}",
    "GET /schema", "GET /health", "GET /ready", "GET /metrics",
}  # fmt: skip

EXCLUDED_CHECKS = {
    # `DELETE /runs/{id}` cancels a run and the run stays readable (cancelled, with its partial
    # state): documented, and asserted by test_server.py::test_delete_cancels_a_running_run.
    # use_after_free assumes a DELETE removes the resource, so it would fail whenever a stateful
    # scenario cancels a run before the mock model has finished it (a matter of milliseconds).
    "use_after_free",
}


def _schemathesis(url: str, report: Path, token: str | None) -> subprocess.CompletedProcess[str]:
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", "all", "--exclude-checks", ",".join(sorted(EXCLUDED_CHECKS)),
        "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic", "--no-shrink",
        "--workers", "1", "--request-timeout", "60", "--no-color",
        "--report", "junit", "--report-junit-path", str(report), *auth,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=report.parent, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "bearer-token"])
def test_schemathesis_finds_nothing(tmp_path: Path, token: str | None) -> None:
    found = importlib.util.find_spec("schemathesis") is not None
    require(found, "schemathesis is not installed (it is in the dev extra)")
    env = server_env(tmp_path, **({TOKEN_ENV: token} if token else {}))
    workflow = write_typed(tmp_path / "typed.yaml")
    server = Server(workflow, tmp_path / "runs.db", env, "--llm", "mock")
    try:
        result = _schemathesis(server.url, tmp_path / "junit.xml", token)
    finally:
        stopped = server.stop()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-30_000:]
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert (junit.get("failures"), junit.get("errors")) == ("0", "0"), report[-30_000:]
    tested = {case.get("name") for case in junit.iter("testcase")}
    assert tested == {*OPERATIONS, "Stateful tests"}, report[-5_000:]
    assert stopped == 0
    assert "Traceback" not in "".join(server.log), "".join(server.log)[-10_000:]
