"""The HTTP surface of `serve`, in process: what any body, query or method gets, and what the
OpenAPI document says about it.

Each case here was a finding (a 500, a wrong status, an undocumented answer); the live
Schemathesis run in ``test_server_fuzz.py`` looks for new ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from configurable_agents import RunStatus, prepare_workflow
from configurable_agents.server.app import create_app
from configurable_agents.server.jobs import JobStore

TOKEN = "t0ken-for-openapi"

TYPED = {
    "schema_version": "1.0",
    "flow": {"name": "typed", "version": "1.0.0"},
    "state": {
        "fields": {
            "topic": {"type": "str", "required": True, "description": "What to write about."},
            "words": {"type": "int", "default": 100},
            "temperature": {"type": "float"},
            "draft": {"type": "bool", "default": False},
            "keywords": {"type": "list[str]", "default": []},
            "weights": {"type": "dict[str, float]"},
            "notes": {"type": "dict"},
            "author": {"type": "object", "schema": {"name": "str", "age": "int"}},
        }
    },
    "nodes": [
        {
            "id": "write",
            "prompt": "Write {words} words about {topic}",
            "outputs": ["article"],
            "output_schema": {"type": "object", "fields": [{"name": "article", "type": "str"}]},
        }
    ],
    "edges": [{"from": "START", "to": "write"}, {"from": "write", "to": "END"}],
}
"""A workflow with an input of every kind, run on the offline ``mock`` model."""


def write_typed(path: Path) -> Path:
    """:data:`TYPED`, written to ``path``."""
    path.write_text(yaml.safe_dump(TYPED, sort_keys=False))
    return path


def _client(tmp: Path, token: str | None) -> Iterator[TestClient]:
    """A client of the typed workflow's API (lifespan run), its job table in ``tmp``."""
    prepared = prepare_workflow(write_typed(tmp / "typed.yaml"), llm="mock", trace=False)
    app = create_app(prepared, jobs=JobStore(tmp / "runs.db"), token=token)
    with TestClient(app, raise_server_exceptions=False) as client:
        if token:
            client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http")


@pytest.fixture(scope="module")
def client(http_dir: Path) -> Iterator[TestClient]:
    """The typed workflow's API, without a token; its job table is ``http_dir / "runs.db"``."""
    yield from _client(http_dir, None)


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def openapi_with_token(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for client in _client(tmp_path_factory.mktemp("http-token"), TOKEN):
        return client.get("/openapi.json").json()
    raise AssertionError("no client")


def _run_count(client: TestClient) -> int:
    return len(client.get("/runs", params={"limit": 500}).json()["runs"])


def _post(
    client: TestClient, body: bytes, content_type: str | bytes | None = "application/json"
) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/runs", content=body, headers=headers)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


NOT_STRICT_JSON = {
    "nan": b'{"inputs": {"topic": "x"}, "wait_seconds": NaN}',
    "infinity": b'{"inputs": {"topic": "x"}, "wait_seconds": Infinity}',
    "minus-infinity": b'{"inputs": {"topic": "x", "temperature": -Infinity}}',
    "float-overflowing-to-inf": b'{"inputs": {"topic": "x"}, "wait_seconds": 1e400}',
    "nan-in-a-float-input": b'{"inputs": {"topic": "x", "temperature": NaN}}',
    "nan-in-a-tag": b'{"inputs": {"topic": "x"}, "tags": {"a": NaN}}',
    "nan-in-an-unknown-field": b'{"inputs": {"topic": "x"}, "other": NaN}',
    "lone-surrogate-in-an-input": b'{"inputs": {"topic": "\\ud800"}}',
    "lone-surrogate-in-an-input-name": b'{"inputs": {"topic": "x", "\\udfff": 1}}',
    "lone-surrogate-in-a-tag": b'{"inputs": {"topic": "x"}, "tags": {"\\ud800": "v"}}',
    "lone-surrogate-in-an-unknown-field": b'{"\\udc00": 1, "inputs": {"topic": "x"}}',
    "integer-of-5000-digits": b'{"inputs": {"topic": "x", "words": ' + b"9" * 5000 + b"}}",
    "nesting-65-deep": b'{"inputs": {"topic": "x", "notes": {"a": ' + _nested(62) + b"}}}",
    "nesting-100000-deep": b'{"inputs": {"topic": "x", "notes": ' + _nested(100_000) + b"}}",
    "invalid-utf-8": b'{"inputs": {"topic": "\xff\xfe"}}',
    "utf-8-bom": b'\xef\xbb\xbf{"inputs": {"topic": "x"}}',
}


@pytest.mark.parametrize("body", NOT_STRICT_JSON.values(), ids=NOT_STRICT_JSON.keys())
def test_bodies_that_are_not_strict_json_get_422(client: TestClient, body: bytes) -> None:
    """NaN, Infinity, lone surrogates, numbers Python will not parse, nesting deeper than 64 and
    bytes that are not UTF-8 are answered like any malformed JSON: 422 ``json_invalid``; no
    run starts."""
    before = _run_count(client)
    response = _post(client, body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body"
    assert error["ctx"]["error"], error
    assert _run_count(client) == before


def test_strict_json_still_accepts_what_json_allows(client: TestClient) -> None:
    """Escaped astral characters (a surrogate pair), large but parseable integers, nesting 64
    deep, NUL characters and explicit nulls are fine."""
    body = (
        b'{"inputs": {"topic": "\\ud83d\\udc1d \\u0000", "words": ' + b"9" * 300 + b", "
        b'"temperature": null, "notes": {"a": ' + _nested(61) + b"}}, "
        b'"tags": {"emoji": "\\ud83d\\ude00"}}'
    )
    response = _post(client, body)
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "success"
    assert run["inputs"]["topic"] == "\U0001f41d \x00" and run["tags"] == {"emoji": "\U0001f600"}
    assert run["inputs"]["words"] == int("9" * 300)


@pytest.mark.parametrize("wait", [False, True, "5", None], ids=repr)
def test_wait_seconds_is_a_number_not_anything_like_one(client: TestClient, wait: Any) -> None:
    """Schemathesis finding: ``"wait_seconds": false`` started a run (pydantic read it as 0)."""
    before = _run_count(client)
    response = client.post("/runs", json={"inputs": {"topic": "x"}, "wait_seconds": wait})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "wait_seconds"]
    assert _run_count(client) == before


ODD_CONTENT_TYPES = {
    "text-plain-not-utf-8": (b"\xff\xfe\x00", "text/plain"),
    "text-plain-json": (b'{"inputs": {"topic": "x"}}', "text/plain"),
    "form": (b"inputs=x&tags=y", "application/x-www-form-urlencoded"),
    "multipart-without-boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    "multipart-binary": (b"--x\r\n\xff\r\n--x--\r\n", "multipart/form-data; boundary=x"),
    "octet-stream": (b"\x00\x01\xfe\xff", "application/octet-stream"),
    "no-content-type-not-utf-8": (b"\xff", None),
    "json-declared-latin-1": ('{"inputs": {"topic": "é"}}'.encode("latin-1"), "application/json"),
    "json-with-garbage-parameters": (b"{", b"application/json; charset=\xff; x"),
}


@pytest.mark.parametrize("body,content_type", ODD_CONTENT_TYPES.values(), ids=ODD_CONTENT_TYPES)
def test_odd_content_types_get_422(client: TestClient, body: bytes, content_type: str) -> None:
    """A body that is not JSON, whatever its declared type or bytes, is a 422 with the usual
    list of field errors, never a 500."""
    response = _post(client, body, content_type)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0])


