"""Exercise 07.1's check on measurements that are wrong in the ways learners get them wrong.

measure() is judged without a tolerance (a function that sleeps 1 ms per call,
timed between two clock readings of the check's own), so these verdicts do
not depend on how loaded the machine is. With them, in the same kernel (the
`runs` fixture), 07.3's crash cases as test_exercises.py tests
the other notebooks': a NULL write and an endless loop in count_words.
"""
from __future__ import annotations

import pytest

from exercise_answers import (C_ENDLESS, C_NULL_WRITE, CRASHED, HUNG, Wrong, assert_reported,
                              with_answers_for_tasks)
from helpers import ROOT
from platforms import requires_isolation

SOLUTION = ROOT / "solutions" / "07-when-to-use-a-plugin.ipynb"
REST = ("\n\n\nin_process = measure(greet_here, 20000)\n"
        "isolated = measure(greet_there, 2000)")
TOTAL = ("def measure(fn, calls):\n    start = time.perf_counter()\n    for _ in range(calls):\n"
         "        fn()\n    return time.perf_counter() - start" + REST)
CPU_TIME = ("def measure(fn, calls):\n    start = time.process_time()\n    for _ in range(calls):\n"
            "        fn()\n    return (time.process_time() - start) / calls" + REST)
MICROSECONDS = TOTAL.replace("return time.perf_counter() - start",
                             "return (time.perf_counter() - start) / calls") + " * 1e6"


@requires_isolation
def test_a_total_cpu_time_or_microseconds_is_not_a_time_per_call(runs):
    run = runs["07.1"]
    assert run.kernel_alive, run
    total, cpu, micro = run.verdicts
    for verdict in (total, cpu):
        assert "not yet. measure(a 1 ms nap, 10 calls) gave" in verdict, run
        assert "the time of ONE call, in seconds" in verdict, run
    assert "not yet. isolated = " in micro and "is it per call, in seconds?" in micro, run
    assert "done. Well done!" in (run.then_solved or ""), run       # the right answer again


@requires_isolation
def test_a_crash_or_hang_in_count_words_is_reported(runs):
    assert_reported(runs["07.3"], crashed=CRASHED + " in `count_words`",
                    hung=HUNG + " in `count_words`")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """07.1's and 07.3's wrong answers in one kernel (exercise_answers.py)."""
    return with_answers_for_tasks(SOLUTION, [
        Wrong("07.1", [TOTAL, CPU_TIME, MICROSECONDS]),
        Wrong("07.3", [C_NULL_WRITE, C_ENDLESS], cell_with="%%minildr wc")],
        tmp_path_factory.mktemp("answers-07"))
