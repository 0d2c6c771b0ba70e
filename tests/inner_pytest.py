"""Run pytest (with nbval) on some files from inside a test, in this process.

Tests of how notebooks are tested (the platform rule, nbval's kernel, the
exercises under nbval-lax) run pytest on notebooks of their own. A `python -m
pytest` subprocess costs 3-5 s of CPU before its first cell (the interpreter,
pytest's plugins, nbformat's import of jsonschema) that this process has
already paid; the kernels nbval starts are processes either way. So the run is
pytest.main() here, the way pytest's own pytester runs an inner session
in-process, without pytester's new HOME (the notebooks' Go and compiler caches
live there): the modules, sys.path, environment, working folder and standard
streams are put back afterwards.

    run = inner_pytest(["--nbval", "nb.ipynb"], cwd=folder, env={"X": "1"})
    assert run.reports["nb.ipynb::Cell 0"].outcome == "passed", run.output
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import pytest


@dataclass
class Report:
    outcome: str            # passed, failed or skipped (a failed setup counts as failed)
    text: str               # the failure's or skip's long text


@dataclass
class InnerRun:
    exit_code: int
    output: str             # what the inner session printed (stdout and stderr)
    reports: Dict[str, Report] = field(default_factory=dict)     # by node id


class _Recorder:
    """Each test's outcome in the inner session: the worst of its setup, call and teardown."""

    RANK = {"passed": 0, "skipped": 1, "failed": 2}

    def __init__(self) -> None:
        self.reports: Dict[str, Report] = {}

    def pytest_runtest_logreport(self, report) -> None:
        seen = self.reports.get(report.nodeid)
        if seen is None or self.RANK[report.outcome] > self.RANK[seen.outcome]:
            self.reports[report.nodeid] = Report(report.outcome, report.longreprtext)


def inner_pytest(args: Sequence[str], cwd: Path,
                 env: Optional[Mapping[str, Optional[str]]] = None) -> InnerRun:
    """pytest.main(args) in `cwd`, with `env`'s variables set (None: unset) for its length."""
    modules, path, environ, folder = dict(sys.modules), list(sys.path), dict(os.environ), os.getcwd()
    recorder = _Recorder()
    output = io.StringIO()
    try:
        for name, value in (env or {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.chdir(cwd)
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            # -p no:anyio as pyproject's addopts (not read here: cwd is another folder):
            # anyio's plugin imports trio, which no test uses.
            code = pytest.main(["-p", "no:anyio", *args], plugins=[recorder])
    finally:
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        # The inner session's conftest.py is imported as "conftest" (pytest drops
        # the outer one from sys.modules first): what it added goes, what it replaced comes back.
        for name in set(sys.modules) - set(modules):
            if _under(sys.modules[name], cwd):
                del sys.modules[name]
        sys.modules.update({name: module for name, module in modules.items()
                            if sys.modules.get(name) is not module})
    return InnerRun(int(code), output.getvalue(), recorder.reports)


def _under(module, folder: Path) -> bool:
    where = getattr(module, "__file__", None)
    return bool(where) and Path(where).resolve().is_relative_to(Path(folder).resolve())