def test_status_filter_takes_only_statuses(client: TestClient) -> None:
    response = client.get("/runs", params={"status": "zzz"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "status"]
    for status in ("queued", "running", *RunStatus):
        assert client.get("/runs", params={"status": status}).status_code == 200, status


def test_tag_filter_takes_any_key_and_value(client: TestClient) -> None:
    """Tag keys are matched as text: quotes, NUL, ``$``, brackets and dots are not a JSON path
    (they were a 500)."""
    tags = {'a"b': "1", "nul\x00": "\x00", "$.x[0]": "y", "k": 'v"="w'}
    run = client.post("/runs", json={"inputs": {"topic": "x"}, "tags": tags}).json()
    for key, value in tags.items():
        response = client.get("/runs", params={"tag": f"{key}={value}"})
        assert response.status_code == 200, response.text
        assert [r["run_id"] for r in response.json()["runs"]] == [run["run_id"]], key
    response = client.get("/runs", params=[("tag", "a%00=b"), ("tag", '"=')])
    assert response.status_code == 200 and response.json() == {"runs": []}


def test_tag_without_equals_is_a_validation_error(client: TestClient) -> None:
    response = client.get("/runs", params=[("tag", "k=v"), ("tag", "novalue")])
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "tag", 1] and error["type"] == "string_pattern_mismatch"


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("PUT", "/runs", {"GET", "POST"}),
        ("OPTIONS", "/runs", {"GET", "POST"}),
        ("HEAD", "/runs", {"GET", "POST"}),
        ("PATCH", "/runs/abc", {"DELETE", "GET"}),
        ("POST", "/runs/abc", {"DELETE", "GET"}),
        ("DELETE", "/health", {"GET"}),
        ("POST", "/metrics", {"GET"}),
    ],
)
def test_405_allows_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    if method != "HEAD":
        assert response.json() == {"detail": "Method Not Allowed"}


def test_stored_values_json_cannot_carry_are_still_answered(
    client: TestClient, http_dir: Path
) -> None:
    """A run whose state holds NaN or a lone surrogate (a model or tool can produce them) is
    answered with ``null`` and U+FFFD in their place, not a 500."""
    jobs = JobStore(http_dir / "runs.db")
    jobs.create("odd-values", "typed", {"topic": "x"}, {})
    state = {"temperature": math.nan, "big": math.inf, "text": "a\ud800b", "ok": 1.5}
    jobs.finish("odd-values", {"status": "success", "state": state, "outputs": {}})
    for path in ("/runs/odd-values", "/runs"):
        response = client.get(path)
        assert response.status_code == 200, response.text
    run = client.get("/runs/odd-values").json()
    assert run["state"] == {"temperature": None, "big": None, "text": "a\ufffdb", "ok": 1.5}


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


