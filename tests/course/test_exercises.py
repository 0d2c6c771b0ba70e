"""Exercises: generated from solutions, self-checking, the progress command, and wrong answers.

The solution notebooks themselves are run by nbval in `make test` (with the
course notebooks); these tests check the machinery around them, run each
fresh exercise once as `make check` does, and type a learner's crashing and
hanging answers in after it, in the same kernel: here exercises 00-02's, the
others' in test_exercises_03_05.py and test_exercises_06_09.py (one share of
the runs per file, so that xdist runs them at once: tests/exercise_runs.py).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

from minildr.course import exercises, selfcheck
from minildr.course.selfcheck import DONE, ERROR, NOT_YET, NotDone, judge
from exercise_answers import PAUSE, Wrong
from exercise_runs import (EVERYWHERE, LINUX, SHARES, assert_no_task_done,
                           assert_null_write_then_endless_loop, assert_only_todo_cells_raised,
                           share_fixtures, share_of)
from helpers import ROOT, python_m, write_plugin
from platforms import host, requires_isolation, requires_linux

SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------
def test_a_python_stub_names_its_task_and_never_the_hint():
    source = ("x = 1\n### HINT: add one to x\n### BEGIN SOLUTION\ny = x + 1\n"
              "### END SOLUTION\nprint(y)")
    cleared, found = exercises.clear_solutions(source, c_code=False, task="02.1")
    assert found
    assert cleared == ("x = 1\n### HINT: add one to x\n# YOUR CODE HERE\n"
                       "raise NotImplementedError('Task 02.1: write your code here (the task "
                       "and its hints are above)')\nprint(y)")
    with pytest.raises(NotImplementedError, match="Task 02.1") as err:
        exec(cleared, {})
    assert "add one" not in str(err.value)


def test_each_answer_cell_belongs_to_the_task_of_the_next_check():
    cells = [nbformat.v4.new_markdown_cell("## Task 1"), nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_code_cell('@task("01.1", "one")\ndef _(): pass'),
             nbformat.v4.new_code_cell("y = 2"),
             nbformat.v4.new_code_cell("@task('01.2', 'two')\ndef _(): pass"),
             nbformat.v4.new_markdown_cell("Key points")]
    assert exercises.tasks_of_cells(cells) == ["01.1", "01.1", "01.1", "01.2", "01.2", ""]


def test_a_hint_is_folded():
    block = exercises.hint_block(2, "Look at `elf.ElfFile`.")
    assert block.startswith("<details><summary>Hint 2</summary>\n\n")
    assert block.endswith("\n\n</details>") and "elf.ElfFile" in block


def test_an_indented_region_keeps_its_indentation():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    cleared, _ = exercises.clear_solutions(source, c_code=False)
    namespace: dict = {}
    exec(cleared, namespace)
    with pytest.raises(NotImplementedError):
        namespace["f"]()


def test_a_c_solution_becomes_a_skeleton_comment():
    source = ("%%minildr p\nint f(int a) {\n"
              "    /* ### BEGIN SOLUTION */\n    return 2 * a;\n    /* ### END SOLUTION */\n}")
    cleared, found = exercises.clear_solutions(source, c_code=True, task="01.3")
    assert found and "2 * a" not in cleared
    assert "    /* YOUR CODE HERE: task 01.3 (the task and its hints are above) */\n}" in cleared
    assert exercises.is_c_cell(source) and not exercises.is_c_cell("print(1)")


@pytest.mark.parametrize("source, problem", [
    ("### BEGIN SOLUTION\nx = 1\n", "never ended"),
    ("x = 1\n### END SOLUTION\n", "without a BEGIN"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside a solution"),
])
def test_broken_markers_are_reported_with_the_cell(source, problem):
    with pytest.raises(exercises.MarkerError, match=problem) as err:
        exercises.clear_solutions(source, c_code=False, where="x.ipynb cell 3")
    assert "x.ipynb cell 3" in str(err.value)


def test_a_written_answer_is_cleared():
    text, found = exercises.clear_answer("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION\n")
    assert found and text == "Why?\n\nYOUR ANSWER HERE\n"


def test_exercise_cells_are_tagged_and_outputs_cleared():
    solution = nbformat.read(SOLUTIONS / "02-smallest-plugin.ipynb", as_version=4)
    exercise = exercises.exercise_from_solution(solution, "02")
    for before, after in zip(solution.cells, exercise.cells):
        assert before.id == after.id
        if after.cell_type != "code":
            continue
        assert after.outputs == [] and after.execution_count is None
        marked = exercises.BEGIN in before.source
        assert (exercises.TAG in after.metadata.get("tags", [])) == marked
        assert exercises.BEGIN not in after.source


def test_committed_exercises_are_what_the_generator_makes(monkeypatch, capsys):
    stale = exercises.generate(SOLUTIONS, EXERCISES, write=False)
    assert not stale, f"regenerate with `make exercises`: {[p.name for p in stale]}"
    assert sorted(p.name for p in EXERCISES.glob("*.ipynb")) == \
        sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))
    # The command's main says the same from the repository (its default folders), with its
    # exit status (as a process, with an exit status of 1: the next test).
    monkeypatch.chdir(ROOT)
    assert exercises.main(["--check"]) == 0, capsys.readouterr()


def test_the_check_command_notices_a_stale_exercise(tmp_path):
    out = tmp_path / "exercises"
    assert len(exercises.generate(SOLUTIONS, out)) == len(list(SOLUTIONS.glob("*.ipynb")))
    (out / "02-smallest-plugin.ipynb").write_text("{}")
    done = subprocess.run(python_m("minildr.course.exercises", "--check",
                                   "--solutions", SOLUTIONS, "--exercises", out),
                          capture_output=True, text=True)
    assert done.returncode == 1 and "02-smallest-plugin.ipynb" in done.stdout


def test_solution_cells_carry_nbgrader_metadata():
    """A teacher can use solutions/ as nbgrader source notebooks."""
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            marked = exercises.BEGIN in cell.source
            is_solution = cell.metadata.get("nbgrader", {}).get("solution", False)
            assert marked == is_solution, f"{path.name} cell {cell.id}"


def test_every_course_notebook_with_an_exercise_exists_and_each_has_tasks():
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        text = path.read_text()
        assert (ROOT / "notebooks" / path.name).exists(), f"{path.name}: no course notebook"
        tasks = text.count("@task(")
        if path.name[:2] in HINTED:
            # At least three tasks, one of them a stretch for fast learners.
            assert 3 <= tasks <= 6, f"{path.name}: 3-6 tasks"
            assert "Stretch:" in text, f"{path.name}: no stretch task"
        else:
            # Not yet rewritten (issue 18): 2-4 tasks each; the Go appendix (09) has one.
            low = 1 if path.name.startswith("09") else 2
            assert low <= tasks <= 4, f"{path.name}: {low}-4 tasks"


def test_every_course_notebook_has_an_exercise():
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        assert (SOLUTIONS / notebook.name).exists(), f"no exercise for {notebook.name}"


# Notebooks whose tasks have folded, progressive hints (the exb helper adds 05-09
# as it converts them; until then their old one-line hints give the answer away).
HINTED = {"00", "01", "02", "03", "04", "05", "06", "07", "08", "09"}
SIGNIFICANT = 12            # a solution line this long (spaces squeezed) is code, not a brace


def squeezed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def solution_lines(nb) -> set:
    """The answer's code: each long enough line inside a solution region, markers stripped."""
    found, inside = set(), False
    for cell in nb.cells:
        for line in cell.source.splitlines():
            text = exercises.marker_text(line)
            if text in (exercises.BEGIN, exercises.END):
                inside = text == exercises.BEGIN
            elif inside and len(squeezed(line)) >= SIGNIFICANT:
                found.add(squeezed(line))
    return found


