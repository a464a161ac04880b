"""`deploy --platform kubernetes|ecs|compose`: the manifests, validated offline (the Kubernetes
schemas, strict, with kubernetes-validate; the ECS service model with botocore's parameter
validation), hardened, holding no secret; the option errors, one line and exit 2; and, where a
PostgreSQL runs on 127.0.0.1, the PostgreSQL set-up run for real: the MLflow UI container's
command and environment serve the database, and the API's record a run through it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import kubernetes_validate
import pytest
import yaml
from botocore.model import Shape
from botocore.validate import ParamValidator

from configurable_agents.config import load_workflow
from configurable_agents.deploy import ecs, kubernetes
from configurable_agents.deploy.artifacts import (
    Deployment,
    DeployOptionError,
    DeployOptions,
    plan_deployment,
)

from .conftest import require

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgresql://mlflow@db.internal:5432/mlflow"
SECRETS = {
    "OPENAI_API_KEY": "sk-platform-secret-openai-0123456789",
    "PGPASSWORD": "pg-platform-secret-9876",
    "CONFIGURABLE_AGENTS_API_TOKEN": "token-platform-secret-4242",
    "CONFIGURABLE_AGENTS_QUEUE": "rediss://:redis-platform-secret@cache.internal:6379/0",
}
COMBOS = [
    pytest.param(False, None, id="sqlite"),
    pytest.param(True, None, id="sqlite-queue"),
    pytest.param(False, POSTGRES, id="postgres"),
    pytest.param(True, POSTGRES, id="postgres-queue"),
]
NAME = "article-writer"


def _workflow(folder: Path) -> Path:
    """The quick-start example on OpenAI (a provider with a key), its own tracking_uri kept."""
    text = (ROOT / "examples" / "article_writer.yaml").read_text()
    google, openai = "provider: google, model: gemini-1.5-flash", "provider: openai, model: gpt-4o"
    text = text.replace(google, openai)
    assert "provider: openai" in text
    path = folder / "article_writer.yaml"
    path.write_text(text)
    return path


def _env_file(folder: Path) -> Path:
    path = folder / ".env"
    path.write_text("".join(f"{key}={value}\n" for key, value in SECRETS.items()))
    return path


def _plan(tmp: Path, platform: str, **options: Any) -> Deployment:
    workflow = load_workflow(_workflow(tmp))
    return plan_deployment(
        workflow,
        DeployOptions(tmp / "out", env_file=_env_file(tmp), platform=platform, **options),
    )


def _documents(plan: Deployment) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(plan.files[kubernetes.MANIFESTS]) if doc]


def _find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name), None)


def _containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# Kubernetes


@pytest.mark.parametrize(("queue", "tracking"), COMBOS)
def test_kubernetes_manifests_pass_the_schemas_of_every_documented_version(
    tmp_path: Path, queue: bool, tracking: str | None
) -> None:
    documents = _documents(_plan(tmp_path, "kubernetes", queue=queue, tracking_uri=tracking))
    for version in kubernetes.K8S_VERSIONS:
        for document in documents:
            kubernetes_validate.validate(document, f"{version}.0", strict=True)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in documents)
    expected = {
        f"ConfigMap/{NAME}-workflow",
        f"Deployment/{NAME}-api",
        f"Service/{NAME}-api",
        f"HorizontalPodAutoscaler/{NAME}-api",
        f"Service/{NAME}-mlflow",
    }
    if tracking is None:
        expected.add(f"PersistentVolumeClaim/{NAME}-data")
    else:
        expected.add(f"Deployment/{NAME}-mlflow")
    if queue:
        expected |= {
            f"Deployment/{NAME}-redis",
            f"Service/{NAME}-redis",
            f"NetworkPolicy/{NAME}-redis",
        }
        if tracking is not None:
            expected.add(f"Deployment/{NAME}-worker")
    assert set(kinds) == expected
    assert not any(d["kind"] == "Secret" for d in documents)  # referenced, never written


def test_the_validator_catches_a_misspelt_field(tmp_path: Path) -> None:
    """The validation is strict: an unknown field deep in a pod fails."""
    documents = _documents(_plan(tmp_path, "kubernetes"))
    api = _find(documents, "Deployment", f"{NAME}-api")
    assert api is not None
    _containers(api)["api"]["readinesProbe"] = _containers(api)["api"].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(api, f"{kubernetes.K8S_VERSIONS[-1]}.0", strict=True)


@pytest.mark.parametrize(("queue", "tracking"), COMBOS)
def test_kubernetes_pods_are_hardened_probed_and_bounded(
    tmp_path: Path, queue: bool, tracking: str | None
) -> None:
    documents = _documents(_plan(tmp_path, "kubernetes", queue=queue, tracking_uri=tracking))
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        redis = deployment["metadata"]["name"].endswith("-redis")
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == (999 if redis else 10001)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}
            if container["name"] in ("api", "worker"):  # the provider keys, by reference
                assert container["envFrom"] == [{"secretRef": {"name": f"{NAME}-env"}}]
                mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
                assert mounts["/app/workflow.yaml"]["subPath"] == "workflow.yaml"
    api_deployment = _find(documents, "Deployment", f"{NAME}-api")
    assert api_deployment is not None
    api = _containers(api_deployment)["api"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "api"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "api"}
    assert api["startupProbe"]["httpGet"]["path"] == "/health"
    assert api["ports"] == [{"name": "api", "containerPort": 8000, "protocol": "TCP"}]
    assert _env(api)["CONFIGURABLE_AGENTS_TRACING"] == "on"
    hpa = _find(documents, "HorizontalPodAutoscaler", f"{NAME}-api")
    assert hpa is not None and hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{NAME}-api"
    assert hpa["spec"]["maxReplicas"] == 1
    assert "replicas" not in api_deployment["spec"]  # the autoscaler's
    ui_deployment = _find(documents, "Deployment", f"{NAME}-mlflow") or api_deployment
    ui = _containers(ui_deployment)["mlflow-ui"]
    assert ui["readinessProbe"]["httpGet"] == {"path": "/health", "port": "mlflow"}
    assert ui["livenessProbe"]["httpGet"] == {"path": "/health", "port": "mlflow"}
    ui_service = _find(documents, "Service", f"{NAME}-mlflow")
    assert ui_service is not None
    labels = ui_deployment["spec"]["template"]["metadata"]["labels"]
    assert ui_service["spec"]["selector"].items() <= labels.items()
    configmap = _find(documents, "ConfigMap", f"{NAME}-workflow")
    assert configmap is not None
    deployed = _plan(tmp_path, "kubernetes", queue=queue, tracking_uri=tracking)
    assert configmap["data"]["workflow.yaml"] == deployed.files["workflow.yaml"]


def test_a_sqlite_store_is_one_pod_on_a_read_write_once_claim(tmp_path: Path) -> None:
    documents = _documents(_plan(tmp_path, "kubernetes", queue=True))
    claim = _find(documents, "PersistentVolumeClaim", f"{NAME}-data")
    assert claim is not None and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    api = _find(documents, "Deployment", f"{NAME}-api")
    assert api is not None
    assert api["spec"]["strategy"] == {"type": "Recreate"}  # never two pods on the file
    containers = _containers(api)
    assert set(containers) == {"api", "mlflow-ui", "worker"}
    volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"{NAME}-data"
    for container in containers.values():  # everyone on the same store
        assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert _env(containers["api"])["CONFIGURABLE_AGENTS_QUEUE"] == f"redis://{NAME}-redis:6379/0"
    assert _env(containers["worker"])["CONFIGURABLE_AGENTS_QUEUE"].endswith(f"{NAME}-redis:6379/0")
    ui_store = _env(containers["mlflow-ui"])["MLFLOW_BACKEND_STORE_URI"]
    assert ui_store == "sqlite:////data/mlflow.db"  # the file's relative sqlite:///mlflow.db
    text = _plan(tmp_path, "kubernetes", queue=True).files[kubernetes.MANIFESTS]
    assert "ONE replica only" in text


def test_postgres_with_a_queue_scales_and_records_through_the_ui(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "kubernetes", queue=True, tracking_uri=POSTGRES, replicas=4)
    documents = _documents(plan)
    hpa = _find(documents, "HorizontalPodAutoscaler", f"{NAME}-api")
    assert hpa is not None and hpa["spec"]["maxReplicas"] == 4
    api_deployment = _find(documents, "Deployment", f"{NAME}-api")
    ui_deployment = _find(documents, "Deployment", f"{NAME}-mlflow")
    worker_deployment = _find(documents, "Deployment", f"{NAME}-worker")
    assert api_deployment and ui_deployment and worker_deployment
    assert api_deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    ui_url = f"http://{NAME}-mlflow:5000"
    for deployment in (api_deployment, worker_deployment):
        (container,) = _containers(deployment).values()
        assert _env(container)["MLFLOW_TRACKING_URI"] == ui_url
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "data", "emptyDir": {}} in volumes
    (ui,) = _containers(ui_deployment).values()
    env = _env(ui)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://mlflow@db.internal:5432/mlflow"
    assert f"{NAME}-mlflow:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    (password,) = [e for e in ui["env"] if e["name"] == "PGPASSWORD"]
    assert password["valueFrom"] == {"secretKeyRef": {"name": f"{NAME}-env", "key": "PGPASSWORD"}}
    assert "envFrom" not in ui  # the database password only, not the provider keys
    # the deployed workflow records where the manifests say, its own tracking_uri replaced
    deployed = yaml.safe_load(plan.files["workflow.yaml"])
    assert deployed["config"]["observability"]["mlflow"]["tracking_uri"] == ui_url
    assert "# The quick start" in plan.files["workflow.yaml"]  # edited in place, comments kept
    assert "sqlite:///mlflow.db" in (plan.store_note or "")
    assert "PGPASSWORD=" in plan.files[".env.example"].splitlines()
    assert '"psycopg2-binary>=2.9"' in plan.files["Dockerfile"]
    assert "queue" in plan.files["Dockerfile"].split("[")[1].split("]")[0].split(",")


# ECS

_ECS = botocore.session.get_session().get_service_model("ecs")


def _enum_errors(value: Any, shape: Shape, where: str = "") -> list[str]:
    """Values outside their shape's enum (botocore's ParamValidator checks types, names and
    required members, not enums)."""
    errors = []
    if shape.type_name == "structure":
        for key, item in value.items():
            errors += _enum_errors(item, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            errors += _enum_errors(item, shape.member, f"{where}[{index}]")
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        errors.append(f"{where}: {value!r} not in {shape.enum}")
    return errors


def _check_against_the_service_model(document: dict[str, Any], operation: str) -> None:
    shape = _ECS.operation_model(operation).input_shape
    report = ParamValidator().validate(document, shape)
    assert not report.has_errors(), report.generate_report()
    assert not _enum_errors(document, shape)


_FARGATE_MEMORY = {"256": range(512, 2049, 512), "512": range(1024, 4097, 1024),
                   "1024": range(2048, 8193, 1024), "2048": range(4096, 16385, 1024),
                   "4096": range(8192, 30721, 1024)}  # fmt: skip


@pytest.mark.parametrize(("queue", "tracking"), COMBOS)
def test_ecs_definitions_pass_the_service_model(
    tmp_path: Path, queue: bool, tracking: str | None
) -> None:
    plan = _plan(tmp_path, "ecs", queue=queue, tracking_uri=tracking)
    task = json.loads(plan.files[ecs.TASK_FILE])
    service = json.loads(plan.files[ecs.SERVICE_FILE])
    _check_against_the_service_model(task, "RegisterTaskDefinition")
    _check_against_the_service_model(service, "CreateService")
    assert task["requiresCompatibilities"] == ["FARGATE"] and task["networkMode"] == "awsvpc"
    assert int(task["memory"]) in _FARGATE_MEMORY[task["cpu"]]
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    assert set(containers) == {"api", "mlflow-ui", *(["worker"] if queue else [])}
    assert sum(c["memoryReservation"] for c in containers.values()) <= int(task["memory"])
    assert sum(c["cpu"] for c in containers.values()) <= int(task["cpu"])
    for container in containers.values():
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        assert container["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{NAME}"
        assert container["user"] == "10001:10001"
        assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
        for secret in container["secrets"]:
            assert secret["valueFrom"] == (
                f"arn:aws:ssm:__REGION__:__ACCOUNT_ID__:parameter/{NAME}/{secret['name']}"
            )
    api_secrets = {s["name"] for s in containers["api"]["secrets"]}
    assert {"OPENAI_API_KEY", "CONFIGURABLE_AGENTS_API_TOKEN"} <= api_secrets
    assert ("CONFIGURABLE_AGENTS_QUEUE" in api_secrets) is queue
    ui_secrets = {s["name"] for s in containers["mlflow-ui"]["secrets"]}
    assert ui_secrets == ({"PGPASSWORD"} if tracking else set())
    for name, port in (("api", 8000), ("mlflow-ui", 5000)):
        check = containers[name]["healthCheck"]["command"]
        assert check[0] == "CMD" and f"http://127.0.0.1:{port}/health" in check[-1]
    assert containers["api"]["essential"] is True
    assert service["loadBalancers"][0]["containerName"] == "api"
    assert service["loadBalancers"][0]["containerPort"] == 8000
    if tracking is None:  # SQLite on EFS: one task, never two at once
        (volume,) = task["volumes"]
        assert volume["efsVolumeConfiguration"]["transitEncryption"] == "ENABLED"
        for container in containers.values():
            assert container["mountPoints"] == [
                {"sourceVolume": "data", "containerPath": "/data", "readOnly": False}
            ]
        assert service["deploymentConfiguration"]["maximumPercent"] == 100
        assert service["deploymentConfiguration"]["minimumHealthyPercent"] == 0
        assert service["desiredCount"] == 1
    else:
        assert "volumes" not in task
        api_env = {e["name"]: e["value"] for e in containers["api"]["environment"]}
        assert api_env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    definitions = plan.files[ecs.TASK_FILE] + plan.files[ecs.SERVICE_FILE]
    placeholders = set(re.findall(r"__[A-Z_]+?__", definitions))
    documented = {**ecs.PLACEHOLDERS, **ecs.EFS_PLACEHOLDERS}
    assert placeholders <= set(documented)
    for placeholder in placeholders:
        assert f"| `{placeholder}` |" in plan.files["README.md"]
    names = {s["name"] for c in task["containerDefinitions"] for s in c["secrets"]}
    put = plan.files["README.md"].split("for key in ")[1].split(";")[0].split()
    assert set(put) == names  # the README's loop stores every secret the task reads


def test_ecs_scales_with_postgres_and_a_queue(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "ecs", queue=True, tracking_uri=POSTGRES, replicas=3)
    service = json.loads(plan.files[ecs.SERVICE_FILE])
    assert service["desiredCount"] == 3
    assert service["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert "CONFIGURABLE_AGENTS_QUEUE=" in plan.files[".env.example"].splitlines()


# Every platform


@pytest.mark.parametrize("platform", ["compose", "kubernetes", "ecs"])
def test_no_secret_of_the_env_file_is_written(tmp_path: Path, platform: str) -> None:
    """Through the console script, with every option that touches secrets."""
    done = _cli(
        tmp_path, "--platform", platform, "--queue", "--tracking-uri", POSTGRES,
        "--generate", "--image", "registry.example/aw:1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"Dockerfile", "README.md", ".dockerignore"}
    for path in written:
        content = path.read_bytes()
        for value in SECRETS.values():
            assert value.encode() not in content, path
    for value in SECRETS.values():
        assert value not in done.stdout + done.stderr
    if platform == "kubernetes":
        assert "registry.example/aw:1" in (out / kubernetes.MANIFESTS).read_text()
        readme = (out / "README.md").read_text()
        assert f"kubectl create secret generic {NAME}-env --from-env-file=../.env" in readme
        assert f"kubectl apply -f {kubernetes.MANIFESTS}" in readme
    elif platform == "ecs":
        assert "registry.example/aw:1" in (out / ecs.TASK_FILE).read_text()
        readme = (out / "README.md").read_text()
        assert f"aws ecs register-task-definition --cli-input-json file://{ecs.TASK_FILE}" in readme
        assert f"aws ecs create-service --cli-input-json file://{ecs.SERVICE_FILE}" in readme
    else:
        compose = yaml.safe_load((out / "docker-compose.yml").read_text())
        assert set(compose["services"]) == {"api", "mlflow", "worker", "redis"}
        assert compose["services"]["api"]["image"] == "registry.example/aw:1"
        assert "Apply it as" not in done.stdout


def test_compose_with_a_queue_and_postgres(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "compose", queue=True, tracking_uri=POSTGRES)
    services = yaml.safe_load(plan.files["docker-compose.yml"])["services"]
    api, ui, worker, redis = (services[n] for n in ("api", "mlflow", "worker", "redis"))
    assert api["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert api["environment"]["CONFIGURABLE_AGENTS_QUEUE"] == "redis://redis:6379/0"
    assert worker["command"] == ["worker"] and worker["env_file"] == api["env_file"]
    assert worker["environment"]["CONFIGURABLE_AGENTS_QUEUE"] == "redis://redis:6379/0"
    assert ui["env_file"] == api["env_file"]  # PGPASSWORD, read at start
    assert "mlflow:*" in ui["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert redis["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    known = {"build", "image", "command", "ports", "env_file", "environment", "volumes",
             "restart", "healthcheck"}  # fmt: skip
    for service in services.values():  # the keys tests/test_deploy.py checks against its schema
        assert set(service) <= known
        for volume in service.get("volumes", []):
            assert volume == "data:/data"
    assert "&id" not in plan.files["docker-compose.yml"]  # no YAML anchors


def test_tracking_uris(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "kubernetes", tracking_uri="postgres://mlflow@db:5432/mlflow")
    documents = _documents(plan)
    ui = _find(documents, "Deployment", f"{NAME}-mlflow")
    assert ui is not None
    (container,) = _containers(ui).values()
    assert (
        _env(container)["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://mlflow@db:5432/mlflow"
    )
    server = _plan(tmp_path, "kubernetes", tracking_uri="https://mlflow.example:5000")
    assert not server.mlflow_ui and "that server is the UI" in (server.store_note or "")
    kinds = {d["kind"] for d in _documents(server)}
    assert "PersistentVolumeClaim" not in kinds
    no_ui = _plan(tmp_path, "ecs", tracking_uri=POSTGRES, mlflow=False)
    (api,) = json.loads(no_ui.files[ecs.TASK_FILE])["containerDefinitions"]
    assert "PGPASSWORD" in {s["name"] for s in api["secrets"]}  # the API opens PostgreSQL
    for bad, message in [
        ("mysql://db/mlflow", "mysql scheme"),
        ("postgresql://mlflow@db:5432", "no database"),
        ("postgresql://db:5432/mlflow?password=x", "holds a password"),
        ("postgresql://:@/", "no host"),
    ]:
        with pytest.raises(DeployOptionError, match=message):
            _plan(tmp_path, "kubernetes", tracking_uri=bad)


# Usage errors, through the console script


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    workflow, env_file = _workflow(tmp), _env_file(tmp)
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp}/no-docker.sock"}
    return subprocess.run(
        [sys.executable, "-m", "configurable_agents", "deploy", str(workflow),
         "--output-dir", "out", "--env-file", str(env_file), *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--platfrom", "kubernetes"], "No such option '--platfrom'"),
        (["--platform", "nomad"], "'nomad' is not one of 'compose', 'kubernetes', 'ecs'"),
        (["--platform", "kubernetes", "--replica", "3"], "Did you mean '--replicas'?"),
        (["--platform", "ecs", "--replicas", "0"], "--replicas"),
        (["--platform", "kubernetes", "--tracking-uri", "postgresql://u:hunter2-pw@db/m"],
         "set it as PGPASSWORD in the env file"),
        (["--platform", "kubernetes", "--replicas", "3"], "SQLite file on one volume"),
        (["--platform", "ecs", "--replicas", "3", "--tracking-uri", POSTGRES], "needs --queue"),
        (["--replicas", "2", "--queue", "--tracking-uri", POSTGRES], "compose runs one API"),
        (["--platform", "ecs", "--image", "bad image"], "--image"),
    ],
)  # fmt: skip
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], said: str) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert "hunter2-pw" not in done.stderr
    assert not (tmp_path / "out").exists()


# The PostgreSQL set-up, run


LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards (skipped without one)."""
    try:
        import psycopg2

        admin = psycopg2.connect(f"{LOCAL_POSTGRES}/postgres", connect_timeout=3)
    except Exception as exc:  # no driver, no server
        require(False, f"no PostgreSQL on 127.0.0.1:5432 ({type(exc).__name__})")
        raise
    admin.autocommit = True
    name = f"ca_deploy_{uuid.uuid4().hex[:10]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _running(
    entrypoint: Path, mode: str, env: dict[str, str], cwd: Path, port: int
) -> Iterator[str]:
    """``entrypoint.sh MODE`` with ``env`` until ``/health`` answers on ``port``; its URL."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log = cwd / f"{mode}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            ["sh", str(entrypoint), mode], cwd=cwd, env={**env, "PATH": path},
            stdout=output, stderr=output,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:  # waiting for readiness, not timing anything
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_the_ui_serves_postgres_and_the_api_records_through_it(
    tmp_path: Path, database: str
) -> None:
    """The Kubernetes manifests' PostgreSQL set-up, each container's command and environment run
    from the generated entrypoint (loopback standing for the cluster's Services): the UI opens
    the database with psycopg2 and accepts its Service's Host header, the API records a run
    through the UI over HTTP, and the trace lands in PostgreSQL."""
    import psycopg2

    done = _cli(
        tmp_path, "--platform", "kubernetes", "--tracking-uri", f"{LOCAL_POSTGRES}/{database}"
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    documents = [d for d in yaml.safe_load_all((out / kubernetes.MANIFESTS).read_text()) if d]
    ui_deployment = _find(documents, "Deployment", f"{NAME}-mlflow")
    api_deployment = _find(documents, "Deployment", f"{NAME}-api")
    assert ui_deployment and api_deployment
    ui_env = _env(_containers(ui_deployment)["mlflow-ui"])
    api_env = _env(_containers(api_deployment)["api"])
    ours = ("CONFIGURABLE_AGENTS_", "MLFLOW_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    entrypoint = out / "entrypoint.sh"
    ui_port, api_port = _free_port(), _free_port()
    (tmp_path / "ui").mkdir()
    (tmp_path / "api").mkdir()
    ui_env.update(MLFLOW_HOST="127.0.0.1", MLFLOW_PORT=str(ui_port), PGPASSWORD="unused")
    with _running(entrypoint, "mlflow-ui", {**base, **ui_env}, tmp_path / "ui", ui_port) as ui:
        service = {"Host": f"{NAME}-mlflow:5000"}  # as the API reaches it through its Service
        search = f"{ui}/api/2.0/mlflow/experiments/search?max_results=5"
        assert httpx.get(search, headers=service, timeout=30).status_code == 200
        assert (
            httpx.get(search, headers={"Host": "attacker.example"}, timeout=30).status_code == 403
        )
        # The deployed workflow records to the UI's Service; here the UI is on loopback.
        deployed = out / "workflow.yaml"
        deployed.write_text(deployed.read_text().replace(f"http://{NAME}-mlflow:5000", ui))
        api_env.update(
            MLFLOW_TRACKING_URI=ui, API_HOST="127.0.0.1", API_PORT=str(api_port),
            CONFIGURABLE_AGENTS_SPOOL=str(tmp_path / "api" / "spool.db"),
            CONFIGURABLE_AGENTS_RUNS_DB=str(tmp_path / "api" / "runs.db"),
            CONFIGURABLE_AGENTS_LLM="mock", CONFIGURABLE_AGENTS_WRITER_IDLE="1",
        )  # fmt: skip
        api_env = {**base, **api_env}
        with _running(entrypoint, "api", api_env, tmp_path / "api", api_port) as api:
            run = httpx.post(f"{api}/runs", json={"inputs": {"topic": "bees"}}, timeout=60)
            assert run.status_code == 200 and run.json()["status"] == "success", run.text
        with psycopg2.connect(f"{LOCAL_POSTGRES}/{database}") as connection:
            deadline = time.monotonic() + 60
            while True:  # the API's writer drains its spool at shutdown
                traces = connection.cursor()
                traces.execute("SELECT count(*) FROM trace_info")
                (count,) = traces.fetchone()
                if count or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert count == 1
