"""The dev container learners on macOS and Windows open the course in, read by the Dev Containers CLI.

`make site-test` runs this (it installs the CLI, @devcontainers/cli, from npm
into build/site-node/). The CLI reads .devcontainer/devcontainer.json the way
VS Code and Codespaces do (`devcontainer read-configuration`); the test then
holds what it read to the course's needs: the Python the outputs were
recorded with, the C toolchain, a normal user, the course installed on
creation, JupyterLab's port forwarded.

What is NOT checked here: building the image (`devcontainer build`) and
running `make test` inside it. That needs Docker Hub (the python base image),
which this machine cannot reach. The CLI asks docker whether a container for
this folder already runs; the test answers that with a stand-in `docker`
that reports none (the truth here) and fails on any other docker command.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "build" / "site-node" / "node_modules" / ".bin" / "devcontainer"
CONFIG = ROOT / ".devcontainer" / "devcontainer.json"


def _recorded_python() -> str:
    versions = {json.loads(p.read_text(encoding="utf-8"))["metadata"]["language_info"]["version"]
                for p in ROOT.glob("*/*.ipynb")}
    assert len(versions) == 1, versions
    return versions.pop()


def _strict_jsonc(text: str) -> dict:
    """JSON with whole-line // comments, parsed strictly (the CLI's parser forgives a missing brace)."""
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))


@pytest.fixture(scope="module")
def configuration(tmp_path_factory) -> dict:
    if not CLI.exists():
        pytest.fail("the Dev Containers CLI is not installed: run `make node` (make site-test does)")
    no_containers = tmp_path_factory.mktemp("docker") / "docker"
    no_containers.write_text('#!/bin/sh\n[ "$1" = ps ] && exit 0\necho "unexpected: docker $*" >&2\nexit 1\n')
    no_containers.chmod(0o755)
    run = subprocess.run([str(CLI), "read-configuration", "--workspace-folder", str(ROOT),
                          "--docker-path", str(no_containers), "--log-level", "info"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_the_configuration_is_strict_json(configuration):
    assert _strict_jsonc(CONFIG.read_text(encoding="utf-8"))["name"] == configuration["configuration"]["name"]


def test_the_image_has_the_recorded_python_and_a_normal_user(configuration):
    config = configuration["configuration"]
    dockerfile = (CONFIG.parent / config["build"]["dockerfile"]).read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    # python:X.Y.Z-bookworm is built on buildpack-deps:bookworm: gcc, make, binutils, file, git.
    assert re.fullmatch(rf"(docker\.io/library/)?python:{re.escape(_recorded_python())}-bookworm", base), base
    user = config["remoteUser"]
    assert user != "root"
    assert re.search(rf"^ARG USERNAME={user}$", dockerfile, re.M) and 'useradd' in dockerfile, \
        f"the Dockerfile must create the remoteUser {user}"
    assert (CONFIG.parent / config["build"]["context"]).resolve() == ROOT


def test_creating_the_container_installs_the_course_as_make_does(configuration):
    config = configuration["configuration"]
    command = config["postCreateCommand"]
    assert command == "make .venv/.installed-stamp", command
    assert re.search(r"^\$\(STAMP\):", (ROOT / "Makefile").read_text(), re.M)
    assert config["customizations"]["vscode"]["settings"]["python.defaultInterpreterPath"] == \
        configuration["workspace"]["workspaceFolder"] + "/.venv/bin/python"


def test_vscode_gets_jupyter_and_the_labs_port(configuration):
    config = configuration["configuration"]
    assert {"ms-python.python", "ms-toolsai.jupyter"} <= set(config["customizations"]["vscode"]["extensions"])
    assert 8888 in config["forwardPorts"]
    opened = config["customizations"]["codespaces"]["openFiles"]
    assert all((ROOT / path).is_file() for path in opened), opened
