"""`autolog_enabled`: LangChain's own runs in the run's one trace, read back span by span.

Runs go through the real langchain-openai client to the stub server, are recorded to a tmp
SQLite store through the spool, and are read back with ``MlflowClient.get_trace``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunResult, RunStatus, load_workflow, prepare_workflow
from configurable_agents.engine import calls

from .stub_llm import Reply, StubLLM

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("tides", "bees", "rust")
USAGE = {  # what the stub bills, by kind of request: (prompt, completion) tokens
    "plan": (10, 5),
    "calculator": (20, 3),
    "shout": (25, 2),
    "final": (30, 4),
}
SHOUT = '''
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda


class Notes(BaseRetriever):
    def _get_relevant_documents(self, query, *, run_manager):
        return [Document(page_content=f"note on {query}", metadata={"n": 1})]


def shout(text: str) -> str:
    """Say it louder, after looking it up.

    Args:
        text: What to say.
    """
    Notes().invoke(text)
    chain = RunnableLambda(str.upper, name="upper") | RunnableLambda(lambda s: s + "!", name="bang")
    return chain.invoke(text)
'''


def _tool_names(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


def _respond(request: dict[str, Any]) -> Reply:
    """Plan 3 sub-questions; each answer calls the calculator first, the synthesis `shout`."""
    text = json.dumps(request["messages"])
    final = next(t for t in request["tools"] if t["function"]["name"] == "final_answer")
    wanted = list(final["function"]["parameters"]["properties"])
    tools = _tool_names(request)

    def billed(kind: str) -> dict[str, int]:
        return dict(zip(("prompt_tokens", "completion_tokens"), USAGE[kind], strict=True))

    if wanted == ["sub_questions"]:
        return Reply.tool_calls([("final_answer", {"sub_questions": ["s0", "s1", "s2"]})],
                                usage=billed("plan"))  # fmt: skip
    if '"role": "tool"' not in text and "calculator" in tools:
        index = text.split("Sub-question ")[1][0]
        return Reply.tool_calls([("calculator", {"expression": f"{index} * 10"})],
                                usage=billed("calculator"))  # fmt: skip
    if '"role": "tool"' not in text and "shout" in tools:
        return Reply.tool_calls([("shout", {"text": "done"})], usage=billed("shout"))
    return Reply.tool_calls([("final_answer", dict.fromkeys(wanted, "x"))], usage=billed("final"))


def _kind(span: Any) -> str:
    """Which kind of request a chat span answered, from its reply."""
    (choice,) = span.outputs["choices"]
    (call,) = choice["message"]["tool_calls"]
    name = call["function"]["name"]
    if name == "final_answer":
        return "plan" if "sub_questions" in call["function"]["arguments"] else "final"
    return name


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLM]:
    with StubLLM() as server:
        yield server


@pytest.fixture
def store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, stub: StubLLM
) -> str:
    """One tmp SQLite store for the module (created once), a fresh spool per test."""
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path_factory.mktemp("sp") / "s.db"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING")
    monkeypatch.setattr(calls, "BACKOFF_BASE_S", 0.001)
    stub.reset()
    return f"sqlite:///{tmp_path_factory.getbasetemp() / 'autolog-mlflow.db'}"


def _fan_out(stub: StubLLM, uri: str, **mlflow: Any) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "examples" / "fan_out.yaml").read_text())
    data["config"]["llm"] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_base": stub.base_url,
    }
    data["config"]["tools"] = {"allowed_modules": ["ca_autolog_tools"]}
    data["config"]["observability"] = {
        "mlflow": {"enabled": True, "tracking_uri": uri, "async_logging": False,
                   "autolog_enabled": True, **mlflow}
    }  # fmt: skip
    nodes = {node["id"]: node for node in data["nodes"]}
    nodes["answer_one"]["tools"] = ["calculator"]
    nodes["synthesise"]["tools"] = ["ca_autolog_tools:shout"]
    return data


def _simple(stub: StubLLM, uri: str, **mlflow: Any) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "flow": {"name": "simple"},
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "observability": {
                "mlflow": {
                    "enabled": True,
                    "tracking_uri": uri,
                    "async_logging": False,
                    "experiment_name": "simple",
                    "autolog_enabled": True,
                    **mlflow,
                }
            },
        },
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [{"id": "write", "prompt": "Write about {topic}", "outputs": ["article"]}],
        "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
    }


def _run(data: dict[str, Any], inputs: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    prepared = prepare_workflow(load_workflow(data), env=env or {})
    return asyncio.run(prepared.arun(inputs))


def _trace(uri: str, result: RunResult) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri).get_trace(result.trace_id)


@pytest.fixture
def custom_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    package = tmp_path / "ca_autolog_tools"
    package.mkdir()
    (package / "__init__.py").write_text(SHOUT)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("ca_autolog_tools", None)


def test_concurrent_fan_out_runs_keep_langchain_spans_in_their_run_and_node(
    stub: StubLLM, store: str, custom_tools: None
) -> None:
    from mlflow.tracking import MlflowClient

    stub.responder = _respond
    prepared = prepare_workflow(load_workflow(_fan_out(stub, store)), env={})

    async def runs() -> list[RunResult]:
        return await asyncio.gather(*(prepared.arun({"question": q}) for q in QUESTIONS))

    results = asyncio.run(runs())
    assert [r.status for r in results] == [RunStatus.SUCCESS] * 3, results[0].error
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    stored = client.search_traces(locations=[experiment], include_spans=False)
    assert sorted(t.info.trace_id for t in stored) == sorted(r.trace_id for r in results)
    assert stub.calls == 3 * 9  # plan, 3 x (calculator + answer), shout + synthesis

    for question, result in zip(QUESTIONS, results, strict=True):
        spans = _trace(store, result).data.spans
        by_id = {s.span_id: s for s in spans}
        chats = [s for s in spans if s.span_type == "CHAT_MODEL"]
        # one chat span per model call: autolog's chat span is merged into ours
        assert len(chats) == sum(r.model_calls for r in result.records) == 9
        for chat in chats:
            parent = by_id[chat.parent_id]
            assert parent.span_type == "AGENT"
            assert chat.get_attribute("mlflow.message.format") == "langchain"
            assert chat.get_attribute("invocation_params")["model"] == "gpt-4o-mini"
            assert chat.get_attribute("mlflow.llm.cost")["total_cost"] > 0
            messages = chat.inputs["messages"]
            assert messages[0]["role"] == "system" and question in messages[1]["content"]
            if parent.name == "answer_one":  # the item's own sub-question, in its own node span
                item = parent.get_attribute("node.item_index")
                assert f"Sub-question {item}: s{item}" in messages[1]["content"]
            prompt, completion = USAGE[_kind(chat)]
            usage = chat.get_attribute("mlflow.chat.tokenUsage")
            assert (usage["input_tokens"], usage["output_tokens"]) == (prompt, completion)
            assert usage["cache_read_input_tokens"] == 0  # LangChain's key, kept
        assert {_kind(c) for c in chats} == set(USAGE)
        billed = sum(sum(USAGE[_kind(c)]) for c in chats)
        assert billed == result.usage.total_tokens == 15 + 3 * (23 + 34) + 27 + 34
        totals = json.loads(_trace(store, result).info.trace_metadata["mlflow.trace.tokenUsage"])
        assert totals["total_tokens"] == billed  # nothing counted twice

        calculators = [s for s in spans if s.name == "calculator"]
        assert len(calculators) == 3
        for tool in calculators:
            parent = by_id[tool.parent_id]
            assert (parent.name, tool.span_type) == ("answer_one", "TOOL")
            item = parent.get_attribute("node.item_index")
            assert tool.inputs == {"expression": f"{item} * 10"}
            assert tool.outputs == str(item * 10)
            assert tool.get_attribute("metadata")["langgraph_node"] == "node.answer_one"
        (shout,) = [s for s in spans if s.name == "shout"]
        assert by_id[shout.parent_id].name == "synthesise" and shout.outputs == "DONE!"
        inside = {s.span_type: s for s in spans if s.parent_id == shout.span_id}
        assert set(inside) == {"RETRIEVER", "CHAIN"}
        assert (inside["RETRIEVER"].name, inside["RETRIEVER"].inputs) == ("Notes", "done")
        (document,) = inside["RETRIEVER"].outputs
        assert document["page_content"] == "note on done" and document["metadata"] == {"n": 1}
        sequence = inside["CHAIN"]
        steps = sorted((s.name, s.outputs) for s in spans if s.parent_id == sequence.span_id)
        assert steps == [("bang", "DONE!"), ("upper", "DONE")]


def test_failed_attempt_and_failed_call_are_error_spans(stub: StubLLM, store: str) -> None:
    data = _simple(stub, store)
    answer = Reply.tool_calls([("final_answer", {"article": "A"})], usage={"prompt_tokens": 7})
    stub.script(Reply.error(500), answer)
    retried = _run(data, {"topic": "x"})
    assert retried.status is RunStatus.SUCCESS, retried.error
    spans = _trace(store, retried).data.spans
    (call,) = [s for s in spans if s.name == "openai/gpt-4o-mini"]
    assert call.status.status_code == "OK" and call.get_attribute("mlflow.chat.tokenUsage")[
        "input_tokens"] == 7  # fmt: skip
    (attempt,) = [s for s in spans if s.parent_id == call.span_id]
    assert (attempt.name, attempt.span_type) == ("ChatOpenAI", "CHAT_MODEL")
    assert attempt.status.status_code == "ERROR" and "500" in attempt.status.description
    assert attempt.get_attribute("mlflow.chat.tokenUsage") is None
    assert [e.name for e in attempt.events] == ["exception"]

    stub.script(Reply.error(400))
    failed = _run(data, {"topic": "x"})
    assert failed.status is RunStatus.FAILED
    spans = _trace(store, failed).data.spans
    (call,) = [s for s in spans if s.span_type == "CHAT_MODEL"]
    assert call.status.status_code == "ERROR" and "400" in call.status.description
    assert call.get_attribute("mlflow.message.format") == "langchain"
    assert not [s for s in spans if s.parent_id == call.span_id]


def test_secrets_are_scrubbed_and_prompts_can_be_left_out(stub: StubLLM, store: str) -> None:
    secret = "sk-live-0123456789abcdef0123"
    stub.responder = lambda request: Reply.tool_calls([("final_answer", {"article": secret})])
    result = _run(_simple(stub, store), {"topic": f"key {secret}"}, {"OPENAI_API_KEY": secret})
    spans = _trace(store, result).data.spans
    dumped = json.dumps([s.to_dict() for s in spans])
    assert secret not in dumped
    (chat,) = [s for s in spans if s.span_type == "CHAT_MODEL"]
    assert chat.inputs["messages"][1]["content"] == "Write about key [REDACTED]"

    quiet = _run(_simple(stub, store, log_prompts=False), {"topic": "private"})
    (chat,) = [s for s in _trace(store, quiet).data.spans if s.span_type == "CHAT_MODEL"]
    assert chat.inputs is None and chat.outputs is None
    assert chat.get_attribute("mlflow.message.format") == "langchain"


def test_autolog_off_or_tracing_off_captures_nothing(stub: StubLLM, store: str) -> None:
    stub.responder = lambda request: Reply.tool_calls([("final_answer", {"article": "A"})])
    off = _run(_simple(stub, store, autolog_enabled=False), {"topic": "x"})
    (chat,) = [s for s in _trace(store, off).data.spans if s.span_type == "CHAT_MODEL"]
    assert chat.get_attribute("mlflow.message.format") is None
    assert chat.inputs == {"messages": [{"role": "user", "content": "Write about x"}]}
    assert off.records[0].calls[0].runs == []
    untraced = prepare_workflow(load_workflow(_simple(stub, store)), env={}, trace=False)
    result = asyncio.run(untraced.arun({"topic": "x"}))
    assert result.trace_id is None and result.records[0].calls[0].runs == []


PROBE = """
import json, sys
from configurable_agents import load_workflow, run_workflow
report = {}
for autolog in (True, False):
    data = json.loads(sys.argv[1])
    data["config"]["observability"]["mlflow"]["autolog_enabled"] = autolog
    result = run_workflow(load_workflow(data), {"topic": "x"}, llm="mock", env={}, trace=True)
    report[str(autolog)] = [result.status.value, [r.name for r in result.records[0].calls[0].runs]]
