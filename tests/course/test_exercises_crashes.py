"""A learner's crash is feedback, not a dead kernel: a NULL write and an endless loop per notebook.

For each exercise notebook, one task's answer is typed in wrong twice, in a
real kernel (tests/exercise_answers.py): once with the classic NULL write
(`out = NULL; out[i] = ...`), once with a loop that never ends. The check
must say what happened, in which function, and the kernel must still run
the next cell.

The endless loops wait (pause() until a signal that never comes) rather
than spin: to the check's time limit a hang is a hang, and a spinning one
would burn a core for the whole 5 s. The spinning case is tested once, in
test_exercises.py (test_a_learners_crash_or_hang_is_a_verdict_that_says_what_to_look_for).
"""
from __future__ import annotations

import pytest

from exercise_answers import PAUSE, Wrong, with_answers, with_answers_for_tasks
from helpers import ROOT
from platforms import requires_isolation, requires_linux

SOLUTIONS = ROOT / "solutions"

CRASHES = {
    # notebook, task, function, (NULL write, endless loop). 00's: in test_exercise_00.py,
    # in one kernel with that notebook's other wrong answers.
    "01": ("01-shared-libraries.ipynb", "01.1", "cube", (
        "int cube(int x) { int *out = 0; out[x] = x; return x; }",
        PAUSE + "int cube(int x) { int y = x; for (;;) pause(); return y; }")),
    "02": ("02-smallest-plugin.ipynb", "02.3", "shout", (
        "char *out = NULL;\nsize_t i;\nfor (i = 0; text[i]; i++)\n"
        "    out[i] = (char)toupper((unsigned char)text[i]);\nreturn out;",
        PAUSE + "size_t i = 0;\nwhile (text[i] != 1)\n    pause();\nreturn text;")),
    "03": ("03-checks-before-loading.ipynb", "03.1", "answer", (
        ("__attribute__((constructor)) static void on_load(void) { loaded = 1; }",
         "int *out = 0;\nout[loaded] = 41;\nreturn out[loaded];"),
        ("__attribute__((constructor)) static void on_load(void) { loaded = 1; }",
         PAUSE + "while (loaded)\n    pause();\nreturn 42;"))),
    "04": ("04-the-loader-by-hand.ipynb", "04.2", "describe", (
        'const char *name(void) { return "plugin-b"; }\n'
        "const char *describe(void) { char *out = 0; out[1] = 'b'; return out; }",
        'const char *name(void) { return "plugin-b"; }\n' + PAUSE +
        "const char *describe(void) { for (;;) pause(); return name(); }")),
}


@pytest.mark.parametrize("notebook", sorted(CRASHES))
@requires_isolation
@requires_linux("the exercise notebooks' checks read ELF files")
def test_a_null_write_and_an_endless_loop_are_verdicts_and_the_kernel_lives(notebook, tmp_path,
                                                                            request):
    name, task, function, answers = CRASHES[notebook]
    if notebook == "02":                # in one kernel with 02.2's wrong answer (runs_02)
        run = request.getfixturevalue("runs_02")[task]
    else:
        run = with_answers(SOLUTIONS / name, task, answers, tmp_path, cell_with="%%")  # the C cell
    assert run.kernel_alive, run
    crashed, hung = run.verdicts
    assert f"not yet. Your plugin crashed with SIGSEGV in `{function}`: look for a pointer" \
        in crashed, run
    assert f"not yet. Your plugin did not return within 5 s in `{function}`: look for a loop" \
        in hung, run


# 02.2: a call_int_function that does not ask is_function first (two answer regions).
CARELESS = ("raw = cffi.FFI()\nraw.cdef(f\"int {name}(void);\")\n"
            "return getattr(raw.dlopen(str(Path(path).resolve())), name)()")
ASKS = ("image = elf.ElfFile(Path(path).read_bytes(), path)\n"
        "return {s.name: s.type for s in image.exported_symbols()}[name] == 'FUNC'")


@requires_linux("forks a child to call the learner's function")
def test_a_python_answer_that_calls_a_variable_anyway_is_told_so(runs_02):
    """02.2: a call_int_function that does not ask is_function first crashes in a child."""
    run = runs_02["02.2"]
    assert run.kernel_alive
    assert "called calls() anyway: the process running it died with SIGSEGV" \
        in run.verdicts[0], run
    assert "done. Well done!" in (run.then_solved or ""), run       # the right answer again


@pytest.fixture(scope="module")
def runs_02(tmp_path_factory) -> dict:
    """02's wrong answers (02.2's Python, 02.3's crashing C) in one kernel (exercise_answers.py)."""
    name, task, _, answers = CRASHES["02"]
    return with_answers_for_tasks(SOLUTIONS / name, [Wrong("02.2", [(ASKS, CARELESS)]),
                                                     Wrong(task, answers, cell_with="%%")],
                                  tmp_path_factory.mktemp("answers-02"))
