"""The platform markers and the notebook rule of platforms.py, tested by pretending to be elsewhere.

Each rule runs for real: a tiny notebook in a temporary folder, run by
pytest + nbval in an inner session (tests/inner_pytest.py: in this process,
as pytester would, without a second interpreter's start-up) whose conftest
uses the same hook as tests/conftest.py, with MINILDR_TEST_PRETEND_HOST
naming another platform.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

import conftest
import platforms
from helpers import ROOT
from inner_pytest import inner_pytest

MARKERS = [platforms.requires_native_loader, platforms.requires_elf, platforms.requires_proc,
           platforms.requires_isolation]


# -- the host and its spelling ------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Linux x86_64", ("linux", "x86_64")), ("Darwin arm64", ("darwin", "aarch64")),
    ("Windows AMD64", ("windows", "x86_64")), ("Linux aarch64", ("linux", "aarch64"))])
def test_platform_names_are_read_as_uname_spells_them(text, expected):
    assert platforms.parse_platform(text) == expected


def test_pretend_host_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv(platforms.PRETEND_ENV, "Darwin arm64")
    assert platforms.host() == ("darwin", "aarch64")
    assert platforms.describe(platforms.host()) == "Darwin aarch64"
    monkeypatch.delenv(platforms.PRETEND_ENV)
    assert platforms.host() == (minildr_host().os, minildr_host().arch)


def minildr_host():
    from minildr.host import HOST
    return HOST


def test_conftest_uses_this_rule(monkeypatch):
    seen = []
    monkeypatch.setattr(platforms, "pytest_collection_modifyitems",
                        lambda config, items: seen.append(items))
    conftest.pytest_collection_modifyitems(None, [])
    assert seen == [[]]


def test_the_slow_files_are_collected_first_each_in_its_own_order(monkeypatch):
    monkeypatch.setattr(platforms, "pytest_collection_modifyitems", lambda config, items: None)

    class Item:
        def __init__(self, nodeid):
            self.nodeid = nodeid
    names = ["tests/a.py::x", "tests/course/test_nbgrader.py::one", "notebooks/01.ipynb::Cell 0",
             "tests/course/test_nbgrader.py::two", "tests/core/test_races.py::r"]
    items = [Item(name) for name in names]
    conftest.pytest_collection_modifyitems(None, items)
    slow = sorted([names[1], names[3], names[4]],                 # SLOW_FIRST's order, stable
                  key=lambda name: conftest.SLOW_FIRST.index(name.split("::")[0]))
    assert [item.nodeid for item in items] == slow + [names[0], names[2]]


@pytest.mark.skipif(platforms.host() != ("linux", "x86_64"),
                    reason="checks what the markers do on Linux x86_64, where the suite is made")
def test_no_marker_skips_anything_on_linux_x86_64():
    for marker in MARKERS + [platforms.requires_linux("x"), platforms.requires_posix("x")]:
        assert marker.args == (False,), marker.kwargs["reason"]


# -- the cell rule, in process -------------------------------------------------
LINUX_NB = {"minildr": {"outputs_recorded_on": "Linux x86_64"}}
TAGGED = {"tags": ["linux-only"], "minildr": {"why": "reads /proc/self/maps"}}


@pytest.mark.parametrize("here, cell, expected", [
    (("linux", "x86_64"), TAGGED, ""),
    (("linux", "aarch64"), TAGGED, ""),
    (("darwin", "aarch64"), {}, ""),
    (("darwin", "aarch64"), TAGGED, "linux-only cell: reads /proc/self/maps"),
    (("windows", "x86_64"), TAGGED, "linux-only cell: reads /proc/self/maps"),
    (("darwin", "aarch64"), {"tags": ["posix-only"], "minildr": {"why": "isolation"}}, ""),
    (("windows", "x86_64"), {"tags": ["posix-only"], "minildr": {"why": "isolation"}},
     "posix-only cell: isolation"),
])
def test_which_cells_are_skipped_where(here, cell, expected):
    reason = platforms.cell_skip_reason(LINUX_NB, cell, here)
    assert reason.startswith(expected) if expected else reason == ""
    if expected:
        assert platforms.describe(here) in reason


@pytest.mark.parametrize("here, expected", [
    (("linux", "x86_64"), ""), (("darwin", "aarch64"), ""),
    (("windows", "x86_64"), "notebook is POSIX only: uses isolate=True")])
def test_a_posix_only_notebook_skips_on_windows_only(here, expected):
    meta = {"minildr": {"outputs_recorded_on": "Linux x86_64", "posix_only": "uses isolate=True"}}
    reason = platforms.cell_skip_reason(meta, {}, here)
    assert reason.startswith(expected) if expected else reason == ""


# -- the notebook rule, run by nbval in an inner pytest session ------------------
def notebook(path: Path, recorded_on: str, cells, **extra) -> Path:
    """A notebook whose cells are (source, saved stdout, cell metadata)."""
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "minildr": {"outputs_recorded_on": recorded_on, **extra}})
    for n, (source, saved, meta) in enumerate(cells, start=1):
        outputs = [nbformat.v4.new_output("stream", name="stdout", text=saved)] if saved else []
        nb.cells.append(nbformat.v4.new_code_cell(source, execution_count=n, outputs=outputs,
                                                  metadata=meta))
    nbformat.write(nb, path)
    return path


CELLS = [
    ('print("printed here")', "printed where it was recorded\n", {}),      # Cell 0
    ('raise SystemExit("a linux-only cell ran")', "", TAGGED),                # Cell 1
    ("1 / 0", "", {}),                                                        # Cell 2
    ('print("posix")', "posix\n",
     {"tags": ["posix-only"], "minildr": {"why": "uses isolation"}}),        # Cell 3
]


def run_nbval(tmp_path: Path, notebooks, pretend: str | None) -> dict:
    """{(notebook, cell): (outcome, message)} of one pytest + nbval run."""
    (tmp_path / "conftest.py").write_text(
        "from platforms import pytest_collection_modifyitems  # noqa: F401\n")
    report = tmp_path / "report.xml"
    done = inner_pytest(["-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
                         f"--junitxml={report}", "-q", *map(str, notebooks)],
                        cwd=tmp_path, env={platforms.PRETEND_ENV: pretend})
    assert report.exists(), done.output
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = next(((c.tag, c.get("message", "")) for c in case
                        if c.tag in ("failure", "error", "skipped")), ("passed", ""))
        results[(case.get("classname").removesuffix(".ipynb"), case.get("name"))] = outcome
    return results


def outcomes(results: dict, nb: str) -> list:
    return [results[(nb, f"Cell {n}")][0] for n in range(len(CELLS))]


def test_on_another_platform_cells_run_outputs_are_not_compared_tagged_cells_skip(tmp_path):
    notebook(tmp_path / "nb.ipynb", "Linux x86_64", CELLS)
    notebook(tmp_path / "whole.ipynb", "Linux x86_64", CELLS[:1],
             linux_only="reads ELF files with pyelftools")
    results = run_nbval(tmp_path, ["nb.ipynb", "whole.ipynb"], "Darwin arm64")
    # Cell 0's output differs from the saved one: not compared, passes. Cell 1
    # is skipped (it would fail if it ran). Cell 2 raises: a real error fails.
    assert outcomes(results, "nb") == ["passed", "skipped", "failure", "passed"]
    assert "linux-only cell: reads /proc/self/maps" in results[("nb", "Cell 1")][1]
    assert "this host is Darwin aarch64" in results[("nb", "Cell 1")][1]
    assert results[("whole", "Cell 0")] == (
        "skipped", "notebook is Linux only: reads ELF files with pyelftools "
                   "(this host is Darwin aarch64)")


def test_on_windows_posix_only_cells_skip_too(tmp_path):
    """The tagged cells only: on Windows both skip, so nbval starts no kernel (~0.7 CPU s).
    The untagged cells would take the path they take on macOS, where they run with
    their outputs not compared (the test above: the hook's only branch on the host is
    cell_skip_reason, whose Windows answers test_which_cells_are_skipped_where checks)."""
    notebook(tmp_path / "nb.ipynb", "Linux x86_64", [CELLS[1], CELLS[3]])
    results = run_nbval(tmp_path, ["nb.ipynb"], "Windows AMD64")
    assert [results[("nb", f"Cell {n}")][0] for n in range(2)] == ["skipped", "skipped"]
    assert "linux-only cell: reads /proc/self/maps" in results[("nb", "Cell 0")][1]
    assert "posix-only cell: uses isolation" in results[("nb", "Cell 1")][1]
    assert "this host is Windows x86_64" in results[("nb", "Cell 1")][1]


def test_on_the_platform_it_was_recorded_on_nothing_changes(tmp_path):
    """Outputs compared, tagged cells run: nbval exactly as without the rule."""
    notebook(tmp_path / "nb.ipynb", platforms.describe(platforms.host()), CELLS)
    results = run_nbval(tmp_path, ["nb.ipynb"], os.environ.get(platforms.PRETEND_ENV))
    assert outcomes(results, "nb") == ["failure", "failure", "failure", "passed"]


# -- every collected notebook says where its outputs were recorded ---------------
@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb"))
                         + sorted((ROOT / "solutions").glob("*.ipynb"))
                         + sorted((ROOT / "exercises").glob("*.ipynb")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebook_names_the_platform_of_its_outputs(path):
    meta = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert meta.get("minildr", {}).get("outputs_recorded_on") == "Linux x86_64"