def hinted(path: Path):
    marks = [] if path.name[:2] in HINTED else [pytest.mark.xfail(
        strict=True, reason="issue 18: hints of this notebook not yet converted")]
    return pytest.param(path, marks=marks, id=path.name[:2])


@pytest.mark.parametrize("path", [hinted(p) for p in sorted(SOLUTIONS.glob("[0-9]*.ipynb"))])
def test_no_exercise_shows_its_solutions_code_and_every_task_has_a_folded_hint(path):
    solution = nbformat.read(path, as_version=4)
    exercise = nbformat.read(EXERCISES / path.name, as_version=4)
    shown = "\n".join(squeezed(c.source) for c in exercise.cells)
    leaked = sorted(line for line in solution_lines(solution) if line in shown)
    assert not leaked, f"{path.name}: the exercise shows the answer's code: {leaked}"
    assert exercises.HINT not in shown, f"{path.name}: an old one-line hint (the answer)"
    tasks = exercises.tasks_of_cells(exercise.cells)
    for task in sorted(set(tasks) - {""}):
        text = "\n".join(c.source for c, t in zip(exercise.cells, tasks)
                         if t == task and c.cell_type == "markdown")
        assert "<details><summary>Hint 1</summary>" in text, f"task {task}: no folded hint"
    for cell in exercise.cells:
        for stub in re.findall(r"NotImplementedError\((.*)\)", cell.source):
            assert re.match(r"""['"]Task \d\d\.\d""", stub), f"{path.name}: {stub}"


