"""The files that serve a workflow: Dockerfile, entrypoint, README, and for the platform asked
for a compose file, Kubernetes manifests (:mod:`.kubernetes`) or ECS definitions (:mod:`.ecs`).

Everything is computed in memory first and written only once complete, each file through a
temporary name, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from .._version import __version__
from ..config.loader import Workflow
from ..environment import TOKEN_ENV
from ..llm.providers import PROVIDER_KEYS
from . import ecs, kubernetes
from .composition import SUBWORKFLOWS_DIR, mcp_variables, providers, subworkflow_files
from .spec import PGPASSWORD, QUEUE_ENV, REDIS_IMAGE, Spec, health_command, yaml_text

__all__ = [
    "PLATFORMS",
    "DeployError",
    "DeployOptionError",
    "DeployOptions",
    "Deployment",
    "plan_deployment",
    "write_deployment",
]

DATA_DIR = "/data"
"""Mount point of the volume the API and the MLflow UI share, and the working directory."""

PLATFORMS = ("compose", "kubernetes", "ecs")
"""Where `deploy --platform` can deploy to; ``compose`` is the default."""

REDIS_URL = "redis://redis:6379/0"
"""The compose file's queue: its own `redis` service."""

_TEMPLATES = Path(__file__).with_name("templates")
_NAME = re.compile(r"[^a-z0-9_-]+")
_IMAGE = re.compile(r"^[a-z0-9_][a-z0-9._/:@-]*$", re.IGNORECASE)


class DeployError(Exception):
    """The deployment cannot be generated or built."""


class DeployOptionError(DeployError):
    """The options do not fit together."""


@dataclass(frozen=True)
class DeployOptions:
    """What ``configurable-agents deploy`` was asked for."""

    output_dir: Path
    api_port: int = 8000
    mlflow_port: int = 5000
    name: str | None = None
    mlflow: bool = True
    env_file: Path = Path(".env")
    platform: str = "compose"
    tracking_uri: str | None = None
    """An MLflow store outside the containers: ``postgresql://USER@HOST:PORT/DB`` (the UI serves
    it and the API records through the UI) or an ``http(s)://`` MLflow server."""
    queue: bool = False
    """Runs go through Redis to worker processes."""
    image: str | None = None
    """The image the manifests run (default ``<name>:latest``)."""
    replicas: int = 1
    """API replicas (Kubernetes: the HPA's maximum; ECS: the service's desired count)."""


@dataclass
class Deployment:
    """The generated files (name -> text), and what the user should be told about them."""

    name: str
    files: dict[str, str]
    wheel: str
    store_note: str | None
    missing_keys: list[str]
    mlflow_ui: bool
    platform: str = "compose"


@dataclass(frozen=True)
class _Store:
    api_uri: str | None
    """MLFLOW_TRACKING_URI of the API (None: the file's own, or the UI's server)."""
    data: str
    ui_uri: str | None
    """The store the MLflow UI serves (None: no UI service)."""
    sqlite: bool
    """The store is a SQLite file on the data volume."""
    via_ui: bool = False
    postgres: bool = False


def _store(workflow: Workflow, options: DeployOptions) -> _Store:
    """Where runs are recorded and what the MLflow UI serves."""
    config = workflow.config.config.observability.mlflow
    mlflow_service = options.mlflow
    if options.tracking_uri is not None:  # the file's own is replaced in the deployed copy
        uri = _tracking_uri(options.tracking_uri, options.env_file)
        if not uri.startswith("postgresql"):
            return _Store(uri, DATA_DIR, None, sqlite=False)
        if mlflow_service:  # the UI's server opens the database; the API records through it
            return _Store(None, DATA_DIR, uri, sqlite=False, via_ui=True, postgres=True)
        return _Store(uri, DATA_DIR, None, sqlite=False, postgres=True)
    if "tracking_uri" not in config.model_fields_set:
        uri = f"sqlite:///{DATA_DIR}/mlflow.db"
        return _Store(uri, DATA_DIR, uri if mlflow_service else None, sqlite=True)
    uri = config.tracking_uri
    if not uri.startswith("sqlite:///"):
        return _Store(None, DATA_DIR, None, sqlite=False)
    path = PurePosixPath(uri.removeprefix("sqlite:///"))
    if path.is_absolute():
        return _Store(None, str(path.parent), uri if mlflow_service else None, sqlite=True)
    ui = f"sqlite:///{PurePosixPath(DATA_DIR) / path}" if mlflow_service else None
    return _Store(None, DATA_DIR, ui, sqlite=True)


