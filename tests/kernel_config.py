"""The test kernels' ipython_kernel_config.py (tests/test_kernels.py's docstring says why).

Copied into the profile of the IPYTHONDIR that tests/test_kernels.configure
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

# make test-profile (MINILDR_TEST_CPU): one line per kernel started, naming the
# test that started it, so tests/cpu_profile.py can count each file's kernels.
_log = os.environ.get("MINILDR_TEST_KERNEL_LOG")
if _log:
    import json
    import time
    with open(_log, "a", encoding="utf-8") as _f:
        _f.write(json.dumps({"kernel": os.getpid(), "at": round(time.time(), 2),
                             "test": os.environ.get("PYTEST_CURRENT_TEST", "")}) + "\n")
