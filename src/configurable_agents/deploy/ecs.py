"""Amazon ECS definitions for a deployment (Fargate, awsvpc): the input of
``aws ecs register-task-definition --cli-input-json`` and of ``aws ecs create-service
--cli-input-json``.

One task holds the API, the MLflow UI (unless ``--no-mlflow`` or the store is an MLflow server)
and, with ``--queue``, a worker; containers of a task share ``127.0.0.1``, so the API records
through the UI at ``http://127.0.0.1:PORT`` when the store is PostgreSQL. A SQLite store lives on
an EFS volume (through an access point owned by the image's uid 10001) and pins the service to one
task, never two at once (``maximumPercent`` 100). Secrets are references to SSM Parameter Store
parameters ``/NAME/KEY``; the queue's Redis is outside the task (ElastiCache), its URL one of the
secrets. ``__UPPER_CASE__`` words are placeholders the README's ``sed`` line fills in.
"""

from __future__ import annotations

import json
from typing import Any

from ..environment import TOKEN_ENV
from .spec import PGPASSWORD, QUEUE_ENV, Spec, health_command

__all__ = [
    "PLACEHOLDERS",
    "SERVICE_FILE",
    "TASK_FILE",
    "definitions",
    "readme_values",
    "service_definition",
    "task_definition",
    "ui_url",
]

TASK_FILE = "ecs-task-definition.json"
SERVICE_FILE = "ecs-service.json"

PLACEHOLDERS = {
    "__REGION__": "the AWS region, e.g. eu-west-1",
    "__ACCOUNT_ID__": "the AWS account id",
    "__CLUSTER__": "the ECS cluster",
    "__SUBNET_ID__": "a private subnet of the VPC (add more to the list)",
    "__SECURITY_GROUP_ID__": "a security group letting the load balancer reach the API port",
    "__TARGET_GROUP_ARN__": "the load balancer's target group (type ip) for the API",
}
"""Placeholders of both files, and what each stands for."""

EFS_PLACEHOLDERS = {
    "__EFS_FILE_SYSTEM_ID__": "the EFS file system holding the SQLite store",
    "__EFS_ACCESS_POINT_ID__": "its access point for uid/gid 10001",
}

_SIZES = {
    # containers -> task (cpu units, MiB): valid Fargate combinations
    1: ("1024", "2048"),
    2: ("1024", "3072"),
    3: ("2048", "5120"),
}
_CONTAINER = {"api": (512, 768), "mlflow-ui": (256, 512), "worker": (512, 768)}
"""Container -> (cpu units, soft memory MiB); the task's size is the hard limit."""


def _parameter(spec: Spec, key: str) -> str:
    return f"arn:aws:ssm:__REGION__:__ACCOUNT_ID__:parameter/{spec.name}/{key}"


def _secrets(spec: Spec, keys: list[str]) -> list[dict[str, str]]:
    return [{"name": key, "valueFrom": _parameter(spec, key)} for key in keys]


def _container(
    spec: Spec, name: str, mode: str, env: dict[str, str], keys: list[str]
) -> dict[str, Any]:
    cpu, memory = _CONTAINER[name]
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        "essential": name == "api",
        "command": [mode],
        "cpu": cpu,
        "memoryReservation": memory,
        "user": "10001:10001",
        "environment": [{"name": k, "value": v} for k, v in env.items()],
        "secrets": _secrets(spec, keys),
        "linuxParameters": {"capabilities": {"drop": ["ALL"]}, "initProcessEnabled": True},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": f"/ecs/{spec.name}",
                "awslogs-region": "__REGION__",
                "awslogs-stream-prefix": name,
            },
        },
    }  # fmt: skip
    if name != "api":  # the task lives with its API; the others are restarted in place
        container["restartPolicy"] = {"enabled": True, "restartAttemptPeriod": 60}
    if spec.persistent:
        container["mountPoints"] = [
            {"sourceVolume": "data", "containerPath": spec.data, "readOnly": False}
        ]
    return container


def _health(port: int) -> dict[str, Any]:
    return {
        "command": health_command(port),
        "interval": 30,
        "timeout": 5,
        "retries": 3,
        "startPeriod": 60,
    }


def ui_url(spec: Spec) -> str:
    """The MLflow UI's server as the API and the worker reach it (a container of their task)."""
    return f"http://127.0.0.1:{spec.mlflow_port}"


