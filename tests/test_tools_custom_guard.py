"""What an allow-listed module exposes, and which modules cannot be allow-listed at all."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configurable_agents import validate_workflow
from configurable_agents.config.settings import ToolsConfig
from configurable_agents.tools import ToolError, build_tools

MODULE = '''
import json
import os
import subprocess
from functools import partial
from os import system
from subprocess import run as run_command

from langchain_core.tools import tool


def public(x: int) -> int:
    """Double a number.

    Args:
        x: The number.
    """
    return 2 * x


async def apublic(x: int) -> int:
    """Triple a number.

    Args:
        x: The number.
    """
    return 3 * x


@tool
def decorated(x: int) -> int:
    """Add one.

    Args:
        x: The number.
    """
    return x + 1


def _private(x: int) -> int:
    """Hidden."""
    return x


def __getattr__(name: str) -> object:
    raise AttributeError(name)


class Helper:
    """A class is not a function."""

    def __init__(self, x: int) -> None:
        self.x = x


dumps = json.dumps
bound = partial(public, x=1)
'''

REFUSED_MODULES = [
    "builtins",
    "os",
    "subprocess",
    "sys",
    "shutil",
    "importlib",
    "pickle",
    "marshal",
    "ctypes",
    "socket",
]


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "ca_guard_tools.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield "ca_guard_tools"
    sys.modules.pop("ca_guard_tools", None)


def build(name: str, allowed: list[str]) -> Any:
    return build_tools([name], ToolsConfig(allowed_modules=allowed))[0]


@pytest.mark.parametrize("attribute", ["public", "apublic", "decorated"])
def test_public_functions_defined_in_the_module_are_tools(module: str, attribute: str) -> None:
    assert build(f"{module}:{attribute}", [module]).name == attribute


@pytest.mark.parametrize(
    "attribute",
    [
        "system",  # imported from os
        "run_command",  # imported from subprocess, renamed
        "dumps",  # another module's function under a new name
        "bound",  # a partial, not a function
        "Helper",  # a class
        "_private",
        "__getattr__",
        "__builtins__",  # a dunder attribute every module has
        "os",  # an imported module
    ],
)
def test_only_public_functions_defined_in_the_module_are_exposed(
    module: str, attribute: str
) -> None:
    with pytest.raises(ToolError, match="only public functions defined in"):
        build(f"{module}:{attribute}", [module])


def _workflow(allowed: list[str], tool: str) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "flow": {"name": "t"},
        "config": {"tools": {"allowed_modules": allowed}},
        "nodes": [{"id": "a", "prompt": "hi", "outputs": ["answer"], "tools": [tool]}],
        "edges": [{"from": "START", "to": "a"}, {"from": "a", "to": "END"}],
    }


@pytest.mark.parametrize("name", [*REFUSED_MODULES, "os.path", "importlib.util", "ctypes.util"])
def test_validate_refuses_allow_listing_a_dangerous_module(name: str) -> None:
    workflow, diagnostics = validate_workflow(_workflow([name], f"{name}:anything"))
    assert workflow is None
    [error] = diagnostics
    assert error.path == "config.tools.allowed_modules[0]"
    top = name.split(".")[0]
    assert f"{name!r} cannot be allow-listed" in error.message
    assert f"{top} " in error.message.split(":", 1)[1]  # then the reason, naming the module


@pytest.mark.parametrize("name", REFUSED_MODULES)
def test_validate_refuses_a_dangerous_custom_tool_with_the_reason(name: str) -> None:
    _, diagnostics = validate_workflow(_workflow([], f"{name}:anything"))
    [error] = diagnostics
    assert error.path == "nodes[0].tools[0]"
    assert f"custom tool module {name!r} cannot be allow-listed:" in error.message


@pytest.mark.parametrize("name", ["osmosis", "system_tools", "my_sys", "socketry.client"])
def test_similar_names_are_not_refused(name: str) -> None:
    workflow, diagnostics = validate_workflow(_workflow([name], f"{name}:anything"))
    assert diagnostics == [] and workflow is not None


@pytest.mark.parametrize(
    ("tool", "allowed"),
    [("os:system", ["os"]), ("subprocess:run", ["subprocess"]), ("builtins:eval", ["builtins"])],
)
def test_build_refuses_dangerous_modules_even_when_allowed(tool: str, allowed: list[str]) -> None:
    with pytest.raises(ToolError, match="cannot be allow-listed"):
        build(tool, allowed)
