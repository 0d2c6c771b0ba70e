"""Self-checks for the exercises: a friendly verdict under each task, and the progress report.

In an exercise notebook, each task is followed by a check cell:

    @task("02.1", "Look greet up with its exact C type")
    def _():
        expect(greet_fn is not None, "assign the looked-up function to greet_fn")
        expect(ffi.string(greet_fn()) == b"...", "greet_fn() should return ...")

The function runs at once. Its verdict is printed under the cell, and also
sent as a small JSON record that `python -m minildr.selfcheck` (make check)
collects after running a learner's notebooks:

- done     the check passed;
- not yet  the task is still a TODO (the stub raised NotImplementedError, or a
           name it should define does not exist yet), or the answer is not
           right yet (`expect` says what to change);
- error    something else went wrong (the plugin did not build...): the
           message is the error's own.

A learner's C code is called by a check through `isolated(plugin)`: the
plugin opened again in a worker process, so that a NULL write or an endless
loop is a verdict ("your plugin crashed with SIGSEGV in `run`", "did not
return within 5 s", each with what to look for), never a dead kernel.

A check never raises: a notebook of fresh exercises runs from top to bottom
with only its TODO cells failing.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

from . import runs_on
from ..console import shown_path, tolerant_output
from ..errors import PluginCrashed, PluginTimeout
from ..loader import Plugin, open as open_plugin
from ..progress import progress
from ..host import HOST

MIME = "application/vnd.minildr.check+json"
DONE, NOT_YET, ERROR = "done", "not yet", "error"
SYMBOLS = {DONE: "✅", NOT_YET: "⏳", ERROR: "❌"}
SKIPPED = "⏭"
# Set by nbgrader_config.py for the kernels nbgrader starts (see grading.py).
GRADING_VARIABLE = "MINILDR_GRADING"


class NotDone(Exception):
    """The answer is there but not right yet; the message says what to change."""


def expect(condition: object, message: str) -> None:
    """Fail the check with a friendly `message` unless `condition` holds."""
    if not condition:
        raise NotDone(message)


# Seconds a learner's function may take in a check before it counts as a hang. Read when
# a check calls isolated, host_process or in_child without `seconds` (not bound at their
# definition): a test that types a hang in may shorten it, what a learner sees unchanged.
CALL_SECONDS = 5.0

# What each way of dying usually means in a learner's C, and where to look.
LOOK_FOR = {
    "SIGSEGV": "look for a pointer that is NULL or points past what was allocated "
               "(an index beyond an array's end, a missing malloc, a string not ended by 0)",
    "SIGBUS": "look for a pointer to memory that is not there any more or is misaligned",
    "SIGFPE": "look for a division (or %) by zero",
    "SIGABRT": "look for a failed assert() or a free() of memory not (or no longer) malloc'ed",
    "SIGILL": "look for a function that ends without a return, or __builtin_trap()",
}
LOOK_FOR_HANG = ("look for a loop whose condition never becomes false: what changes at each "
                 "turn, and does it reach the end?")


@contextlib.contextmanager
def isolated(plugin: Union[Plugin, str, "os.PathLike[str]"], seconds: Optional[float] = None,
             **open_args: Any) -> Iterator[Plugin]:
    """The learner's plugin opened again in a worker process, for a check to call.

    A crash or a hang in the learner's code then stops the worker, not the
    kernel, and `judge` turns it into a verdict that says what happened.
    `plugin` is what a `%%minildr` cell bound (or a path); `open_args` go
    to minildr.open (contracts=...).
    """
    path = plugin.path if isinstance(plugin, Plugin) else plugin
    with open_plugin(path, isolate=_limit(seconds), **open_args) as worker:
        yield worker


def _limit(seconds: Optional[float]) -> float:
    """A check's time limit: `seconds` if given, else CALL_SECONDS as it is now."""
    return CALL_SECONDS if seconds is None else seconds


