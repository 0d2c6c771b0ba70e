"""A learner's NULL write and endless loop in exercise notebooks 05-09: feedback, not a dead kernel.

For each notebook, one task whose answer is code that runs natively (C in
05-08, a Go host in 09) gets the two classic bugs typed in, the way a learner
would (tests/exercise_answers.py runs the solution notebook up to that task's
check, in a real kernel). Each check must report what happened (a crash with
its signal, a call that did not return) and the kernel must still be alive.
The endless loops wait instead of spinning (see test_exercises_crashes.py):
the same hang to the check's time limit, without a core burnt for 5-10 s.
"""
from __future__ import annotations

import pytest

from exercise_answers import C_ENDLESS, C_NULL_WRITE, CRASHED, HUNG, assert_reported, with_answers
from helpers import ROOT
from minildr.course import golang
from platforms import requires_isolation

SOLUTIONS = ROOT / "solutions"

pytestmark = requires_isolation


def test_05_a_crash_or_hang_in_run_is_reported(tmp_path):
    """05.1: a contract method; the verdict names it (the worker says command_t.run())."""
    run = with_answers(SOLUTIONS / "05-interface-contracts.ipynb", "05.1",
                       [C_NULL_WRITE, C_ENDLESS], tmp_path, cell_with="%%minildr reverse")
    assert_reported(run, crashed=CRASHED + " in `run`", hung=HUNG + " in `run`")


def test_06_a_crash_or_hang_in_a_plugin_the_host_should_have_refused_is_reported(tmp_path):
    """06.2: a host that forgot trust=store runs the attacker's C; in_child keeps the kernel."""
    def answer(body: str) -> str:
        return f'''
(BUILD / "evil.c").write_text("const char *greet(void) {{ {body} return \\"pwned\\"; }}\\n")
evil_path = minildr.build([BUILD / "evil.c"], name="greet", exports=EXAMPLES / "greet" / "greet.h",
                          out_dir=BUILD / "evil")
shutil.copy(trust.signature_path(greet_path), trust.signature_path(evil_path))


def load_greeting(path):                  # no trust=store: the evil plugin runs
    with minildr.open(path) as plugin:
        return minildr.ffi.string(plugin.lookup("greet", "const char *(void)")()).decode()
'''
    run = with_answers(SOLUTIONS / "06-pitfalls.ipynb", "06.2",
                       [answer("*(volatile int *)0 = 1;"),
                        answer("extern int pause(void); for (;;) pause();")], tmp_path,
                       cell_with="def load_greeting")
    assert_reported(run, crashed="Your plugin crashed with SIGSEGV in `load_greeting`",
                    hung="Your plugin did not return within 5 s in `load_greeting`")


# 07's (07.3, count_words): in test_exercise_07.py, in one kernel with 07.1's wrong answers.


def test_08_a_crash_or_hang_in_lint_is_reported(tmp_path):
    run = with_answers(SOLUTIONS / "08-capstone-editor.ipynb", "08.1",
                       [C_NULL_WRITE, C_ENDLESS], tmp_path, cell_with="%%minildr todo")
    assert_reported(run, crashed=CRASHED + " in `lint`", hung=HUNG + " in `lint`")


GO_SUPPORTED, GO_WHY_NOT = golang.plugin_support()


@pytest.mark.skipif(not GO_SUPPORTED, reason=GO_WHY_NOT)
def test_09_a_nil_pointer_or_endless_loop_in_a_go_host_is_reported(tmp_path):
    nil_write = "\tvar version *string\n\t_ = sym\n\t*version = \"1.4.2\"\n"
    # Waits for input that never comes: a pipe whose write end it holds (a loop
    # `for {}` would spin for the whole 10 s; the deferred Close keeps w alive).
    endless = ("\t_ = sym\n\tr, w, _ := os.Pipe()\n\tdefer w.Close()\n"
               "\tfor {\n\t\tr.Read(make([]byte, 1))\n\t}\n")
    run = with_answers(SOLUTIONS / "09-go-for-real.ipynb", "09.2", [nil_write, endless],
                       tmp_path, cell_with="hosts/version/main.go")
    assert_reported(run, crashed="your host crashed on a nil pointer",
                    hung="your host did not finish within 10 s")
