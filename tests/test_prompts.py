"""Prompts in MLflow's prompt registry: references in node prompts, resolved when a workflow is
prepared (by version, by alias, through the local cache when the registry is down), the lineage
on traces, the `prompts` command and `validate --resolve`. The stub's request log shows the
prompt each run sent."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from configurable_agents.cli import app
from configurable_agents.config.prompt_refs import (
    PromptRef,
    from_mlflow_template,
    parse_prompt_uri,
    to_mlflow_template,
)

from .stub_llm import StubLLM

ROOT = Path(__file__).resolve().parent.parent

WORKFLOW = """
schema_version: "1.0"
flow: {name: tickets, version: "1"}
config:
  llm: {provider: openai, model: gpt-4o-mini, api_base: STUB}
  observability:
    mlflow: {enabled: true, tracking_uri: "STORE"}
state:
  fields:
    ticket: {type: str, required: true}
nodes:
  # the only step: its prompt goes to the registry
  - id: reply
    prompt: |
      Reply kindly to {ticket}.
      Literal braces {{like these}} stay.
    outputs: [answer]
edges:
  - {from: START, to: reply}
  - {from: reply, to: END}
"""


def test_references_parse_and_refuse_what_is_not_one() -> None:
    assert parse_prompt_uri("Hello {name}") is None
    assert parse_prompt_uri("prompts:/tickets.reply/3") == PromptRef(
        name="tickets.reply", version=3
    )
    assert parse_prompt_uri("prompts:/reply@production") == PromptRef(
        name="reply", alias="production"
    )
    for bad in ("prompts:/reply", "prompts:/reply/0", "prompts:/a b/1", "prompts:/r@"):
        with pytest.raises(ValueError, match="is not a prompt reference"):
            parse_prompt_uri(bad)


def test_a_malformed_reference_is_a_located_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW.replace("prompt: |", 'prompt: "prompts:/reply"\n    x: |'))
    data = yaml.safe_load(path.read_text())
    del data["nodes"][0]["x"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    outcome = CliRunner().invoke(app, ["validate", str(path)])
    assert outcome.exit_code == 1
    assert "nodes[0].prompt: 'prompts:/reply' is not a prompt reference" in outcome.output
    data["nodes"][0]["prompt"] = {"name": "reply", "version": 2, "alias": "prod"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    both = CliRunner().invoke(app, ["validate", str(path)])
    assert "give exactly one of `version` or `alias`" in both.output


_TEXT = st.text(st.sampled_from("ab {}\n.x_"), max_size=30)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.one_of(_TEXT, st.sampled_from(["{ticket}", "{state.a.b}"])), max_size=6))
def test_templates_survive_the_round_trip_through_mlflow_syntax(parts: list[str]) -> None:
    ours = "".join(
        part if part.startswith("{") and part.endswith("}") and " " not in part
        else part.replace("{", "{{").replace("}", "}}")
        for part in parts
    )  # fmt: skip
    assert from_mlflow_template(to_mlflow_template(ours)) == ours


def test_mlflow_placeholders_become_ours() -> None:
    assert from_mlflow_template("Hi {{ name }}, {{state.a}} {not one}") == (
        "Hi {name}, {state.a} {{not one}}"
    )


@pytest.fixture
def shop(
    tmp_path: Path, stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    monkeypatch.delenv("CONFIGURABLE_AGENTS_TRACING", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("CONFIGURABLE_AGENTS_PROMPT_CACHE", str(tmp_path / "cache.json"))
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = tmp_path / "tickets.yaml"
    path.write_text(WORKFLOW.replace("STUB", stub_llm.base_url).replace("STORE", store))
    yield {"path": path, "store": store, "stub": stub_llm, "folder": tmp_path}


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _sent(stub: StubLLM) -> str:
    """The user message of the last request the stub got."""
    return str(stub.requests[-1]["messages"][-1]["content"])


def _run(path: Path, ticket: str = "a broken login") -> Any:
    from configurable_agents import run_workflow

    return run_workflow(path, {"ticket": ticket})


def test_push_registers_once_rewrites_the_file_and_runs_use_the_registered_text(
    shop: dict[str, Any],
) -> None:
    path, store, stub = shop["path"], shop["store"], shop["stub"]
    pushed = _cli("prompts", "push", str(path), "--alias", "production")
    assert pushed.exit_code == 0, pushed.output
    assert "reply: prompts:/tickets.reply/1 (new version) @production" in pushed.output
    again = _cli("prompts", "push", str(path), "--rewrite")
    assert "reply: prompts:/tickets.reply/1 (unchanged)" in again.output
    text = path.read_text()
    assert '    prompt: "prompts:/tickets.reply/1"\n    outputs: [answer]' in text
    assert "# the only step: its prompt goes to the registry" in text  # comments are kept
    shown = _cli("prompts", "show", "tickets.reply@production", "--tracking-uri", store)
    assert shown.output.splitlines()[0] == "prompts:/tickets.reply/1  (aliases: @production)"
    assert "Reply kindly to {{ticket}}." in shown.output
    result = _run(path)
    assert result.status.value == "success"
    assert "Reply kindly to a broken login.\nLiteral braces {like these} stay." in _sent(stub)
    listed = json.loads(_cli("prompts", "list", "--tracking-uri", store, "--format", "json").output)
    assert listed == [{"name": "tickets.reply", "latest_version": 1, "aliases": ["production"],
                       "tags": listed[0]["tags"]}]  # fmt: skip


def test_an_alias_moved_is_used_once_the_cached_resolution_expires(
    shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, store, stub = shop["path"], shop["store"], shop["stub"]
    assert _cli("prompts", "push", str(path), "--alias", "production").exit_code == 0
    path.write_text(path.read_text().replace("Reply kindly", "Answer briefly"))
    assert "prompts:/tickets.reply/2 (new version)" in _cli("prompts", "push", str(path)).output
    diff = _cli("prompts", "diff", "tickets.reply", "1", "2", "--tracking-uri", store).output
    assert "-Reply kindly to {{ticket}}.\n+Answer briefly to {{ticket}}." in diff
    data = yaml.safe_load(path.read_text())
    data["nodes"][0]["prompt"] = {"name": "tickets.reply", "alias": "production"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _run(path)
    assert "Reply kindly" in _sent(stub)
    assert _cli("prompts", "alias", "tickets.reply", "production", "2", "--tracking-uri",
                store).exit_code == 0  # fmt: skip
    _run(path)
    assert "Reply kindly" in _sent(stub)  # the alias is cached for its TTL
    monkeypatch.setenv("CONFIGURABLE_AGENTS_PROMPT_TTL", "0")
    result = _run(path)
    assert "Answer briefly" in _sent(stub)
    from configurable_agents.observability.recorder import flush_all

    assert flush_all(60)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    spans = {s.name: s for s in client.get_trace(result.trace_id).data.spans}
    assert (spans["reply"].attributes["prompt.name"], spans["reply"].attributes["prompt.version"]) \
        == ("tickets.reply", 2)  # fmt: skip
    chat = next(s for s in spans.values() if s.span_type == "CHAT_MODEL")
    assert chat.attributes["prompt.version"] == 2
    experiment = client.get_experiment_by_name("configurable_agents").experiment_id
    linked = client.search_traces(
        locations=[experiment], filter_string="prompt = 'tickets.reply/2'"
    )
    assert [t.info.trace_id for t in linked] == [result.trace_id]


def test_a_registry_that_is_down_uses_the_cache_and_says_so_once(
    shop: dict[str, Any], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from configurable_agents import SetupError, prepare_workflow
    from configurable_agents.prompts import resolve

    monkeypatch.setattr(resolve, "_warned", set())
    path, stub, folder = shop["path"], shop["stub"], shop["folder"]
    assert _cli("prompts", "push", str(path), "--alias", "production").exit_code == 0
    data = yaml.safe_load(path.read_text())
    data["nodes"][0]["prompt"] = "prompts:/tickets.reply@production"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    _run(path)  # resolves the alias to version 1, and caches it
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port
    down = folder / "down.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["observability"]["mlflow"] = {"enabled": False, "tracking_uri": dead}
    down.write_text(yaml.safe_dump(data, sort_keys=False))
    cache = folder / "cache.json"
    entries = json.loads(cache.read_text())
    cache.write_text(json.dumps({k.replace(shop["store"], dead): v for k, v in entries.items()}))
    monkeypatch.setenv("CONFIGURABLE_AGENTS_PROMPT_TTL", "0")  # the alias must be asked again
    with caplog.at_level(logging.WARNING):
        prepare_workflow(down)
        result = _run(down)
    assert result.status.value == "success" and "Reply kindly" in _sent(stub)
    warnings = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(warnings) == 1, warnings  # two resolutions, one warning
    assert "using the cached tickets.reply/1" in warnings[0]
    cache.unlink()
    with pytest.raises(
        SetupError, match=r"nodes\[0\]\.prompt: prompts:/tickets.reply@production: the MLflow"
    ):
        prepare_workflow(down)
    outcome = CliRunner().invoke(app, ["run", str(down), "-i", "ticket=x"])
    assert outcome.exit_code == 2 and "does not answer" in outcome.output


def test_validate_checks_the_form_offline_and_the_text_with_resolve(shop: dict[str, Any]) -> None:
    path, store = shop["path"], shop["store"]
    assert _cli("prompts", "push", str(path), "--rewrite").exit_code == 0
    from mlflow.tracking import MlflowClient

    MlflowClient(store).register_prompt("tickets.reply", "Reply to {{tickt}}")  # version 2
    data = yaml.safe_load(path.read_text())
    data["nodes"][0]["prompt"] = "prompts:/tickets.reply/2"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    offline = _cli("validate", str(path))
    assert offline.exit_code == 0
    resolved = _cli("validate", str(path), "--resolve")
    assert resolved.exit_code == 1
    assert ("nodes[0].prompt: prompts:/tickets.reply/2: placeholder {tickt}: no state field "
            "'tickt' (did you mean 'ticket'?)") in resolved.output  # fmt: skip
    data["nodes"][0]["prompt"] = "prompts:/tickets.reply@nope"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    missing = _cli("validate", str(path), "--resolve")
    assert missing.exit_code == 1 and "alias nope not found" in missing.output.lower()
    probe = (
        "import sys\nfrom configurable_agents.cli import app\n"
        f"try:\n    app(['validate', {str(path)!r}])\nexcept SystemExit:\n    pass\n"
        "print('mlflow' in sys.modules)"
    )
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert light.stdout.splitlines()[-1] == "False"


def test_prompts_against_a_real_mlflow_server(shop: dict[str, Any], tmp_path: Path) -> None:
    from .test_recording_recovery import _free_port, _mlflow_server

    path, stub = shop["path"], shop["stub"]
    with _mlflow_server(_free_port(), tmp_path / "server") as uri:
        path.write_text(path.read_text().replace(shop["store"], uri))
        pushed = _cli("prompts", "push", str(path), "--alias", "production", "--rewrite")
        assert pushed.exit_code == 0, pushed.output
        assert _run(path).status.value == "success"
        assert "Reply kindly to a broken login." in _sent(stub)
        from configurable_agents.observability.recorder import flush_all

        assert flush_all(60)  # before the server goes: later flushes must not wait for it
        assert "prompts:/tickets.reply/1" in _cli("prompts", "show", "tickets.reply",
                                                  "--tracking-uri", uri).output  # fmt: skip


def test_the_engine_alone_refuses_an_unresolved_reference(tmp_path: Path) -> None:
    from configurable_agents.engine import SetupError, prepare_workflow

    data = yaml.safe_load(WORKFLOW.replace("STUB", "http://x").replace("STORE", "sqlite:///m.db"))
    data["nodes"][0]["prompt"] = "prompts:/tickets.reply/1"
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SetupError, match="registry reference"):
        prepare_workflow(path, llm="mock")


def test_a_sub_workflows_registry_prompt_is_resolved_with_its_parent(
    shop: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mlflow.tracking import MlflowClient

    from configurable_agents import run_workflow

    store, stub = shop["store"], shop["stub"]
    MlflowClient(store).register_prompt("tickets.reply", "Reply kindly to {{ticket}} (v1)")
    child = shop["path"]
    child.write_text(child.read_text().replace(
        "prompt: |\n      Reply kindly to {ticket}.\n      Literal braces {{like these}} stay.",
        'prompt: "prompts:/tickets.reply/1"',
    ))  # fmt: skip
    elsewhere = tmp_path_factory.mktemp("parent")  # the parent is run from another folder
    parent = elsewhere / "parent.yaml"
    parent.write_text(f"""
schema_version: "1.0"
flow: {{name: desk}}
config:
  llm: {{provider: openai, model: gpt-4o-mini, api_base: {stub.base_url}}}
  observability:
    mlflow: {{enabled: true, tracking_uri: "{store}"}}
state:
  fields:
    ticket: {{type: str, required: true}}
nodes:
  - {{id: answer, workflow: {child}, inputs: {{ticket: "{{ticket}}"}}, outputs: [answer]}}
edges:
  - {{from: START, to: answer}}
  - {{from: answer, to: END}}
""")
    result = run_workflow(parent, {"ticket": "a lost parcel"})
    assert result.status.value == "success", result.error
    assert "Reply kindly to a lost parcel (v1)" in _sent(stub)
