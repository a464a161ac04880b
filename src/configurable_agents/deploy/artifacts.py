"""The files that serve a workflow in Docker: Dockerfile, compose file, entrypoint, README.

Everything is computed in memory first and written only once complete, each file through a
temporary name, so a failure never leaves a half-written file.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any

import yaml

from .._version import __version__
from ..api import TRACING_ENV
from ..config.loader import Workflow
from ..environment import RUNS_DB_ENV, TOKEN_ENV
from ..llm.providers import PROVIDER_KEYS
from ..llm.settings import resolve_llm
from ..observability.spool import SPOOL_ENV

__all__ = [
    "DeployError",
    "DeployOptionError",
    "DeployOptions",
    "Deployment",
    "plan_deployment",
    "write_deployment",
]

DATA_DIR = "/data"
"""Mount point of the volume the API and the MLflow UI share, and the working directory."""

_TEMPLATES = Path(__file__).with_name("templates")
_NAME = re.compile(r"[^a-z0-9_-]+")


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


@dataclass
class Deployment:
    """The generated files (name -> text), and what the user should be told about them."""

    name: str
    files: dict[str, str]
    wheel: str
    store_note: str | None
    missing_keys: list[str]
    mlflow_ui: bool


def _store(workflow: Workflow, mlflow_service: bool) -> tuple[str | None, str, str | None]:
    """The tracking URI the API is given (None: the file's own), the volume's mount point, and
    the URI the MLflow UI reads (None: no UI service)."""
    config = workflow.config.config.observability.mlflow
    if "tracking_uri" not in config.model_fields_set:
        uri = f"sqlite:///{DATA_DIR}/mlflow.db"
        return uri, DATA_DIR, uri if mlflow_service else None
    uri = config.tracking_uri
    if not uri.startswith("sqlite:///"):
        return None, DATA_DIR, None
    path = PurePosixPath(uri.removeprefix("sqlite:///"))
    if path.is_absolute():
        return None, str(path.parent), uri if mlflow_service else None
    return None, DATA_DIR, f"sqlite:///{PurePosixPath(DATA_DIR) / path}" if mlflow_service else None


def _extras(workflow: Workflow) -> list[str]:
    config = workflow.config.config
    providers = {resolve_llm(config.llm, node, None).provider for node in workflow.config.nodes}
    extras = ["server", *sorted(providers - {"mock"})]  # an extra per provider
    if config.observability.opentelemetry.enabled:
        extras.append("otel")
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


def _compose(
    name: str, options: DeployOptions, api_env: dict[str, str], ui_uri: str | None, data: str
) -> str:
    env_file = os.path.relpath(options.env_file.resolve(), options.output_dir.resolve())
    health = "import urllib.request as u; u.urlopen('http://127.0.0.1:{}/health', timeout=4)"
    services: dict[str, Any] = {
        "api": {
            "build": ".",
            "image": f"{name}:latest",
            "command": ["api"],
            "ports": [f"{options.api_port}:{options.api_port}"],
            "env_file": [{"path": env_file, "required": False}],
            "environment": api_env,
            "volumes": [f"data:{data}"],
            "restart": "unless-stopped",
        }
    }
    if ui_uri is not None:
        services["mlflow"] = {
            "build": ".",
            "image": f"{name}:latest",
            "command": ["mlflow-ui"],
            "ports": [f"{options.mlflow_port}:{options.mlflow_port}"],
            "environment": {
                "MLFLOW_PORT": str(options.mlflow_port),
                "MLFLOW_BACKEND_STORE_URI": ui_uri,
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            },
            "volumes": [f"data:{data}"],
            "healthcheck": {
                "test": ["CMD", "python", "-c", health.format(options.mlflow_port)],
                "interval": "30s",
                "timeout": "5s",
                "start_period": "60s",
                "retries": 3,
            },
            "restart": "unless-stopped",
        }
    compose = {"name": name, "services": services, "volumes": {"data": {}}}
    header = "# Generated by `configurable-agents deploy`. Start: docker compose up -d --build\n"
    return header + yaml.safe_dump(compose, sort_keys=False, default_flow_style=False)


def _env_example(workflow: Workflow) -> str:
    lines = ["# Variables the services read; copy to your env file and fill in (no values here)."]
    lines += [f"{key}=" for keys in PROVIDER_KEYS.values() for key in keys]
    lines.append(f"{TOKEN_ENV}=")
    if workflow.config.config.observability.opentelemetry.enabled:
        lines.append("OTEL_EXPORTER_OTLP_HEADERS=")
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
    api_uri, data, ui_uri = _store(workflow, options.mlflow)
    if ui_uri is not None and options.api_port == options.mlflow_port:
        raise DeployOptionError(f"--api-port and --mlflow-port are both {options.api_port}")
    api_env = {
        "API_PORT": str(options.api_port),
        SPOOL_ENV: f"{data}/spool.db",
        RUNS_DB_ENV: f"{data}/runs.db",  # the job table outlives the container
    }
    if ui_uri is not None:
        api_env[TRACING_ENV] = "on"  # the UI is there to show the runs
    if api_uri is not None:
        api_env["MLFLOW_TRACKING_URI"] = api_uri
    store_note = None
    if options.mlflow and ui_uri is None:
        store_note = (
            "the workflow's tracking_uri is not a SQLite store, so no MLflow UI service was "
            "generated: point an MLflow UI at that store"
        )
    try:
        source_text = Path(workflow.source or "").read_text(encoding="utf-8")
    except OSError as exc:
        raise DeployError(f"{workflow.source}: {exc.strerror or exc}") from None
    extras = ",".join(_extras(workflow))
    needed = {
        resolve_llm(workflow.config.config.llm, node, None).provider
        for node in workflow.config.nodes
    }
    present = _env_keys(options.env_file)
    missing = sorted(
        keys[0]
        for provider, keys in PROVIDER_KEYS.items()
        if provider in needed and keys and not present & set(keys)
    )
    values = {
        "name": name,
        "workflow_name": flow.name,
        "version": __version__,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "wheel": wheel,
        "extras": extras,
        "more_packages": ' "psycopg2-binary>=2.9"'
        if workflow.config.config.observability.mlflow.tracking_uri.startswith("postgresql")
        else "",
        "api_port": options.api_port,
        "mlflow_port": options.mlflow_port,
        "source": workflow.source,
        "env_file": os.path.relpath(options.env_file.resolve(), options.output_dir.resolve()),
        "keys_note": f" ({', '.join(missing)})" if missing else "",
        "data_dir": data,
        "services_line": "the `api` service"
        + (" and an `mlflow` UI service reading the same store" if ui_uri else "")
        + ", a shared named volume, `restart: unless-stopped`",
        "mlflow_line": f"- MLflow UI: http://localhost:{options.mlflow_port} (store `{ui_uri}`)."
        if ui_uri
        else f"- No MLflow UI service: {store_note or 'generated with --no-mlflow'}.",
        "mount_line": "both services" if ui_uri else "the API service",
    }
    files = {
        "Dockerfile": _render("Dockerfile.tmpl", **values),
        "docker-compose.yml": _compose(name, options, api_env, ui_uri, data),
        "entrypoint.sh": _render("entrypoint.sh.tmpl", **values),
        "README.md": _render("README.md.tmpl", **values),
        ".env.example": _env_example(workflow),
        ".dockerignore": _DOCKERIGNORE,
        "workflow.yaml": source_text,
    }
    return Deployment(name, files, wheel, store_note, missing, ui_uri is not None)


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
    for path, data in contents.items():
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            temporary.write_bytes(data)
            if path.name == "entrypoint.sh":
                temporary.chmod(0o755)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
