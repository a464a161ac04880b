"""`deploy` of a workflow made of several files: its sub-workflows go into the image at the same
relative paths, and the variables its MCP servers read are among the secrets it needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from configurable_agents.config import load_workflow
from configurable_agents.deploy.artifacts import DeployError, DeployOptions, plan_deployment

ROOT = Path(__file__).resolve().parent.parent


def _options(tmp_path: Path, platform: str = "compose") -> DeployOptions:
    return DeployOptions(tmp_path / "out", env_file=tmp_path / "none.env", platform=platform)


def test_sub_workflows_are_copied_beside_the_workflow(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    shutil.copytree(ROOT / "examples" / "subworkflow", folder)
    (folder / "parts").mkdir()
    (folder / "classify.yaml").rename(folder / "parts" / "classify.yaml")
    triage = folder / "triage.yaml"
    triage.write_text(triage.read_text().replace("workflow: classify.yaml",
                                                 "workflow: parts/classify.yaml"))  # fmt: skip
    plan = plan_deployment(load_workflow(triage), _options(tmp_path))
    assert (
        plan.files["subworkflows/parts/classify.yaml"]
        == (folder / "parts" / "classify.yaml").read_text()
    )
    assert "COPY --chown=app:app subworkflows/ /app/\n" in plan.files["Dockerfile"]
    # a workflow without sub-workflows copies nothing more
    alone = plan_deployment(load_workflow(ROOT / "examples" / "loop.yaml"), _options(tmp_path))
    assert "subworkflows/" not in alone.files["Dockerfile"]


def test_a_sub_workflow_outside_the_folder_is_refused(tmp_path: Path) -> None:
    shutil.copy(ROOT / "examples" / "subworkflow" / "classify.yaml", tmp_path / "classify.yaml")
    (tmp_path / "app").mkdir()
    triage = tmp_path / "app" / "triage.yaml"
    text = (ROOT / "examples" / "subworkflow" / "triage.yaml").read_text()
    triage.write_text(text.replace("workflow: classify.yaml", "workflow: ../classify.yaml"))
    with pytest.raises(DeployError, match="outside"):
        plan_deployment(load_workflow(triage), _options(tmp_path))


@pytest.mark.parametrize("platform", ["compose", "kubernetes", "ecs"])
def test_mcp_variables_are_secrets_the_deployment_needs(tmp_path: Path, platform: str) -> None:
    data = yaml.safe_load((ROOT / "examples" / "loop.yaml").read_text())
    data.setdefault("config", {}).setdefault("tools", {})["mcp_servers"] = {
        "tickets": {"url": "http://tickets.internal/mcp",
                    "headers": {"Authorization": "Bearer ${TICKETS_TOKEN}"}},
    }  # fmt: skip
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = plan_deployment(load_workflow(path), _options(tmp_path, platform))
    assert "TICKETS_TOKEN=" in plan.files[".env.example"]
    if platform == "ecs":
        task = json.loads(plan.files["ecs-task-definition.json"])
        api = task["containerDefinitions"][0]
        assert "TICKETS_TOKEN" in {secret["name"] for secret in api["secrets"]}
