"""Shared fixtures: the example plugins, built fresh into a temporary folder."""
from __future__ import annotations

import gc
import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from minildr import lifetime
from minildr.course import golang, golinks
from minildr.host import SUFFIX

# Hypothesis runs every "hypothesis" entry point at its import: trio's (installed
# for jupyter's sake) imports all of trio, ~0.3 s of CPU in each xdist worker
# that collects a hypothesis test (all of them). No test uses trio's strategies.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

# The platform markers (requires_linux, ...) and the notebook rule: see platforms.py.
import platforms
import cpu_profile
import kernel_profile

import helpers
from helpers import build_example


@pytest.fixture(scope="session", autouse=True)
def build_cache(tmp_path_factory) -> Path:
    """helpers.build_once's folder: the session's, shared by its xdist workers (each
    worker's basetemp is a folder in it)."""
    base = tmp_path_factory.getbasetemp()
    helpers.BUILD_CACHE = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    helpers.BUILD_CACHE.mkdir(exist_ok=True)
    return helpers.BUILD_CACHE


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict:
    """greet and echo, built once per test session, whichever xdist worker asks first
    (helpers.build_once; do not modify these files)."""
    out = tmp_path_factory.mktemp("built")
    return {name: build_example(name, out, once=True) for name in ("greet", "echo")}


@pytest.fixture
def greet_so(built, tmp_path) -> Path:
    """A private copy of the greet plugin that a test may move, edit or delete."""
    return Path(shutil.copy(built["greet"], tmp_path / f"greet{SUFFIX}"))


@pytest.fixture
def echo_so(built, tmp_path) -> Path:
    return Path(shutil.copy(built["echo"], tmp_path / f"echo{SUFFIX}"))


@pytest.fixture(scope="session")
def figures() -> ModuleType:
    """minildr.course.figures, imported by the first test that draws, not by every worker
    that collects a file of such tests (it imports matplotlib: ~0.8 s of CPU)."""
    return importlib.import_module("minildr.course.figures")


# The files that take longest, slowest first (CPU seconds measured per file with
# every test of `make test`). pytest-xdist hands whole files to its workers in
# collection order (the Makefile turns off its own reordering, which puts the
# files with the most tests first: the notebooks, whose cells are many and
# quick); started first, these long files run beside the many short ones
# instead of after them, so the run ends when its work does.
SLOW_FIRST = (
    # The fresh exercises in three shares (tests/exercise_runs.py), one per worker at the
    # start: each ~13 s of wall (its runs at once, a hang of 5 s in each) for ~3-4 CPU s.
    "tests/course/test_exercises.py",           # 00-02, and the exercises' machinery
    "tests/course/test_exercises_03_05.py",
    "tests/course/test_exercises_06_09.py",
    "tests/isolation/test_worker_process.py",   # ~10-12 s, mostly waiting, for ~2-3 CPU s
    "tests/course/test_exercises_crashes_09.py",     # Go's hang, checked at 2 s: ~4-5 s
    "tests/course/test_nbgrader.py",            # nbgrader's whole cycle (one process): ~15 s
    "tests/core/test_interrupts.py",
    "tests/isolation/test_isolate.py",
    "tests/isolation/test_sandbox.py",
    "tests/core/test_races.py",                 # 4 processes x 10 builds, twice: ~10 s
    "notebooks/09-go-for-real.ipynb",           # Go builds: ~15 s
    "tests/core/test_threads.py",
    "tests/core/test_hostile.py",
    "tests/isolation/test_isolate_contracts.py",
    "solutions/09-go-for-real.ipynb",           # Go builds: ~10 s
    "tests/contracts/test_proxy.py",
    "tests/course/test_golang.py",
    "tests/course/test_editor.py",
    "notebooks/07-when-to-use-a-plugin.ipynb",
    "tests/core/test_bundled.py",
)


def pytest_collection_modifyitems(config, items):
    platforms.pytest_collection_modifyitems(config, items)
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))   # stable


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test and the fixtures it ended: if a plugin it closed waits for an object
    only cycles of the test's own still hold, collect them now, in this test.

    pytest and hypothesis make such cycles as a matter of course: `pytest.raises(...)
    as err` keeps the exception, whose traceback holds the test's frame, which holds
    `err` and every local and fixture value of the test; hypothesis keeps its examples'
    arguments in its own cyclic state. A function or proxy the test held then frees
    the plugin only at a later collection, run by whichever test allocates then, under
    that test's threads (a LeftMapped warning if some appeared since the load). minildr
    itself makes no such cycle: tests/core/test_last_reference.py, with gc disabled.
    """
    try:
        return (yield)
    finally:
        if lifetime.awaiting_unload():
            gc.collect()


def pytest_configure(config):
    cpu_profile.configure(config)       # MINILDR_TEST_CPU=FOLDER: CPU seconds per test (make test-profile)
    # Every kernel a test starts reads tests/kernel_config.py (no debugpy, no history file).
    kernel_profile.configure(config, os.environ.get(cpu_profile.ENV))
    # Go links offered to Go's own up-to-date check, shared by every Workspace of the tests
    # and their kernels (the notebooks', the solutions', a test's tmp_path), in this run and
    # the next, beside Go's build cache: Go links again whatever is not the same build
    # (minildr/course/golinks.py). A learner's kernel never has it (kernel_profile.learner_env).
    os.environ.setdefault(golinks.ENV, str(golang.default_links()))
