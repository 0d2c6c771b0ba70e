"""The test kernels' ipython_kernel_config.py (tests/kernel_profile.py's docstring says why).

Copied into the profile of the IPYTHONDIR that tests/kernel_profile.configure
gives every pytest process of the tests, so every kernel a test starts (nbval,
make check's runs, the exercises' wrong answers, nbgrader's autograde) reads it;
`make lab`'s kernels, the learner's, never do. Each setting leaves out something
a test kernel does not use and no notebook output shows.
"""
# `c` is the kernel's traitlets config, given to this file by IPython.
import os
import sys

# debugpy: the debugger behind JupyterLab's debug panel. ipykernel imports it
# at every start (~0.1 CPU s, and its modules' teardown at a kernel's exit) to
# offer "debugger" among the kernel's features; no test debugs. An entry of None makes its import raise
# ImportError, which ipykernel reads as "debugpy is not installed": the kernel
# runs without the feature (ipykernel/debugger.py, _is_debugpy_available).
sys.modules.setdefault("debugpy", None)

# No history database: no history.sqlite opened (before, the user's one file,
# shared by every kernel of the run) and no thread writing to it. In, Out, _i
# and the execution counts are kept in memory as before; only %history of
# earlier sessions has nothing to show.
c.HistoryManager.enabled = False  # noqa: F821 (IPython's config object)

# No garbage collection at the kernel's exit. A kernel asked to shut down (make
# check's runs, the exercises' wrong answers, nbgrader; nbval kills its kernels)
# ends like any Python: atexit functions, then the interpreter's finalisation, whose
# collections walk every object the kernel made (IPython, matplotlib, minildr):
# ~0.13 CPU s of a bare kernel's ~0.6, ~0.4 s after a notebook with figures
# (benchmarks/bench_kernel_start.py). gc.freeze() as the last atexit function
# (registered here, before IPython's and ipykernel's own, so it runs after them)
# moves every object out of the collector's reach: the process still exits through
# exit() with its status, atexit functions (weakref.finalize's included) and
# libraries' finalisers run, modules are torn down by reference counting. Only a
# reference cycle still alive at the very end is left to the operating system,
# which Python does not promise to finalise either (reference manual, object.__del__).
import atexit
import gc

atexit.register(gc.freeze)

# make test-profile (MINILDR_TEST_CPU): one line per kernel started, naming the
# test that started it, so tests/cpu_profile.py can count each file's kernels.
_log = os.environ.get("MINILDR_TEST_KERNEL_LOG")
if _log:
    import json
    import time
    with open(_log, "a", encoding="utf-8") as _f:
        _f.write(json.dumps({"kernel": os.getpid(), "at": round(time.time(), 2),
                             "test": os.environ.get("PYTEST_CURRENT_TEST", "")}) + "\n")
