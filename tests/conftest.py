"""Shared fixtures: paths of the repository's examples and test data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def examples_dir() -> Path:
    """The repository's ``examples/`` folder."""
    return ROOT / "examples"
