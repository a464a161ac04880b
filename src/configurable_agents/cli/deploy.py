"""`configurable-agents deploy`: the files serving a workflow with Docker compose (started when
Docker runs), on Kubernetes or on Amazon ECS."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import click

from .common import FILE, fail_input

__all__ = ["deploy"]

_PORT = click.IntRange(1, 65535)
_PLATFORMS = ("compose", "kubernetes", "ecs")  # deploy.artifacts.PLATFORMS, imported lazily


@click.command()
@click.argument("file", type=FILE)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("deploy"),
    show_default=True,
    help="Folder the files are written to.",
)
@click.option("--api-port", type=_PORT, default=8000, show_default=True, help="Port of the API.")
@click.option(
    "--mlflow-port", type=_PORT, default=5000, show_default=True, help="Port of the MLflow UI."
)
@click.option(
    "--name",
    help="Compose project, image and Kubernetes/ECS object names. Default: the workflow's name.",
)
@click.option(
    "--platform",
    type=click.Choice(_PLATFORMS),
    default="compose",
    show_default=True,
    help="compose: a compose file, started when Docker runs; kubernetes: kubernetes.yaml; "
    "ecs: ECS task and service definitions (these two are only written).",
)
@click.option(
    "--tracking-uri",
    metavar="URI",
    help="MLflow store outside the containers: postgresql://USER@HOST:5432/DB (the MLflow UI "
    "serves it, the API records through the UI; the password is PGPASSWORD in the env file) or "
    "an http(s) MLflow server. Default: SQLite on the data volume.",
)
@click.option("--queue", is_flag=True, help="Runs go through Redis to worker processes.")
@click.option("--image", metavar="REF", help="Image the manifests run. Default: NAME:latest.")
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Most API replicas (kubernetes: the autoscaler's maximum; ecs: the desired count); "
    "more than 1 needs --queue and a --tracking-uri.",
)
@click.option("--generate", is_flag=True, help="Only write the files; do not start them.")
@click.option("--no-mlflow", is_flag=True, help="No MLflow UI service.")
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path(".env"),
    show_default=True,
    help="Env file with the API keys, read by the containers (only its key names are read here).",
)
def deploy(
    file: Path,
    output_dir: Path,
    api_port: int,
    mlflow_port: int,
    name: str | None,
    platform: str,
    tracking_uri: str | None,
    queue: bool,
    image: str | None,
    replicas: int,
    generate: bool,
    no_mlflow: bool,
    env_file: Path,
) -> None:
    """Write a Dockerfile, entrypoint, .env.example and README serving workflow FILE over HTTP
    (with an MLflow UI on the same store) and, for the --platform, docker-compose.yml (then
    started with `docker compose up -d --build` unless --generate), kubernetes.yaml, or
    ecs-task-definition.json and ecs-service.json (the README says how to apply them).

    Exit codes: 0 written (and started), 1 invalid workflow or failed build, 2 bad option,
    5 written but not started because no Docker engine answers.
    """
    from ..config import validate_workflow
    from ..deploy.artifacts import (
        DeployError,
        DeployOptionError,
        DeployOptions,
        plan_deployment,
        write_deployment,
    )
    from ..deploy.docker import build_wheel

    workflow, diagnostics = validate_workflow(file)
    if workflow is None:
        for diagnostic in diagnostics:
            click.echo(diagnostic.format(), err=True)
        sys.exit(1)
    options = DeployOptions(
        output_dir, api_port, mlflow_port, name, not no_mlflow, env_file,
        platform=platform, tracking_uri=tracking_uri, queue=queue, image=image, replicas=replicas,
    )  # fmt: skip
    try:
        deployment = plan_deployment(workflow, options)
        with tempfile.TemporaryDirectory(prefix="configurable-agents-wheel-") as scratch:
            wheel = build_wheel(Path(scratch))
            write_deployment(deployment, output_dir, wheel)
    except DeployOptionError as exc:
        fail_input(str(exc))
    except DeployError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write {exc.filename or output_dir}: {exc.strerror or exc}")
    written = ", ".join(sorted(deployment.files))
    click.echo(f"Wrote {written} and wheels/{deployment.wheel} to {output_dir}")
    if deployment.store_note:
        click.echo(f"note: {deployment.store_note}", err=True)
    if deployment.missing_keys:
        click.echo(
            f"note: {env_file} does not set {', '.join(deployment.missing_keys)}, which the "
            "workflow needs",
            err=True,
        )
    if platform != "compose":
        click.echo(f"Apply it as {output_dir / 'README.md'} says (build and push the image first).")
    elif not generate:
        _start(output_dir, api_port, mlflow_port if deployment.mlflow_ui else None)


def _start(output_dir: Path, api_port: int, mlflow_port: int | None) -> None:
    """Start the written services with `docker compose up -d --build`, or say why not.

    Exits 5 when no Docker engine answers, 1 when compose fails.

    Args:
        output_dir: Where the files were written.
        api_port: The API's port, for the closing line.
        mlflow_port: The MLflow UI's port, or None when there is no UI service.
    """
    from ..deploy.docker import compose_up, engine_status

    problem = engine_status()
    if problem is not None:
        click.echo(
            f"No Docker engine is running ({problem}), so nothing was started. The files are in "
            f"{output_dir.resolve()}; start them there with `docker compose up -d --build` once "
            "Docker runs.",
            err=True,
        )
        sys.exit(5)
    code = compose_up(output_dir)
    if code != 0:
        _fail(f"docker compose up failed (exit {code}); the files are in {output_dir.resolve()}")
    click.echo(f"Started: API on http://localhost:{api_port}", nl=False)
    if mlflow_port is not None:
        click.echo(f", MLflow UI on http://localhost:{mlflow_port}", nl=False)
    click.echo()


def _fail(message: str) -> NoReturn:
    """Report a failure that is not the user's input (exit code 1).

    Args:
        message: What failed; printed after ``error:`` on stderr.
    """
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
