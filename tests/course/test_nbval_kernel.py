"""nbval runs notebooks with the project's own Python, whatever kernels are installed.

`make test` passes --nbval-current-env; these tests run nbval the same way (one run, an
inner pytest session in this process: tests/inner_pytest.py) on a small notebook that
records the kernel's interpreter, and checks that it is the interpreter running the
tests (the .venv's), even when the notebook asks for a kernel named something else.
Its second cell is the control: a saved output that differs from the run fails.
The two cells share the notebook's one kernel (nbval starts one per notebook; a second
cost 0.3-0.7 CPU s): nbval compares each cell on its own, and neither cell needs a fresh kernel.
"""
from __future__ import annotations

import json
import sys

import pytest

from helpers import ROOT
from inner_pytest import InnerRun, inner_pytest


def code_cell(number: int, source: str, output: str) -> dict:
    return {"cell_type": "code", "execution_count": number, "id": f"probe{number}",
            "metadata": {}, "source": source,
            "outputs": [{"name": "stdout", "output_type": "stream", "text": output}]}


def notebook(*cells: dict) -> dict:
    return {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "some-other-kernel", "display_name": "Other",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def nbval_run(tmp_path_factory) -> InnerRun:
    """One nbval run (one pytest session, one kernel) over the probe and its control."""
    folder = tmp_path_factory.mktemp("nbval-kernel")
    (folder / "probes.ipynb").write_text(json.dumps(notebook(
        code_cell(1, "import sys\nprint(sys.prefix)", sys.prefix + "\n"),
        # The control: a wrong saved output makes nbval (and so make test) fail.
        code_cell(2, "print(6 * 7)", "41\n"))))
    return inner_pytest(["-q", "-p", "no:cacheprovider", "--rootdir", str(folder), "--nbval",
                         "--nbval-current-env", "--nbval-sanitize-with",
                         str(ROOT / "tests" / "sanitize.cfg"), "probes.ipynb"], cwd=folder)


def test_notebooks_run_with_this_environments_python(nbval_run):
    assert nbval_run.reports["probes.ipynb::Cell 0"].outcome == "passed", nbval_run.output


def test_nbval_fails_on_a_changed_output(nbval_run):
    changed = nbval_run.reports["probes.ipynb::Cell 1"]
    assert changed.outcome == "failed" and "41" in changed.text, nbval_run.output
    assert nbval_run.exit_code != 0
