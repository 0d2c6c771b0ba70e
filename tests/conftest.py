"""Shared fixtures: the example plugins, built fresh into a temporary folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import minildr
from minildr.host import SUFFIX

# The platform markers (requires_linux, ...) and the notebook rule: see platforms.py.
from platforms import pytest_collection_modifyitems  # noqa: F401  (a pytest hook)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def build_example(name: str, out_dir: Path, **kwargs) -> Path:
    folder = EXAMPLES / name
    return minildr.build(sorted(folder.glob("*.c")), name=name,
                         exports=folder / f"{name}.h", out_dir=out_dir, **kwargs)


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


def write_plugin(tmp_path: Path, name: str, source: str, header: str, **kwargs) -> Path:
    """Build a plugin from C text (one source, one exports header) into tmp_path/out."""
    src_dir = tmp_path / f"src-{name}"
    src_dir.mkdir(exist_ok=True)
    (src_dir / f"{name}.c").write_text(source)
    (src_dir / f"{name}.h").write_text(header)
    return minildr.build([src_dir / f"{name}.c"], name=name, exports=src_dir / f"{name}.h",
                         out_dir=tmp_path / "out", **kwargs)