def _tracking_uri(uri: str, env_file: Path) -> str:
    """``--tracking-uri``, checked (no secret in it) and with the driver the image carries.

    Raises:
        DeployOptionError: not a PostgreSQL or HTTP URI, or it holds a password (never echoed).
    """
    try:
        parts = urlsplit(uri.strip())
        if parts.port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise DeployOptionError(
            "--tracking-uri: not a URI (e.g. postgresql://USER@HOST:5432/DB)"
        ) from None
    scheme = parts.scheme.lower()
    postgres = scheme in ("postgresql", "postgres", "postgresql+psycopg2")
    if not postgres and scheme not in ("http", "https"):
        raise DeployOptionError(
            f"--tracking-uri: {scheme or 'no'} scheme; give postgresql://USER@HOST:PORT/DB "
            "(a PostgreSQL-backed MLflow) or http(s)://HOST:PORT (an MLflow server)"
        )
    arguments = {key.lower() for key in parse_qs(parts.query)}
    if parts.password or arguments & {"password", "pass", "token"}:
        where = (
            f"as {PGPASSWORD}"
            if postgres
            else "as MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
        raise DeployOptionError(
            f"--tracking-uri holds a password: remove it from the URI and set it {where} in the "
            f"env file ({env_file}); nothing secret is written into the generated files"
        )
    if not parts.hostname:
        raise DeployOptionError("--tracking-uri: the URI names no host")
    if postgres and not parts.path.strip("/"):
        raise DeployOptionError("--tracking-uri: the URI names no database (e.g. HOST:5432/mlflow)")
    if not postgres:
        return uri.strip()
    # SQLAlchemy maps a bare postgresql:// to psycopg 3; the image carries psycopg2.
    query = f"?{parts.query}" if parts.query else ""
    return f"postgresql+psycopg2://{parts.netloc}{parts.path}{query}"


_TRACKING_URI_LINE = re.compile(
    r"""^([^#\n]*?\btracking_uri[ \t]*:[ \t]*)("[^"\n]*"|'[^'\n]*'|[^\s,}#]+)""", re.MULTILINE
)
"""A ``tracking_uri:`` key and its value, on a line where no comment comes before it."""


def _with_tracking_uri(text: str, uri: str) -> str:
    """The workflow file ``text`` with ``observability.mlflow.tracking_uri`` set to ``uri``,
    edited in place (comments and layout kept), and checked: nothing else changed.

    Raises:
        DeployOptionError: the file cannot be edited so (e.g. the key is written twice).
    """
    edited, count = _TRACKING_URI_LINE.subn(lambda match: match.group(1) + json.dumps(uri), text)
    try:
        before, after = yaml.safe_load(text), yaml.safe_load(edited)
        before["config"]["observability"]["mlflow"]["tracking_uri"] = uri
    except (yaml.YAMLError, KeyError, TypeError):
        before, after = None, {}
    if count != 1 or before != after:
        raise DeployOptionError(
            "--tracking-uri: cannot replace the workflow's own observability.mlflow.tracking_uri "
            "in the deployed copy; remove it from the file"
        )
    return edited


def _extras(workflow: Workflow, queue: bool) -> list[str]:
    extras = ["server", *sorted(providers(workflow) - {"mock"})]  # an extra per provider
    if workflow.config.config.observability.opentelemetry.enabled:
        extras.append("otel")
    if queue:
        extras.append("queue")
    return extras


def _env_keys(path: Path) -> set[str]:
    """Names set in an env file (values are never read into anything else)."""
    if not path.is_file():
        return set()
    names = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        if sep and value.strip() and not name.lstrip().startswith("#"):
            names.add(name.strip())
    return names


def _compose(spec: Spec, options: DeployOptions) -> str:
    """The compose file: `api`, and as asked `mlflow` (the UI), `worker` and `redis`."""
    env_file = [{"path": _relative_env_file(options), "required": False}]
    ui_url = _ui_url("compose", spec)
    queue_url = REDIS_URL if spec.queue else None
    image = {"build": ".", "image": spec.image}
    volumes = [f"data:{spec.data}"]
    services: dict[str, Any] = {
        "api": {
            **image,
            "command": ["api"],
            "ports": [f"{spec.api_port}:{spec.api_port}"],
            "env_file": env_file,
            "environment": spec.api_env(ui_url, queue_url),
            "volumes": volumes,
            "restart": "unless-stopped",
        }
    }
    if spec.ui_store is not None:
        ui: dict[str, Any] = {**image, "command": ["mlflow-ui"]}
        ui["ports"] = [f"{spec.mlflow_port}:{spec.mlflow_port}"]
        if spec.postgres:
            ui["env_file"] = env_file  # PGPASSWORD
        ui["environment"] = spec.ui_env(["mlflow", "mlflow:*"] if spec.via_ui else None)
        ui["volumes"] = volumes
        ui["healthcheck"] = {
            "test": health_command(spec.mlflow_port),
            "interval": "30s",
            "timeout": "5s",
            "start_period": "60s",
            "retries": 3,
        }
        ui["restart"] = "unless-stopped"
        services["mlflow"] = ui
    if spec.queue:
        services["worker"] = {
            **image,
            "command": ["worker"],
            "env_file": env_file,
            "environment": spec.worker_env(ui_url, queue_url),
            "volumes": volumes,
            "restart": "unless-stopped",
        }
        services["redis"] = {
            "image": REDIS_IMAGE,
            "command": ["redis-server", "--save", "", "--appendonly", "no"],
            "restart": "unless-stopped",
        }
    compose = {"name": spec.name, "services": services, "volumes": {"data": {}}}
    header = "# Generated by `configurable-agents deploy`. Start: docker compose up -d --build\n"
    return header + yaml_text(compose)


def _mlflow_set(workflow: Workflow) -> set[str]:
    return workflow.config.config.observability.mlflow.model_fields_set


def _ui_url(platform: str, spec: Spec) -> str:
    """The MLflow UI's server as the API sees it."""
    if platform == "kubernetes":
        return kubernetes.ui_url(spec)
    if platform == "ecs":
        return ecs.ui_url(spec)
    return f"http://mlflow:{spec.mlflow_port}"


def _relative_env_file(options: DeployOptions) -> str:
    return os.path.relpath(options.env_file.resolve(), options.output_dir.resolve())


def _env_example(workflow: Workflow, spec: Spec, tracking_uri: str | None, platform: str) -> str:
    lines = ["# Variables the services read; copy to your env file and fill in (no values here)."]
    lines += [f"{key}=" for keys in PROVIDER_KEYS.values() for key in keys]
    lines.append(f"{TOKEN_ENV}=")
    if workflow.config.config.observability.opentelemetry.enabled:
        lines.append("OTEL_EXPORTER_OTLP_HEADERS=")
    if spec.postgres:
        lines.append(f"{PGPASSWORD}=")
    elif tracking_uri is not None:  # an MLflow server, perhaps with authentication
        lines += ["MLFLOW_TRACKING_USERNAME=", "MLFLOW_TRACKING_PASSWORD="]
    if spec.queue and platform == "ecs":  # an ElastiCache URL, perhaps with a password
        lines.append(f"{QUEUE_ENV}=")
    lines += [f"{name}=  # read by an MCP server" for name in mcp_variables(workflow)]
    return "\n".join(lines) + "\n"


_DOCKERIGNORE = """\
# Generated by `configurable-agents deploy`: what `docker build` never sends to the engine.
# Env files hold API keys; the containers read them at run time, the image never holds them.
.env
.env.*
!.env.example
"""


def _render(template: str, **values: Any) -> str:
    return Template((_TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)


def _check(options: DeployOptions, store: _Store) -> None:
    """The options fit together (exit 2 otherwise).

    Raises:
        DeployOptionError: they do not.
    """
    if options.platform not in PLATFORMS:
        raise DeployOptionError(f"--platform {options.platform}: not one of {', '.join(PLATFORMS)}")
    if options.image is not None and not _IMAGE.match(options.image):
        raise DeployOptionError(f"--image {options.image!r}: not an image reference")
    if store.ui_uri is not None and options.api_port == options.mlflow_port:
        raise DeployOptionError(f"--api-port and --mlflow-port are both {options.api_port}")
    if options.replicas < 1:
        raise DeployOptionError(f"--replicas {options.replicas}: at least 1")
    if options.replicas == 1:
        return
    if options.platform == "compose":
        raise DeployOptionError(
            f"--replicas {options.replicas}: compose runs one API container (its port is "
            "published once); use --platform kubernetes or ecs"
        )
    if store.sqlite:
        raise DeployOptionError(
            f"--replicas {options.replicas}: the MLflow store is a SQLite file on one volume, "
            "which one API replica writes; add --tracking-uri postgresql://USER@HOST:5432/DB"
        )
    if not options.queue:
        raise DeployOptionError(
            f"--replicas {options.replicas} needs --queue: without it each API replica keeps "
            "its own job table, and a run started on one is unknown to the others"
        )


def _secret_keys(workflow: Workflow, present: set[str]) -> list[str]:
    """The secret variables the API and the workers read: for each provider the workflow uses,
    the key the env file sets (else the provider's first), and the API token."""
    keys = []
    for provider in sorted(providers(workflow)):
        names = PROVIDER_KEYS.get(provider, ())
        if names:
            keys.append(next((key for key in names if key in present), names[0]))
    return [*keys, *mcp_variables(workflow), TOKEN_ENV]


def plan_deployment(workflow: Workflow, options: DeployOptions) -> Deployment:
    """Every file of the deployment of ``workflow`` (the wheel aside).

    Raises:
        DeployOptionError: the options do not fit together.
        DeployError: the workflow file cannot be read.
    """
    wheel = f"configurable_agents-{__version__}-py3-none-any.whl"
    flow = workflow.config.flow
    name = _NAME.sub("-", (options.name or flow.name).lower()).strip("-_")
    if not name:
        raise DeployOptionError(f"--name {options.name!r}: needs a letter or digit")
    store = _store(workflow, options)
    _check(options, store)
    if options.platform != "compose":  # a DNS-1035 label: Kubernetes names, ECS families
        name = re.sub(r"[^a-z0-9-]+", "-", name).strip("-")[:40].strip("-")
        if not name[:1].isalpha():
            name = f"ca-{name}"
    store_note = None
    if options.mlflow and store.ui_uri is None:
        store_note = (
            "the tracking URI is an MLflow server, so no MLflow UI service was generated: that "
            "server is the UI"
            if options.tracking_uri is not None
            else "the workflow's tracking_uri is not a SQLite store, so no MLflow UI service was "
            "generated: point an MLflow UI at that store"
        )
    try:
        source_text = Path(workflow.source or "").read_text(encoding="utf-8")
        children = subworkflow_files(workflow)
    except OSError as exc:
        raise DeployError(f"{exc.filename or workflow.source}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DeployError(str(exc)) from None
    present = _env_keys(options.env_file)
    needed = providers(workflow)
    missing = sorted(
        keys[0]
        for provider, keys in PROVIDER_KEYS.items()
        if provider in needed and keys and not present & set(keys)
    )
    if store.postgres and PGPASSWORD not in present:
        missing.append(PGPASSWORD)
    timeout = workflow.config.config.execution.timeout
    spec = Spec(
        name=name,
        image=options.image or f"{name}:latest",
        api_port=options.api_port,
        mlflow_port=options.mlflow_port,
        data=store.data,
        persistent=store.sqlite,
        ui_store=store.ui_uri,
        api_store=store.api_uri,
        via_ui=store.via_ui,
        postgres=store.postgres,
        # the UI is there to show the runs; a store given on the command line is there to keep them
        tracing=store.ui_uri is not None or options.tracking_uri is not None,
        queue=options.queue,
        replicas=options.replicas,
        secret_keys=_secret_keys(workflow, present),
        worker_grace_s=int(timeout) + 30 if timeout else 300,
    )
    file_store = workflow.config.config.observability.mlflow.tracking_uri
    if options.tracking_uri is not None and "tracking_uri" in _mlflow_set(workflow):
        recorded_to = _ui_url(options.platform, spec) if spec.via_ui else spec.api_store
        source_text = _with_tracking_uri(source_text, recorded_to or "")
        replaced = f"the deployed workflow.yaml records to {recorded_to} (its own tracking_uri "
        replaced += f"{file_store} replaced)"
        store_note = f"{store_note}; {replaced}" if store_note else replaced
    extras = ",".join(_extras(workflow, options.queue))
    ui = store.ui_uri is not None
    values = {
        "name": spec.name,
        "image": spec.image,
        "workflow_name": flow.name,
        "version": __version__,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "wheel": wheel,
        "extras": extras,
        "subworkflows_copy": f"COPY --chown=app:app {SUBWORKFLOWS_DIR}/ /app/\n"
        if children
        else "",
        "more_packages": ' "psycopg2-binary>=2.9"'
        if store.postgres or file_store.startswith("postgresql")
        else "",
        "api_port": options.api_port,
        "mlflow_port": options.mlflow_port,
        "source": workflow.source,
        "env_file": _relative_env_file(options),
        "keys_note": f" ({', '.join(missing)})" if missing else "",
        "data_dir": store.data,
        "services_line": "the `api` service"
        + (" and an `mlflow` UI service reading the same store" if ui else "")
        + (", a `worker` and a `redis` service (the queue)" if options.queue else "")
        + ", a shared named volume, `restart: unless-stopped`",
        "mlflow_line": f"- MLflow UI: http://localhost:{options.mlflow_port} (store "
        f"`{store.ui_uri}`)."
        if ui
        else f"- No MLflow UI service: {store_note or 'generated with --no-mlflow'}.",
        "mount_line": "every service" if ui or options.queue else "the API service",
        "secret_keys": ", ".join(f"`{key}`" for key in spec.secret_keys),
    }
    files = {
        "Dockerfile": _render("Dockerfile.tmpl", **values),
        "entrypoint.sh": _render("entrypoint.sh.tmpl", **values),
        ".env.example": _env_example(workflow, spec, options.tracking_uri, options.platform),
        ".dockerignore": _DOCKERIGNORE,
        "workflow.yaml": source_text,
        **children,
    }
    if options.platform == "kubernetes":
        files[kubernetes.MANIFESTS] = kubernetes.manifests(spec, source_text)
        values.update(kubernetes.readme_values(spec))
    elif options.platform == "ecs":
        files.update(ecs.definitions(spec))
        values.update(ecs.readme_values(spec))
    else:
        files["docker-compose.yml"] = _compose(spec, options)
    files["README.md"] = _render(f"README-{options.platform}.md.tmpl", **values)
    return Deployment(name, files, wheel, store_note, missing, ui, options.platform)


def write_deployment(deployment: Deployment, output_dir: Path, wheel_path: Path) -> None:
    """Write the files and the wheel (under ``wheels/``) into ``output_dir``, replacing older
    wheels of the project there.

    Raises:
        DeployError: the wheel is not the one the files name.
    """
    wheels = output_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("configurable_agents-*.whl"):
        old.unlink()
    if wheel_path.name != deployment.wheel:
        raise DeployError(f"the wheel built is {wheel_path.name}, not {deployment.wheel}")
    contents: dict[Path, bytes] = {wheels / deployment.wheel: wheel_path.read_bytes()}
    contents.update({output_dir / n: t.encode() for n, t in deployment.files.items()})
    shutil.rmtree(output_dir / SUBWORKFLOWS_DIR, ignore_errors=True)  # an earlier run's
    for path, data in contents.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            temporary.write_bytes(data)
            if path.name == "entrypoint.sh":
                temporary.chmod(0o755)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
