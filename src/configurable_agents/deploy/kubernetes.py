"""Kubernetes manifests for a deployment: one multi-document YAML file, ``kubernetes.yaml``.

Objects (``NAME`` the deployment's name):

- ConfigMap ``NAME-workflow``: the workflow file, mounted over the image's ``/app/workflow.yaml``.
- Secret ``NAME-env``: referenced, never written; ``kubectl create secret generic NAME-env
  --from-env-file=.env`` makes it from the env file.
- Deployment and Service ``NAME-api``: the API, probes on ``/ready`` and ``/health``; an
  autoscaling/v2 HorizontalPodAutoscaler on it.
- The MLflow UI: Service ``NAME-mlflow``. With a SQLite store (the default) the store is one file
  on a ReadWriteOnce PersistentVolumeClaim ``NAME-data``: the UI (and a worker, with ``--queue``)
  run as containers of the API's one pod, the only place the volume is reachable from all of
  them. With ``--tracking-uri postgresql://...`` there is no claim: Deployment ``NAME-mlflow`` is
  an MLflow server over PostgreSQL and the API and the workers record through it.
- With ``--queue``: Deployment and Service ``NAME-redis`` (no persistence, reachable from this
  deployment's pods only, through a NetworkPolicy) and, without SQLite, Deployment
  ``NAME-worker``.

Every pod runs as the image's non-root ``app`` user (uid 10001), without privilege escalation or
capabilities, under the runtime's default seccomp profile, with resources requested and limited.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .spec import PGPASSWORD, REDIS_IMAGE, Spec, yaml_text

__all__ = ["K8S_VERSIONS", "MANIFESTS", "manifests", "objects", "readme_values", "ui_url"]

MANIFESTS = "kubernetes.yaml"
"""The file the manifests are written to."""

K8S_VERSIONS = ("1.33", "1.34", "1.35", "1.36", "1.37")
"""The Kubernetes versions whose schemas the manifests are validated against (tests)."""

UID = 10001
"""The image's `app` user (see the Dockerfile)."""

REDIS_UID = 999
"""The `redis` user of the official Redis image."""

_WORKFLOW_MOUNT = "/app/workflow.yaml"

_RESOURCES = {  # container -> (requests, limits) of (cpu, memory)
    name: {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_max, "memory": memory_max},
    }
    for name, (cpu, memory, cpu_max, memory_max) in {
        "api": ("250m", "512Mi", "1", "1536Mi"),
        "mlflow-ui": ("100m", "384Mi", "500m", "1Gi"),
        "worker": ("250m", "512Mi", "1", "1536Mi"),
        "redis": ("50m", "64Mi", "250m", "256Mi"),
    }.items()
}
"""Starting points (the HorizontalPodAutoscaler reads CPU against the requests)."""


def _labels(spec: Spec, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "configurable-agents",
    }


