"""Building the project's wheel from the checkout, and talking to the Docker engine."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from .artifacts import DeployError

__all__ = ["build_wheel", "compose_up", "engine_status", "project_root"]

ENGINE_TIMEOUT_S = 15.0


def project_root() -> Path:
    """The checkout this package runs from (it holds ``pyproject.toml``)."""
    root = Path(__file__).resolve().parents[3]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "configurable-agents"' not in pyproject.read_text():
        raise DeployError(
            "deploy builds the image from a source checkout of configurable-agents, and this "
            f"installation has none ({root} holds no pyproject.toml of the project)"
        )
    return root


def build_wheel(destination: Path) -> Path:
    """Build the project's wheel into ``destination`` with pip; its path.

    Without build isolation when hatchling (the build backend) is installed, so that no package
    index is needed; otherwise pip fetches it.
    """
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(destination)]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")
    done = subprocess.run(
        [*command, str(project_root())], capture_output=True, text=True, check=False
    )
    wheels = sorted(destination.glob("configurable_agents-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise DeployError(f"building the wheel failed: {last}")
    return wheels[-1]


def engine_status() -> str | None:
    """None when a Docker engine answers ``docker info``; else why not, in a few words."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"docker info did not answer within {ENGINE_TIMEOUT_S:g} s"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else "docker info failed"
    return None


def compose_up(directory: Path) -> int:
    """``docker compose up -d --build`` in ``directory``, its output shown; the exit code."""
    return subprocess.run(
        ["docker", "compose", "--project-directory", str(directory), "up", "-d", "--build"],
        cwd=directory,
        check=False,
    ).returncode
