"""pip (pyproject.toml) and conda (environment.yml) install the same course.

Binder and conda users get their environment from environment.yml; `make`
users from pyproject.toml. A package added to one and forgotten in the other
breaks the course for half its users, so the two lists must name the same
packages with the same version constraints.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# What conda must provide itself and pip cannot: the interpreter, pip, and
# the tools the Makefile and minildr.build call.
CONDA_ONLY = {"python", "pip", "c-compiler", "make"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_requirements() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_norm(r.name): str(r.specifier) for r in map(Requirement, reqs)}


def conda_requirements() -> tuple:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", dep.strip())
        conda[_norm(match.group(1))] = match.group(2).replace(" ", "")
    return env, conda, pip


def test_environment_yml_names_the_same_packages_as_pyproject():
    env, conda, _ = conda_requirements()
    assert env["channels"] == ["conda-forge"]
    assert CONDA_ONLY <= set(conda), "environment.yml must bring python, pip, a C compiler, make"
    pip = pip_requirements()
    packages = {k: v for k, v in conda.items() if k not in CONDA_ONLY}
    missing_in_conda = sorted(set(pip) - set(packages))
    missing_in_pip = sorted(set(packages) - set(pip))
    assert not missing_in_conda, f"add to environment.yml: {missing_in_conda}"
    assert not missing_in_pip, f"add to pyproject.toml: {missing_in_pip}"
    differ = {k: (pip[k], packages[k]) for k in pip if pip[k] != packages[k]}
    assert not differ, f"version constraints differ (pyproject, environment.yml): {differ}"


def test_environment_yml_installs_this_repo_with_pip():
    _, _, pip = conda_requirements()
    assert pip == ["-e ."], "environment.yml must end with pip: [-e .] to install minildr itself"


def test_the_python_versions_agree():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    _, conda, _ = conda_requirements()
    assert conda["python"] == requires
