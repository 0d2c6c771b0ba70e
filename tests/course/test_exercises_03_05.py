"""Exercises 03-05 run fresh, then their learners' crashing and hanging answers typed in.

One share of the fresh exercises' runs (tests/exercise_runs.py: the runs of
all ten in one file kept one xdist worker waiting ~80 s, mostly for the
checks' 5 s limit on endless loops): each exercise of the share runs once as
`make check` runs it, then, in the same kernel, its wrong answers. The
exercises' machinery, the progress command and 00-02's runs:
test_exercises.py; 06-09's: test_exercises_06_09.py.
"""
from __future__ import annotations

import pytest

from exercise_answers import (C_ENDLESS, C_NULL_WRITE, CRASHED, HUNG, PAUSE, Wrong,
                              assert_reported)
from exercise_runs import (LINUX, POSIX, assert_no_task_done, assert_null_write_then_endless_loop,
                           assert_only_todo_cells_raised, share_fixtures, share_of)
from platforms import requires_isolation, requires_linux

# This file's share of the fresh exercises (03-05; the others: tests/exercise_runs.py's
# SHARES), each run once, its wrong answers (WRONG_ANSWERS, below) typed in after it.
SHARE = share_of(__file__)


# The share's fresh exercises, then their wrong answers (exercise_runs.share_fixtures).
runs, fresh, wrong = share_fixtures(SHARE, lambda: WRONG_ANSWERS)


def test_fresh_exercises_run_with_only_their_todo_cells_failing(fresh):
    """nbval-lax over the share's exercises: exercise_runs.assert_only_todo_cells_raised."""
    assert_only_todo_cells_raised(fresh, SHARE)


def test_no_task_of_a_fresh_exercise_is_done(fresh):
    assert_no_task_done(fresh)


# ---------------------------------------------------------------------------
# A learner's crash is feedback, not a dead kernel: wrong answers typed in
# ---------------------------------------------------------------------------
# As test_exercises.py's CRASHES (00-02): after the exercise's fresh run, in its
# kernel, one task's C answer typed in wrong twice, the NULL write and an endless
# loop that waits (pause()) rather than spins.
CRASHES = {
    # notebook, task, function, (NULL write, endless loop).
    "03": ("03.1", "answer", (
        ("__attribute__((constructor)) static void on_load(void) { loaded = 1; }",
         "int *out = 0;\nout[loaded] = 41;\nreturn out[loaded];"),
        ("__attribute__((constructor)) static void on_load(void) { loaded = 1; }",
         PAUSE + "while (loaded)\n    pause();\nreturn 42;"))),
    "04": ("04.2", "describe", (
        'const char *name(void) { return "plugin-b"; }\n'
        "const char *describe(void) { char *out = 0; out[1] = 'b'; return out; }",
        'const char *name(void) { return "plugin-b"; }\n' + PAUSE +
        "const char *describe(void) { for (;;) pause(); return name(); }")),
}

# Typed in after each exercise's fresh run: the wrong answers, and where they are.
WRONG_ANSWERS = {
    **{number: [(Wrong(task, answers, cell_with="%%"), LINUX)]      # the C cell
       for number, (task, _, answers) in CRASHES.items()},
    # 05.1: a contract method; the verdict names it (the worker says command_t.run()).
    "05": [(Wrong("05.1", [C_NULL_WRITE, C_ENDLESS], cell_with="%%minildr reverse"), POSIX)],
}


@pytest.mark.parametrize("notebook", sorted(CRASHES))
@requires_isolation
@requires_linux("the exercise notebooks' checks read ELF files")
def test_a_null_write_and_an_endless_loop_are_verdicts_and_the_kernel_lives(notebook, wrong):
    task, function, _ = CRASHES[notebook]
    assert_null_write_then_endless_loop(wrong[task], function)


@requires_isolation
def test_05_a_crash_or_hang_in_run_is_reported(wrong):
    """05.1: a contract method; the verdict names it (the worker says command_t.run())."""
    assert_reported(wrong["05.1"], crashed=CRASHED + " in `run`", hung=HUNG + " in `run`")