def _selector(spec: Spec, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": component}


def _meta(spec: Spec, suffix: str, component: str) -> dict[str, Any]:
    return {"name": f"{spec.name}-{suffix}", "labels": _labels(spec, component)}


def _env(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": key, "value": value} for key, value in values.items()]


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def _pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _http_probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _probes(port: str, ready: str) -> dict[str, Any]:
    """Start-up (up to two minutes: imports and the store's migrations), readiness, liveness."""
    return {
        "startupProbe": _http_probe("/health", port, 2, 60),
        "readinessProbe": _http_probe(ready, port, 10, 3),
        "livenessProbe": _http_probe("/health", port, 20, 3),
    }


def _app_container(spec: Spec, name: str, mode: str) -> dict[str, Any]:
    """A container of the deployment's image running ``entrypoint.sh MODE``."""
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [mode],
    }


def _mounts(spec: Spec, workflow: bool) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": spec.data}]
    if workflow:
        mounts.append(
            {
                "name": "workflow",
                "mountPath": _WORKFLOW_MOUNT,
                "subPath": "workflow.yaml",
                "readOnly": True,
            }
        )
    return mounts


def _secret_env(spec: Spec) -> list[dict[str, Any]]:
    return [{"secretRef": {"name": f"{spec.name}-env"}}]


def ui_url(spec: Spec) -> str:
    """The MLflow UI's server as the API and the workers reach it (its Service)."""
    return f"http://{spec.name}-mlflow:{spec.mlflow_port}"


def _queue_url(spec: Spec) -> str | None:
    return f"redis://{spec.name}-redis:6379/0" if spec.queue else None


def _api_container(spec: Spec) -> dict[str, Any]:
    container = _app_container(spec, "api", "api")
    container["ports"] = [{"name": "api", "containerPort": spec.api_port, "protocol": "TCP"}]
    container["envFrom"] = _secret_env(spec)
    container["env"] = _env(spec.api_env(ui_url(spec), _queue_url(spec)))
    container["volumeMounts"] = _mounts(spec, workflow=True)
    container["resources"] = _RESOURCES["api"]
    container.update(_probes("api", "/ready"))
    container["securityContext"] = _container_security()
    return container


def _ui_container(spec: Spec) -> dict[str, Any]:
    container = _app_container(spec, "mlflow-ui", "mlflow-ui")
    container["ports"] = [{"name": "mlflow", "containerPort": spec.mlflow_port, "protocol": "TCP"}]
    own = [f"{spec.name}-mlflow", f"{spec.name}-mlflow:*", f"{spec.name}-mlflow.*"]
    env = _env(spec.ui_env(own if spec.via_ui else None))
    if spec.postgres:  # only the database password, not the provider keys
        env.append(
            {
                "name": PGPASSWORD,
                "valueFrom": {"secretKeyRef": {"name": f"{spec.name}-env", "key": PGPASSWORD}},
            }
        )
    container["env"] = env
    container["volumeMounts"] = _mounts(spec, workflow=False)
    container["resources"] = _RESOURCES["mlflow-ui"]
    container.update(_probes("mlflow", "/health"))
    container["securityContext"] = _container_security()
    return container


def _worker_container(spec: Spec) -> dict[str, Any]:
    container = _app_container(spec, "worker", "worker")
    container["envFrom"] = _secret_env(spec)
    container["env"] = _env(spec.worker_env(ui_url(spec), _queue_url(spec)))
    container["volumeMounts"] = _mounts(spec, workflow=True)
    container["resources"] = _RESOURCES["worker"]
    container["securityContext"] = _container_security()
    return container


def _deployment(
    spec: Spec,
    suffix: str,
    component: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    grace_s: int,
    uid: int = UID,
    replicas: int | None = 1,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    one_writer = spec.persistent and component == "api"
    template: dict[str, Any] = {"labels": _labels(spec, component)}
    if annotations:
        template["annotations"] = annotations
    body: dict[str, Any] = {}
    if replicas is not None:
        body["replicas"] = replicas
    body["revisionHistoryLimit"] = 3
    body["selector"] = {"matchLabels": _selector(spec, component)}
    body["strategy"] = (
        {"type": "Recreate"}  # one pod on the SQLite store's ReadWriteOnce volume, ever
        if one_writer
        else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    body["template"] = {
        "metadata": template,
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,  # no SERVICE_PORT variables (MLFLOW_PORT is ours)
            "terminationGracePeriodSeconds": grace_s,
            "securityContext": _pod_security(uid),
            "containers": containers,
            "volumes": volumes,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, suffix, component),
        "spec": body,
    }


def _service(spec: Spec, suffix: str, component: str, port: int, target: str) -> dict[str, Any]:
    selected = "api" if spec.persistent and component == "mlflow" else component
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, suffix, component),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(spec, selected),
            "ports": [{"name": target, "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def _volumes(spec: Spec, workflow: bool) -> list[dict[str, Any]]:
    data: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": f"{spec.name}-data"}}
        if spec.persistent
        else {"name": "data", "emptyDir": {}}
    )
    volumes = [data]
    if workflow:
        volumes.append({"name": "workflow", "configMap": {"name": f"{spec.name}-workflow"}})
    return volumes


def _redis(spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    ping = {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10, "timeoutSeconds": 5}
    container = {
        "name": "redis",
        "image": REDIS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["redis-server", "--save", "", "--appendonly", "no"],
        "ports": [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "resources": _RESOURCES["redis"],
        "readinessProbe": ping,
        "livenessProbe": {**ping, "periodSeconds": 20, "failureThreshold": 3},
        "securityContext": _container_security(),
    }
    deployment = _deployment(
        spec, "redis", "redis", [container], [{"name": "data", "emptyDir": {}}], 30, REDIS_UID
    )
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, "redis", "redis"),
        "spec": {
            "podSelector": {"matchLabels": _selector(spec, "redis")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": spec.name}}}
                    ],
                    "ports": [{"protocol": "TCP", "port": 6379}],
                }
            ],
        },
    }
    return [
        ("The queue's Redis: runs and their status, no persistence (a restart loses them).",
         deployment),
        ("", _service(spec, "redis", "redis", 6379, "redis")),
        ("Only this deployment's pods reach Redis (where the cluster enforces NetworkPolicies).",
         policy),
    ]  # fmt: skip


