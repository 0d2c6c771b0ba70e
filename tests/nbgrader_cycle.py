"""nbgrader's whole cycle on a course folder, in one process (for tests/course/test_nbgrader.py).

    python tests/nbgrader_cycle.py COURSE ASSIGNMENT SOLUTIONS GRADES.json

In COURSE (holding the course's nbgrader_config.py and source/ASSIGNMENT/),
does what a teacher and two students do: `nbgrader generate_assignment
ASSIGNMENT --force`; alice hands in the release's first notebook untouched and
forgets the others, bob types in every answer of every notebook (the
solution's code from SOLUTIONS, markers removed); `nbgrader
autograde ASSIGNMENT --create`; `nbgrader generate_feedback ASSIGNMENT`. Then
writes the gradebook's scores to GRADES.json, so that the test reads them
without importing nbgrader itself.

The three commands go through the `nbgrader` command's own application
(nbgrader.apps.NbGraderApp: the entry point runs NbGraderApp.launch_instance),
one after another in this process, reset between them the way nbgrader's own
tests run it (nbgrader.tests.run_nbgrader): importing nbgrader costs seconds
of CPU (it imports jupyter_server, nbconvert, jsonschema), and three `nbgrader`
processes paid it three times. For the same reason the gradebook's schema
version, which nbgrader asks of an `alembic heads` process when it creates
the gradebook (that process imports nbgrader again: ~5 s of CPU), is asked
of alembic's same command here (alembic_heads).
"""
from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import lazy_iri  # noqa: F401 - first: nbformat's jsonschema without its IRI grammar (lazy_iri.py)
import nbformat
import nbgrader.api as nbgrader_api
from alembic import command
from alembic.config import Config
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderApp
from nbgrader.dbutil import _temp_alembic_ini
from sqlalchemy import text

from minildr.course.exercises import BEGIN, END, HINT

STUDENTS = ("alice", "bob")


def nbgrader(*args: str) -> None:
    """`nbgrader ARGS...`, as the command runs it; SystemExit if it fails."""
    app = NbGraderApp.instance()
    try:
        NbGraderApp.launch_instance(argv=list(args))     # the `nbgrader` command's main()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise SystemExit(f"nbgrader {' '.join(args)} failed with status {stop.code}")
    finally:
        app.reset()                                      # forget it, its subcommand, its logging


def alembic_heads() -> str:
    """nbgrader.api.get_alembic_version, run here: `alembic -c INI heads` is command.heads.

    The same temporary alembic.ini (nbgrader's template, its migration scripts),
    the same command alembic's command line runs for `heads`, the first word
    of its first line taken as nbgrader takes it."""
    out = io.StringIO()
    with _temp_alembic_ini("sqlite:////tmp/gradebook.db") as alembic_ini:
        command.heads(Config(alembic_ini, stdout=out))
    return out.getvalue().split("\n")[0].split(" ")[0]


def as_typed_by_a_student(release: Path, solution: Path, target: Path) -> None:
    """The released notebook with each answer typed in: the solution's code, markers removed."""
    nb = nbformat.read(release, as_version=4)
    solved = nbformat.read(solution, as_version=4)
    assert len(nb.cells) == len(solved.cells)
    for cell, answer in zip(nb.cells, solved.cells):
        if BEGIN in answer.source:
            cell.source = "\n".join(line for line in answer.source.splitlines()
                                    if not any(m in line for m in (BEGIN, END, HINT)))
    nbformat.write(nb, target)


def hand_in(course: Path, assignment: str, solutions: Path) -> None:
    release = course / "release" / assignment
    notebooks = sorted(p.name for p in release.glob("*.ipynb"))
    for student in STUDENTS:
        submitted = course / "submitted" / student / assignment
        submitted.mkdir(parents=True)
        if student == "alice":                      # the first untouched, the others forgotten
            shutil.copy(release / notebooks[0], submitted / notebooks[0])
        else:
            for name in notebooks:                  # types in every answer
                as_typed_by_a_student(release / name, solutions / name, submitted / name)
        (submitted / "timestamp.txt").write_text("2026-12-06 12:00:00.000000 UTC")


def grades(course: Path, assignment: str) -> dict:
    """{"scores": {student: [score, max]}, "grades": {student: {notebook: {cell: [score, max]}}},
    "schema": the gradebook's alembic revision}."""
    out: dict = {"scores": {}, "grades": {}}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        out["schema"] = gb.db.execute(text("SELECT version_num FROM alembic_version")).scalar()
        for student in STUDENTS:
            submission = gb.find_submission(assignment, student)
            out["scores"][student] = [submission.score, submission.max_score]
            out["grades"][student] = {
                notebook.name: {grade.name: [grade.score, grade.max_score]
                                for grade in notebook.grades}
                for notebook in submission.notebooks}
    return out


def main(course: Path, assignment: str, solutions: Path, report: Path) -> None:
    nbgrader_api.get_alembic_version = alembic_heads
    nbgrader("generate_assignment", assignment, "--force")
    hand_in(course, assignment, solutions)
    nbgrader("autograde", assignment, "--create")
    nbgrader("generate_feedback", assignment)
    report.write_text(json.dumps(grades(course, assignment), indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
