"""The kernels the tests start: an IPython profile of their own, lighter than the learner's.

One `make test` starts about 60 Jupyter kernels (nbval: one per notebook;
make check's runs of the exercises; the wrong answers of tests/exercise_answers.py;
nbgrader's autograde; a few tests of the kernel itself). Each costs 0.5-0.6
CPU s, of which ~0.1 is importing debugpy, the debugger behind JupyterLab's
debug panel, which no test uses; and every kernel opened the user's
~/.ipython history database (one file for every kernel of the run and the
learner's own) with a thread writing to it. Leaving both out: 0.13-0.15 CPU s
less per kernel (benchmarks/bench_kernel_start.py). A kernel asked to shut down
(all but nbval's, which are killed) also skips the garbage collections of the
interpreter's exit (gc.freeze() as its last atexit function): ~0.13 CPU s more
for a bare kernel, ~0.2-0.4 after one that drew a figure.

So `configure` (tests/conftest.py, at the start of every pytest process of the
tests) points IPYTHONDIR at a folder of the session whose profile holds
tests/kernel_config.py as its ipython_kernel_config.py: every kernel started
from the tests, by whatever library, reads it (the processes inherit the
variable; xdist's workers inherit the controller's). What it leaves out is
listed there; no notebook output depends on it, and nbval compares every
output as before. The course's own kernel spec and `make lab` are untouched:
the browser test starts `make lab` with `learner_env` (the variable removed),
so the lab it drives is the learner's (make hub-test's hub gives its students'
servers only the variables its spawner keeps: IPYTHONDIR is not one of them). A side effect worth having: a learner's
own ~/.ipython (startup files, configuration) no longer reaches the tests' kernels.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Mapping

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "kernel_config.py"
MARK = "MINILDR_TEST_IPYTHONDIR"    # the folder this module made
USERS = "MINILDR_TEST_USERS_IPYTHONDIR"  # the IPYTHONDIR the run was started with, if any
KERNEL_LOG = "MINILDR_TEST_KERNEL_LOG"  # kernel_config.py: one line per kernel (make test-profile)
GO_LINKS = "MINILDR_GO_LINK_CACHE"  # the tests' shared Go links (minildr/course/golinks.py)


def configure(config, cpu_folder: "str | None" = None) -> None:
    """Give this process's kernels the test profile (once per run: the controller's)."""
    if os.environ.get(MARK) and os.environ.get("IPYTHONDIR") == os.environ[MARK]:
        return                      # an xdist worker, or an inner session: inherited
    folder = Path(tempfile.mkdtemp(prefix="minildr-test-ipython-"))
    profile = folder / "profile_default"
    profile.mkdir()
    shutil.copyfile(CONFIG, profile / "ipython_kernel_config.py")
    before = {name: os.environ.get(name) for name in ("IPYTHONDIR", MARK, USERS, KERNEL_LOG)}
    if before["IPYTHONDIR"] is not None:
        os.environ[USERS] = before["IPYTHONDIR"]
    os.environ["IPYTHONDIR"] = os.environ[MARK] = str(folder)
    if cpu_folder:
        Path(cpu_folder).mkdir(parents=True, exist_ok=True)
        os.environ[KERNEL_LOG] = str(Path(cpu_folder).resolve() / "kernels.jsonl")

    def restore() -> None:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)
    config.add_cleanup(restore)


def learner_env(env: Mapping[str, str]) -> Dict[str, str]:
    """`env` as a learner's shell has it: without the test kernels' profile."""
    out = dict(env)
    if out.pop(MARK, None) is not None:
        out.pop("IPYTHONDIR", None)
        if USERS in out:
            out["IPYTHONDIR"] = out.pop(USERS)
    out.pop(KERNEL_LOG, None)
    out.pop(GO_LINKS, None)            # a learner's Go builds link what they say they build
    return out
