"""nbval runs notebooks with the project's own Python, whatever kernels are installed.

`make test` passes --nbval-current-env; this test runs nbval the same way on a
small notebook that records the kernel's interpreter, and checks that it is the
interpreter running the tests (the .venv's), even when the notebook asks for a
kernel named something else.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
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


def run_nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(ROOT / "tests" / "sanitize.cfg"),
         str(path)], capture_output=True, text=True, cwd=path.parent)


def test_notebooks_run_with_this_environments_python(tmp_path):
    nb = tmp_path / "probe.ipynb"
    nb.write_text(json.dumps(notebook("import sys\nprint(sys.prefix)", sys.prefix + "\n")))
    done = run_nbval(nb)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nbval_fails_on_a_changed_output(tmp_path):
    """The control: a wrong saved output makes nbval (and so make test) fail."""
    nb = tmp_path / "probe.ipynb"
    nb.write_text(json.dumps(notebook("print(6 * 7)", "41\n")))
    done = run_nbval(nb)
    assert done.returncode != 0 and "41" in done.stdout
