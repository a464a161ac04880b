"""What a workflow made of several files needs in a deployment: its sub-workflow files, the
providers of every workflow it runs, and the variables its MCP servers read."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from ..config.loader import Workflow
from ..llm.settings import resolve_llm

__all__ = ["SUBWORKFLOWS_DIR", "mcp_variables", "providers", "subworkflow_files", "workflows"]

SUBWORKFLOWS_DIR = "subworkflows"
"""Folder of the deployment holding the sub-workflow files, laid out as beside the workflow (the
Dockerfile copies its content into `/app`, where the workflow is)."""

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def workflows(workflow: Workflow) -> Iterator[Workflow]:
    """The workflow and every sub-workflow it runs, at any depth."""
    yield workflow
    for child in workflow.subworkflows.values():
        yield from workflows(child)


def providers(workflow: Workflow) -> set[str]:
    """Every LLM provider the nodes of the workflow and its sub-workflows use."""
    return {
        resolve_llm(each.config.config.llm, node, None).provider
        for each in workflows(workflow)
        for node in each.config.nodes
        if node.type == "llm"
    }


def subworkflow_files(workflow: Workflow) -> dict[str, str]:
    """``subworkflows/<path relative to the workflow's folder>`` -> text of each sub-workflow.

    Raises:
        ValueError: a sub-workflow lies outside the workflow's folder (it could not be found
            at the same relative path in the image).
    """
    root = Path(workflow.source or ".").resolve().parent
    files: dict[str, str] = {}
    for each in list(workflows(workflow))[1:]:
        path = Path(each.source or "").resolve()
        relative = Path(os.path.relpath(path, root))
        if relative.parts[:1] == ("..",):
            raise ValueError(
                f"sub-workflow {each.source} is outside {root}, the workflow's folder: the "
                "deployment copies that folder's layout; move the file under it"
            )
        files[str(PurePosixPath(SUBWORKFLOWS_DIR, *relative.parts))] = path.read_text("utf-8")
    return files


def mcp_variables(workflow: Workflow) -> list[str]:
    """The ``${VAR}`` names the MCP servers of the workflow and its sub-workflows read (the
    containers must have them, from the env file)."""
    names: set[str] = set()
    for each in workflows(workflow):
        for server in each.config.config.tools.mcp_servers.values():
            text = server.model_dump_json()
            names.update(_VARIABLE.findall(text))
    return sorted(names)
