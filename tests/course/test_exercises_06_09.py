"""Exercises 06-09 run fresh, then their learners' wrong answers (06-08) typed in.

One share of the fresh exercises' runs (tests/exercise_runs.py: the runs of
all ten in one file kept one xdist worker waiting ~80 s, mostly for the
checks' 5 s limit on endless loops): each exercise of the share runs once as
`make check` runs it, then, in the same kernel, its wrong answers. The
exercises' machinery, the progress command and 00-02's runs:
test_exercises.py; 03-05's: test_exercises_03_05.py; 09's wrong answers (a
Go host): test_exercises_crashes_09.py.
"""
from __future__ import annotations

from exercise_answers import (C_ENDLESS, C_NULL_WRITE, CRASHED, HUNG, Wrong,
                              assert_reported)
from exercise_runs import (POSIX, assert_no_task_done, assert_only_todo_cells_raised,
                           share_fixtures, share_of)
from platforms import requires_isolation

# This file's share of the fresh exercises (06-09; the others: tests/exercise_runs.py's
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
# After the exercise's fresh run, in its kernel, an answer typed in wrong twice: a
# NULL write and an endless loop that waits (pause()) rather than spins. 07's
# other wrong answers: further down.
def load_greeting_calling(body: str) -> str:
    """06.2: a host that forgot trust=store runs the attacker's C (`body`); in_child keeps
    the kernel."""
    return f'''
(BUILD / "evil.c").write_text("const char *greet(void) {{ {body} return \\"pwned\\"; }}\\n")
evil_path = minildr.build([BUILD / "evil.c"], name="greet", exports=EXAMPLES / "greet" / "greet.h",
                          out_dir=BUILD / "evil")
shutil.copy(trust.signature_path(greet_path), trust.signature_path(evil_path))


def load_greeting(path):                  # no trust=store: the evil plugin runs
    with minildr.open(path) as plugin:
        return minildr.ffi.string(plugin.lookup("greet", "const char *(void)")()).decode()
'''


@requires_isolation
def test_06_a_crash_or_hang_in_a_plugin_the_host_should_have_refused_is_reported(wrong):
    """06.2: a host that forgot trust=store runs the attacker's C; in_child keeps the kernel."""
    assert_reported(wrong["06.2"], crashed="Your plugin crashed with SIGSEGV in `load_greeting`",
                    hung="Your plugin did not return within 5 s in `load_greeting`")



@requires_isolation
def test_08_a_crash_or_hang_in_lint_is_reported(wrong):
    assert_reported(wrong["08.1"], crashed=CRASHED + " in `lint`", hung=HUNG + " in `lint`")



# ---------------------------------------------------------------------------
# Exercise 07.1's check on measurements wrong in the ways learners get them wrong
# ---------------------------------------------------------------------------
# measure() is judged without a tolerance (a function that sleeps 1 ms per call,
# timed between two clock readings of the check's own), so these verdicts do not
# depend on how loaded the machine is. With them, in the same kernel, 07.3's crash
# cases: a NULL write and an endless loop in count_words.
REST = ("\n\n\nin_process = measure(greet_here, 20000)\n"
        "isolated = measure(greet_there, 2000)")
TOTAL = ("def measure(fn, calls):\n    start = time.perf_counter()\n    for _ in range(calls):\n"
         "        fn()\n    return time.perf_counter() - start" + REST)
CPU_TIME = ("def measure(fn, calls):\n    start = time.process_time()\n    for _ in range(calls):\n"
            "        fn()\n    return (time.process_time() - start) / calls" + REST)
MICROSECONDS = TOTAL.replace("return time.perf_counter() - start",
                             "return (time.perf_counter() - start) / calls") + " * 1e6"


@requires_isolation
def test_a_total_cpu_time_or_microseconds_is_not_a_time_per_call(wrong):
    run = wrong["07.1"]
    assert run.kernel_alive, run
    total, cpu, micro = run.verdicts
    for verdict in (total, cpu):
        assert "not yet. measure(a 1 ms nap, 10 calls) gave" in verdict, run
        assert "the time of ONE call, in seconds" in verdict, run
    assert "not yet. isolated = " in micro and "is it per call, in seconds?" in micro, run
    assert "done. Well done!" in (run.then_solved or ""), run       # the right answer again


@requires_isolation
def test_a_crash_or_hang_in_count_words_is_reported(wrong):
    assert_reported(wrong["07.3"], crashed=CRASHED + " in `count_words`",
                    hung=HUNG + " in `count_words`")


# Typed in after each exercise's fresh run: the wrong answers, and where they are.
WRONG_ANSWERS = {
    "06": [(Wrong("06.2", [load_greeting_calling("*(volatile int *)0 = 1;"),
                           load_greeting_calling("extern int pause(void); for (;;) pause();")],
                  cell_with="def load_greeting"), POSIX)],
    "07": [(Wrong("07.1", [TOTAL, CPU_TIME, MICROSECONDS]), POSIX),
           (Wrong("07.3", [C_NULL_WRITE, C_ENDLESS], cell_with="%%minildr wc"), POSIX)],
    "08": [(Wrong("08.1", [C_NULL_WRITE, C_ENDLESS], cell_with="%%minildr todo"), POSIX)],
}
