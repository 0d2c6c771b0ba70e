"""nbgrader's real cycle on the course: generate_assignment, two submissions, autograde, feedback.

A teacher who grades with nbgrader uses `solutions/` as source notebooks and
the repository's `nbgrader_config.py`. This runs what they would run, with
nbgrader itself (its three commands in one process: tests/nbgrader_cycle.py),
on two notebooks: 02 (a `%%minildr` C answer cell, a Python
cell with two answer regions, checks that call the learner's C in a worker)
and 06 (a `%%writefile` C answer, a private key made in build/, and 06.3,
whose correct answer makes a plugin abort on purpose: its worker writes to
stderr, and nbgrader gives no points to a test that writes to stderr). The
release is what `exercises/` holds, cell for cell; an untouched notebook
scores 0 (alice hands in 02 as released), and so does a notebook not handed
in (she forgets 06), its points still counted; the solutions, typed in as a
student would (markers removed), score full marks, 06.3 included; the
feedback quotes the course's own check messages; no build output or private
key lands in the release. Nothing is put
beside the assignment: the notebooks find the course's examples themselves
(course_files), from nbgrader's source/, release/, submitted/ and autograded/
folders alike. (03, graded here before, cost as much to run and added no case
that 02 and 06 lack: its C cell's two regions are cleared by the same
exercise_cell as 02's two Python regions. Alice's untouched 06, graded here
before, cost a kernel and 06's cells (~1.5 s of CPU) and could fail only if a
check of untouched 06 said done, which test_exercises.py's
test_no_task_of_a_fresh_exercise_is_done rules out for every exercise: graded,
a check scores only if its verdict is done, selfcheck.task raising otherwise,
test_under_grading_a_check_not_done_raises_with_its_verdict.)
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import ROOT, TESTS
from platforms import requires_isolation

# find_spec, not importorskip: importing nbgrader costs ~5 s of CPU, which every
# pytest process collecting this file paid; the cycle runs in a process of its own.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("nbgrader") is None,
                                reason="nbgrader is not installed")

NOTEBOOKS = ["02-smallest-plugin.ipynb", "06-pitfalls.ipynb"]
ASSIGNMENT = "ps"
BIN = Path(sys.executable).parent          # nbgrader runs `alembic` from PATH


@pytest.fixture(scope="module")
def cycle(tmp_path_factory) -> "tuple[Path, dict]":
    """The course folder after nbgrader's cycle (tests/nbgrader_cycle.py), and its gradebook."""
    course = tmp_path_factory.mktemp("nbgrader-course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "solutions" / name, source / name)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MINILDR_GRADING", None)
    report = course / "grades.json"
    done = subprocess.run([sys.executable, str(TESTS / "nbgrader_cycle.py"), str(course),
                           ASSIGNMENT, str(ROOT / "solutions"), str(report)],
                          cwd=course, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return course, json.loads(report.read_text())


@pytest.fixture
def graded(cycle) -> Path:
    return cycle[0]


@requires_isolation
def test_the_untouched_release_scores_zero_and_the_solutions_full_marks(cycle):
    got = cycle[1]["scores"]
    alice, bob = got["alice"], got["bob"]
    checks = sum(len(re.findall(r"^@task\(", "\n".join(c.source for c in nbformat.read(
        ROOT / "solutions" / n, as_version=4).cells if c.cell_type == "code"), re.M))
        for n in NOTEBOOKS)
    assert alice[1] == bob[1] == checks > 0, got
    assert alice[0] == 0, got
    assert (cycle[0] / "autograded" / "alice" / ASSIGNMENT / NOTEBOOKS[0]).exists()  # not missing
    assert bob[0] == bob[1], got
    # Alice's forgotten 06: in the gradebook, each of its checks 0 of 1.
    forgotten = cycle[1]["grades"]["alice"][NOTEBOOKS[1][:-len(".ipynb")]]
    assert forgotten and all(score == [0, 1] for score in forgotten.values()), forgotten


@requires_isolation
def test_the_release_is_what_exercises_holds(graded):
    for name in NOTEBOOKS:
        released = nbformat.read(graded / "release" / ASSIGNMENT / name, as_version=4)
        exercise = nbformat.read(ROOT / "exercises" / name, as_version=4)
        assert [c.source for c in released.cells] == [c.source for c in exercise.cells], name
        c_cells = [c.source for c in released.cells if c.source.lstrip().startswith("%%minildr")]
        assert all("raise NotImplementedError" not in s for s in c_cells), name


@requires_isolation
def test_no_build_output_or_key_lands_in_the_release(graded):
    release = graded / "release" / ASSIGNMENT
    leaked = [p.relative_to(release) for p in release.rglob("*")
              if p.name == "build" or p.suffix in (".so", ".key", ".o", ".dll", ".dylib")]
    assert not leaked


@requires_isolation
def test_the_feedback_shows_the_courses_own_messages(graded):
    page = (graded / "feedback" / "alice" / ASSIGNMENT / NOTEBOOKS[0].replace(".ipynb", ".html"))
    text = page.read_text(encoding="utf-8")
    assert "Task 02.1" in text and "not yet" in text
    assert "still a TODO: Task 02.2: write your code here" in text
    bob = (graded / "feedback" / "bob" / ASSIGNMENT / NOTEBOOKS[1].replace(".ipynb", ".html"))
    assert "Task 06.3 (a crash the host survives): done" in bob.read_text(encoding="utf-8")


@requires_isolation
def test_a_correct_answer_that_crashes_a_plugin_on_purpose_gets_its_point(cycle):
    """06.3: half(3) aborts in the worker, which says why on stderr. Graded, that text is
    in the check's output as stdout, the cell has no stderr, and the test scores 1 of 1."""
    graded, gradebook = cycle
    nb = nbformat.read(graded / "autograded" / "bob" / ASSIGNMENT / NOTEBOOKS[1], as_version=4)
    check = next(c for c in nb.cells if c.source.startswith('@task("06.3"'))
    streams = {o.get("name"): o.get("text", "") for o in check.outputs if o.output_type == "stream"}
    assert "stderr" not in streams, check.outputs
    assert "fragile: 3 is odd, giving up" in streams.get("stdout", ""), check.outputs
    grade = gradebook["grades"]["bob"][NOTEBOOKS[1][:-len(".ipynb")]]["check-06_3"]
    assert grade == [1, 1], gradebook


@requires_isolation
def test_the_gradebook_records_its_schema_revision(cycle):
    """nbgrader writes alembic's head revision into a new gradebook (asked of alembic in the
    cycle's process: tests/nbgrader_cycle.py alembic_heads)."""
    assert re.fullmatch(r"[0-9a-f]{12}", cycle[1]["schema"] or ""), cycle[1].get("schema")


@requires_isolation
def test_nothing_is_put_beside_the_assignment(graded):
    """The notebooks found the examples without ../examples (course_files)."""
    assert not list(graded.rglob("examples"))
