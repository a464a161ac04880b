"""`deploy`, proven: the generated image built and run for real on a Docker engine.

The image is built from `deploy --generate` output, and the API and MLflow UI containers are
started on one volume as the generated docker-compose.yml says (its environment, commands,
volume and health checks, read from the file; health checks every 2 s instead of 30 s). Checked:
`/health` and `/ready`, a `POST /runs` on the `mock` provider (`CONFIGURABLE_AGENTS_LLM`), its
trace read through the UI container's MLflow server, both containers `healthy`, runs and traces
kept across a restart of both, processes not root, and no secret of the env file in the image.
`.ci/docker-engine` provides the engine (and a stand-in base image) in CI; elsewhere the test is
skipped when no engine answers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "python:3.11-slim"
SECRET = "sk-deploy-test-" + uuid.uuid4().hex
"""An API key in the env file: it must reach the container's environment, never the image."""


def _docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers"
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True,
                      check=False).returncode != 0:  # fmt: skip
        return f"no {BASE_IMAGE} image (.ci/docker-engine provides a stand-in)"
    return None


@dataclass
class Built:
    out: Path
    image: str
    compose: dict[str, Any]
    volume: str
    containers: list[str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    problem = _engine_problem()
    require(problem is None, f"the deploy container test needs a Docker engine: {problem}")
    out = tmp_path_factory.mktemp("deploy")
    # the env file inside the build context: .dockerignore must keep it out of the image
    (out / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    workflow = tmp_path_factory.mktemp("wf") / "writer.yaml"
    workflow.write_text((ROOT / "examples" / "article_writer.yaml").read_text())
    name = f"ca-deploy-{uuid.uuid4().hex[:8]}"
    generated = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "deploy", str(workflow), "--generate",
         "--output-dir", str(out), "--env-file", str(out / ".env"), "--name", name],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    started = time.perf_counter()
    _docker("build", "-q", "-t", f"{name}:latest", str(out), timeout=900)
    build_s = time.perf_counter() - started
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", f"{name}:latest"))
    # shown in the CI log: the image's size and build time (target in docs/DEPLOY.md)
    sys.__stderr__.write(f"\n[deploy] image {size / 1e6:.0f} MB, built in {build_s:.0f} s\n")
    compose = yaml.safe_load((out / "docker-compose.yml").read_text())
    built = Built(out, f"{name}:latest", compose, f"{name}-data", [])
    _docker("volume", "create", built.volume)
    try:
        yield built
    finally:
        for container in built.containers:
            _docker("rm", "-f", container, check=False)
        _docker("volume", "rm", "-f", built.volume, check=False)
        _docker("image", "rm", "-f", built.image, check=False)


def _start(built: Built, service: str, extra_env: dict[str, str]) -> tuple[str, int]:
    """Run the compose service as compose would (its environment, env file, command, volume and
    health check); its container and the host port of its first published port."""
    spec = built.compose["services"][service]
    name = f"{built.image.split(':')[0]}-{service}"
    args = ["run", "-d", "--name", name, "--health-interval", "2s", "--health-start-period", "60s"]
    for entry in spec.get("env_file", []):
        args += ["--env-file", str((built.out / entry["path"]).resolve())]
    for key, value in {**spec.get("environment", {}), **extra_env}.items():
        args += ["-e", f"{key}={value}"]
    for volume in spec["volumes"]:
        args += ["-v", volume.replace("data:", f"{built.volume}:", 1)]
    container_port = _published(built, service)
    args += ["-p", f"127.0.0.1::{container_port}"]
    if "healthcheck" in spec:
        args += ["--health-cmd", " ".join(_quote(a) for a in spec["healthcheck"]["test"][1:])]
    _docker(*args, built.image, *spec["command"])
    built.containers.append(name)
    return name, _port(name, container_port)


def _published(built: Built, service: str) -> int:
    """The container port the compose file publishes for ``service``."""
    return int(built.compose["services"][service]["ports"][0].split(":")[-1])


def _port(container: str, container_port: int) -> int:
    """The host port published for ``container_port`` (a new one after each restart)."""
    return int(_docker("port", container, str(container_port)).splitlines()[0].rsplit(":", 1)[1])


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'" if any(c in arg for c in " ;'\"") else arg


