"""The tests' kernels read tests/kernel_config.py; the learner's kernel does not (kernel_profile.py).

One kernel of each kind, started the way nbclient and jupyter_client start
the course's "python3" kernel: the tests' (this process's environment, as every
kernel a test starts inherits it) without debugpy and without a history file;
the learner's (`learner_env`, as the browser test starts `make lab`) with the
debugger JupyterLab's debug panel needs and its history file, as before.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from kernel_profile import learner_env

PROBE = """import json, sys
shell = get_ipython()
print(json.dumps({"debugpy": sys.modules.get("debugpy", "absent") is not None,
                  "history": shell.history_manager.enabled,
                  "history_thread": shell.history_manager.save_thread is not None,
                  "history_db": type(shell.history_manager.db).__name__,
                  "profile": shell.profile_dir.location}))"""


def kernel_facts(env: dict, cwd: Path) -> dict:
    """What a kernel started with `env` says of itself: its features and its PROBE."""
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=env)
    try:
        features = kc.kernel_info(reply=True, timeout=60)["content"].get("supported_features", [])
        printed = []
        reply = kc.execute_interactive(PROBE, timeout=60, output_hook=lambda msg: printed.append(
            msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"features": features, **json.loads("".join(printed))}


def test_a_test_kernel_has_no_debugger_and_no_history_file(tmp_path):
    facts = kernel_facts(dict(os.environ), tmp_path)
    assert "debugger" not in facts["features"] and not facts["debugpy"], facts
    # IPython's stand-in for a database: no file opened (the profile's folder is the whole
    # run's, where an in-process IPython shell of another test may have made one).
    assert facts["history"] is False and facts["history_db"] == "DummyDB", facts
    assert not facts["history_thread"], facts
    assert Path(facts["profile"]).parent == Path(os.environ["IPYTHONDIR"]), facts


def test_the_learners_kernel_keeps_its_debugger_and_history(tmp_path):
    """make lab's kernel: a learner with a fresh ~/.ipython (here tmp_path's)."""
    env = {**learner_env(os.environ), "IPYTHONDIR": str(tmp_path / "ipython")}
    assert "MINILDR_TEST_IPYTHONDIR" not in env
    facts = kernel_facts(env, tmp_path)
    assert "debugger" in facts["features"] and facts["debugpy"], facts
    assert facts["history"] is True and facts["history_thread"], facts
    assert facts["history_db"] == "Connection", facts               # sqlite3's
    assert Path(facts["profile"]) == tmp_path / "ipython" / "profile_default"
    assert (Path(facts["profile"]) / "history.sqlite").exists()


def test_learner_env_gives_back_the_ipythondir_the_run_started_with():
    ours = {"IPYTHONDIR": "/t/ours", "MINILDR_TEST_IPYTHONDIR": "/t/ours",
            "MINILDR_TEST_KERNEL_LOG": "/t/k.jsonl", "PATH": "/bin"}
    assert learner_env(ours) == {"PATH": "/bin"}
    assert learner_env({**ours, "MINILDR_TEST_USERS_IPYTHONDIR": "/home/me/.ipy"}) == {
        "PATH": "/bin", "IPYTHONDIR": "/home/me/.ipy"}
    assert learner_env({"IPYTHONDIR": "/home/me/.ipy"}) == {"IPYTHONDIR": "/home/me/.ipy"}


EXIT_PROBE = """import gc, weakref
class Cycle:
    def __del__(self):
        open("cycle-finalised", "w").close()
cycle = Cycle()
cycle.me = cycle                # freed by the collector only: a reference cycle
class Kept:
    pass
kept = Kept()
weakref.finalize(kept, lambda: open("finalize-ran", "w").close())   # atexit=True"""


SHUTDOWN_WAIT = 120.0      # seconds: SIGTERM after 60, SIGKILL after 120


def exit_facts(env: dict, cwd: Path) -> dict:
    """What a kernel asked to shut down (as make check and nbgrader stop theirs) left behind."""
    cwd.mkdir()
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=env)
    try:
        reply = kc.execute_interactive(EXIT_PROBE, timeout=60, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
        process = km.provisioner.process
    finally:
        kc.stop_channels()
        # jupyter_client sends SIGTERM after half of shutdown_wait_time (5 s by default):
        # a guess at a patient wait, which a loaded machine's kernel overran (status -15).
        # What is checked is how the kernel ends, not how fast (benchmarks/
        # bench_kernel_start.py times it): only a kernel that hangs at exit waits
        # that long.
        km.shutdown_wait_time = SHUTDOWN_WAIT
        km.shutdown_kernel(now=False)
    return {"status": process.wait(timeout=30),
            "cycle_finalised": (cwd / "cycle-finalised").exists(),
            "finalize_ran": (cwd / "finalize-ran").exists()}


def test_a_test_kernel_leaves_its_exit_collection_out_and_still_exits_cleanly(tmp_path):
    """kernel_config.py: gc.freeze() as the last atexit function. The test kernel exits 0,
    weakref.finalize's exit functions run; only the reference cycle is not finalised."""
    test = exit_facts(dict(os.environ), tmp_path / "test")
    env = {**learner_env(os.environ), "IPYTHONDIR": str(tmp_path / "ipython")}
    learner = exit_facts(env, tmp_path / "learner")
    assert learner == {"status": 0, "cycle_finalised": True, "finalize_ran": True}, learner
    assert test == {"status": 0, "cycle_finalised": False, "finalize_ran": True}, test
