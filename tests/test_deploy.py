"""`configurable-agents deploy`: the generated files, checked, and the entrypoint run without
Docker (a real `serve` answering over HTTP)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from configurable_agents.config import load_workflow
from configurable_agents.deploy.artifacts import DeployOptionError, DeployOptions, plan_deployment
from configurable_agents.llm.providers import PROVIDER_KEYS

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-test-deploy-secret-0123456789"
API_PORT, MLFLOW_PORT = 8123, 5123


@dataclass
class Generated:
    """One `deploy` run: its folder, exit code and messages."""

    tmp: Path
    out: Path
    code: int
    stdout: str
    stderr: str

    def compose(self) -> dict[str, Any]:
        return yaml.safe_load((self.out / "docker-compose.yml").read_text())


def _workflow(folder: Path, **config: Any) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "article_writer.yaml").read_text())
    data["config"] = {"llm": {"provider": "mock"}, **config}
    path = folder / "article_writer.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _deploy(tmp: Path, workflow: Path, *args: str) -> Generated:
    """Run the real command in a subprocess, with no Docker engine reachable."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp}/no-docker.sock"}
    done = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "deploy", str(workflow), *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return Generated(tmp, tmp / "out", done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """`deploy` with non-default ports and a real .env, without --generate and without Docker."""
    tmp = tmp_path_factory.mktemp("deploy")
    (tmp / "secrets.env").write_text(f"# keys\nOPENAI_API_KEY={SECRET}\n")
    return _deploy(
        tmp, _workflow(tmp), "--output-dir", "out", "--api-port", str(API_PORT),
        "--mlflow-port", str(MLFLOW_PORT), "--env-file", "secrets.env", "--name", "Bee Service",
    )  # fmt: skip


def test_without_docker_it_writes_the_files_and_says_nothing_runs(generated: Generated) -> None:
    assert generated.code == 5, generated.stderr
    assert "No Docker engine is running" in generated.stderr
    assert str(generated.out.resolve()) in generated.stderr
    assert "Traceback" not in generated.stderr
    names = {p.name for p in generated.out.iterdir()}
    assert names == {
        "Dockerfile", "docker-compose.yml", "entrypoint.sh", "README.md", ".env.example",
        ".dockerignore", "workflow.yaml", "wheels",
    }  # fmt: skip
    assert os.access(generated.out / "entrypoint.sh", os.X_OK)


def test_the_wheel_is_this_checkout(generated: Generated) -> None:
    (wheel,) = (generated.out / "wheels").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        packaged = archive.read("configurable_agents/deploy/artifacts.py")
    assert packaged == (ROOT / "src/configurable_agents/deploy/artifacts.py").read_bytes()
    assert "configurable_agents/deploy/templates/Dockerfile.tmpl" in names
    dockerfile = (generated.out / "Dockerfile").read_text()
    assert f"COPY wheels/{wheel.name} " in dockerfile
    assert f'pip install "/tmp/wheels/{wheel.name}[server]"' in dockerfile


def test_ports_line_up_everywhere(generated: Generated) -> None:
    dockerfile = (generated.out / "Dockerfile").read_text()
    assert f"EXPOSE {API_PORT}\n" in dockerfile
    assert f"'http://127.0.0.1:{API_PORT}/health'" in dockerfile
    assert "FROM python:3." in dockerfile and "-slim" in dockerfile
    assert "\nUSER app\n" in dockerfile and "useradd" in dockerfile
    services = generated.compose()["services"]
    api, ui = services["api"], services["mlflow"]
    assert api["ports"] == [f"{API_PORT}:{API_PORT}"]
    assert api["environment"]["API_PORT"] == str(API_PORT)
    assert ui["ports"] == [f"{MLFLOW_PORT}:{MLFLOW_PORT}"]
    assert ui["environment"]["MLFLOW_PORT"] == str(MLFLOW_PORT)
    assert str(MLFLOW_PORT) in " ".join(ui["healthcheck"]["test"])
    entrypoint = (generated.out / "entrypoint.sh").read_text()
    assert f'--port "${{API_PORT:-{API_PORT}}}"' in entrypoint


def test_the_mlflow_ui_reads_the_store_the_api_writes(generated: Generated) -> None:
    compose = generated.compose()
    api, ui = compose["services"]["api"], compose["services"]["mlflow"]
    assert compose["name"] == "bee-service" and api["image"] == ui["image"] == "bee-service:latest"
    assert api["volumes"] == ui["volumes"] == ["data:/data"] and "data" in compose["volumes"]
    # The workflow sets no tracking_uri: the API gets one on the volume, the UI the same.
    assert api["environment"]["MLFLOW_TRACKING_URI"] == "sqlite:////data/mlflow.db"
    assert ui["environment"]["MLFLOW_BACKEND_STORE_URI"] == "sqlite:////data/mlflow.db"
    assert api["environment"]["CONFIGURABLE_AGENTS_TRACING"] == "on"
    assert api["environment"]["CONFIGURABLE_AGENTS_SPOOL"].startswith("/data/")
    assert api["environment"]["CONFIGURABLE_AGENTS_RUNS_DB"].startswith("/data/")
    assert api["restart"] == ui["restart"] == "unless-stopped"
    assert api["command"] == ["api"] and ui["command"] == ["mlflow-ui"]


def test_keys_come_from_the_env_file_and_no_secret_is_written(generated: Generated) -> None:
    api = generated.compose()["services"]["api"]
    (env_file,) = api["env_file"]
    assert (generated.out / env_file["path"]).resolve() == generated.tmp / "secrets.env"
    assert env_file["required"] is False
    example = (generated.out / ".env.example").read_text().splitlines()
    names = {line.split("=")[0] for line in example if not line.startswith("#")}
    assert {key for keys in PROVIDER_KEYS.values() for key in keys} <= names
    assert "CONFIGURABLE_AGENTS_API_TOKEN" in names
    assert all(line.endswith("=") for line in example if not line.startswith("#"))
    for path in generated.out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in generated.stdout + generated.stderr


def _compose_schema() -> dict[str, Any]:
    """The part of the compose specification these files use (the full schema would have to be
    downloaded): unknown keys are errors, so a misspelt key fails."""
    strings = {"type": "array", "items": {"type": "string"}}
    environment = {"type": "object", "additionalProperties": {"type": "string"}}
    service = {
        "type": "object",
        "additionalProperties": False,
        "required": ["image", "command"],
        "properties": {
            "build": {"type": "string"},
            "image": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_.-]*(:[\w.-]+)?$"},
            "command": strings,
            "ports": {
                "type": "array",
                "items": {"type": "string", "pattern": r"^\d{1,5}:\d{1,5}$"},
            },
            "env_file": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["path"],
                    "properties": {"path": {"type": "string"}, "required": {"type": "boolean"}},
                },
            },
            "environment": environment,
            "volumes": {"type": "array", "items": {"type": "string", "pattern": r"^\w+:/"}},
            "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
            "healthcheck": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "test": strings,
                    "interval": {"type": "string"},
                    "timeout": {"type": "string"},
                    "start_period": {"type": "string"},
                    "retries": {"type": "integer"},
                },
            },
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["services"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]*$"},
            "services": {"type": "object", "additionalProperties": service},
            "volumes": {"type": "object"},
        },
    }


