"""Every place that lists a command's exit codes (README, docs, --help, the CLI's docstring) names
the codes the command really uses, and only those."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from configurable_agents import cli
from configurable_agents.cli.batch import BATCH_EXIT
from configurable_agents.cli.common import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "run": {*EXIT_CODES.values(), 2},
    "batch": {*(code for code in BATCH_EXIT.values() if code), 0, 1, 2},
    "validate": {0, 1, 2},
    "mcp": {0, 2, 130},
}


def _codes(text: str) -> set[int]:
    """The codes of an ``Exit[ codes:] 0 success, 1 failed (...), ...`` listing."""
    text = re.sub(r"\([^)]*\)", "", " ".join(text.split()))
    match = re.search(r"Exit(?: codes)?:?\s*(\d.*?)(?:\.(?:\s|$)|\||$)", text)
    assert match, f"no exit-code listing in {text[:120]!r}"
    return {int(code) for code in re.findall(r"(?:^|,\s*)(\d+)\s", match.group(1))}


def _readme_row(command: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return next(
        line for line in readme.splitlines() if line.startswith(f"| `configurable-agents {command}")
    )


def _doc_line(doc: str, marker: str) -> str:
    text = (ROOT / "docs" / doc).read_text()
    start = text.index(marker)
    return " ".join(text[start:].split("\n\n")[0].split())


def _help(command: str) -> str:
    result = CliRunner().invoke(cli.app, [command, "--help"], terminal_width=200)
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_readme_row_lists_the_exit_codes(command: str) -> None:
    assert _codes(_readme_row(command)) == EXPECTED[command]


@pytest.mark.parametrize("command", ["run", "batch", "mcp"])
def test_help_lists_the_exit_codes(command: str) -> None:
    assert _codes(_help(command)) == EXPECTED[command]


@pytest.mark.parametrize(
    ("command", "doc"),
    [("run", "RUNNING.md"), ("batch", "BATCH.md"), ("validate", "WORKFLOW_LANGUAGE.md")],
)
def test_docs_list_the_exit_codes(command: str, doc: str) -> None:
    assert _codes(_doc_line(doc, "Exit codes:")) == EXPECTED[command]


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_cli_docstring_lists_the_exit_codes_per_command(command: str) -> None:
    text = (cli.__doc__ or "").split(f"``{command}``:")[1].split("\n- ")[0]
    assert _codes(f"Exit: {text}") == EXPECTED[command]
