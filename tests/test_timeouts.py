"""A model call past `llm.timeout` is a failed call; only `execution.timeout` times a run out.

Each case goes through the real `langchain-openai` client against the stub server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, load_workflow, run_workflow
from configurable_agents.engine import calls
from configurable_agents.observability.spans import build_trace

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
FINAL = "final_answer"


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "BACKOFF_BASE_S", 0.001)


def _workflow(tmp_path: Path, stub: StubLLM, *, call_timeout: float, **execution: Any) -> Path:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "slow"},
        "config": {
            "llm": {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "api_base": stub.base_url,
                "timeout": call_timeout,
            },
            "execution": execution,
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [{"id": "write", "prompt": "Write about {topic}", "outputs": ["article"]}],
        "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _late(delay: float = 2.0) -> Reply:
    return Reply.tool_calls([(FINAL, {"article": "late"})], delay=delay)


def test_call_timeout_without_run_timeout_fails_the_node(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: _late()
    path = _workflow(tmp_path, stub_llm, call_timeout=0.3, max_retries=1)
    result = run_workflow(path, {"topic": "x"}, env={})
    assert result.status is RunStatus.FAILED, result.error
    assert "timed out after 0.3 s (llm.timeout)" in result.error
    assert "write" in result.error
    assert stub_llm.calls == 2  # retried once, per max_retries
    (record,) = result.records
    (call,) = record.calls
    assert [a.error for a in call.failed_attempts] == [
        "ModelCallTimeout: timed out after 0.3 s (llm.timeout)"
    ] * 2
    assert all(a.duration_s >= 0.3 for a in call.failed_attempts)


def test_each_timed_out_attempt_is_an_error_span_with_its_duration(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    stub_llm.script(_late(3.0), _final_reply())
    path = _workflow(tmp_path, stub_llm, call_timeout=1, max_retries=2)
    result = run_workflow(path, {"topic": "x"}, env={})
    assert result.status is RunStatus.SUCCESS, result.error
    _, spans = build_trace(result, load_workflow(path))
    chat = next(s for s in spans if s["attributes"]["mlflow.spanType"] == '"CHAT_MODEL"')
    assert chat["status"]["code"] == "STATUS_CODE_OK"
    attempts = [s for s in spans if s["parent_span_id"] == chat["span_id"]]
    assert len(attempts) == len(result.records[0].calls[0].failed_attempts) >= 1
    attempt = attempts[0]
    assert attempt["name"] == "attempt 1"
    assert attempt["status"]["code"] == "STATUS_CODE_ERROR"
    assert "timed out after 1 s (llm.timeout)" in attempt["status"]["message"]
    duration = attempt["end_time_unix_nano"] - attempt["start_time_unix_nano"]
    assert duration >= 1_000_000_000


def test_run_timeout_names_the_run_limit(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: _late(3.0)
    path = _workflow(tmp_path, stub_llm, call_timeout=10, timeout=0.4)
    result = run_workflow(path, {"topic": "x"}, env={})
    assert result.status is RunStatus.TIMEOUT
    assert result.error == "run timed out after 0.4 s (execution.timeout)"


def test_a_timeout_error_raised_inside_a_call_is_a_failure_not_a_run_timeout() -> None:
    class Raises:
        async def ainvoke(self, messages: Any, config: Any) -> Any:
            raise TimeoutError("the provider's own timeout")

    failed: list[str] = []
    with pytest.raises(TimeoutError):
        asyncio.run(
            calls.call_with_retries(
                Raises(),
                [],
                timeout=5,
                retries=1,
                on_failure=lambda started_ns, duration_s, exc: failed.append(type(exc).__name__),
            )
        )
    assert failed == ["TimeoutError", "TimeoutError"]


def test_cli_exits_1_with_the_limit_named(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: _late()
    path = _workflow(tmp_path, stub_llm, call_timeout=0.3, max_retries=0)
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "run", str(path), "-i", "topic=x", "-o", out],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONFIGURABLE_AGENTS_TRACING": "off", "OPENAI_API_KEY": "k"},
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "timed out after 0.3 s (llm.timeout)" in result.stderr
    data = json.loads(out.read_text())
    assert data["status"] == "failed"
    assert data["nodes"][0]["node_id"] == "write"


def _final_reply() -> Reply:
    return Reply.tool_calls([(FINAL, {"article": "A"})])


def test_with_autolog_the_cancelled_attempt_run_ends_with_its_timeout(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    from configurable_agents.engine import NullObserver, prepare_workflow

    class CapturesLangChain(NullObserver):
        captures_langchain = True  # as the MLflow recorder with autolog_enabled

    stub_llm.script(_late(3.0), _final_reply())
    data = yaml.safe_load(_workflow(tmp_path, stub_llm, call_timeout=1).read_text())
    workflow = load_workflow(data)
    prepared = prepare_workflow(workflow, env={}, observers=[CapturesLangChain()])
    result = asyncio.run(prepared.arun({"topic": "x"}))
    assert result.status is RunStatus.SUCCESS, result.error
    _, spans = build_trace(result, workflow)
    chat = next(s for s in spans if s["name"] == "openai/gpt-4o-mini")
    attempt = next(s for s in spans if s["parent_span_id"] == chat["span_id"])
    assert attempt["status"]["message"] == "ModelCallTimeout: timed out after 1 s (llm.timeout)"
    assert attempt["end_time_unix_nano"] - attempt["start_time_unix_nano"] >= 1_000_000_000


def test_a_node_timeout_is_named_as_the_limit_that_fired(tmp_path: Path, stub_llm: StubLLM) -> None:
    stub_llm.responder = lambda request: _late()
    data = yaml.safe_load(_workflow(tmp_path, stub_llm, call_timeout=10).read_text())
    data["nodes"][0]["timeout"] = 0.3
    result = run_workflow(load_workflow(data), {"topic": "x"}, env={})
    assert result.status is RunStatus.FAILED
    assert "timed out after 0.3 s (timeout of node 'write')" in result.error