def _hpa(spec: Spec) -> tuple[str, dict[str, Any]]:
    if spec.persistent:
        why = (
            "SQLite store: ONE replica only (the store is one file on a ReadWriteOnce volume); "
            "generate with --tracking-uri postgresql://... --queue --replicas N to scale."
        )
    elif spec.replicas == 1:
        why = "One replica: generate with --queue --replicas N (N > 1) to scale."
    else:
        why = f"Scales the API from 1 to {spec.replicas} replicas on CPU (Redis keeps the runs)."
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, "api", "api"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{spec.name}-api",
            },
            "minReplicas": 1,
            "maxReplicas": spec.replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }  # fmt: skip
    return why, hpa


def objects(spec: Spec, workflow_text: str) -> list[tuple[str, dict[str, Any]]]:
    """The manifests, each with a comment (possibly empty), in the order they are written."""
    digest = hashlib.sha256(workflow_text.encode()).hexdigest()
    found: list[tuple[str, dict[str, Any]]] = [
        (
            "The workflow, mounted over the image's copy: edit, apply, and the pods roll "
            "(their template carries its digest).",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _meta(spec, "workflow", "api"),
                "data": {"workflow.yaml": workflow_text},
            },
        )
    ]
    if spec.persistent:
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(spec, "data", "api"),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "5Gi"}},
            },
        }
        found.append(
            (
                "The SQLite store, spool and job table. ReadWriteOnce: one node mounts it, so "
                "everything that uses it (API, MLflow UI, worker) is one pod.",
                claim,
            )
        )
    if spec.queue:
        found.extend(_redis(spec))
    containers = [_api_container(spec)]
    grace = 45  # serve's --shutdown-timeout (10 s) and the traces' flush (10 s), with room
    if spec.persistent and spec.ui_store is not None:
        containers.append(_ui_container(spec))
    if spec.persistent and spec.queue:
        containers.append(_worker_container(spec))
        grace = max(grace, spec.worker_grace_s)
    annotations = {"configurable-agents/workflow-sha256": digest}
    api = _deployment(
        spec, "api", "api", containers, _volumes(spec, workflow=True), grace,
        replicas=None, annotations=annotations,
    )  # fmt: skip
    found.append(
        (
            "The API"
            + (" with the MLflow UI and the worker beside it" if len(containers) > 2 else "")
            + (" with the MLflow UI beside it" if len(containers) == 2 and spec.ui_store else "")
            + (" with the worker beside it" if len(containers) == 2 and not spec.ui_store else "")
            + ". Replicas: the HorizontalPodAutoscaler's.",
            api,
        )
    )
    found.append(("", _service(spec, "api", "api", spec.api_port, "api")))
    found.append(_hpa(spec))
    if spec.ui_store is not None:
        if not spec.persistent:
            ui = _deployment(
                spec, "mlflow", "mlflow", [_ui_container(spec)], _volumes(spec, workflow=False),
                30, replicas=1,
            )  # fmt: skip
            found.append(
                (
                    "The MLflow UI: an MLflow server over PostgreSQL; the API and the workers "
                    "record through it. Artifacts stay on its emptyDir.",
                    ui,
                )
            )
        found.append(
            (
                "The MLflow UI" + (" (a container of the API's pod)." if spec.persistent else "."),
                _service(spec, "mlflow", "mlflow", spec.mlflow_port, "mlflow"),
            )
        )
    if spec.queue and not spec.persistent:
        worker = _deployment(
            spec, "worker", "worker", [_worker_container(spec)], _volumes(spec, workflow=True),
            spec.worker_grace_s, replicas=1, annotations=annotations,
        )  # fmt: skip
        found.append(
            (
                "Workers: scale with `kubectl scale deployment/" + spec.name + "-worker "
                "--replicas N`. No HTTP endpoint, so no probes: Kubernetes restarts one that "
                "exits.",
                worker,
            )
        )
    return found


