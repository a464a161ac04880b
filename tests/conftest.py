"""Shared fixtures: paths of the repository's examples and test data, a stub OpenAI server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stub_llm import StubLLM

ROOT = Path(__file__).resolve().parent.parent


def require(available: bool, reason: str) -> None:
    """Skip the calling test when a tool or service it needs is missing; in CI (``$CI`` set),
    where `.ci/run` provides them all, fail instead, so that nothing is silently left untested."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _no_recording_unless_asked(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Examples enable MLflow; tests record only where they mean to, and never in the repo or
    the user's spool."""
    monkeypatch.setenv("CONFIGURABLE_AGENTS_TRACING", "off")
    monkeypatch.setenv("CONFIGURABLE_AGENTS_SPOOL", str(tmp_path_factory.mktemp("spool") / "s.db"))
    # A writer stays warm between commands; each test has its own spool, so none would be reused.
    monkeypatch.setenv("CONFIGURABLE_AGENTS_WRITER_IDLE", "1")
    # Checkpoints and session memory go to a store of the test's own, never the repo's.
    checkpoints = tmp_path_factory.mktemp("checkpoints") / "checkpoints.db"
    monkeypatch.setenv("CONFIGURABLE_AGENTS_CHECKPOINTS", f"sqlite:///{checkpoints}")


@pytest.fixture
def examples_dir() -> Path:
    """The repository's ``examples/`` folder."""
    return ROOT / "examples"


@pytest.fixture
def stub_llm() -> Iterator[StubLLM]:
    """A running :class:`stub_llm.StubLLM`; point clients at ``stub_llm.base_url``."""
    with StubLLM() as stub:
        yield stub
