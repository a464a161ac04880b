"""OpenTelemetry export read back by real OTLP receivers on 127.0.0.1 (HTTP, and gRPC)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import secrets
import sys
import threading
import zlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from configurable_agents import RunStatus, SetupError, prepare_workflow
from configurable_agents.engine import NullObserver
from configurable_agents.observability import otel
from configurable_agents.observability.recorder import Recorder

from .test_server import Server, server_env

ROOT = Path(__file__).resolve().parent.parent


class TraceIds(NullObserver):
    """Stands in for the MLflow recorder, the first observer: gives each run a trace id the way
    recording does, so tests know the id of every run, exported or not."""

    def run_finished(self, result: Any) -> None:
        result.trace_id = f"tr-{secrets.token_hex(16)}"


def _prepare(path: Path, **env: str) -> Any:
    prepared = prepare_workflow(path, llm="mock", env=env, trace=False)
    prepared.observers.insert(0, TraceIds())
    return prepared


@dataclass
class Export:
    """One export request: its headers and its decoded spans (with their resource)."""

    headers: dict[str, str]
    spans: list[tuple[dict[str, Any], Any]] = field(default_factory=list)


def _decode(body: bytes, headers: dict[str, str]) -> Export:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    export = Export(headers)
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            export.spans.extend((resource, span) for span in scope_spans.spans)
    return export


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind)


class Receiver:
    """An OTLP/HTTP receiver: decodes every `ExportTraceServiceRequest` posted to /v1/traces."""

    def __init__(self) -> None:
        self.exports: list[Export] = []
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceResponse,
                )

                receiver.gate.wait()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                assert self.path == "/v1/traces"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.exports.append(_decode(body, headers))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self, service: str) -> list[Any]:
        """Spans received from the service named ``service``."""
        return [
            span
            for export in self.exports
            for resource, span in export.spans
            if resource.get("service.name") == service
        ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A running OTLP/HTTP receiver on 127.0.0.1."""
    running = Receiver()
    yield running
    running.server.shutdown()


def _workflow(tmp_path: Path, example: str, **opentelemetry: Any) -> Path:
    data = yaml.safe_load((ROOT / "examples" / example).read_text())
    data.setdefault("config", {})["observability"] = {
        "opentelemetry": {"enabled": True, **opentelemetry},
    }
    path = tmp_path / example
    path.write_text(yaml.safe_dump(data))
    return path


