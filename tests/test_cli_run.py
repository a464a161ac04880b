"""`configurable-agents run`: inputs, outputs, the closing line and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "configurable_agents", "run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_quick_start_runs_offline_and_prints_outputs_and_cost() -> None:
    result = _run("examples/article_writer.yaml", "-i", "topic=bees", "--llm", "mock")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"article": "mock article"}
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Workflow cost: $0.000000, ") and last.endswith(" tokens")
    assert "Traceback" not in result.stderr


def test_result_file_holds_records_and_totals(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = _run("examples/loop.yaml", "-i", "topic=tides", "--llm", "mock", "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["status"] == "success"
    assert [n["node_id"] for n in data["nodes"]] == [
        "draft_it",
        "revise",
        "revise",
        "revise",
        "title",
    ]
    assert data["tokens"]["total"] == sum(
        n["input_tokens"] + n["output_tokens"] for n in data["nodes"]
    )
    assert f"{data['tokens']['total']:,} tokens" in result.stderr


def test_inputs_are_coerced_to_field_types(tmp_path: Path) -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "routing.yaml").read_text())
    workflow["state"]["fields"]["notes"] = {"type": "list[str]", "default": []}
    workflow["state"]["fields"]["flag"] = {"type": "bool", "default": False}
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    ticket = tmp_path / "ticket.txt"
    ticket.write_text("printer on fire")
    out = tmp_path / "r.json"
    result = _run(
        str(path), "--llm", "mock", "-o", str(out),
        "-i", f"ticket=@{ticket}", "-i", "urgency=4", "-i", 'notes=["a","b"]', "-i", "flag=yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    state = json.loads(out.read_text())["state"]
    assert state["ticket"] == "printer on fire"
    assert state["notes"] == ["a", "b"] and state["flag"] is True


def test_input_file(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("topic: from a file\n")
    out = tmp_path / "r.json"
    result = _run("examples/article_writer.yaml", "--input-file", str(inputs), "--llm", "mock",
                  "-o", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["state"]["topic"] == "from a file"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "topik=x"], "no such state field (did you mean 'topic'?)"),
        (["-i", "topic"], "expected key=value"),
        ([], "missing required input 'topic'"),
        (["-i", "topic=x", "--llm", "gpt"], "unknown provider 'gpt'"),
        (["-i", "topic=x", "--input-file", "nope.json"], "no such file"),
        (["-i", "topic=@nope.txt"], "cannot read nope.txt"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    result = _run("examples/article_writer.yaml", "--llm", "mock", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_api_key_exits_2_before_any_call() -> None:
    env_free = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "run", "examples/article_writer.yaml",
         "-i", "topic=x"],
        capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert env_free.returncode == 2
    assert "set GOOGLE_API_KEY or GEMINI_API_KEY" in env_free.stderr


def test_budget_stop_exits_3_with_partial_state(tmp_path: Path) -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    workflow["config"] = {"execution": {"max_tokens": 150}}
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    result = _run(str(path), "-i", "topic=x", "--llm", "mock")
    assert result.returncode == 3
    assert "budget_exceeded: token budget of 150 reached" in result.stderr
    partial = next(
        line for line in result.stderr.splitlines() if line.startswith("partial state: ")
    )
    assert json.loads(partial.removeprefix("partial state: "))["topic"] == "x"
    assert json.loads(result.stdout)["draft"] == "mock draft"


def test_invalid_workflow_exits_2() -> None:
    result = _run("tests/data/broken.yaml", "--llm", "mock")
    assert result.returncode == 2
    assert "unknown key 'versoin'" in result.stderr


def test_cost_budget_through_the_cli_exits_3(tmp_path: Path, stub_llm: StubLLM) -> None:
    workflow = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    workflow["config"] = {
        "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub_llm.base_url},
        "execution": {"max_cost_usd": 0.005},
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))

    def answer(request: dict) -> Reply:
        wanted = request["tools"][0]["function"]["parameters"]["properties"]
        args = {k: {"draft": "d", "approved": False, "headline": "h"}[k] for k in wanted}
        return Reply.tool_calls([("final_answer", args)], usage={"prompt_tokens": 20_000})

    stub_llm.responder = answer
    result = _run(str(path), "-i", "topic=x")
    assert result.returncode == 3, result.stderr
    assert stub_llm.calls == 2  # $0.003 each: the third call would start past the budget
    assert "budget_exceeded: budget of $0.005 reached" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Workflow cost: $0.006")


def test_ctrl_c_stops_cleanly_and_keeps_what_ran(tmp_path: Path, stub_llm: StubLLM) -> None:
    import signal
    import time

    workflow = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    workflow["config"] = {"llm": {"provider": "openai", "model": "gpt-4o-mini",
                                  "api_base": stub_llm.base_url}}  # fmt: skip
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(workflow))
    stub_llm.script(Reply.tool_calls([("final_answer", {"draft": "first"})]))
    stub_llm.responder = lambda request: Reply.text("never sent", delay=30)
    process = subprocess.Popen(
        [sys.executable, "-m", "configurable_agents", "run", str(path), "-i", "topic=x"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while stub_llm.calls < 2 and time.monotonic() < deadline:  # wait for the slow second call
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert json.loads(stdout)["draft"] == "first"
    assert "cancelled: run cancelled" in stderr
    assert "Traceback" not in stderr
