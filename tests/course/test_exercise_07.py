"""Exercise 07.1's check on measurements that are wrong in the ways learners get them wrong.

measure() is judged without a tolerance (a function that sleeps 1 ms per call,
timed between two clock readings of the check's own), so these verdicts do
not depend on how loaded the machine is.
"""
from __future__ import annotations

from exercise_answers import with_answers
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
def test_a_total_cpu_time_or_microseconds_is_not_a_time_per_call(tmp_path):
    run = with_answers(SOLUTION, "07.1", [TOTAL, CPU_TIME, MICROSECONDS], tmp_path)
    assert run.kernel_alive, run
    total, cpu, micro = run.verdicts
    for verdict in (total, cpu):
        assert "not yet. measure(a 1 ms nap, 10 calls) gave" in verdict, run
        assert "the time of ONE call, in seconds" in verdict, run
    assert "not yet. isolated = " in micro and "is it per call, in seconds?" in micro, run
