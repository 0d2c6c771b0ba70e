"""Binder builds what the tests ran: repo2docker's own Dockerfile and build context, checked.

Binder runs repo2docker on this repository. Asked with `--no-build`, repo2docker
prints the Dockerfile it would build without needing docker; these tests read
that Dockerfile and hold it to the rules that make Binder match `make test`:

* the Python the notebooks' outputs were recorded with (repo2docker reads
  only `python=X.Y` in environment.yml; `python>=3.10` silently gave 3.10,
  and one saved output of notebook 00 names the minor version);
* the conda environment built before the repository is copied in, and the
  course's package installed after it by postBuild, so a commit that changes
  only notebooks (or the package) reuses the environment's cached layer;
* `.dockerignore` keeps local environments, build outputs and caches out of
  the image, checked on the build context repo2docker itself assembles.

The image itself is not built here: that needs Docker Hub and conda-forge,
which this machine cannot reach (see README, "Run it for a class").
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

# find_spec, not importorskip: importing repo2docker (and docker) costs ~0.4 s of CPU in
# every xdist worker that collects this file; one test imports it (_build_context).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("repo2docker") is None,
    reason="jupyter-repo2docker is not installed (pip install -e '.[dev]' installs it)")

ROOT = Path(__file__).resolve().parents[2]


def recorded_python() -> str:
    """X.Y of the Python every committed notebook was run with (its metadata)."""
    versions = set()
    for nb in sorted(ROOT.glob("*/*.ipynb")):
        version = json.loads(nb.read_text(encoding="utf-8"))["metadata"].get("language_info", {}).get("version")
        if version:
            versions.add(".".join(version.split(".")[:2]))
    assert len(versions) == 1, f"the notebooks were recorded with different Pythons: {sorted(versions)}"
    return versions.pop()


@pytest.fixture(scope="module")
def dockerfile() -> tuple[str, str]:
    """(the Dockerfile repo2docker would build for this repository, its log)."""
    run = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug",
                          "--user-id", "1000", "--user-name", "jovyan", str(ROOT)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout
    assert text.lstrip().startswith("FROM "), f"no Dockerfile in repo2docker's output:\n{text[:2000]}"
    return text, run.stderr


def _index(lines: list[str], pattern: str) -> int:
    hits = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert hits, f"no line matches {pattern!r} in the Dockerfile"
    return hits[0]


def test_binder_builds_the_python_the_outputs_were_recorded_with(dockerfile):
    _, log = dockerfile
    assert "Python version unspecified" not in log, log
    wanted = recorded_python()
    assert f"Building conda environment for python={wanted}" in log, (
        f"repo2docker does not build python {wanted} (the notebooks' recorded version):\n{log}")


def test_the_environment_is_built_before_the_repository_is_copied(dockerfile):
    lines = dockerfile[0].splitlines()
    env_only = _index(lines, r"^COPY .*src/environment\.yml ")
    env_update = _index(lines, r"env update .*--file \"?environment\.yml")
    whole_repo = _index(lines, r"^COPY .*\bsrc/ \$\{REPO_DIR\}/")
    post_build = _index(lines, r"^RUN \./postBuild")
    assert env_only < env_update < whole_repo < post_build, (
        "expected: COPY environment.yml, env update, COPY the repository, postBuild; got lines "
        f"{env_only}, {env_update}, {whole_repo}, {post_build}")
    assert not any(re.search(r"pip install.* -e|pip install .*\s\.$", line) for line in lines[:whole_repo]), \
        "the course's package must not be installed before the repository is copied"


def test_postbuild_installs_the_course_without_touching_the_environment():
    post_build = ROOT / "postBuild"
    assert post_build.is_file() and os.access(post_build, os.X_OK), "postBuild must exist and be executable"
    commands = [line for line in post_build.read_text().splitlines() if not line.lstrip().startswith("#")]
    installs = [line for line in commands if "pip install" in line]
    assert len(installs) == 1, f"postBuild should install the course once: {installs}"
    assert "--no-deps" in installs[0], "the environment comes from environment.yml: pip install --no-deps"
    assert re.search(r"(-e\s+|\s)\.(\s|$)", installs[0]), f"postBuild must install this repository: {installs[0]}"


class _CapturingDocker:
    """Stands in for the docker client: keeps the build context repo2docker hands it."""
    def __init__(self):
        self.context = None

    def build(self, **kwargs):
        self.context = kwargs["fileobj"].read()
        return iter(())


def _build_context(repo: Path) -> set[str]:
    """The paths repo2docker would send to docker for `repo`, as `src/...` names."""
    from repo2docker.app import Repo2Docker             # slow to import: see pytestmark
    from repo2docker.buildpacks import CondaBuildPack
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        pack = CondaBuildPack(base_image=Repo2Docker().base_image)
        pack.platform = "linux/amd64"           # what Binder builds for
        assert pack.detect(), "repo2docker does not pick the conda build pack for environment.yml"
        client = _CapturingDocker()
        list(pack.build(client, "minildr-test", 0, {"NB_USER": "jovyan", "NB_UID": "1000"}, [], {}))
    finally:
        os.chdir(cwd)
    with tarfile.open(fileobj=io.BytesIO(client.context)) as tar:
        return {name for name in tar.getnames() if name.startswith("src/")}


def test_dockerignore_keeps_local_environments_and_build_outputs_out(tmp_path):
    """A working copy after `make lab` / `make test` / `make site`, built by repo2docker."""
    assert (ROOT / ".dockerignore").is_file(), "no .dockerignore: repo2docker would copy .venv/ and build/"
    repo = tmp_path / "course"
    repo.mkdir()
    for name in (".dockerignore", "environment.yml", "postBuild", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    kept = ["notebooks/02-smallest-plugin.ipynb", "minildr/__init__.py", "examples/greet/greet.c",
            "tests/data/aarch64/x.so"]
    dropped = [".venv/bin/python", ".venv/lib/python3.11/site-packages/big.py", "build/site/index.html",
               "build/site-node/node_modules/x.js", "notebooks/build/greet.so", "exercises/build/x.so",
               "minildr/__pycache__/loader.cpython-311.pyc", ".pytest_cache/v/cache", ".hypothesis/x",
               "minildr.egg-info/PKG-INFO", "notebooks/.ipynb_checkpoints/02-checkpoint.ipynb"]
    for name in kept + dropped:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")
    context = _build_context(repo)
    missing = [name for name in kept if f"src/{name}" not in context]
    leaked = sorted(name for name in context if any(name == f"src/{d}" for d in dropped))
    assert not missing, f".dockerignore drops course files: {missing}"
    assert not leaked, f".dockerignore lets these into the image: {leaked}"
    assert "src/postBuild" in context and "src/environment.yml" in context