# ---------------------------------------------------------------------------
# Checks and the progress command
# ---------------------------------------------------------------------------
def test_judge_turns_every_outcome_into_a_verdict():
    def undefined():
        return answer  # noqa: F821 - the learner has not defined it yet

    def todo():
        raise NotImplementedError("Task 1.1: write your code here")

    def library():
        raise NotImplementedError("cffi cannot do that")

    def wrong():
        raise NotDone("should be 42")

    def crash():
        raise OSError("disk on fire")

    assert judge("1", "t", lambda: None).status == DONE
    assert judge("1", "t", undefined).status == NOT_YET
    assert judge("1", "t", todo).message == "still a TODO: Task 1.1: write your code here"
    assert judge("1", "t", library).status == ERROR      # not a TODO of the exercise
    assert judge("1", "t", wrong).message == "should be 42"
    verdict = judge("1", "t", crash)
    assert verdict.status == ERROR and verdict.message == "OSError: disk on fire"


CRASHY_C = """\
int run(int i) { int *out = 0; out[i] = 1; return 0; }
int spin(void) { for (;;) { } return 0; }
int stop(void) { extern void exit(int); exit(3); return 0; }
"""


@requires_isolation
def test_a_learners_crash_or_hang_is_a_verdict_that_says_what_to_look_for(tmp_path):
    """isolated(): the check calls the learner's code in a worker; judge tells what happened."""
    path = write_plugin(tmp_path, "crashy", CRASHY_C,
                        "int run(int i);\nint spin(void);\nint stop(void);\n")

    def calling(name, ctype, *args, seconds=selfcheck.CALL_SECONDS):
        def check():
            with selfcheck.isolated(path, seconds) as plugin:
                plugin.lookup(name, ctype)(*args)
        return check

    crashed = judge("1", "t", calling("run", "int (int)", 3))
    assert crashed.status == NOT_YET
    assert crashed.message.startswith("Your plugin crashed with SIGSEGV in `run`: look for a "
                                      "pointer that is NULL")
    hung = judge("1", "t", calling("spin", "int (void)", seconds=1))
    assert hung.status == NOT_YET
    assert hung.message.startswith("Your plugin did not return within 1 s in `spin`: look for "
                                   "a loop")
    exited = judge("1", "t", calling("stop", "int (void)"))
    assert "exited with status 3 in `stop`" in exited.message
    assert judge("1", "t", calling("run", "int (int)", 3)).status == NOT_YET   # again: a new worker


def test_under_grading_a_check_not_done_raises_with_its_verdict(monkeypatch, capsys):
    """nbgrader's autograde (GRADING_VARIABLE set) needs a failing test; a learner never does."""
    from minildr.course import selfcheck

    def wrong():
        raise NotDone("should be 42")

    def done_but_noisy():
        print("the plugin crashed on purpose", file=sys.stderr)

    assert selfcheck.task("9.1", "t")(wrong).status == NOT_YET          # a learner: no raise
    monkeypatch.setenv(selfcheck.GRADING_VARIABLE, "1")
    with pytest.raises(AssertionError, match=r"Task 9\.1 \(t\): not yet\. should be 42"):
        selfcheck.task("9.1", "t")(wrong)
    capsys.readouterr()
    assert selfcheck.task("9.2", "t")(done_but_noisy).status == DONE
    out, err = capsys.readouterr()
    assert "crashed on purpose" in out and err == ""       # stderr would zero the test


def test_a_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    done = run_check(tmp_path / "nowhere")
    assert done.returncode == 2
    assert "nowhere does not exist" in done.stderr and "exercise notebooks" in done.stderr


