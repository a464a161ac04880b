"""Provider clients under concurrency: runs in several threads' event loops at once.

langchain-anthropic shares one async HTTP client between every model with the same base URL; runs
in other threads' event loops then fail with connection errors. A minimal Anthropic Messages API
server on 127.0.0.1 drives the real client over a real wire.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from configurable_agents import RunStatus, load_workflow, run_workflow


class _Messages(BaseHTTPRequestHandler):
    """Answers ``POST /v1/messages`` with a call of the request's first tool."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(0.02)  # keep several requests in flight at once
        tool = body["tools"][0]
        fields = tool["input_schema"].get("properties", {})
        reply = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [
                {
                    "type": "tool_use",
                    "id": "tu_1",
                    "name": tool["name"],
                    "input": dict.fromkeys(fields, "stub"),
                },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def anthropic_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Messages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_anthropic_runs_in_many_threads_each_with_its_own_loop(anthropic_url: str) -> None:
    workflow = load_workflow(
        {
            "schema_version": "1.0",
            "flow": {"name": "threads"},
            "config": {
                "llm": {
                    "provider": "anthropic",
                    "model": "claude-haiku-4-5",
                    "api_base": anthropic_url,
                }
            },
            "state": {"fields": {"topic": {"type": "str"}}},
            "nodes": [{"id": "n", "prompt": "{topic}", "outputs": ["out"]}],
            "edges": [{"from": "START", "to": "n"}, {"from": "n", "to": "END"}],
        }
    )

    def one(_: int) -> object:
        return run_workflow(workflow, {"topic": "x"}, env={"ANTHROPIC_API_KEY": "k"}, trace=False)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    assert [r.error for r in results if r.status is not RunStatus.SUCCESS] == []
    assert all(r.usage.input_tokens == 11 and r.usage.output_tokens == 7 for r in results)
    assert all(r.cost_usd > 0 for r in results)