def _attributes(span: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


def _flush() -> None:
    """Export everything queued (the receiver has it after)."""
    assert otel.flush_all(timeout=60)


def test_spans_parents_and_gen_ai_attributes_reach_an_otlp_http_receiver(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = _workflow(
        tmp_path,
        "loop.yaml",
        endpoint=receiver.endpoint,
        headers={"X-Collector-Key": "hdr-secret-42"},
        service_name="otel-http-test",
    )
    prepared = _prepare(path, MY_SERVICE_TOKEN="tok-0123456789")
    result = asyncio.run(
        prepared.arun({"topic": "tides tok-0123456789"}, tags={"session_id": "s1"})
    )
    assert result.status is RunStatus.SUCCESS and result.trace_id
    _flush()

    spans = receiver.spans("otel-http-test")
    calls = [call for record in result.records for call in record.calls]
    assert len(spans) == 1 + len(result.records) + len(calls)
    assert {span.trace_id.hex() for span in spans} == {result.trace_id[3:]}  # the recorded trace id
    assert all(e.headers["x-collector-key"] == "hdr-secret-42" for e in receiver.exports)
    resource = receiver.exports[-1].spans[0][0]
    assert resource["service.name"] == "otel-http-test"
    assert resource["service.version"] == "1.0.0"

    by_id = {span.span_id: span for span in spans}
    (root,) = [span for span in spans if not span.parent_span_id]
    assert root.name == "workflow_iterative_refinement"
    root_attributes = _attributes(root)
    assert root_attributes["workflow.run_id"] == result.run_id
    assert root_attributes["gen_ai.conversation.id"] == "s1"
    assert "tok-0123456789" not in root_attributes["mlflow.spanInputs"]
    assert "[REDACTED]" in root_attributes["mlflow.spanInputs"]

    nodes = [span for span in spans if _attributes(span)["mlflow.spanType"] == "AGENT"]
    assert [n.name for n in sorted(nodes, key=lambda s: s.start_time_unix_nano)] == [
        r.node_id for r in result.records
    ]
    assert all(n.parent_span_id == root.span_id for n in nodes)
    assert all(_attributes(n)["gen_ai.operation.name"] == "invoke_agent" for n in nodes)

    chats = [span for span in spans if _attributes(span)["mlflow.spanType"] == "CHAT_MODEL"]
    assert len(chats) == len(calls)
    for chat in chats:
        parent = by_id[chat.parent_span_id]
        record = next(r for r in result.records if r.node_id == parent.name)
        attributes = _attributes(chat)
        assert chat.kind == chat.SPAN_KIND_CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == attributes["gen_ai.system"] == "mock"
        assert attributes["gen_ai.request.model"] == record.model
        assert attributes["gen_ai.usage.input_tokens"] == record.calls[0].usage.input_tokens
        assert attributes["gen_ai.usage.output_tokens"] == record.calls[0].usage.output_tokens
        assert chat.start_time_unix_nano < chat.end_time_unix_nano
    assert sum(_attributes(c)["gen_ai.usage.input_tokens"] for c in chats) == (
        result.usage.input_tokens
    )
    assert "hdr-secret-42" not in caplog.text


@pytest.mark.parametrize(("rate", "runs"), [(0.5, 200), (0.0, 20), (1.0, 20)])
def test_sampling_rate_keeps_exactly_the_runs_its_trace_id_ratio_rule_picks(
    tmp_path: Path, receiver: Receiver, rate: float, runs: int
) -> None:
    service = f"otel-sampling-{rate}"
    path = _workflow(
        tmp_path,
        "article_writer.yaml",
        endpoint=receiver.endpoint,
        service_name=service,
        sampling_rate=rate,
    )
    prepared = _prepare(path)

    async def many() -> list[Any]:
        return [await prepared.arun({"topic": f"t{i}"}) for i in range(runs)]

    results = asyncio.run(many())
    _flush()

    bound = round(rate * 2**64)  # TraceIdRatioBased: the low 64 bits of the id under rate * 2^64
    expected = {r.trace_id[3:] for r in results if int(r.trace_id[3:], 16) % 2**64 < bound}
    received = {span.trace_id.hex() for span in receiver.spans(service)}
    assert received == expected
    assert len(receiver.spans(service)) == 3 * len(expected)  # root, node and model call
    if rate == 0.5:
        assert 70 <= len(expected) <= 130
    else:
        assert len(expected) == runs * rate


def test_a_stalled_collector_never_holds_a_run_and_exit_waits_a_bounded_time(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = _workflow(
        tmp_path, "article_writer.yaml", endpoint=receiver.endpoint, service_name="otel-stalled"
    )
    prepared = _prepare(path)
    receiver.gate.clear()  # the collector takes requests but does not answer
    try:
        result = asyncio.run(prepared.arun({"topic": "bees"}))
        assert result.status is RunStatus.SUCCESS  # returned while the collector is stalled
        assert otel.flush_all(timeout=0.2) is False  # the exit wait gives up at its bound
        assert receiver.spans("otel-stalled") == []
    finally:
        receiver.gate.set()
    _flush()
    assert {s.trace_id.hex() for s in receiver.spans("otel-stalled")} == {result.trace_id[3:]}


def test_otlp_grpc_export(tmp_path: Path) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    exports: list[Export] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:
            exports.append(
                _decode(request.SerializeToString(), dict(context.invocation_metadata()))
            )
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        path = _workflow(
            tmp_path,
            "article_writer.yaml",
            protocol="grpc",
            endpoint=f"http://127.0.0.1:{port}",
            headers={"X-Tenant": "t-1"},
            service_name="otel-grpc-test",
        )
        prepared = _prepare(path)
        result = asyncio.run(prepared.arun({"topic": "bees"}))
        _flush()
    finally:
        server.stop(None)
    spans = [span for export in exports for _, span in export.spans]
    assert {span.trace_id.hex() for span in spans} == {result.trace_id[3:]}
    names = ["mock/gemini-1.5-flash", "workflow_article_writer", "write"]
    assert sorted(span.name for span in spans) == names
    assert exports[0].headers["x-tenant"] == "t-1"
    assert exports[0].spans[0][0]["service.name"] == "otel-grpc-test"


def test_the_otel_extra_missing_is_a_setup_error_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    path = _workflow(tmp_path, "article_writer.yaml", endpoint="http://127.0.0.1:7")
    with pytest.raises(
        SetupError, match=r"opentelemetry: .*pip install 'configurable-agents\[otel\]'"
    ):
        prepare_workflow(path, llm="mock", env={})


def test_endpoint_defaults_and_the_traces_path() -> None:
    endpoint = otel._endpoint
    assert endpoint("http", None, {}) == "http://localhost:4318/v1/traces"
    assert endpoint("grpc", None, {}) == "http://localhost:4317"
    assert endpoint("http", None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    assert endpoint("http", "https://t.example/otlp", {}) == "https://t.example/otlp/v1/traces"
    assert endpoint("http", "http://c:4318/v1/traces", {}) == "http://c:4318/v1/traces"


def test_runs_not_recorded_in_mlflow_are_exported_too(tmp_path: Path, receiver: Receiver) -> None:
    path = _workflow(
        tmp_path, "article_writer.yaml", endpoint=receiver.endpoint, service_name="otel-no-mlflow"
    )
    prepared = prepare_workflow(path, llm="mock", env={}, trace=False)
    result = asyncio.run(prepared.arun({"topic": "bees"}))
    _flush()
    spans = receiver.spans("otel-no-mlflow")
    assert result.trace_id is None and prepared.observer(Recorder) is None
    assert len(spans) == 3 and len({span.trace_id for span in spans}) == 1


def test_serve_exports_its_runs_and_flushes_them_at_shutdown(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The batch processor would wait 5 s before exporting; a stopped server sends at once."""
    path = _workflow(
        tmp_path, "article_writer.yaml", endpoint=receiver.endpoint, service_name="otel-serve"
    )
    server = Server(path, tmp_path / "runs.db", server_env(tmp_path), "--llm", "mock")
    run = server.client.post("/runs", json={"inputs": {"topic": "bees"}}).json()
    assert run["status"] == "success"
    assert server.stop() == 0, "".join(server.log)
    spans = receiver.spans("otel-serve")
    assert sorted(span.name for span in spans) == [
        "mock/gemini-1.5-flash", "workflow_article_writer", "write",
    ]  # fmt: skip
    (root,) = [span for span in spans if not span.parent_span_id]
    assert _attributes(root)["workflow.run_id"] == run["run_id"]