def run_check(*paths: Path) -> subprocess.CompletedProcess:
    """make check's table, read as UTF-8 whatever the console's code page (cp1252 on Windows)."""
    return subprocess.run([sys.executable, "-m", "minildr.course.selfcheck", "--strict",
                           *map(str, paths)], cwd=ROOT, capture_output=True, encoding="utf-8",
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def check_here(monkeypatch, capsys, *paths: Path) -> "tuple[int, str]":
    """make check's main() in this process, from the repository: its exit status and table.

    The command as a process starts Python, minildr and nbformat before the first
    notebook; its exit status and table through a pipe are tested on a missing
    folder (run_check) and on a done notebook through a cp1252 pipe
    (tests/core/test_console.py), the other cases here."""
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    status = selfcheck.main(["--strict", *map(str, paths)])
    return status, capsys.readouterr().out


# This file's share of the fresh exercises (00-02; the others: tests/exercise_runs.py's
# SHARES), each run once, its wrong answers (WRONG_ANSWERS, below) typed in after it.
SHARE = share_of(__file__)


# The share's fresh exercises, then their wrong answers (exercise_runs.share_fixtures).
runs, fresh, wrong = share_fixtures(SHARE, lambda: WRONG_ANSWERS)


def test_every_exercise_runs_fresh_in_one_share():
    """Each file of SHARES runs its share's fresh exercises (test_fresh_exercises_run_with_
    only_their_todo_cells_failing in each checks it ran those): together, every exercise, once."""
    numbers = [number for share in SHARES.values() for number in share]
    assert sorted(numbers) == sorted(p.name[:2] for p in EXERCISES.glob("*.ipynb")), SHARES
    assert len(set(numbers)) == len(numbers), SHARES
    here = Path(__file__).parent
    assert all((here / name).is_file() for name in SHARES), SHARES


def test_fresh_exercises_run_with_only_their_todo_cells_failing(fresh):
    """nbval-lax over the share's exercises: exercise_runs.assert_only_todo_cells_raised."""
    assert_only_todo_cells_raised(fresh, SHARE)


def test_no_task_of_a_fresh_exercise_is_done(fresh):
    assert_no_task_done(fresh)


# The command's exit status 0 and "all done" table on a solution, from its committed
# outputs: every solution runs under nbval (make test), each check cell's verdict (the
# check's record and its text) compared with the committed "done" one, so a kernel run
# here would test the notebook twice and the command no better. run_notebook itself
# runs for real above (the fresh exercises) and below (a learner's answer, a dead
# kernel, other platforms).
SOLVED = "00-the-plugin-problem.ipynb"
SAMPLE = ["01-shared-libraries.ipynb", "02-smallest-plugin.ipynb"]


def committed_run(path: Path) -> selfcheck.NotebookResult:
    """The notebook's run as its committed outputs record it (as run_notebook reads a run)."""
    nb = nbformat.read(path, as_version=4)
    left_out = selfcheck.leave_out_what_cannot_run(nb, host()[0])
    return selfcheck.NotebookResult(path, selfcheck.verdicts_in(nb), cells_left_out=left_out,
                                    notebook=nb)


def test_progress_says_all_done_on_a_solution(monkeypatch, capsys):
    ran = committed_run(SOLUTIONS / SOLVED)
    checks = [c for c in ran.notebook.cells
              if c.cell_type == "code" and exercises.task_id(c.source)]
    assert checks and len(ran.verdicts) == len(checks), ran.verdicts    # one per check cell
    monkeypatch.setattr(selfcheck, "run_notebook",
                        lambda path, timeout: {ran.path.resolve(): ran}[path.resolve()])
    status, table = check_here(monkeypatch, capsys, SOLUTIONS / SOLVED)
    assert status == 0, table
    assert "all done" in table and "not yet" not in table


def test_progress_says_not_yet_on_fresh_exercises(monkeypatch, capsys, fresh):
    """make check's main() on two fresh exercises, their kernels' run being the fixture's."""
    ran = {(EXERCISES / name).resolve(): result for name, result in fresh.items()}
    monkeypatch.setattr(selfcheck, "run_notebook", lambda path, timeout: ran[path.resolve()])
    status, table = check_here(monkeypatch, capsys, *[EXERCISES / name for name in SAMPLE])
    assert status == 1
    # Task lines ("  ⏳ 05.2   not yet  ..."), not the "cells left out" lines of other platforms.
    lines = [line for line in table.splitlines() if re.match(r"  \S+ \d\d\.\d+ ", line)]
    assert lines and all("not yet" in line for line in lines), table
    # The first task this machine can run: 01.1 on Linux; on Windows 01.3 (01.1-01.2 are left out).
    assert "0/" in table and re.search(r"Next: Task 0[12]\.\d ", table), table


def test_progress_counts_a_learners_finished_task(tmp_path, monkeypatch, capsys):
    """Answer one task of exercise 02 as a learner would; only it turns done."""
    folder = tmp_path / "exercises"
    folder.mkdir()
    nb = nbformat.read(EXERCISES / "02-smallest-plugin.ipynb", as_version=4)
    solution = nbformat.read(SOLUTIONS / "02-smallest-plugin.ipynb", as_version=4)
    for cell, solved in zip(nb.cells, solution.cells):
        if "raw_greeting =" in solved.source:
            cell.source = solved.source
    nbformat.write(nb, folder / "02-smallest-plugin.ipynb")    # no examples/ beside it
    status, table = check_here(monkeypatch, capsys, folder)
    assert "✅ 02.1   done" in table, table
    assert "⏳ 02.2   not yet" in table and "1/4 tasks done" in table and status == 1, table


def test_a_notebook_that_kills_its_kernel_is_reported_not_fatal(tmp_path, monkeypatch, capsys):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("from minildr.course.selfcheck import task\n"
                                          "@task('9.1', 'first')\ndef _(): pass"),
                nbformat.v4.new_code_cell("import os; os._exit(3)")]
    path = tmp_path / "09-crash.ipynb"
    nbformat.write(nb, path)
    status, table = check_here(monkeypatch, capsys, path)
    assert status == 1
    assert "✅ 9.1" in table and "the notebook stopped" in table, table


