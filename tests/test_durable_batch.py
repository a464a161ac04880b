"""`batch --resume` goes on with each unfinished row from its checkpoint: the calls a row's run
completed are not made again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml

from configurable_agents import prepare_workflow
from configurable_agents.batch import read_rows, run_batch

from .stub_llm import JSON, Reply, StubLLM, default_responder


def _chain(tmp_path: Path, stub: StubLLM) -> Path:
    data = {
        "schema_version": "1.0",
        "flow": {"name": "chain"},
        "state": {"fields": {"topic": {"type": "str", "required": True}}},
        "nodes": [
            {"id": n, "prompt": f"task {n} about {{topic}}", "outputs": [f"out_{n}"]}
            for n in ("a", "b", "c")
        ],
        "edges": [
            {"from": "START", "to": "a"},
            {"from": "a", "to": "b"},
            {"from": "b", "to": "c"},
            {"from": "c", "to": "END"},
        ],
        "config": {
            "llm": {"provider": "openai", "model": "gpt-4o-mini", "api_base": stub.base_url},
            "execution": {
                "max_retries": 0,
                "checkpoints": {"enabled": True, "store": f"sqlite:///{tmp_path / 'cp.db'}"},
            },
        },
    }
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _prompts(stub: StubLLM) -> list[str]:
    return [json.dumps(r["messages"]).split("task ")[1].split('"')[0] for r in stub.requests]


def test_batch_resume_goes_on_mid_workflow(tmp_path: Path, stub_llm: StubLLM) -> None:
    failing = {"task c about bees"}

    def responder(request: JSON) -> Reply:
        if any(text in json.dumps(request["messages"]) for text in failing):
            return Reply.error(400)
        return default_responder(request)

    stub_llm.responder = responder
    path = _chain(tmp_path, stub_llm)
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text('{"id": "r1", "topic": "bees"}\n{"id": "r2", "topic": "ants"}\n')
    out = tmp_path / "out.jsonl"
    prepared = prepare_workflow(path, env={"OPENAI_API_KEY": "x"}, trace=False)
    rows = read_rows(rows_file, prepared.workflow)

    def batch(resume: bool) -> list[dict[str, Any]]:
        asyncio.run(run_batch(prepared, rows, out, inputs=rows_file, resume=resume))
        return [json.loads(line) for line in out.read_text().splitlines()]

    first = batch(resume=False)
    assert {line["id"]: line["status"] for line in first} == {"r1": "failed", "r2": "success"}
    assert sorted(_prompts(stub_llm)) == sorted(
        f"{n} about {t}" for n in "abc" for t in ("bees", "ants")
    )
    stub_llm.requests.clear()
    failing.clear()
    second = batch(resume=True)
    assert _prompts(stub_llm) == ["c about bees"]  # r2 skipped, r1's a and b not asked again
    before, resumed = (next(x for x in lines if x["id"] == "r1") for lines in (first, second))
    assert resumed["status"] == "success"
    assert resumed["run_id"] == before["run_id"]
    # the row reports the whole run: a and b (first attempt) and c (second)
    assert resumed["tokens"]["total"] > before["tokens"]["total"] > 0
    assert resumed["earlier"]["tokens"] == before["tokens"]["total"]