def _wait(check: Any, what: str, seconds: float = 120) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, AssertionError, json.JSONDecodeError) as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{what}: not within {seconds:g} s (last: {last!r})")


def _healthy(container: str) -> bool:
    return _docker("inspect", "--format", "{{.State.Health.Status}}", container) == "healthy"


def _trace_through_ui(ui_port: int, trace_id: str) -> Any:
    """The trace as the UI container's MLflow server gives it; None while the server is not up
    or the trace not yet written (the caller polls)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if httpx.get(f"http://127.0.0.1:{ui_port}/health", timeout=5).status_code != 200:
        return None
    try:
        return MlflowClient(f"http://127.0.0.1:{ui_port}").get_trace(trace_id)
    except MlflowException:
        return None


def test_the_generated_image_serves_runs_and_traces_across_restarts(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the MLflow client asks once per poll (its default retries back off for minutes)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    mock = {"CONFIGURABLE_AGENTS_LLM": "mock", "CONFIGURABLE_AGENTS_TAGS": "deployed=ci"}
    api, api_port = _start(built, "api", mock)
    ui, ui_port = _start(built, "mlflow", {})
    base = f"http://127.0.0.1:{api_port}"
    _wait(lambda: httpx.get(f"{base}/ready", timeout=5).status_code == 200, "/ready")
    assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}

    answer = httpx.post(f"{base}/runs", json={"inputs": {"topic": "bees"}, "wait_seconds": 60},
                        timeout=90).json()  # fmt: skip
    assert answer["status"] == "success", answer
    trace_id = _wait(lambda: httpx.get(f"{base}/runs/{answer['run_id']}", timeout=5)
                     .json().get("trace_id"), "the run's trace id")  # fmt: skip
    trace = _wait(lambda: _trace_through_ui(ui_port, trace_id), "the trace in the UI's server")
    assert trace.info.tags.get("deployed") == "ci"  # CONFIGURABLE_AGENTS_TAGS reached the run
    assert {span.name for span in trace.data.spans} >= {"workflow_article_writer"}
    _wait(lambda: _healthy(api) and _healthy(ui), "both containers healthy")
    for container in (api, ui):  # the image's user, not root
        assert _docker("exec", container, "id", "-u") == "10001"

    _docker("restart", api, ui)
    base = f"http://127.0.0.1:{_port(api, _published(built, 'api'))}"
    ui_port = _port(ui, _published(built, "mlflow"))
    _wait(lambda: httpx.get(f"{base}/ready", timeout=5).status_code == 200, "/ready again")
    kept = httpx.get(f"{base}/runs/{answer['run_id']}", timeout=5).json()
    assert (kept["status"], kept["trace_id"]) == ("success", trace_id)
    again = _wait(lambda: _trace_through_ui(ui_port, trace_id), "the trace after the restart")
    assert again.info.trace_id == trace_id
    _wait(lambda: _healthy(api) and _healthy(ui), "both containers healthy after the restart")


def test_no_secret_of_the_env_file_is_in_the_image(built: Built, tmp_path: Path) -> None:
    assert SECRET in (built.out / ".env").read_text()
    history = _docker("history", "--no-trunc", built.image)
    inspected = _docker("image", "inspect", built.image)
    assert SECRET not in history and SECRET not in inspected
    archive = tmp_path / "image.tar"
    _docker("save", "-o", str(archive), built.image, timeout=600)
    assert not _holds(archive, SECRET.encode())  # no layer, config or label holds it


def _holds(path: Path, needle: bytes) -> bool:
    """Whether the file holds ``needle``, read in chunks (an image is a gigabyte)."""
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle) :]
    return False
