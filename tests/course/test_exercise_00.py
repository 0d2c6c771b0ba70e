"""Exercise 00's checks on plausible wrong answers, in a real kernel (tests/exercise_answers.py).

With them, 00.4's crash cases (a NULL write, an endless loop in its C), as
test_exercises.py tests 01-06's and 08's: all of 00's wrong
answers run in one kernel (the `runs` fixture), each task's followed by the
solution's answer typed back, whose check must then say done.
"""
from __future__ import annotations

import pytest

from exercise_answers import PAUSE, Wrong, with_answers_for_tasks
from helpers import ROOT
from platforms import host, requires_isolation, requires_linux

SOLUTION = ROOT / "solutions" / "00-the-plugin-problem.ipynb"

# 00.3: "a module with a file" is not "a module loaded from a shared library".
EVERY_FILE = ('return {name: Path(module.__file__) for name, module in list(sys.modules.items())\n'
              '        if isinstance(getattr(module, "__file__", None), str)}')
# ... nor is a module whose name starts with "_" (most, not all, C modules do).
UNDERSCORE = ('return {name: Path(module.__file__) for name, module in list(sys.modules.items())\n'
              '        if name.startswith("_") and isinstance(getattr(module, "__file__", None), str)}')


@requires_linux("the check reads /proc/self/maps")
def test_python_modules_that_are_not_libraries_are_named(runs):
    run = runs["00.3"]
    assert run.kernel_alive, run
    every, underscore = run.verdicts
    assert "not yet" in every and "are in your answer, but their files are not mapped" in every
    assert "not yet" in underscore, run


# 00.2: a scan that asks every plugin for format_extension stops at greet.
NO_SKIP = ("found = {}\nfor plugin in minildr.discover(folder).loaded:\n"
           "    ext = plugin.lookup('format_extension', 'const char *(void)')\n"
           "    fn = plugin.lookup('format_show', 'const char *(const char *)')\n"
           "    found[minildr.ffi.string(ext()).decode()] = fn\n"
           "return found")
# ... and one that hands the editor C's function as it is (bytes in, a char * out).
RAW = NO_SKIP.replace("    ext =", "    if 'format_show' not in plugin.exports:\n        continue\n"
                      "    ext =")


def test_a_scan_that_stops_at_a_non_format_or_returns_c_values_is_told_so(runs):
    run = runs["00.2"]
    assert run.kernel_alive, run
    stops, raw = run.verdicts
    assert "stopped at a plugin that is not a format" in stops, run
    assert "not yet. the .shout format failed on the text 'Tea at 5?' (TypeError" in raw, run
    assert "C wants bytes in and gives a char * back" in raw, run


# 00.1: "it is greet, it loads" (the copy under another name) and "a shared library loads".
TRUSTING = "\n".join(f"prediction[{name}] = {said}" for name, said in [
    ('f"greet{S}"', "LOADED"), ('f"echo{S}"', "LOADED"), ('f"backend{S}"', "LOADED"),
    ('f"hello{S}"', "LOADED"), ('f"empty{S}"', "REFUSED"), ('"echo.txt"', "NOT_LOOKED_AT"),
    ('f"old/echo{S}"', "NOT_LOOKED_AT")])


def test_a_wrong_prediction_is_told_with_the_scans_reason(runs):
    run = runs["00.1"]
    assert run.kernel_alive, run
    verdict = run.verdicts[0]
    assert "not yet. 2 of your 7 predictions differ from the scan" in verdict, run
    assert "First, backend.so: you said 'loaded', the scan says 'refused' (NotAPlugin:" in verdict
    assert "without a minildr manifest" in verdict, run


# 00.4: format_show's C, with the classic NULL write and a loop that never ends.
NULL_WRITE = "char *out = 0;\nout[0] = text[0];"
ENDLESS = PAUSE + "while (text)\n    pause();"


@requires_isolation
@requires_linux("the exercise notebooks' checks read ELF files")
def test_a_null_write_and_an_endless_loop_are_verdicts_and_the_kernel_lives(runs):
    run = runs["00.4"]
    assert run.kernel_alive, run
    crashed, hung = run.verdicts
    assert "not yet. Your plugin crashed with SIGSEGV in `format_show`: look for a pointer" \
        in crashed, run
    assert "not yet. Your plugin did not return within 5 s in `format_show`: look for a loop" \
        in hung, run


def test_each_right_answer_typed_back_is_done_again(runs):
    """After a task's wrong answers, the solution's answer: its check says done (and the next
    task's wrong answers ran on the state a learner's right answer leaves)."""
    solved = {task: run.then_solved for task, run in runs.items() if run.then_solved is not None}
    assert len(solved) == len(runs) - 1, solved                 # every task but the last
    assert all("done. Well done!" in verdict for verdict in solved.values()), solved


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every wrong answer of this file, task by task, in one kernel (exercise_answers.py)."""
    wrongs = [Wrong("00.1", [TRUSTING]), Wrong("00.2", [NO_SKIP, RAW])]
    if host()[0] == "linux":                    # /proc/self/maps; ELF files and workers
        wrongs += [Wrong("00.3", [EVERY_FILE, UNDERSCORE]),
                   Wrong("00.4", [NULL_WRITE, ENDLESS], cell_with="%%")]
    return with_answers_for_tasks(SOLUTION, wrongs, tmp_path_factory.mktemp("answers-00"))
