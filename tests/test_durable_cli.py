"""`configurable-agents run` and `resume` with durable runs: a waiting run exits 6 and says how
to go on, an answer that does not fit is refused with the run unchanged (exit 2), approvals,
timeouts, resume errors in one line, a failed or killed run resumed without paying twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from configurable_agents import load_workflow
from configurable_agents.cli import app
from configurable_agents.engine import calls
from configurable_agents.engine.durable import CHECKPOINTS_ENV, alist_runs

from .stub_llm import JSON, Reply, StubLLM

FINAL = "final_answer"
INPUT_PRICE, OUTPUT_PRICE = Decimal("0.15") / 10**6, Decimal("0.60") / 10**6  # gpt-4o-mini
USAGES = {"a": (1_000, 100), "b": (2_000, 200), "c": (3_000, 300)}


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calls, "BACKOFF_BASE_S", 0.001)
    monkeypatch.setenv("OPENAI_API_KEY", "test")


def _cli(*args: Any) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def _lines(result: Result) -> list[str]:
    return result.stderr.strip().splitlines()


def _final(args: JSON, prompt_tokens: int, completion_tokens: int) -> Reply:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return Reply.tool_calls([(FINAL, args)], usage=usage)


def _cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    return prompt_tokens * INPUT_PRICE + completion_tokens * OUTPUT_PRICE


def _write(tmp_path: Path, data: JSON, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _reviewed(tmp_path: Path, **review: Any) -> Path:
    """draft (mock) -> review (a person gives an int score) -> publish (mock)."""
    data = {
        "schema_version": "1.0",
        "flow": {"name": "reviewed"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": "draft", "prompt": "Draft about {topic}", "outputs": ["text"]},
            {
                "id": "review",
                "type": "human",
                "prompt": "Score this draft: {text}",
                "outputs": ["score"],
                "output_schema": {"type": "int"},
                **review,
            },
            {"id": "publish", "prompt": "Publish {text} scored {score}", "outputs": ["post"]},
        ],
        "edges": [
            {"from": "START", "to": "draft"},
            {"from": "draft", "to": "review"},
            {"from": "review", "to": "publish"},
            {"from": "publish", "to": "END"},
        ],
        "config": {
            "llm": {"provider": "mock"},
            "execution": {"checkpoints": {"store": f"sqlite:///{tmp_path / 'cp.db'}"}},
        },
    }
    return _write(tmp_path, data)


def _chain(tmp_path: Path, stub: StubLLM, *, store: bool = True) -> Path:
    """a -> b -> c against the stub, each prompt naming its node (``task b after ...``)."""
    checkpoints: JSON = {"enabled": True}
    if store:
        checkpoints["store"] = f"sqlite:///{tmp_path / 'cp.db'}"
    data = {
        "schema_version": "1.0",
        "flow": {"name": "chain"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": "a", "prompt": "task a after {topic}", "outputs": ["out_a"]},
            {"id": "b", "prompt": "task b after {out_a}", "outputs": ["out_b"]},
            {"id": "c", "prompt": "task c after {out_b}", "outputs": ["out_c"]},
        ],
        "edges": [
            {"from": "START", "to": "a"},
            {"from": "a", "to": "b"},
            {"from": "b", "to": "c"},
            {"from": "c", "to": "END"},
        ],
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "execution": {"max_retries": 0, "checkpoints": checkpoints},
        },
    }
    return _write(tmp_path, data)


def _asked(stub: StubLLM) -> list[str]:
    return [json.dumps(r["messages"]).split("task ")[1].split(" ")[0] for r in stub.requests]


def _script(stub: StubLLM, fault: Reply) -> None:
    """a and b answer, c meets ``fault``, then c answers (for the resumed attempt)."""
    stub.script(
        _final({"out_a": "A"}, *USAGES["a"]),
        _final({"out_b": "B"}, *USAGES["b"]),
        fault,
        _final({"out_c": "C"}, *USAGES["c"]),
    )


def _check_resumed_once(data: JSON, stub: StubLLM) -> None:
    assert data["status"] == "success", data["error"]
    assert data["attempt"] == 2
    assert _asked(stub) == ["a", "b", "c", "c"]
    assert [n["node_id"] for n in data["nodes"]] == ["c"]
    total = sum((_cost(*usage) for usage in USAGES.values()), Decimal(0))
    assert data["cost_usd"] == pytest.approx(float(total))
    assert data["tokens"]["input"] == sum(p for p, _ in USAGES.values())
    assert data["tokens"]["output"] == sum(c for _, c in USAGES.values())
    assert data["outputs"] == {"out_a": "A", "out_b": "B", "out_c": "C"}


# -- waiting for a person ------------------------------------------------------------------------


def test_a_waiting_run_exits_6_refuses_a_bad_answer_and_resumes(tmp_path: Path) -> None:
    path, out = _reviewed(tmp_path), tmp_path / "out.json"
    ran = _cli("run", path, "-i", "topic=tides", "-o", out)
    assert ran.exit_code == 6, ran.output
    data = json.loads(out.read_text())
    run_id = data["run_id"]
    assert data["status"] == "waiting" and data["attempt"] == 1
    (waiting,) = data["waiting"]
    assert (waiting["node"], waiting["kind"]) == ("review", "input")
    assert waiting["prompt"] == "Score this draft: mock text"
    assert list(waiting["outputs"]["properties"]) == ["score"]
    assert "waiting for input at node 'review': Score this draft: mock text" in ran.stderr
    assert f"resume it: configurable-agents resume {path} {run_id} -i score=..." in ran.stderr

    refused = _cli("resume", path, run_id, "-i", "topic=other")
    assert refused.exit_code == 2, refused.output
    assert "--input topic: not an output of node 'review'" in refused.stderr
    assert _lines(refused)[-1].endswith("(the run is unchanged)")
    assert "Traceback" not in refused.output
    refused = _cli("resume", path, run_id, "-i", "score=high")
    assert refused.exit_code == 2 and "--input score" in refused.stderr
    refused = _cli("resume", path, run_id, "-i", "nope=1")
    assert refused.exit_code == 2 and "no such state field" in refused.stderr

    (entry,) = _runs(path)
    assert (entry.run_id, entry.status, entry.attempt) == (run_id, "waiting", 1)

    done = _cli("resume", path, run_id, "-i", "score=7", "-o", out)
    assert done.exit_code == 0, done.output
    data = json.loads(out.read_text())
    assert (data["run_id"], data["status"], data["attempt"]) == (run_id, "success", 2)
    assert data["state"]["score"] == 7 and data["waiting"] == []
    assert json.loads(done.stdout)["post"] == "mock post"

    again = _cli("resume", path, run_id)
    assert again.exit_code == 2
    assert _lines(again) == [f"error: run {run_id!r} succeeded: there is nothing to resume"]


def _runs(path: Path, status: str | None = None) -> list[Any]:
    return asyncio.run(alist_runs(load_workflow(path), status=status))


def test_an_approval_is_given_by_resuming_and_declined_with_approved_false(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(_reviewed(tmp_path).read_text())
    del data["nodes"][1]  # draft -> publish, which asks first
    data["nodes"][1].update(prompt="Publish {text}", interrupt_before=True)
    data["edges"][1:3] = [{"from": "draft", "to": "publish"}]
    path, out = _write(tmp_path, data), tmp_path / "out.json"

    ran = _cli("run", path, "-i", "topic=tides", "-o", out)
    assert ran.exit_code == 6, ran.output
    run_id = json.loads(out.read_text())["run_id"]
    assert "waiting for approval at node 'publish'" in ran.stderr
    assert "(or -i approved=false to decline)" in ran.stderr
    approved = _cli("resume", path, run_id, "-o", out)
    assert approved.exit_code == 0, approved.output
    assert [n["node_id"] for n in json.loads(out.read_text())["nodes"]] == ["publish"]

    ran = _cli("run", path, "-i", "topic=tides", "-o", out)
    run_id = json.loads(out.read_text())["run_id"]
    refused = _cli("resume", path, run_id, "-i", "approved=maybe")
    assert refused.exit_code == 2, refused.output
    declined = _cli("resume", path, run_id, "-i", "approved=false", "-o", out)
    assert declined.exit_code == 1, declined.output
    assert "failed: node 'publish' was not approved" in declined.stderr
    result = json.loads(out.read_text())
    assert result["status"] == "failed" and result["nodes"] == []


def test_an_answer_after_the_timeout_ends_the_run_with_exit_4(tmp_path: Path) -> None:
    path, out = _reviewed(tmp_path, timeout=0.05), tmp_path / "out.json"
    ran = _cli("run", path, "-i", "topic=tides", "-o", out)
    assert ran.exit_code == 6, ran.output
    data = json.loads(out.read_text())
    deadline = data["waiting"][0]["deadline"]
    while time.time() <= deadline + 0.01:
        time.sleep(0.02)
    late = _cli("resume", path, data["run_id"], "-i", "score=3")
    assert late.exit_code == 4, late.output
    assert (
        "timeout: node 'review' waited for its input longer than its timeout of 0.05 s"
        in late.stderr
    )
    assert [r.run_id for r in _runs(path, "timeout")] == [data["run_id"]]


# -- what cannot be resumed ----------------------------------------------------------------------


def test_resume_errors_exit_2_with_one_line(tmp_path: Path, stub_llm: StubLLM) -> None:
    path = _chain(tmp_path, stub_llm)
    unknown = _cli("resume", path, "nope")
    assert unknown.exit_code == 2
    assert _lines(unknown) == ["error: no run 'nope' in the checkpoint store"]

    data = yaml.safe_load(path.read_text())
    data["config"]["execution"]["checkpoints"] = {"enabled": False}
    plain = _write(tmp_path, data, "plain.yaml")
    off = _cli("resume", plain, "nope")
    assert off.exit_code == 2
    assert _lines(off) == [
        "error: workflow 'chain' keeps no checkpoints: set config.execution.checkpoints."
        "enabled: true to make its runs resumable"
    ]
    for result in (unknown, off):
        assert "Traceback" not in result.output and result.stdout == ""


def test_a_human_node_without_checkpoints_or_with_tools_is_invalid(tmp_path: Path) -> None:
    data = yaml.safe_load(_reviewed(tmp_path).read_text())
    data["config"]["execution"]["checkpoints"] = {"enabled": False}
    off = _write(tmp_path, data, "off.yaml")
    data = yaml.safe_load(_reviewed(tmp_path, tools=["calculator"]).read_text())
    tools = _write(tmp_path, data, "tools.yaml")
    for path, message in (
        (off, "node 'review' pauses the run, which needs checkpoints"),
        (tools, "a human node has no 'tools'"),
    ):
        checked = _cli("validate", path)
        assert checked.exit_code == 1 and message in checked.output, checked.output
        ran = _cli("run", path, "-i", "topic=tides")
        assert ran.exit_code == 2 and message in ran.stderr, ran.output
        assert "Traceback" not in ran.output
    line = next(i for i, text in enumerate(tools.read_text().splitlines(), 1) if "tools:" in text)
    assert f"tools.yaml:{line}:" in _cli("validate", tools).output


# -- a failed or killed run resumed --------------------------------------------------------------


def test_a_failed_run_says_how_to_resume_and_resume_pays_each_call_once(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    _script(stub_llm, Reply.error(400))
    path, out = _chain(tmp_path, stub_llm), tmp_path / "out.json"
    failed = _cli("run", path, "-i", "topic=bees", "-o", out)
    assert failed.exit_code == 1, failed.output
    run_id = json.loads(out.read_text())["run_id"]
    assert f"resume it: configurable-agents resume {path} {run_id}" in failed.stderr
    resumed = _cli("resume", path, run_id, "-o", out, "--tag", "why=retry")
    assert resumed.exit_code == 0, resumed.output
    _check_resumed_once(json.loads(out.read_text()), stub_llm)
    total = sum((_cost(*usage) for usage in USAGES.values()), Decimal(0))
    assert f"Workflow cost: ${total:.6f}" in resumed.stderr


def test_a_killed_run_command_is_resumed_by_the_resume_command(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(stub_llm, Reply.tool_calls([(FINAL, {"out_c": "never"})], delay=60))
    path, out = _chain(tmp_path, stub_llm, store=False), tmp_path / "out.json"
    store = f"sqlite:///{tmp_path / 'killed.db'}"
    env = {**os.environ, CHECKPOINTS_ENV: store}
    command = [sys.executable, "-m", "configurable_agents", "run", str(path), "-i", "topic=bees"]
    process = subprocess.Popen(
        [*command, "-o", str(out)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        limit = time.monotonic() + 60
        while stub_llm.calls < 3 and process.poll() is None and time.monotonic() < limit:
            time.sleep(0.02)
        assert process.poll() is None and stub_llm.calls == 3
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not out.exists()

    monkeypatch.setenv(CHECKPOINTS_ENV, store)
    (entry,) = _runs(path)
    assert entry.status == "running"
    resumed = _cli("resume", path, entry.run_id, "-o", out)
    assert resumed.exit_code == 0, resumed.output
    _check_resumed_once(json.loads(out.read_text()), stub_llm)


def test_session_fields_carry_over_between_runs_of_a_session(
    tmp_path: Path, stub_llm: StubLLM
) -> None:
    data = yaml.safe_load(_chain(tmp_path, stub_llm).read_text())
    data["state"]["fields"]["memory"] = {"type": "str", "default": "nothing", "scope": "session"}
    data["nodes"] = [
        {"id": "a", "prompt": "task a after {topic}; remembered {memory}",
         "outputs": ["out_a", "memory"]}
    ]  # fmt: skip
    data["edges"] = [{"from": "START", "to": "a"}, {"from": "a", "to": "END"}]
    path = _write(tmp_path, data)

    def responder(request: JSON) -> Reply:
        topic = json.dumps(request["messages"]).split("task a after ")[1].split(";")[0]
        return _final({"out_a": "A", "memory": f"heard {topic}"}, 10, 1)

    stub_llm.responder = responder
    for topic, session in (("t1", "s1"), ("t2", "s1"), ("t3", "s2")):
        ran = _cli("run", path, "-i", f"topic={topic}", "--session", session)
        assert ran.exit_code == 0, ran.output
    remembered = [
        json.dumps(r["messages"]).split("remembered ")[1].split('"')[0] for r in stub_llm.requests
    ]
    assert remembered == ["nothing", "heard t1", "nothing"]


def test_the_approval_example_waits_then_sends_once_approved(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "approval.yaml"
    out = tmp_path / "result.json"
    runner = CliRunner()
    first = runner.invoke(
        app,
        ["run", str(example), "--llm", "mock", "-i", "ticket=Refund order 1234", "-o", str(out)],
    )
    assert first.exit_code == 6, first.output
    result = json.loads(out.read_text())
    assert (result["status"], result["waiting"][0]["node"]) == ("waiting", "review")
    assert f"resume {example} {result['run_id']} --llm mock -i approved=" in first.output
    again = runner.invoke(
        app,
        ["resume", str(example), result["run_id"], "--llm", "mock", "-i", "approved=true",
         "-i", "comment=fine", "-o", str(out)],
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    done = json.loads(out.read_text())
    assert done["outputs"]["receipt"] and done["attempt"] == 2
