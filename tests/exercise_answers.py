"""Run an exercise notebook with a learner's answer typed into one task, as a learner would.

Tests of the exercises use it to put a wrong answer (a NULL write, an endless
loop, a plausible mistake) into a solution notebook's task and see what the
task's check says, in a real kernel:

    run = with_answers(SOLUTIONS / "01-shared-libraries.ipynb", "01.1",
                       [NULL_WRITE, ENDLESS], tmp_path)
    assert "crashed with SIGSEGV in `cube`" in run.verdicts[0]
    assert "did not return within 5 s" in run.verdicts[1]
    assert run.kernel_alive

The notebook runs the solution's code cells up to the task's check cell; the
answer cell (the last cell with a solution region before that check, or the
one whose source contains `cell_with`) gets its regions replaced by each
answer in turn, each followed by the cells between it and the check (the
solution's), and the check. A last cell shows that the
kernel is still there.

A `set_up` (Wrong's, with_answers') is code run once before the task's first
answer, after the solution's cells before it: a check's time limit that the
check reads from the notebook's own variable can be made short there, for a
wrong answer that hangs until it, without changing what a learner sees.

Several tasks of one notebook share one kernel (a kernel and the solution's
cells before the first task cost 1-3 s of CPU each time):

    runs = with_answers_for_tasks(SOLUTION, [Wrong("00.2", [NO_SKIP, RAW]),
                                             Wrong("00.4", [NULL_WRITE, ENDLESS], "%%")], tmp_path)

Each task's wrong answers run as above, then a cell shows the kernel alive;
then, before the solution's cells go on to the next task, the solution's own
answer is typed back in (its cells between, its check) as a learner fixing
their code would: what the wrong answers left behind is replaced, and that
check's verdict (`then_solved`) says whether the right answer is done again.

The exercises' tests type their wrong answers in after the exercise's fresh
run, in its kernel (fresh_then_wrong: the fresh run's outputs are read as
make check reads them, the typed-in cells as above).
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

from minildr.course import selfcheck
from minildr.course.exercises import BEGIN, END, marker_text, task_id
from minildr.course.selfcheck import MIME, NotebookResult

ALIVE = "the kernel is alive"
# An endless loop that waits (pause() until a signal that never comes) rather than spins:
# to a check's time limit a hang is a hang, without a core burnt for it. <unistd.h>'s
# pause, declared where the answer needs it.
PAUSE = "extern int pause(void);\n"
# The two classic bugs as a C function's body, and what a check says of each.
C_NULL_WRITE = "*(volatile int *)0 = 1;      /* out = NULL; out[i] = ... */"
C_ENDLESS = ("extern int pause(void);      /* <unistd.h>'s */\n"
             "for (;;) pause();            /* a loop whose condition never changes */")
CRASHED = "Your plugin crashed with SIGSEGV"
HUNG = "Your plugin did not return within 5 s"


@dataclass
class AnswerRun:
    verdicts: List[str]          # the check's verdict line after each answer
    kernel_alive: bool
    errors: List[str]            # the error outputs of the answer cells (a build error...)
    then_solved: Optional[str] = None   # the check's verdict on the solution's answer typed
                                        # back after them (a task followed by another)


@dataclass
class Wrong:
    task: str
    answers: Sequence[Union[str, Sequence[str]]]
    cell_with: str = ""
    set_up: str = ""       # code run before the first answer (a check's time limit, say)


def replace_region(source: str, answer: Union[str, Sequence[str]]) -> str:
    """The cell's source with its solution regions replaced by `answer`.

    A string goes into every region; a tuple holds one answer per region, in
    order. An answer is written without indentation: it gets its region's.
    """
    answers = iter([answer] * source.count(BEGIN) if isinstance(answer, str) else answer)
    out, inside = [], False
    for line in source.splitlines():
        text = marker_text(line)
        if text == BEGIN:
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            out += [indent + typed if typed else typed
                    for typed in next(answers).rstrip("\n").splitlines()]
        elif text == END:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def _check_index(cells, task: str) -> int:
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and task_id(cell.source) == task:
            return index
    raise LookupError(f"no check cell for task {task}")


def _answer_index(cells, check: int, cell_with: str) -> int:
    for index in range(check - 1, -1, -1):
        source = cells[index].source
        if cells[index].cell_type == "code" and BEGIN in source and cell_with in source:
            return index
    raise LookupError(f"no answer cell before cell {check + 1}")


def answer_notebook(solution: Path, task: str, answers: Sequence[Union[str, Sequence[str]]],
                    cell_with: str = "") -> nbformat.NotebookNode:
    """The notebook to run: the solution up to the task, then each answer and its check."""
    return tasks_notebook(solution, [Wrong(task, answers, cell_with)])


def tasks_notebook(solution: Path, wrongs: Sequence[Wrong]) -> nbformat.NotebookNode:
    """The solution up to each task in turn, its wrong answers and checks, the answer typed back."""
    nb = nbformat.read(solution, as_version=4)
    cells: list = []
    done = 0                                          # the solution's cells already placed
    for number, wrong in enumerate(sorted(wrongs, key=lambda w: _check_index(nb.cells, w.task))):
        check = _check_index(nb.cells, wrong.task)
        answer = _answer_index(nb.cells, check, wrong.cell_with)
        if answer < done:
            raise ValueError(f"task {wrong.task}'s answer cell comes before the previous "
                             "task's check: run them one by one")
        cells += _code_cells(nb.cells[done:answer])
        if wrong.set_up:
            cells.append(nbformat.v4.new_code_cell(wrong.set_up))
        between = nb.cells[answer + 1:check]
        for which, text in enumerate(wrong.answers):
            typed = copy.deepcopy(nb.cells[answer])
            typed.source = replace_region(typed.source, text)
            typed.metadata["answer"] = which
            typed.metadata["task"] = wrong.task
            cells += [typed, *_code_cells(between), _tagged(nb.cells[check], wrong.task, "wrong")]
        cells.append(_tagged(nbformat.v4.new_code_cell(f"print({ALIVE!r})"), wrong.task, "alive"))
        if number < len(wrongs) - 1:                  # the next task builds on the right answer
            cells += [copy.deepcopy(nb.cells[answer]), *_code_cells(between),
                      _tagged(nb.cells[check], wrong.task, "solved")]
        done = check + 1
    for cell in cells:
        cell.outputs = []
    run = nbformat.v4.new_notebook(metadata=nb.metadata)
    run.cells = cells
    return run


def _code_cells(cells) -> list:
    return [copy.deepcopy(c) for c in cells if c.cell_type == "code"]


def _tagged(cell, task: str, role: str):
    cell = copy.deepcopy(cell)
    cell.metadata["run"] = [task, role]
    return cell


def assert_reported(run: "AnswerRun", crashed: str = CRASHED, hung: str = HUNG) -> None:
    """The NULL write then the endless loop: each told as such, and the kernel still there."""
    assert run.kernel_alive, run
    assert len(run.verdicts) == 2, run
    assert "not yet" in run.verdicts[0] and crashed in run.verdicts[0], run.verdicts[0]
    assert "not yet" in run.verdicts[1] and hung in run.verdicts[1], run.verdicts[1]


def verdict_text(cell) -> str:
    for out in cell.get("outputs", []):
        if MIME in out.get("data", {}):
            return out["data"]["text/plain"]
    return ""


def with_answers(solution: Path, task: str, answers: Sequence[Union[str, Sequence[str]]],
                 folder: Path,
                 cell_with: str = "", timeout: int = 600, set_up: str = "") -> AnswerRun:
    """Run the solution with `answers` typed into `task`, in `folder` (see the docstring)."""
    return with_answers_for_tasks(solution, [Wrong(task, answers, cell_with, set_up)], folder,
                                  timeout)[task]


def with_answers_for_tasks(solution: Path, wrongs: Sequence[Wrong], folder: Path,
                           timeout: int = 600) -> Dict[str, AnswerRun]:
    """Each task's wrong answers in one kernel, in the notebook's order; the runs by task."""
    nb = tasks_notebook(solution, wrongs)
    folder.mkdir(parents=True, exist_ok=True)
    sockets = tempfile.mkdtemp(prefix="minildr-answers-")
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = os.path.join(sockets, "kernel")
    try:
        NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                       config=config, resources={"metadata": {"path": str(folder)}}).execute()
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return answer_runs(nb.cells, wrongs)


def answer_runs(cells, wrongs: Sequence[Wrong]) -> Dict[str, AnswerRun]:
    """What each task's wrong answers gave, read from the executed cells of tasks_notebook."""
    runs = {w.task: AnswerRun([], False, []) for w in wrongs}
    for cell in cells:
        if "answer" in cell.metadata:
            runs[cell.metadata["task"]].errors += [
                f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs
                if o.get("output_type") == "error"]
        elif "run" in cell.metadata:
            task, role = cell.metadata["run"]
            if role == "wrong":
                runs[task].verdicts.append(verdict_text(cell))
            elif role == "alive":
                runs[task].kernel_alive = any(ALIVE in o.get("text", "") for o in cell.outputs)
            else:
                runs[task].then_solved = verdict_text(cell)
    return runs