# ---------------------------------------------------------------------------
# A learner's crash is feedback, not a dead kernel: wrong answers typed in
# ---------------------------------------------------------------------------
# After each exercise's fresh run, in its kernel (the `runs` fixture), one task's
# answer is typed in wrong twice (tests/exercise_answers.py): once with the classic
# NULL write (`out = NULL; out[i] = ...`), once with a loop that never ends. The
# check must say what happened, in which function, and the kernel must still run
# the next cell. 00's other wrong answers: further down; 03's to 08's (with their
# fresh runs): test_exercises_03_05.py and test_exercises_06_09.py; 09's (a Go
# host): test_exercises_crashes_09.py.
#
# The endless loops wait (pause() until a signal that never comes) rather than
# spin: to the check's time limit a hang is a hang, and a spinning one would burn
# a core for the whole 5 s. The spinning case is tested once, above
# (test_a_learners_crash_or_hang_is_a_verdict_that_says_what_to_look_for).
CRASHES = {
    # notebook, task, function, (NULL write, endless loop).
    "00": ("00.4", "format_show", ("char *out = 0;\nout[0] = text[0];",
                                   PAUSE + "while (text)\n    pause();")),
    "01": ("01.1", "cube", (
        "int cube(int x) { int *out = 0; out[x] = x; return x; }",
        PAUSE + "int cube(int x) { int y = x; for (;;) pause(); return y; }")),
    "02": ("02.3", "shout", (
        "char *out = NULL;\nsize_t i;\nfor (i = 0; text[i]; i++)\n"
        "    out[i] = (char)toupper((unsigned char)text[i]);\nreturn out;",
        PAUSE + "size_t i = 0;\nwhile (text[i] != 1)\n    pause();\nreturn text;")),
}

# 02.2: a call_int_function that does not ask is_function first (two answer regions).
CARELESS = ("raw = cffi.FFI()\nraw.cdef(f\"int {name}(void);\")\n"
            "return getattr(raw.dlopen(str(Path(path).resolve())), name)()")
ASKS = ("image = elf.ElfFile(Path(path).read_bytes(), path)\n"
        "return {s.name: s.type for s in image.exported_symbols()}[name] == 'FUNC'")

