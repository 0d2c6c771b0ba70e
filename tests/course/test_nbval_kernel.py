"""nbval runs notebooks with the project's own Python, whatever kernels are installed.

`make test` passes --nbval-current-env; these tests run nbval the same way (one run) on a
small notebook that records the kernel's interpreter, and checks that it is the
interpreter running the tests (the .venv's), even when the notebook asks for a
kernel named something else.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT


def notebook(source: str, output: str) -> dict:
    return {
        "cells": [{"cell_type": "code", "execution_count": 1, "id": "probe", "metadata": {},
                   "source": source,
                   "outputs": [{"name": "stdout", "output_type": "stream", "text": output}]}],
        "metadata": {"kernelspec": {"name": "some-other-kernel", "display_name": "Other",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory) -> subprocess.CompletedProcess:
    """One nbval run (one pytest start) over both probes; -rA names each one's outcome."""
    folder = tmp_path_factory.mktemp("nbval-kernel")
    (folder / "interpreter.ipynb").write_text(
        json.dumps(notebook("import sys\nprint(sys.prefix)", sys.prefix + "\n")))
    # The control: a wrong saved output makes nbval (and so make test) fail.
    (folder / "changed.ipynb").write_text(json.dumps(notebook("print(6 * 7)", "41\n")))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "--rootdir", str(folder), "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "tests" / "sanitize.cfg"),
         "interpreter.ipynb", "changed.ipynb"], capture_output=True, text=True, cwd=folder)


def test_notebooks_run_with_this_environments_python(nbval_run):
    assert "PASSED interpreter.ipynb::Cell 0" in nbval_run.stdout, nbval_run.stdout + nbval_run.stderr


def test_nbval_fails_on_a_changed_output(nbval_run):
    assert "FAILED changed.ipynb::Cell 0" in nbval_run.stdout and "41" in nbval_run.stdout
    assert nbval_run.returncode != 0
