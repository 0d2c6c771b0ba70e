"""Exercises from solutions: one source of truth, the way nbgrader does it.

Each notebook in `solutions/` marks its solution code the way nbgrader marks
it, so a teacher who grades with nbgrader can use our solutions as its source
notebooks:

    ### BEGIN SOLUTION
    greet_fn = plugin.lookup("greet", "const char *(void)")
    ### END SOLUTION

and in C (inside a `%%minildr` or `%%writefile` cell), the same words in a
comment: `/* ### BEGIN SOLUTION */` ... `/* ### END SOLUTION */`.

`generate` does what nbgrader's ClearSolutions step does, plus what learners
need: the Python stub raises NotImplementedError naming the task to write
(the task of the next check cell, `@task("02.3", ...)`), never how; a C
region becomes a skeleton comment naming the task. Each cell that had a
solution is tagged `raises-exception`, so "Run All" in JupyterLab and nbval
go on past the TODOs; outputs are cleared.

Hints are progressive and folded, in the task's markdown, the same in the
solution and the exercise (a `<details>` block shows folded in JupyterLab,
nbgrader's release and the static site alike):

    <details><summary>Hint 1</summary>

    The idea, or the function to look at; never the answer's code.

    </details>

`hint_block(n, text)` writes one. The answer's code lives only in
solutions/ (tests/course/test_exercises.py checks that no line of it
appears anywhere in the exercise). The old one-line `### HINT:` comment (the
answer, said again) is kept as it is where a solution still has one.

    python -m minildr.exercises            # regenerate exercises/ from solutions/
    python -m minildr.exercises --check    # exit 1 if exercises/ is stale
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import nbformat

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
ANSWER_STUB = "YOUR ANSWER HERE"
TAG = "raises-exception"
C_MAGICS = ("%%minildr", "%%writefile")
_TASK = re.compile(r"""^@task\(\s*["']([^"']+)["']""", re.M)


class MarkerError(ValueError):
    """A solution region that is not closed, or an END without a BEGIN."""


def is_c_cell(source: str) -> bool:
    return source.lstrip().startswith(C_MAGICS)


def marker_text(line: str) -> str:
    """A line without its C comment delimiters: '/* ### END SOLUTION */' -> '### END SOLUTION'."""
    return re.sub(r"^\s*(?://|/\*)?\s*|\s*(?:\*/)?\s*$", "", line)


def task_id(source: str) -> str:
    """The task a check cell checks ("02.1"), or "" if the cell is not a check."""
    found = _TASK.search(source)
    return found.group(1) if found else ""


def tasks_of_cells(cells: List[nbformat.NotebookNode]) -> List[str]:
    """For each cell, the task it belongs to: that of the first check cell at or after it."""
    tasks, current = [""] * len(cells), ""
    for index in range(len(cells) - 1, -1, -1):
        cell = cells[index]
        found = task_id(cell.source) if cell.cell_type == "code" else ""
        current = found or current
        tasks[index] = current
    return tasks


def hint_block(number: int, text: str) -> str:
    """A folded hint, as it goes into a task's markdown (see the module docstring)."""
    return f"<details><summary>Hint {number}</summary>\n\n{text.strip()}\n\n</details>"


def _stub(indent: str, task: str, c_code: bool) -> List[str]:
    """What replaces an answer: which task to write, not how (the hints say that)."""
    what = f"task {task}" if task else "the task above"
    if c_code:
        return [f"{indent}/* YOUR CODE HERE: {what} (the task and its hints are above) */"]
    message = f"{what[0].upper()}{what[1:]}: write your code here (the task and its hints are above)"
    return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({message!r})"]


def clear_solutions(source: str, *, c_code: bool, where: str = "",
                    task: str = "") -> Tuple[str, bool]:
    """The source with each solution region replaced by its stub; and whether any was."""
    out: List[str] = []
    inside = False
    found = False
    for number, line in enumerate(source.splitlines(), 1):
        text = marker_text(line)
        if text == BEGIN:
            if inside:
                raise MarkerError(f"{where}: line {number}: BEGIN SOLUTION inside a solution")
            inside, found = True, True
            out += _stub(re.match(r"\s*", line).group(0), task, c_code)
            continue
        if text == END:
            if not inside:
                raise MarkerError(f"{where}: line {number}: END SOLUTION without a BEGIN")
            inside = False
            continue
        if not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: a BEGIN SOLUTION is never ended")
    return "\n".join(out), found


def clear_answer(source: str, where: str = "") -> Tuple[str, bool]:
    """Markdown: a written answer between the markers becomes 'YOUR ANSWER HERE'."""
    if BEGIN not in source:
        return source, False
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if len(pattern.findall(source)) != source.count(BEGIN):
        raise MarkerError(f"{where}: a BEGIN SOLUTION is never ended")
    return pattern.sub(ANSWER_STUB, source), True


def exercise_cell(cell: nbformat.NotebookNode, where: str, task: str = "") -> bool:
    """Turn one solution cell into its exercise, in place; whether it held an answer.

    Used for every cell by `exercise_from_solution`, and by nbgrader's
    generate_assignment through grading.ClearCourseSolutions, so that both
    releases are the same, cell for cell.
    """
    if cell.cell_type == "markdown":
        cell.source, found = clear_answer(cell.source, where)
        return found
    if cell.cell_type != "code":
        return False
    cell.metadata.pop("execution", None)        # timings of the run that made the solution
    cell.source, found = clear_solutions(cell.source, c_code=is_c_cell(cell.source),
                                         where=where, task=task)
    cell.outputs, cell.execution_count = [], None
    if found:
        tags = cell.metadata.setdefault("tags", [])
        if TAG not in tags:
            tags.append(TAG)
    return found


def exercise_from_solution(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The exercise notebook for one solution notebook."""
    nb = nbformat.from_dict(copy.deepcopy(solution))
    tasks = tasks_of_cells(nb.cells)
    for index, cell in enumerate(nb.cells):
        exercise_cell(cell, f"{name} cell {index + 1}", tasks[index])
    nb.metadata.pop("widgets", None)
    return nb


def generate(solutions: Path, exercises: Path, *, write: bool = True) -> List[Path]:
    """Regenerate every exercise; return those whose text differs from what is on disk."""
    changed = []
    exercises.mkdir(parents=True, exist_ok=True)
    for path in sorted(solutions.glob("[0-9]*.ipynb")):
        solution = nbformat.read(path, as_version=4)
        text = nbformat.writes(exercise_from_solution(solution, path.name)) + "\n"
        target = exercises / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            changed.append(target)
            if write:
                target.write_text(text, encoding="utf-8")
    return changed


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minildr.exercises",
                                 description="Generate exercises/ from solutions/.")
    ap.add_argument("--solutions", type=Path, default=Path("solutions"))
    ap.add_argument("--exercises", type=Path, default=Path("exercises"))
    ap.add_argument("--check", action="store_true",
                    help="change nothing; exit 1 if exercises/ is not what generate makes")
    args = ap.parse_args(argv)
    changed = generate(args.solutions, args.exercises, write=not args.check)
    for path in changed:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and changed:
        print("run `make exercises` to regenerate them from solutions/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
