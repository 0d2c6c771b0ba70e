"""make test-profile: one line per isolated worker started, naming the test that started it.

tests/cpu_profile.py puts this folder on PYTHONPATH when MINILDR_TEST_CPU is
set, so every Python the tests start without -I (xdist workers, run_python's
children, Jupyter kernels, inner pytest sessions) imports it at its start, and
conftest.py installs it in the pytest process itself. It adds an audit hook
(PEP 578, sys.addaudithook) that hears every subprocess.Popen of the process
and every worker the fork server forks for it (the event
minildr.forkserver.worker, isolation/forkserver.py), and writes a line to the file MINILDR_TEST_WORKER_LOG names when the command
is a worker's (process.BOOT: `python -I -S -c ... from minildr.isolation.worker
import main`). The worker itself (python -I) reads neither this file nor the
environment: it is counted where it is started. cpu_profile.py counts the
lines by the file of the test (PYTEST_CURRENT_TEST, inherited by children).
"""
import os
import sys
import time

ENV = "MINILDR_TEST_WORKER_LOG"
BOOT_MARK = "from minildr.isolation.worker import main"
SERVER_MARK = "zygote import serve"      # the fork server's boot line: not a worker


def install() -> None:
    """Add the hook once per process (conftest and this file's import may both ask)."""
    path = os.environ.get(ENV)
    if not path or getattr(sys, "_minildr_worker_log", False):
        return
    sys._minildr_worker_log = True

    def hook(event: str, args: tuple) -> None:
        if event == "subprocess.Popen":
            argv = args[1]
        elif event == "minildr.forkserver.worker":   # forked by the fork server (forkserver.py)
            argv = args[0]
        else:
            return
        if isinstance(argv, (list, tuple)) and any(BOOT_MARK in str(a) and SERVER_MARK not in
                                                   str(a) for a in argv):
            import json         # here: most Pythons of the tests start no worker (~2 ms each)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"worker": os.getpid(), "at": round(time.time(), 2),
                                    "test": os.environ.get("PYTEST_CURRENT_TEST", "")}) + "\n")
    sys.addaudithook(hook)


install()