def _docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def test_the_compose_file_is_valid(generated: Generated) -> None:
    """`docker compose config` where the compose client works; else the vendored schema."""
    if _docker_compose_works():
        done = subprocess.run(
            ["docker", "compose", "config", "--quiet"],
            cwd=generated.out, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    import jsonschema

    compose = generated.compose()
    jsonschema.validate(compose, _compose_schema())
    for service in compose["services"].values():  # named volumes are declared
        for volume in service["volumes"]:
            assert volume.split(":")[0] in compose["volumes"]


def test_generate_only_and_no_mlflow(tmp_path: Path) -> None:
    done = _deploy(
        tmp_path, _workflow(tmp_path), "--output-dir", "out", "--generate", "--no-mlflow"
    )
    assert done.code == 0, done.stderr
    assert "Docker" not in done.stderr
    api = done.compose()["services"]["api"]
    assert set(done.compose()["services"]) == {"api"}
    assert "CONFIGURABLE_AGENTS_TRACING" not in api["environment"]
    assert api["ports"] == ["8000:8000"] and done.compose()["name"] == "article_writer"
    assert (done.out / api["env_file"][0]["path"]).resolve() == tmp_path / ".env"
    assert "MLflow UI" not in (done.out / "README.md").read_text().split("## Start")[0]


def test_stores_outside_the_containers_get_no_ui_and_relative_ones_land_on_the_volume(
    tmp_path: Path,
) -> None:
    options = DeployOptions(tmp_path / "out")
    remote = load_workflow(
        _workflow(tmp_path, observability={"mlflow": {"tracking_uri": "http://mlflow:5000"}})
    )
    plan = plan_deployment(remote, options)
    assert not plan.mlflow_ui and "not a SQLite store" in (plan.store_note or "")
    assert "mlflow" not in yaml.safe_load(plan.files["docker-compose.yml"])["services"]
    relative = load_workflow(
        _workflow(tmp_path, observability={"mlflow": {"tracking_uri": "sqlite:///runs/m.db"}})
    )
    services = yaml.safe_load(plan_deployment(relative, options).files["docker-compose.yml"])
    ui_store = services["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert ui_store == "sqlite:////data/runs/m.db"  # the API's cwd is /data
    assert "MLFLOW_TRACKING_URI" not in services["services"]["api"]["environment"]
    absolute = load_workflow(
        _workflow(tmp_path, observability={"mlflow": {"tracking_uri": "sqlite:////srv/m.db"}})
    )
    services = yaml.safe_load(plan_deployment(absolute, options).files["docker-compose.yml"])
    assert services["services"]["api"]["volumes"] == ["data:/srv"]
    assert services["services"]["mlflow"]["volumes"] == ["data:/srv"]


def test_bad_options_are_one_line_errors_and_write_nothing(tmp_path: Path) -> None:
    workflow = _workflow(tmp_path)
    same = _deploy(tmp_path, workflow, "--output-dir", "out", "--api-port", "5000", "--generate")
    assert same.code == 2 and same.stderr.strip().count("\n") == 0
    assert "--api-port and --mlflow-port are both 5000" in same.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(DeployOptionError, match="--name"):
        plan_deployment(load_workflow(workflow), DeployOptions(tmp_path, name="!!"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema_version: '1.0'\nflow: {name: x}\n")
    invalid = _deploy(tmp_path, broken, "--output-dir", "out2", "--generate")
    assert (
        invalid.code == 1 and "broken.yaml" in invalid.stderr and "Traceback" not in invalid.stderr
    )
    assert not (tmp_path / "out2").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _entrypoint(
    generated: Generated, env: dict[str, str], *args: str, cwd: Path | None = None
) -> Iterator[str]:
    """The generated ``entrypoint.sh`` (``args`` its mode) run outside Docker with ``env`` on a
    free port of 127.0.0.1, until its ``/health`` answers; yields its URL, stops it after."""
    port = _free_port()
    env = {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
    }
    log = generated.tmp / f"entrypoint-{port}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            ["sh", str(generated.out / "entrypoint.sh"), *args],
            cwd=cwd or generated.out, env=env, stdout=output, stderr=output,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # waiting for readiness, not timing anything
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code in (0, -signal.SIGTERM), log.read_text()


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CONFIGURABLE_AGENTS_API_TOKEN"}
    env.update(
        CONFIGURABLE_AGENTS_RUNS_DB=str(tmp / "runs.db"),
        CONFIGURABLE_AGENTS_SPOOL=str(tmp / "spool.db"),
        CONFIGURABLE_AGENTS_TRACING="off",
    )
    return {**env, **extra}


def test_the_entrypoint_serves_the_workflow_without_docker(
    generated: Generated, tmp_path: Path
) -> None:
    with (
        _entrypoint(generated, _env(tmp_path)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        assert client.get("/health").json() == {"status": "ok"}
        response = client.post("/runs", json={"inputs": {"topic": "bees"}})
        assert response.status_code == 200, response.text
        run = response.json()
        assert run["status"] == "success" and set(run["outputs"]) == {"article"}
        assert client.get(f"/runs/{run['run_id']}").json()["status"] == "success"


def test_the_mlflow_ui_mode_serves_the_store_the_api_is_given(
    generated: Generated, tmp_path: Path
) -> None:
    """The entrypoint's `mlflow-ui` mode with the environment compose gives it, a folder standing
    for the shared volume: it creates the store and serves it, and what is written through the UI
    is in the very file the API's `MLFLOW_TRACKING_URI` names."""
    compose = generated.compose()["services"]
    volume = compose["api"]["volumes"][0].split(":", 1)[1]
    data = tmp_path / "volume"
    data.mkdir()

    def on_volume(value: str) -> str:
        return value.replace(volume, str(data))

    api_store = on_volume(compose["api"]["environment"]["MLFLOW_TRACKING_URI"])
    ui_env = {k: on_volume(v) for k, v in compose["mlflow"]["environment"].items()}
    del ui_env["MLFLOW_PORT"]
    with _entrypoint(generated, _env(tmp_path, **ui_env), "mlflow-ui", cwd=data) as ui:
        created = httpx.post(
            f"{ui}/api/2.0/mlflow/experiments/create", json={"name": "seen-by-both"}, timeout=30
        )
        assert created.status_code == 200, created.text
    with sqlite3.connect(api_store.removeprefix("sqlite:///")) as store:
        names = {name for (name,) in store.execute("SELECT name FROM experiments")}
    assert "seen-by-both" in names
    assert (data / "mlflow.db.lock").exists()  # created under the writers' lock
