"""A learner's nil pointer and endless loop in exercise 09's Go host: feedback, not a dead kernel.

Task 09.2's answer is a Go host that runs natively; it gets the two classic
bugs typed in, the way a learner would (tests/exercise_answers.py runs the
solution notebook up to that task's check, in a real kernel). The check must
report what happened (a crash on a nil pointer, a host that did not finish)
and the kernel must still be alive. The endless loop waits instead of
spinning: the same hang to the check's time limit, without a core burnt.

That limit is the notebook's HOST_SECONDS (10 s, what a learner sees), which
the check reads when it runs the host: the test sets it to 2 s before the
answers (exercise_answers' set_up). The hosts that end take 3-11 ms each here
(a nil pointer's crash, the solution's two runs; measured at load 12-25), so
2 s still tells a crash from a hang on a loaded machine, and the hang's
verdict names the limit the check used.

05's, 06's and 08's wrong C answers (a NULL write and an endless loop each)
are typed in after those exercises' fresh runs, in the same kernels:
tests/course/test_exercises.py (the `runs` fixture).
"""
from __future__ import annotations

import pytest

from exercise_answers import assert_reported, with_answers
from helpers import ROOT
from minildr.course import golang
from platforms import requires_isolation

SOLUTIONS = ROOT / "solutions"

pytestmark = requires_isolation

GO_SUPPORTED, GO_WHY_NOT = golang.plugin_support()


@pytest.mark.skipif(not GO_SUPPORTED, reason=GO_WHY_NOT)
def test_09_a_nil_pointer_or_endless_loop_in_a_go_host_is_reported(tmp_path):
    nil_write = "\tvar version *string\n\t_ = sym\n\t*version = \"1.4.2\"\n"
    # Waits for input that never comes: a pipe whose write end it holds (a loop
    # `for {}` would spin for the whole 10 s; the deferred Close keeps w alive).
    endless = ("\t_ = sym\n\tr, w, _ := os.Pipe()\n\tdefer w.Close()\n"
               "\tfor {\n\t\tr.Read(make([]byte, 1))\n\t}\n")
    run = with_answers(SOLUTIONS / "09-go-for-real.ipynb", "09.2", [nil_write, endless],
                       tmp_path, cell_with="hosts/version/main.go", set_up="HOST_SECONDS = 2")
    assert_reported(run, crashed="your host crashed on a nil pointer",
                    hung="your host did not finish within 2 s")
