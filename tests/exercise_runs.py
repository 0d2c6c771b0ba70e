"""The fresh exercises' runs in shares, one per test file, so that xdist runs them at once.

Each exercise runs once as `make check` runs it, then its wrong answers are
typed into the same kernel (exercise_answers.fresh_then_wrong). Nine of those
answers are endless loops that the exercise's check waits its 5 s for (the
limit a learner sees, in its message): run one after another in one test
file, the ten runs kept one xdist worker waiting for ~80 s, the longest
stretch of `make test`. So each test file of SHARES runs its share of the
exercises in its own module fixture (share_runs) and reads only those runs;
xdist gives each file to a worker, and the waits overlap. Within a share the
exercises run at once too, each from a thread of the fixture: each in a
kernel of its own (a process, in a folder of its own), which runs its cells
one at a time as a learner's does, so each check still waits its 5 s; the
thread only relays the kernel's messages, and a hang's wait is a pause(),
so the kernels' waits overlap without taking CPU from each other.

Together the shares still cover every exercise, each once
(tests/course/test_exercises.py: test_every_exercise_runs_fresh_in_one_share),
and every file checks its share's fresh runs by the same rules
(assert_only_todo_cells_raised, assert_no_task_done).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Set, Tuple

import pytest
from nbval import plugin as nbval_plugin

from exercise_answers import AnswerRun, Wrong, fresh_then_wrong
from helpers import ROOT
from minildr.course.selfcheck import DONE, NotebookResult
from platforms import host

SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"

# Which test file (under tests/course/) runs which exercises fresh, balanced by their
# measured wall time in `make test` one after another (each ~6-9 s but 09's ~1.5 s;
# the first file has ~8 s of other tests besides): about 25 s each, ~13 s with the
# share's runs at once. tests/conftest.py's SLOW_FIRST starts them first.
SHARES: Dict[str, Tuple[str, ...]] = {
    "test_exercises.py": ("00", "01", "02"),
    "test_exercises_03_05.py": ("03", "04", "05"),
    "test_exercises_06_09.py": ("06", "07", "08", "09"),
}

# Runs of a share at once (all of them): a share's kernels start together, ~1-2 CPU s
# each, then mostly wait (a check's 5 s, a compiler).
CONCURRENT = max(len(share) for share in SHARES.values())

LINUX, POSIX = {"linux"}, {"linux", "darwin"}     # where the answers' tests run (their markers)
EVERYWHERE = POSIX | {"windows"}

# The wrong answers typed in after an exercise's fresh run, by exercise number: each
# with the platforms its test runs on.
WrongAnswers = Mapping[str, Sequence[Tuple[Wrong, Set[str]]]]


def share_of(test_file: str) -> Tuple[str, ...]:
    """The exercise numbers the test file at `test_file` (its __file__) runs fresh."""
    return SHARES[Path(test_file).name]


def exercises_in(share: Iterable[str]) -> List[Path]:
    """The share's exercise notebooks, in the course's order."""
    numbers = set(share)
    return [p for p in sorted(EXERCISES.glob("*.ipynb")) if p.name[:2] in numbers]


def share_runs(share: Sequence[str], wrong_answers: WrongAnswers,
               tmp_path_factory: pytest.TempPathFactory
               ) -> "Dict[str, Tuple[NotebookResult, Dict[str, AnswerRun]]]":
    """Each exercise of the share (TODOs untouched), run once as make check runs it, then, in
    the same kernel, its wrong answers typed in (exercise_answers.fresh_then_wrong).

    selfcheck.run_notebook: a new kernel, errors allowed, what cannot run on
    this platform (or the one MINILDR_TEST_PRETEND_HOST names: platforms.host)
    left out, as nbval's `-p platforms` leaves it out; in a folder of its own
    with nothing beside the notebook (make check runs it in exercises/: the
    exercises find the course's files themselves, course_files). Several
    tests read the one run: nbval-lax's rule on the exercise's outputs, the
    progress table made from them, and what each wrong answer's check said
    (each exercise's kernel and imports cost ~1-2 s of CPU; a kernel of its
    own for the wrong answers cost as much again and tested no more: what
    they test is the check's verdict and a kernel that lives on, not a fresh
    one). Wrong answers for an exercise outside the share are an error: they
    would never be typed in, and their tests would read nothing. The share's
    exercises run at once (CONCURRENT; the module's docstring says why), each
    in its own kernel and folder.
    """
    outside = sorted(set(wrong_answers) - set(share))
    if outside:
        raise ValueError(f"wrong answers for exercises {outside}, not in the share {share}")
    os_name = host()[0]
    paths = exercises_in(share)
    folders = {path: tmp_path_factory.mktemp(f"exercise-{path.name[:2]}") for path in paths}

    def run(path: Path) -> "Tuple[NotebookResult, Dict[str, AnswerRun]]":
        wrongs = [w for w, on in wrong_answers.get(path.name[:2], []) if os_name in on]
        return fresh_then_wrong(path, SOLUTIONS / path.name, wrongs, folders[path], os_name)

    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        return dict(zip((path.name for path in paths), pool.map(run, paths)))


def fresh_of(runs) -> Dict[str, NotebookResult]:
    """Each exercise's own run (its cells, before any answer was typed in)."""
    return {name: result for name, (result, _) in runs.items()}


def wrong_of(runs) -> Dict[str, AnswerRun]:
    """What each wrong answer typed in after the fresh runs gave, by task."""
    return {task: run for _, answers in runs.values() for task, run in answers.items()}


def share_fixtures(share: Sequence[str], wrong_answers: "Callable[[], WrongAnswers]"):
    """A test file's three module fixtures over its share, for `runs, fresh, wrong = ...`:
    `runs` (share_runs: the share's fresh exercises, then their wrong answers), `fresh`
    (fresh_of) and `wrong` (wrong_of). `wrong_answers` gives the file's WRONG_ANSWERS,
    asked when the run starts (the files define them below their fixtures)."""
    @pytest.fixture(scope="module")
    def runs(tmp_path_factory) -> "dict[str, tuple]":
        return share_runs(share, wrong_answers(), tmp_path_factory)

    @pytest.fixture(scope="module")
    def fresh(runs) -> Dict[str, NotebookResult]:
        return fresh_of(runs)

    @pytest.fixture(scope="module")
    def wrong(runs) -> Dict[str, AnswerRun]:
        return wrong_of(runs)

    return runs, fresh, wrong


def may_raise(cell) -> bool:
    """nbval's rule: a cell may raise if tagged raises-exception (or # NBVAL_RAISES_EXCEPTION)."""
    found = dict(nbval_plugin.find_metadata_tags(cell.metadata))
    found.update(nbval_plugin.find_comment_markers(cell.source))
    return bool(found.get("check_exception"))


def assert_only_todo_cells_raised(fresh: Mapping[str, NotebookResult],
                                  share: Sequence[str]) -> None:
    """nbval-lax over the share's exercises (outputs not compared): TODO cells may raise, no other.

    The rule nbval applies (its own find_metadata_tags / find_comment_markers),
    on the outputs of the one run of each exercise (fresh): the kernel lived to
    the end, and every cell that raised may raise."""
    assert share and sorted(fresh) == [p.name for p in exercises_in(share)], (share, sorted(fresh))
    raised = 0
    for name, result in fresh.items():
        assert not result.problem, f"{name}: {result.problem}"
        for number, cell in enumerate(result.notebook.cells if result.notebook else []):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                raised += 1
                assert may_raise(cell), (f"{name} cell {number} raised "
                                         f"{errors[0].ename}: {errors[0].evalue}\n{cell.source}")
    assert raised, "no TODO cell raised: were the exercises run?"


def assert_no_task_done(fresh: Mapping[str, NotebookResult]) -> None:
    verdicts = {name: [v.status for v in result.verdicts] for name, result in fresh.items()
                if not result.skipped}
    assert any(verdicts.values()), verdicts     # (on another platform some lose every check)
    assert all(DONE not in v for v in verdicts.values()), verdicts


def assert_null_write_then_endless_loop(run: AnswerRun, function: str) -> None:
    """A C answer typed in wrong twice, the NULL write then the endless loop, in `function`:
    each told as such, with the function's name and what to look for; the kernel lives."""
    assert run.kernel_alive, run
    crashed, hung = run.verdicts
    assert f"not yet. Your plugin crashed with SIGSEGV in `{function}`: look for a pointer" \
        in crashed, run
    assert f"not yet. Your plugin did not return within 5 s in `{function}`: look for a loop" \
        in hung, run
