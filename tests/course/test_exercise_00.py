"""Exercise 00's checks on plausible wrong answers, in a real kernel (tests/exercise_answers.py).

The crash cases (a NULL write, an endless loop in 00.4's C) are in
test_exercises_crashes.py with every other notebook's.
"""
from __future__ import annotations

from exercise_answers import with_answers
from helpers import ROOT
from platforms import requires_linux

SOLUTION = ROOT / "solutions" / "00-the-plugin-problem.ipynb"

# 00.3: "a module with a file" is not "a module loaded from a shared library".
EVERY_FILE = ('return {name: Path(module.__file__) for name, module in list(sys.modules.items())\n'
              '        if isinstance(getattr(module, "__file__", None), str)}')
# ... nor is a module whose name starts with "_" (most, not all, C modules do).
UNDERSCORE = ('return {name: Path(module.__file__) for name, module in list(sys.modules.items())\n'
              '        if name.startswith("_") and isinstance(getattr(module, "__file__", None), str)}')


@requires_linux("the check reads /proc/self/maps")
def test_python_modules_that_are_not_libraries_are_named(tmp_path):
    run = with_answers(SOLUTION, "00.3", [EVERY_FILE, UNDERSCORE], tmp_path)
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


def test_a_scan_that_stops_at_a_non_format_or_returns_c_values_is_told_so(tmp_path):
    run = with_answers(SOLUTION, "00.2", [NO_SKIP, RAW], tmp_path)
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


def test_a_wrong_prediction_is_told_with_the_scans_reason(tmp_path):
    run = with_answers(SOLUTION, "00.1", [TRUSTING], tmp_path)
    assert run.kernel_alive, run
    verdict = run.verdicts[0]
    assert "not yet. 2 of your 7 predictions differ from the scan" in verdict, run
    assert "First, backend.so: you said 'loaded', the scan says 'refused' (NotAPlugin:" in verdict
    assert "without a minildr manifest" in verdict, run
