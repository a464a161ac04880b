"""`.ci/run` runs exactly the README's test command, and the README's first command is real."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block, "README must start with a sh block of set-up commands"
    return block.group(1).strip().splitlines()


def test_readme_starts_with_exactly_two_setup_commands() -> None:
    first, second = _setup_commands()
    assert "configurable-agents" in first and "examples/article_writer.yaml" in first
    assert '".[dev]"' in second and second.endswith("&& mypy && pytest")


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    pattern = re.search(r"grep -m1 -E '([^']+)' README.md", script)
    assert pattern
    matches = [c for c in _setup_commands() if re.search(pattern.group(1), c)]
    assert matches == [_setup_commands()[1]]
    assert "-eq 5" in script


def test_readme_validate_example_is_real_output() -> None:
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    shown = re.search(
        r"```text\n\$ configurable-agents validate broken.yaml\n(.*?)```", readme, re.S
    )
    assert shown
    result = subprocess.run(
        [sys.executable, "-m", "configurable_agents", "validate", "broken.yaml"],
        cwd=ROOT / "tests" / "data",
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stdout == shown.group(1)