# Typed in after each exercise's fresh run: the wrong answers, and where they are
# (00's, other than its crashes, are defined further down).
WRONG_ANSWERS = {
    "01": [(Wrong(CRASHES["01"][0], CRASHES["01"][2], cell_with="%%"), LINUX)],   # the C cell
    # 02's in one kernel: 02.2's Python, then 02.3's crashing C (02.2's answer typed back between).
    "02": [(Wrong("02.2", [(ASKS, CARELESS)]), LINUX),
           (Wrong(CRASHES["02"][0], CRASHES["02"][2], cell_with="%%"), LINUX)],
}


@pytest.mark.parametrize("notebook", sorted(CRASHES))
@requires_isolation
@requires_linux("the exercise notebooks' checks read ELF files")
def test_a_null_write_and_an_endless_loop_are_verdicts_and_the_kernel_lives(notebook, wrong):
    task, function, _ = CRASHES[notebook]
    assert_null_write_then_endless_loop(wrong[task], function)


@requires_linux("forks a child to call the learner's function")
def test_a_python_answer_that_calls_a_variable_anyway_is_told_so(wrong):
    """02.2: a call_int_function that does not ask is_function first crashes in a child."""
    run = wrong["02.2"]
    assert run.kernel_alive
    assert "called calls() anyway: the process running it died with SIGSEGV" \
        in run.verdicts[0], run
    assert "done. Well done!" in (run.then_solved or ""), run       # the right answer again


# ---------------------------------------------------------------------------
# Exercise 00's checks on plausible wrong answers (typed in after its fresh run)
# ---------------------------------------------------------------------------
# All of 00's wrong answers in its kernel, each task's followed by the solution's
# answer typed back, whose check must then say done; 00.4's crash cases are
# CRASHES["00"] above.
# 00.3: "a module with a file" is not "a module loaded from a shared library".
EVERY_FILE = ('return {name: Path(module.__file__) for name, module in list(sys.modules.items())\n'
              '        if isinstance(getattr(module, "__file__", None), str)}')
# ... nor is a module whose name starts with "_" (most, not all, C modules do).
UNDERSCORE = ('return {name: Path(module.__file__) for name, module in list(sys.modules.items())\n'
              '        if name.startswith("_") and isinstance(getattr(module, "__file__", None), str)}')


@requires_linux("the check reads /proc/self/maps")
def test_python_modules_that_are_not_libraries_are_named(wrong):
    run = wrong["00.3"]
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


def test_a_scan_that_stops_at_a_non_format_or_returns_c_values_is_told_so(wrong):
    run = wrong["00.2"]
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


def test_a_wrong_prediction_is_told_with_the_scans_reason(wrong):
    run = wrong["00.1"]
    assert run.kernel_alive, run
    verdict = run.verdicts[0]
    assert "not yet. 2 of your 7 predictions differ from the scan" in verdict, run
    assert "First, backend.so: you said 'loaded', the scan says 'refused' (NotAPlugin:" in verdict
    assert "without a minildr manifest" in verdict, run


# 00.4: format_show's C, with the classic NULL write and a loop that never ends.
NULL_WRITE = "char *out = 0;\nout[0] = text[0];"
ENDLESS = PAUSE + "while (text)\n    pause();"


def test_each_right_answer_typed_back_in_00_is_done_again(wrong):
    """After a task's wrong answers, the solution's answer: its check says done (and the next
    task's wrong answers ran on the state a learner's right answer leaves)."""
    runs = {task: run for task, run in wrong.items() if task.startswith("00.")}
    solved = {task: run.then_solved for task, run in runs.items() if run.then_solved is not None}
    assert len(solved) == len(runs) - 1, solved                 # every task but the last
    assert all("done. Well done!" in verdict for verdict in solved.values()), solved


WRONG_ANSWERS["00"] = [(Wrong("00.1", [TRUSTING]), EVERYWHERE),
                      (Wrong("00.2", [NO_SKIP, RAW]), EVERYWHERE),
                      (Wrong("00.3", [EVERY_FILE, UNDERSCORE]), LINUX),    # /proc/self/maps
                      (Wrong("00.4", CRASHES["00"][2], cell_with="%%"), LINUX)]


