"""What a deployment runs, whatever the platform: the containers' commands and environment, the
store they share, the secrets they read. :mod:`.artifacts` computes it from the workflow and the
options; the compose file, the Kubernetes manifests (:mod:`.kubernetes`) and the ECS definitions
(:mod:`.ecs`) are written from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..api import TRACING_ENV
from ..environment import RUNS_DB_ENV
from ..observability.spool import SPOOL_ENV

__all__ = ["PGPASSWORD", "QUEUE_ENV", "REDIS_IMAGE", "Spec", "health_command", "yaml_text"]

PGPASSWORD = "PGPASSWORD"
"""The variable libpq (psycopg2) reads a PostgreSQL password from: never part of a URI here."""

QUEUE_ENV = "CONFIGURABLE_AGENTS_QUEUE"
"""The Redis URL the entrypoint passes to `serve --queue` and `worker --queue`."""

REDIS_IMAGE = "redis:7"
"""The queue's Redis where the deployment runs its own (compose, Kubernetes): no persistence,
the official image's non-root `redis` user (uid 999)."""


@dataclass(frozen=True)
class Spec:
    """One deployment, platform-neutral."""

    name: str
    """Lower-case name: the compose project, the prefix of every Kubernetes object, the ECS
    family and service."""
    image: str
    api_port: int
    mlflow_port: int
    data: str
    """Mount point of the data volume and the working directory (store, spool, job table)."""
    persistent: bool
    """The MLflow store is a SQLite file on the data volume: the volume must persist and be shared
    by every process that records (one API replica, the UI and any worker beside it)."""
    ui_store: str | None
    """The MLflow UI's backend store URI; None: no UI."""
    api_store: str | None
    """MLFLOW_TRACKING_URI of the API and the workers; None: the workflow file's own."""
    via_ui: bool
    """The API and the workers record through the UI's MLflow server over HTTP (its URL depends on
    the platform; :attr:`api_store` is then None)."""
    postgres: bool
    """A PostgreSQL store given with --tracking-uri: whoever opens it reads PGPASSWORD."""
    tracing: bool
    """Record every run (CONFIGURABLE_AGENTS_TRACING=on)."""
    queue: bool
    replicas: int
    secret_keys: list[str] = field(default_factory=list)
    """Names of the secret variables the API and the workers read (provider keys the workflow
    needs, the API token, ...): names only, never values."""
    worker_grace_s: int = 300
    """Seconds a stopping worker gets to finish its runs."""

    def api_env(self, ui_url: str | None, queue_url: str | None) -> dict[str, str]:
        """The API's environment (no secret): ``ui_url`` the UI's MLflow server as the API sees
        it, ``queue_url`` the Redis URL (None: not set here, e.g. a secret)."""
        env = {
            "API_PORT": str(self.api_port),
            SPOOL_ENV: f"{self.data}/spool.db",
            RUNS_DB_ENV: f"{self.data}/runs.db",  # the job table outlives the container
        }
        if self.tracing:
            env[TRACING_ENV] = "on"
        if self.via_ui and ui_url is not None:
            env["MLFLOW_TRACKING_URI"] = ui_url
        elif self.api_store is not None:
            env["MLFLOW_TRACKING_URI"] = self.api_store
        if self.queue and queue_url is not None:
            env[QUEUE_ENV] = queue_url
        return env

    def worker_env(self, ui_url: str | None, queue_url: str | None) -> dict[str, str]:
        """A worker's environment: the API's, without its port and job table."""
        env = self.api_env(ui_url, queue_url)
        del env["API_PORT"], env[RUNS_DB_ENV]
        env[SPOOL_ENV] = f"{self.data}/worker-spool.db"
        return env

    def ui_env(self, allowed_hosts: list[str] | None = None) -> dict[str, str]:
        """The MLflow UI's environment; ``allowed_hosts`` the Host headers its server accepts
        besides MLflow's defaults (localhost and private addresses)."""
        env = {
            "MLFLOW_PORT": str(self.mlflow_port),
            "MLFLOW_BACKEND_STORE_URI": self.ui_store or "",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        if allowed_hosts:
            env["MLFLOW_SERVER_ALLOWED_HOSTS"] = ",".join([*allowed_hosts, *_MLFLOW_DEFAULT_HOSTS])
        return env


_MLFLOW_DEFAULT_HOSTS = [
    "localhost",
    "localhost:*",
    "127.0.0.1",
    "127.0.0.1:*",
    "10.*",
    "192.168.*",
    *(f"172.{i}.*" for i in range(16, 32)),
]
"""MLflow's own default of allowed Host headers (it is replaced, not extended, when set)."""


def health_command(port: int) -> list[str]:
    """A container health check command: ``GET /health`` on ``port`` with Python's urllib (the
    slim image has no curl)."""
    code = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/health', timeout=4)"
    return ["CMD", "python", "-c", code]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (a workflow) as literal blocks; no anchors or aliases (a shared dict or
    list is written out each time)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # the emitter falls back to a quoted string where a literal block cannot hold the text
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def yaml_text(data: Any) -> str:
    """``data`` as block-style YAML, keys in their order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