# Marks the cells fresh_then_wrong types in after the exercise's own.
TYPED_IN = "typed_in_after_the_fresh_run"


def fresh_then_wrong(exercise: Path, solution: Path, wrongs: Sequence[Wrong], folder: Path,
                     os_name: str) -> "Tuple[NotebookResult, Dict[str, AnswerRun]]":
    """The fresh exercise as make check runs it, then wrong answers typed in, in the same kernel.

    What a learner does: Run All on the untouched exercise (every TODO cell
    raises, every check says not yet), then, from the top, the answers typed
    in (the solution's cells) up to a task, that task's answer typed in wrong
    and its check run again (tasks_notebook's cells, after the exercise's).
    One kernel and one start of the notebook's imports instead of two.

    The whole runs through selfcheck.run_notebook (make check's own function)
    in `folder`, with nothing beside the notebook (the exercises find the
    course's files themselves: course_files). The exercise's part is returned
    as run_notebook returns a notebook (its verdicts, whether the kernel lived
    through it, its cells left out), the typed-in part as answer_runs reads it.
    """
    nb = nbformat.read(exercise, as_version=4)
    typed = tasks_notebook(solution, wrongs).cells if wrongs else []
    for cell in typed:
        cell.id = f"typed-in-{len(nb.cells)}"      # unique: the solution's ids are the exercise's
        cell.metadata[TYPED_IN] = True
        if cell.cell_type == "code":
            cell.execution_count = None                # the solution's count: not run yet
        nb.cells.append(cell)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / exercise.name)
    ran = selfcheck.run_notebook(folder / exercise.name, os_name=os_name)
    if ran.skipped:
        return NotebookResult(exercise, [], skipped=ran.skipped), {}
    fresh = [c for c in ran.notebook.cells if not c.metadata.get(TYPED_IN)]
    after = [c for c in ran.notebook.cells if c.metadata.get(TYPED_IN)]
    # The kernel died (or timed out) in the exercise's part if the typed-in part never began.
    reached = any(c.get("execution_count") for c in after if c.cell_type == "code")
    out = nbformat.v4.new_notebook(metadata=ran.notebook.metadata)
    out.cells = fresh
    left_out = ran.cells_left_out - (len(typed) - len(after))
    result = NotebookResult(exercise, selfcheck.verdicts_in(out),
                            "" if reached else ran.problem, ran.seconds,
                            cells_left_out=left_out, notebook=out)
    return result, answer_runs(after, wrongs)