report["mlflow"] = "mlflow" in sys.modules
print(json.dumps(report))
"""


def test_run_process_never_imports_mlflow(tmp_path: Path, stub: StubLLM, store: str) -> None:
    # Written in the background by the writer process: the run's own process stays MLflow-free.
    data = _simple(stub, store)
    data["config"]["observability"]["mlflow"]["async_logging"] = True
    env = {"CONFIGURABLE_AGENTS_SPOOL": str(tmp_path / "s.db"), "PATH": "", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(data)],
        capture_output=True, text=True, check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    report = json.loads(out.stdout.splitlines()[-1])
    assert report == {"True": ["success", ["MockChatModel"]], "False": ["success", []],
                      "mlflow": False}  # fmt: skip


def test_calls_keep_the_callbacks_they_would_have_had() -> None:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.runnables import RunnableLambda

    from configurable_agents.engine.capture import capture_config
    from configurable_agents.engine.records import LangChainRun
    from configurable_agents.llm.mock import MockChatModel

    class Seen(BaseCallbackHandler):
        run_inline = True

        def __init__(self) -> None:
            self.parents: dict[str, Any] = {}

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kw: Any) -> None:
            self.parents.setdefault("chain", run_id)

        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            self.parents["chat"] = kw["parent_run_id"]

    runs: list[LangChainRun] = []

    async def step(text: str) -> Any:
        return await MockChatModel().ainvoke(text, capture_config(runs))

    seen = Seen()
    asyncio.run(RunnableLambda(step).ainvoke("hi", {"callbacks": [seen]}))
    assert seen.parents["chat"] == seen.parents["chain"]  # other handlers: still the step's child
    (run,) = runs
    assert (run.name, run.span_type, run.parent_run_id) == ("MockChatModel", "CHAT_MODEL", None)
    assert run.attributes["mlflow.spanInputs"] == {"messages": [{"role": "user", "content": "hi"}]}