_STREAMING = {("POST", "/runs"), ("POST", "/runs/{run_id}/resume")}
"""Operations whose 200 is the run, or its events with `"stream": true`."""


def test_openapi_lists_every_status_each_operation_returns(openapi: dict[str, Any]) -> None:
    statuses = {key: set(op["responses"]) for key, op in _operations(openapi).items()}
    assert statuses == {
        ("POST", "/runs"): {"200", "202", "400", "413", "422"},
        ("GET", "/runs"): {"200", "400", "413", "422"},
        ("GET", "/runs/{run_id}"): {"200", "400", "404", "413", "422"},
        ("DELETE", "/runs/{run_id}"): {"200", "400", "404", "409", "413"},
        ("GET", "/runs/{run_id}/events"): {"200", "400", "404", "413", "422"},
        ("POST", "/runs/{run_id}/resume"): {"200", "202", "400", "404", "409", "413", "422"},
        ("GET", "/schema"): {"200", "400", "413"},
        ("GET", "/health"): {"200", "400", "413"},
        ("GET", "/ready"): {"200", "400", "413", "503"},
        ("GET", "/metrics"): {"200", "400", "413"},
        ("GET", "/costs"): {"200", "400", "404", "413", "422", "503"},
    }
    assert "securitySchemes" not in openapi.get("components", {})
    for (method, path), operation in _operations(openapi).items():
        assert "security" not in operation, (method, path)
        for status, response in operation["responses"].items():
            media_types = set(response["content"])
            for media_type in media_types:
                schema = response["content"][media_type]["schema"]
                assert schema, (method, path, status)  # a model, not "anything"
            if (path, status) == ("/runs/{run_id}/events", "200"):
                assert media_types == {"text/event-stream"}
            elif status == "200" and (method, path) in _STREAMING:
                assert media_types == {"application/json", "text/event-stream"}, (method, path)
            elif (path, status) != ("/metrics", "200"):
                assert media_types == {"application/json"}, (method, path, status)
    metrics = openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics == {"text/plain": {"schema": {"type": "string"}}}


def test_openapi_models_name_their_fields(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    run = schemas["Run"]
    assert {"run_id", "status", "inputs", "outputs", "error", "cost_usd"} <= set(run["required"])
    accepted = openapi["paths"]["/runs"]["post"]["responses"]["202"]
    accepted_schema = accepted["content"]["application/json"]["schema"]
    assert accepted_schema == {"$ref": "#/components/schemas/Accepted"}
    assert "Location" in accepted["headers"]
    statuses = schemas["RunState"]["enum"]
    assert set(statuses) == {"queued", "running", *RunStatus}
    (status,) = [p for p in openapi["paths"]["/runs"]["get"]["parameters"] if p["name"] == "status"]
    assert status["schema"]["anyOf"][0] == {"$ref": "#/components/schemas/RunState"}
    (tag,) = [p for p in openapi["paths"]["/runs"]["get"]["parameters"] if p["name"] == "tag"]
    assert tag["schema"]["items"]["pattern"]


def test_openapi_request_body_is_the_workflow_inputs(openapi: dict[str, Any]) -> None:
    body = openapi["components"]["schemas"]["RunRequest"]
    assert body["required"] == ["inputs"] and body["additionalProperties"] is False
    inputs = body["properties"]["inputs"]
    assert inputs["required"] == ["topic"] and inputs["additionalProperties"] is False
    fields = inputs["properties"]
    assert fields["topic"] == {"type": "string", "description": "What to write about."}
    assert fields["words"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert fields["words"]["default"] == 100
    assert fields["temperature"]["anyOf"][0] == {"type": "number"}
    assert fields["keywords"]["anyOf"][0] == {
        "type": "array",
        "items": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    }
    author = fields["author"]["anyOf"][0]
    assert author["additionalProperties"] is False and "required" not in author
    assert set(author["properties"]) == {"name", "age"}
    wait = body["properties"]["wait_seconds"]
    assert (wait["minimum"], wait["maximum"]) == (0, 300)


def test_openapi_with_a_token_declares_the_bearer_scheme(
    openapi_with_token: dict[str, Any],
) -> None:
    schemes = openapi_with_token["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    for (method, path), operation in _operations(openapi_with_token).items():
        if path in ("/health", "/ready"):
            assert "security" not in operation and "401" not in operation["responses"], path
            continue
        assert operation["security"] == [{"bearerAuth": []}], (method, path)
        unauthorized = operation["responses"]["401"]
        assert "WWW-Authenticate" in unauthorized["headers"], (method, path)