def task_definition(spec: Spec) -> dict[str, Any]:
    """The input of ``register_task_definition``."""
    ui_at = ui_url(spec)
    direct_pg = spec.postgres and not spec.via_ui  # the API opens PostgreSQL itself
    queue = [QUEUE_ENV] if spec.queue else []
    pg = [PGPASSWORD] if direct_pg else []
    api = _container(
        spec, "api", "api", spec.api_env(ui_at, None), [*spec.secret_keys, *queue, *pg]
    )
    api["portMappings"] = [
        {"name": "api", "containerPort": spec.api_port, "protocol": "tcp", "appProtocol": "http"}
    ]
    api["healthCheck"] = _health(spec.api_port)
    api["stopTimeout"] = 45
    containers = [api]
    if spec.ui_store is not None:
        ui = _container(
            spec, "mlflow-ui", "mlflow-ui", spec.ui_env(None), [PGPASSWORD] if spec.postgres else []
        )
        ui["portMappings"] = [{"name": "mlflow", "containerPort": spec.mlflow_port,
                               "protocol": "tcp", "appProtocol": "http"}]  # fmt: skip
        ui["healthCheck"] = _health(spec.mlflow_port)
        ui["stopTimeout"] = 30
        containers.append(ui)
    if spec.queue:
        provider_keys = [key for key in spec.secret_keys if key != TOKEN_ENV]
        worker = _container(
            spec, "worker", "worker", spec.worker_env(ui_at, None), [*provider_keys, *queue, *pg]
        )
        worker["stopTimeout"] = min(120, spec.worker_grace_s)  # Fargate's most
        containers.append(worker)
    cpu, memory = _SIZES[len(containers)]
    task: dict[str, Any] = {
        "family": spec.name,
        "executionRoleArn": "arn:aws:iam::__ACCOUNT_ID__:role/ecsTaskExecutionRole",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": cpu,
        "memory": memory,
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "containerDefinitions": containers,
    }
    if spec.persistent:
        task["volumes"] = [
            {
                "name": "data",
                "efsVolumeConfiguration": {
                    "fileSystemId": "__EFS_FILE_SYSTEM_ID__",
                    "transitEncryption": "ENABLED",
                    "authorizationConfig": {
                        "accessPointId": "__EFS_ACCESS_POINT_ID__",
                        "iam": "DISABLED",
                    },
                },
            }
        ]
    task["tags"] = [{"key": "managed-by", "value": "configurable-agents"}]
    return task


def service_definition(spec: Spec) -> dict[str, Any]:
    """The input of ``create_service``."""
    one_task = spec.persistent  # two tasks must never write the SQLite store at once
    return {
        "cluster": "__CLUSTER__",
        "serviceName": spec.name,
        "taskDefinition": spec.name,
        "desiredCount": spec.replicas,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "loadBalancers": [
            {
                "targetGroupArn": "__TARGET_GROUP_ARN__",
                "containerName": "api",
                "containerPort": spec.api_port,
            }
        ],
        "healthCheckGracePeriodSeconds": 120,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["__SUBNET_ID__"],
                "securityGroups": ["__SECURITY_GROUP_ID__"],
                "assignPublicIp": "DISABLED",
            }
        },
        "deploymentConfiguration": {
            "maximumPercent": 100 if one_task else 200,
            "minimumHealthyPercent": 0 if one_task else 100,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
        "enableECSManagedTags": True,
        "propagateTags": "SERVICE",
        "enableExecuteCommand": False,
        "tags": [{"key": "managed-by", "value": "configurable-agents"}],
    }


def definitions(spec: Spec) -> dict[str, str]:
    """The two files, as JSON text."""
    return {
        TASK_FILE: json.dumps(task_definition(spec), indent=2) + "\n",
        SERVICE_FILE: json.dumps(service_definition(spec), indent=2) + "\n",
    }


def secret_names(spec: Spec) -> list[str]:
    """Every variable the task reads from Parameter Store."""
    found: list[str] = []
    for container in task_definition(spec)["containerDefinitions"]:
        found += [s["name"] for s in container["secrets"] if s["name"] not in found]
    return found


def readme_values(spec: Spec) -> dict[str, str]:
    """What the ECS README says about this deployment."""
    placeholders = {**PLACEHOLDERS, **(EFS_PLACEHOLDERS if spec.persistent else {})}
    keys = secret_names(spec)
    if spec.persistent:
        store = (
            "The MLflow store is SQLite on the EFS volume `data` (mounted at "
            f"`{spec.data}` in every container of the task): one task, never two at once "
            "(`desiredCount` 1, `maximumPercent` 100, `minimumHealthyPercent` 0). To scale, "
            "generate with `--tracking-uri postgresql://USER@HOST:5432/DB --queue --replicas N`."
        )
    elif spec.postgres and spec.ui_store:
        store = (
            f"The MLflow store is PostgreSQL (`{spec.ui_store}`), opened by the `mlflow-ui` "
            "container (its password is the `PGPASSWORD` parameter); the API and the worker "
            f"record through it at `http://127.0.0.1:{spec.mlflow_port}`. Artifacts stay on the "
            "task's ephemeral storage; traces, runs and metrics are in PostgreSQL. No EFS."
        )
    else:
        store = (
            f"The MLflow store is outside the task (`{spec.api_store or 'the workflow file'}`); "
            "no MLflow UI container, no EFS."
        )
    return {
        "ecs_store": store,
        "ecs_keys": " ".join(keys),
        "ecs_placeholders": "\n".join(f"| `{k}` | {v} |" for k, v in placeholders.items()),
        "ecs_sed": "; ".join(f"s|{k}|...|g" for k in placeholders),
        "task_file": TASK_FILE,
        "service_file": SERVICE_FILE,
        "ecs_queue": f"- `{QUEUE_ENV}`: the Redis URL of the queue (e.g. an ElastiCache "
        "endpoint, `rediss://...`); the API and the worker read it.\n"
        if spec.queue
        else "",
        "ecs_efs": (
            "aws efs create-access-point --file-system-id __EFS_FILE_SYSTEM_ID__ \\\n"
            "    --posix-user Uid=10001,Gid=10001 \\\n"
            f"    --root-directory 'Path=/{spec.name},CreationInfo={{OwnerUid=10001,"
            "OwnerGid=10001,Permissions=0750}'   # its id is __EFS_ACCESS_POINT_ID__\n"
        )
        if spec.persistent
        else "",
    }