def manifests(spec: Spec, workflow_text: str) -> str:
    """The multi-document YAML of :func:`objects`, commented."""
    header = [
        "# Generated by `configurable-agents deploy --platform kubernetes`; see README.md.",
        f"#   kubectl create secret generic {spec.name}-env --from-env-file=.env",
        f"#   kubectl apply -f {MANIFESTS}",
        f"# Checked against the Kubernetes {K8S_VERSIONS[0]}-{K8S_VERSIONS[-1]} schemas "
        "(strict) by the project's tests.",
    ]
    documents = []
    for comment, manifest in objects(spec, workflow_text):
        lines = [f"# {line}" for line in _wrap(comment)] if comment else []
        body = yaml_text(manifest)
        documents.append("\n".join([*lines, body.rstrip("\n")]))
    return "\n".join(header) + "\n---\n" + "\n---\n".join(documents) + "\n"


def _wrap(text: str, width: int = 96) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def readme_values(spec: Spec) -> dict[str, str]:
    """What the Kubernetes README says about this deployment."""
    n = spec.name
    if spec.persistent:
        store = (
            f"The MLflow store is SQLite on the PersistentVolumeClaim `{n}-data` (ReadWriteOnce, "
            "5Gi, the cluster's default storage class). One node can mount it, so the API"
            + (", the MLflow UI" if spec.ui_store else "")
            + (" and the worker" if spec.queue else "")
            + f" are containers of one pod (`{n}-api`, strategy `Recreate`) and the API has one "
            "replica. To scale, generate with `--tracking-uri postgresql://USER@HOST:5432/DB "
            "--queue --replicas N`."
        )
    elif spec.postgres and spec.ui_store:
        store = (
            f"The MLflow store is PostgreSQL (`{spec.ui_store}`); the password is `PGPASSWORD` "
            f"in the secret `{n}-env`. Deployment `{n}-mlflow` is the MLflow server over it; "
            f"the API and the workers record through it (`{ui_url(spec)}`). Its artifacts "
            "(request runs' files, the workflow as a logged model) stay on its emptyDir: "
            "traces, runs and metrics are in PostgreSQL. No PersistentVolumeClaim."
        )
    else:
        store = (
            f"The MLflow store is outside the cluster (`{spec.api_store or 'the workflow file'}`"
            "); no MLflow UI and no PersistentVolumeClaim."
        )
    if spec.persistent:
        scale = "One API replica (the SQLite store)" + (
            f"; runs go through Redis (`{n}-redis`, in the cluster, no persistence) to the "
            f"worker beside the API in its pod."
            if spec.queue
            else "."
        )
    elif spec.queue:
        scale = (
            f"Runs go through Redis (`{n}-redis`, in the cluster, no persistence) to the "
            + (
                f"worker beside the API (`{n}-api`)."
                if spec.persistent
                else f"workers (`{n}-worker`)."
            )
            + (
                f" The API scales from 1 to {spec.replicas} replicas (HorizontalPodAutoscaler, "
                "70% CPU)."
                if spec.replicas > 1
                else " The HorizontalPodAutoscaler keeps one API replica (`--replicas N` raises "
                "it)."
            )
        )
    else:
        scale = (
            "One API replica: without `--queue` each replica would keep its own job table, so the "
            "HorizontalPodAutoscaler's maximum is 1."
        )
    forward = (
        f"kubectl port-forward service/{n}-mlflow {spec.mlflow_port}:{spec.mlflow_port}"
        f"  # the MLflow UI on http://localhost:{spec.mlflow_port}\n"
        if spec.ui_store
        else ""
    )
    return {"k8s_store": store, "k8s_scale": scale, "manifests": MANIFESTS, "k8s_ui": forward,
            "k8s_versions": f"{K8S_VERSIONS[0]} to {K8S_VERSIONS[-1]}"}  # fmt: skip
