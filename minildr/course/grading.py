"""nbgrader, for real: `solutions/` are its source notebooks, `exercises/` its release.

nbgrader (https://nbgrader.readthedocs.io) grades a class's notebooks in four
steps: `generate_assignment` turns source notebooks into a release,
students submit, `autograde` runs the submissions, `generate_feedback`
writes each student's report. Three things of this course need telling it,
which `nbgrader_config.py` at the repository's root does with what is here:

- Answers in C. nbgrader's ClearSolutions writes a Python stub into every
  answer region, C cells (`%%minildr`, `%%writefile`) included, where the
  compiler then meets `# YOUR CODE HERE`. `ClearCourseSolutions` clears each
  cell the way `make exercises` does (exercises.exercise_cell), so a release
  is, cell for cell, what `exercises/` holds.
- Checks that are tests. A check cell (`@task("02.1", ...)`) shows a verdict
  and never raises, so that a learner's "Run All" goes on. `MarkChecks` makes
  each one an autograder test worth one point, and `GRADING_VARIABLE` in the
  kernels' environment (set by the config) makes a check that is not done
  raise, with the course's own message as the feedback.
- A deliberate crash is not a failure. nbgrader gives 0 to a test cell that
  writes to stderr; under grading a check's stderr (an isolated plugin's
  crash report, for one) goes to stdout instead (selfcheck.task).
"""
from __future__ import annotations

from typing import Any, Tuple

from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor

from .exercises import exercise_cell, task_id, tasks_of_cells
from .selfcheck import GRADING_VARIABLE

__all__ = ["ClearCourseSolutions", "MarkChecks", "GRADING_VARIABLE", "task_id"]


class ClearCourseSolutions(ClearSolutions):
    """nbgrader's ClearSolutions, clearing each cell the way `make exercises` does."""

    def preprocess(self, nb: Any, resources: dict) -> Tuple[Any, dict]:
        self._tasks = tasks_of_cells(nb.cells)      # each stub names its task
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: Any, resources: dict, index: int) -> Tuple[Any, dict]:
        name = resources.get("unique_key", "notebook")
        if cell.cell_type in ("code", "markdown"):
            tasks = getattr(self, "_tasks", [])
            exercise_cell(cell, f"{name} cell {index + 1}",
                          tasks[index] if index < len(tasks) else "")
            if cell.cell_type == "code":
                cell.metadata.pop("editable", None)
        return cell, resources


class MarkChecks(NbGraderPreprocessor):
    """Make every check cell (`@task(...)`) an autograder test of one point, locked."""

    def preprocess_cell(self, cell: Any, resources: dict, index: int) -> Tuple[Any, dict]:
        if cell.cell_type == "code":
            task = task_id(cell.source)
            if task:
                cell.metadata["nbgrader"] = {
                    "grade": True, "solution": False, "locked": True, "points": 1,
                    "grade_id": "check-" + task.replace(".", "_"), "schema_version": 3}
        return cell, resources