def _died(returncode: int, during: str) -> None:
    """Raise PluginCrashed if a process running the learner's code was killed by a signal."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        raise PluginCrashed(None, f"the process was killed by {name} during {during}()",
                            signal=name)


def host_process(code: str, *args: object, seconds: Optional[float] = None,
                 during: str = "the host", cwd: Optional[Path] = None,
                 env: Optional[dict] = None) -> "subprocess.CompletedProcess[str]":
    """Run a small Python host (`python -c code args...`) in a process of its own.

    For checks whose lesson needs the system loader as a whole process sees
    it (RTLD_GLOBAL, LD_DEBUG, a lazy binding's exit status). A signal that
    kills it, or a hang, is the learner's plugin's: PluginCrashed or
    PluginTimeout "during `during`()", which judge turns into feedback; an
    exit status is returned, for the check to read.
    """
    seconds = _limit(seconds)
    try:
        done = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        raise PluginTimeout(None, f"no answer within {seconds:g} s during {during}()") from None
    _died(done.returncode, during)
    return done


def _child(pipe: Any, function: Callable[..., Any], args: tuple) -> None:
    try:
        pipe.send((True, function(*args)))
    except BaseException as exc:  # noqa: BLE001 - sent back to the check, raised there
        pipe.send((False, exc))


def in_child(function: Callable[..., Any], *args: Any, seconds: Optional[float] = None,
             during: str = "your function") -> Any:
    """Call a learner's Python function in a forked child; its result, or its exception.

    For a learner's function that calls C itself (raw cffi): if it does what
    the task says not to, the child dies, not the kernel (PluginCrashed,
    PluginTimeout). POSIX only; the result must pickle.
    """
    seconds = _limit(seconds)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, function, args), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(seconds):
            child.kill()
            child.join()
            raise PluginTimeout(None, f"no answer within {seconds:g} s during {during}()")
        try:
            ok, value = receive.recv()
        except EOFError:                       # it died before it could answer
            child.join()
            _died(child.exitcode or 0, during)
            raise PluginCrashed(None, f"exited with status {child.exitcode} during {during}()",
                                exit_code=child.exitcode) from None
    finally:
        receive.close()
    child.join()
    if not ok:
        raise value
    return value


def _where(reason: str) -> str:
    """The learner's function a worker died in ("run"), from the error's words."""
    found = re.search(r"during (?:\w+\.)?(\w+)\(\)", reason)     # run(), or command_t.run()
    if found:
        return f" in `{found.group(1)}`"
    found = re.search(r"during (looking up \w+|loading|opening)", reason)
    return f" while {found.group(1)}" if found else ""


def crash_message(exc: Union[PluginCrashed, PluginTimeout]) -> str:
    """A learner's crash or hang, told as feedback: what happened, where, what to look for."""
    where = _where(exc.reason)
    if isinstance(exc, PluginTimeout):
        seconds = re.search(r"within ([\d.]+) s", exc.reason)
        limit = f"{seconds.group(1)} s" if seconds else "its time limit"
        return f"Your plugin did not return within {limit}{where}: {LOOK_FOR_HANG}"
    if exc.signal:
        advice = LOOK_FOR.get(exc.signal, "look at the last thing your code does before it")
        return f"Your plugin crashed with {exc.signal}{where}: {advice}"
    return (f"Your plugin's process exited with status {exc.exit_code}{where}: look for a "
            "call to exit() or abort() in your code")


@dataclass
class Verdict:
    task: str
    title: str
    status: str
    message: str = ""

    def line(self) -> str:
        text = f"{SYMBOLS[self.status]} Task {self.task} ({self.title}): {self.status}"
        return f"{text}. {self.message}" if self.message else text + "."


def is_stub(exc: NotImplementedError) -> bool:
    """Whether an exercise's stub raised it ("Task 02.1: write your code here ...")."""
    return not str(exc) or str(exc).startswith("Task ")


def judge(task_id: str, title: str, check: Callable[[], object]) -> Verdict:
    """Run one check and turn whatever happens into a verdict."""
    try:
        check()
    except NotDone as exc:
        return Verdict(task_id, title, NOT_YET, str(exc))
    except NotImplementedError as exc:
        if not is_stub(exc):                 # raised by a library, not by a TODO
            return Verdict(task_id, title, ERROR, f"NotImplementedError: {exc}")
        hint = str(exc) or "the TODO above"
        return Verdict(task_id, title, NOT_YET, f"still a TODO: {hint}")
    except (PluginCrashed, PluginTimeout) as exc:
        return Verdict(task_id, title, NOT_YET, crash_message(exc))
    except NameError as exc:
        return Verdict(task_id, title, NOT_YET,
                       f"{exc}: run the task's cell above once it is written")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a verdict
        return Verdict(task_id, title, ERROR, f"{type(exc).__name__}: {exc}")
    return Verdict(task_id, title, DONE, "Well done!")


def task(task_id: str, title: str) -> Callable[[Callable[[], object]], Verdict]:
    """Decorator for a check cell: run the check now, show and record its verdict.

    Under nbgrader's autograde (GRADING_VARIABLE set, see grading.py) a check
    that is not done also raises, so that the cell fails as a test with the
    verdict as its message; and what the check writes to stderr goes to
    stdout, since nbgrader gives no points to a test that writes to stderr
    (a correct answer may make a plugin crash on purpose, in a worker).
    """
    def run(check: Callable[[], object]) -> Verdict:
        grading = bool(os.environ.get(GRADING_VARIABLE))
        with contextlib.redirect_stderr(sys.stdout) if grading else contextlib.nullcontext():
            verdict = judge(task_id, title, check)
        _show(verdict)
        if grading and verdict.status != DONE:
            raise AssertionError(verdict.line())
        return verdict
    return run


def _show(verdict: Verdict) -> None:
    record = {"task": verdict.task, "title": verdict.title, "status": verdict.status,
              "message": verdict.message}
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - outside Jupyter
        print(verdict.line())
        return
    if get_ipython() is None:
        print(verdict.line())
        return
    display({"text/plain": verdict.line(), MIME: record}, raw=True)


# ---------------------------------------------------------------------------
# The progress report: run a learner's notebooks, collect the verdicts
# ---------------------------------------------------------------------------
@dataclass
class NotebookResult:
    path: Path
    verdicts: List[Verdict]
    problem: str = ""          # the notebook could not run at all
    seconds: float = 0.0
    skipped: str = ""          # not run on this platform, and why (see runs_on.py)
    cells_left_out: int = 0    # cells this platform cannot run, left out
    notebook: Any = None       # the notebook as it ran, outputs and all (None if not run)


def verdicts_in(nb) -> List[Verdict]:
    """The verdicts recorded in an executed notebook's outputs, in order."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(MIME)
            if record:
                found.append(Verdict(record["task"], record["title"], record["status"],
                                     record.get("message", "")))
    return found


def leave_out_what_cannot_run(nb, os_name: str) -> int:
    """Drop the cells tagged for other platforms (runs_on.py); how many were dropped."""
    keep = [c for c in nb.cells if c.cell_type != "code"
            or not runs_on.cell_skip_reason(c.metadata, os_name)]
    dropped = len(nb.cells) - len(keep)
    nb.cells = keep
    return dropped


def run_notebook(path: Path, timeout: int = 300, os_name: str = HOST.os) -> NotebookResult:
    """Execute a notebook in a fresh kernel (errors allowed), in its own folder.

    What cannot run on this platform (runs_on.py) is left out, and said so.
    """
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config
    nb = nbformat.read(path, as_version=4)
    why = runs_on.notebook_skip_reason(nb.metadata, os_name)
    if why:
        return NotebookResult(path, [], skipped=why)
    left_out = leave_out_what_cannot_run(nb, os_name)
    start = time.monotonic()
    problem = ""
    sockets = tempfile.mkdtemp(prefix="minildr-check-")
    try:                # from the next statement on, it goes however this ends
        config = Config()
        if os.name == "posix":
            # A local socket rather than TCP: nothing to warn about, nothing on the
            # network. (Windows: TCP on loopback, jupyter_client's default.)
            config.KernelManager.transport = "ipc"
            config.KernelManager.ip = os.path.join(sockets, "kernel")
        client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                                config=config, resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except Exception as exc:  # noqa: BLE001 - a dead kernel, a timeout: report, go on
            first = (str(exc).strip().splitlines() or [""])[0]
            problem = f"{type(exc).__name__}: {first}"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return NotebookResult(path, verdicts_in(nb), problem, time.monotonic() - start,
                          cells_left_out=left_out, notebook=nb)


def report(results: Iterable[NotebookResult]) -> str:
    """The progress table, one line per task, and what to do next."""
    lines: List[str] = []
    total = done = 0
    first_problem: Optional[str] = None
    for result in results:
        name = shown_path(result.path)
        lines.append(f"{name}")
        if result.skipped:
            lines.append(f"  {SKIPPED} not run on this machine: {result.skipped}")
            continue
        if result.cells_left_out:
            lines.append(f"  {SKIPPED} {result.cells_left_out} cell(s) left out: they cannot "
                         "run on this machine (see their tags)")
        if result.problem:
            lines.append(f"  {SYMBOLS[ERROR]} the notebook stopped: {result.problem}")
            first_problem = first_problem or f"{name}: {result.problem}"
        if not result.verdicts and not result.problem:
            lines.append("  (no checks found)")
        for v in result.verdicts:
            total += 1
            done += v.status == DONE
            lines.append(f"  {SYMBOLS[v.status]} {v.task:<6} {v.status:<8} {v.title}")
            if v.status != DONE and first_problem is None:
                first_problem = f"Task {v.task} ({v.title}): {v.message}"
    lines.append("")
    if total and done == total and first_problem is None:
        lines.append(f"{done}/{total} tasks done: all done. Congratulations!")
    else:
        lines.append(f"{done}/{total} tasks done.")
        if first_problem:
            lines.append(f"Next: {first_problem}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minildr.course.selfcheck",
                                 description="Run your exercise notebooks and show which "
                                             "tasks are done.")
    ap.add_argument("paths", nargs="*", type=Path, default=[Path("exercises")],
                    help="exercise notebooks or folders (default: exercises/)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 unless every task is done (for CI and tests)")
    args = ap.parse_args(argv)
    notebooks: List[Path] = []
    for p in args.paths:
        if not p.exists():
            print(f"error: {p} does not exist: give the folder that holds your exercise "
                  "notebooks (for example exercises/), or one notebook", file=sys.stderr)
            return 2
        notebooks += sorted(p.glob("[0-9]*.ipynb")) if p.is_dir() else [p]
    if not notebooks:
        print(f"no exercise notebooks in {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    results = [run_notebook(nb, args.timeout)
               for nb in progress(notebooks, desc="checking", unit="notebook")]
    tolerant_output()               # the table's symbols, on a cp1252 pipe
    print(report(results))
    all_done = all(v.status == DONE for r in results for v in r.verdicts) and \
        not any(r.problem for r in results)
    return 0 if all_done or not args.strict else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
