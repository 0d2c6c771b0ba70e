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
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Union

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config

from minildr.course.exercises import BEGIN, END, marker_text, task_id
from minildr.course.selfcheck import MIME

ALIVE = "the kernel is alive"


@dataclass
class AnswerRun:
    verdicts: List[str]          # the check's verdict line after each answer
    kernel_alive: bool
    errors: List[str]            # the error outputs of the answer cells (a build error...)


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
    nb = nbformat.read(solution, as_version=4)
    check = _check_index(nb.cells, task)
    answer = _answer_index(nb.cells, check, cell_with)
    code = [c for c in nb.cells[:answer] if c.cell_type == "code"]
    between = [c for c in nb.cells[answer + 1:check] if c.cell_type == "code"]
    cells = list(code)
    for number, text in enumerate(answers):
        typed = copy.deepcopy(nb.cells[answer])
        typed.source = replace_region(typed.source, text)
        typed.metadata["answer"] = number
        cells += [typed, *copy.deepcopy(between), copy.deepcopy(nb.cells[check])]
    cells.append(nbformat.v4.new_code_cell(f"print({ALIVE!r})"))
    for cell in cells:
        cell.outputs = []
    run = nbformat.v4.new_notebook(metadata=nb.metadata)
    run.cells = cells
    return run


def verdict_text(cell) -> str:
    for out in cell.get("outputs", []):
        if MIME in out.get("data", {}):
            return out["data"]["text/plain"]
    return ""


def with_answers(solution: Path, task: str, answers: Sequence[Union[str, Sequence[str]]],
                 folder: Path,
                 cell_with: str = "", timeout: int = 600) -> AnswerRun:
    """Run the solution with `answers` typed into `task`, in `folder` (see the docstring)."""
    nb = answer_notebook(solution, task, answers, cell_with)
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
    verdicts, errors = [], []
    for cell in nb.cells:
        if "answer" in cell.metadata:
            errors += [f"{o.get('ename')}: {o.get('evalue')}" for o in cell.outputs
                       if o.get("output_type") == "error"]
        elif task_id(cell.source) == task:
            verdicts.append(verdict_text(cell))
    last = nb.cells[-1].outputs
    alive = any(ALIVE in o.get("text", "") for o in last)
    return AnswerRun(verdicts, alive, errors)