# ---------------------------------------------------------------------------
# Notebooks and cells for other platforms (minildr.course.runs_on): left out, said so
# ---------------------------------------------------------------------------
def tagged_notebook(path: Path, **notebook_meta) -> Path:
    """x is 1, except in a cell tagged linux-only; a task checks which ran."""
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "minildr": {"outputs_recorded_on": "Linux x86_64", **notebook_meta}})
    nb.cells = [nbformat.v4.new_code_cell("from minildr.course.selfcheck import expect, task\nx = 1"),
                nbformat.v4.new_code_cell("x = 2", metadata={
                    "tags": ["linux-only"], "minildr": {"why": "reads /proc"}}),
                nbformat.v4.new_code_cell('@task("9.1", "x")\ndef _():\n'
                                          '    expect(x == 1, f"x is {x}")')]
    nbformat.write(nb, path)
    return path


# On Linux the notebook is also marked Linux only (as the next test's is): the one kernel
# shows both that such a notebook runs there (a skipped one has no verdict) and that its
# linux-only cell does.
LINUX_ONLY = {"linux_only": "walks through ELF files"}


@pytest.mark.parametrize("os_name, status, left_out, notebook_meta", [
    ("linux", NOT_YET, 0, LINUX_ONLY), ("darwin", DONE, 1, {})])
def test_cells_for_another_platform_are_left_out(tmp_path, os_name, status, left_out,
                                                 notebook_meta):
    path = tagged_notebook(tmp_path / "09-tagged.ipynb", **notebook_meta)
    result = selfcheck.run_notebook(path, os_name=os_name)
    assert [v.status for v in result.verdicts] == [status]
    assert result.cells_left_out == left_out and not result.problem
    if left_out:
        assert "1 cell(s) left out: they cannot run on this machine" in \
            selfcheck.report([result])


def test_on_windows_the_kernel_would_run_what_it_runs_for_macos(tmp_path):
    """What run_notebook gives a kernel for `os_name` is the notebook unless it is skipped
    (notebook_skip_reason), less the cells leave_out_what_cannot_run drops; nothing else in
    it depends on `os_name`. For Windows both say what they say for macOS, whose kernel run
    is test_cells_for_another_platform_are_left_out[darwin-...]: a kernel of its own here
    (0.5-0.9 CPU s) would run the same cells again. (Windows' own rules: test_platforms.py.)"""
    path = tagged_notebook(tmp_path / "09-tagged.ipynb")
    kept = {}
    for os_name in ("darwin", "windows"):
        nb = nbformat.read(path, as_version=4)
        assert selfcheck.runs_on.notebook_skip_reason(nb.metadata, os_name) == ""
        assert selfcheck.leave_out_what_cannot_run(nb, os_name) == 1
        kept[os_name] = [(c.cell_type, c.source) for c in nb.cells]
    assert kept["windows"] == kept["darwin"], kept
    assert not any("x = 2" in source for _, source in kept["windows"]), kept


def test_a_notebook_for_another_platform_is_not_run_and_says_why(tmp_path):
    """(On Linux the same notebook runs: test_cells_for_another_platform_are_left_out[linux-...].)"""
    path = tagged_notebook(tmp_path / "09-linux.ipynb", **LINUX_ONLY)
    result = selfcheck.run_notebook(path, os_name="darwin")
    assert result.verdicts == [] and result.skipped and not result.problem
    text = selfcheck.report([result])
    assert "not run on this machine: notebook is Linux only: walks through ELF files" in text
    assert "0/0 tasks done" in text


@pytest.mark.parametrize("path", sorted(SOLUTIONS.glob("*.ipynb")), ids=lambda p: p.name[:2])
def test_each_exercise_builds_into_a_folder_of_its_own(path):
    """make test runs the solutions side by side: two notebooks building into (and
    clearing) one folder delete each other's files (05 once used 04's build/ex04)."""
    folders = set(re.findall(r"build/ex(\d\d)", path.read_text(encoding="utf-8")))
    assert folders <= {path.name[:2]}, f"{path.name} builds into build/ex{sorted(folders)}"


def test_run_notebook_leaves_no_socket_folder_when_its_client_cannot_start(tmp_path,
                                                                         monkeypatch):
    """run_notebook's folder for the kernel's sockets goes however it ends: a client that
    could not be made (here: refused) left it in the temporary folder for good."""
    class Refused:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("no kernel here")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(selfcheck.tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(nbclient, "NotebookClient", Refused)
    notebook = sorted((ROOT / "exercises").glob("0*.ipynb"))[0]
    with pytest.raises(RuntimeError, match="no kernel here"):
        selfcheck.run_notebook(notebook, os_name=host()[0])
    assert list((tmp_path / "tmp").iterdir()) == []
