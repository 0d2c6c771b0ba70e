"""Shared fixtures: the example plugins, built fresh into a temporary folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from minildr.host import SUFFIX

# The platform markers (requires_linux, ...) and the notebook rule: see platforms.py.
from platforms import pytest_collection_modifyitems  # noqa: F401  (a pytest hook)

from helpers import build_example


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict:
    """greet and echo, built once per test session (do not modify these files)."""
    out = tmp_path_factory.mktemp("built")
    return {name: build_example(name, out) for name in ("greet", "echo")}


@pytest.fixture
def greet_so(built, tmp_path) -> Path:
    """A private copy of the greet plugin that a test may move, edit or delete."""
    return Path(shutil.copy(built["greet"], tmp_path / f"greet{SUFFIX}"))


@pytest.fixture
def echo_so(built, tmp_path) -> Path:
    return Path(shutil.copy(built["echo"], tmp_path / f"echo{SUFFIX}"))
