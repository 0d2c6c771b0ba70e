"""What many tests share: the repository's folders, and building small plugins from C text.

Test files import these (`from helpers import write_plugin`); pytest's
fixtures stay in conftest.py, which pytest alone imports.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import minildr
from minildr.host import SUFFIX
from minildr.isolation import process

BOOT = process.BOOT         # as the package has it (tests may change process.BOOT)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
EXAMPLES = ROOT / "examples"

# Fuzzers run short in `make test` and long in `make fuzz` (MINILDR_FUZZ_SCALE=20).
FUZZ_SCALE = max(1, int(os.environ.get("MINILDR_FUZZ_SCALE", "1")))


def fuzz_examples(short: int) -> int:
    """How many examples a fuzzer tries: `short` in make test, scaled up in make fuzz."""
    return short * FUZZ_SCALE


def stress(short: int, long: int) -> int:
    """How big a stress test runs: `short` in make test, `long` in make fuzz.

    For a test whose size is its point (calls, rounds, mutants) but whose
    short run still catches the bug it targets; make test stays within its
    time budget (CPU seconds per file: `make test-profile`). `long` is for
    make fuzz's default scale (MINILDR_FUZZ_SCALE=20), other scales in
    proportion. Mark the test @pytest.mark.fuzz, or make fuzz does not run it.
    """
    return short if FUZZ_SCALE == 1 else max(short, long * FUZZ_SCALE // 20)


def cross_tool_missing(reason: str) -> None:
    """Skip a test whose cross toolchain, emulator or Wine is missing, naming it.

    With MINILDR_REQUIRE_CROSS set (.ci/run sets it after `make cross-tools`),
    a missing tool is an error instead: CI must not pass by skipping the runs
    it installed the tools for.
    """
    if os.environ.get("MINILDR_REQUIRE_CROSS"):
        pytest.fail(reason + " — MINILDR_REQUIRE_CROSS is set, so this is an error")
    pytest.skip(reason)


def build_example(name: str, out_dir: Path, *, once: bool = False, **kwargs) -> Path:
    """Build examples/NAME into out_dir (once=True: for a test not about building, see build_once)."""
    folder = EXAMPLES / name
    build = build_once if once else minildr.build
    return build(sorted(folder.glob("*.c")), name=name,
                 exports=folder / f"{name}.h", out_dir=out_dir, **kwargs)


def write_plugin(tmp_path: Path, name: str, source: str, header: str, *, once: bool = False,
                 **kwargs) -> Path:
    """Build a plugin from C text (one source, one exports header) into tmp_path/out.

    once=True: for a test that is not about building (see build_once).
    """
    src_dir = tmp_path / f"src-{name}"
    src_dir.mkdir(exist_ok=True)
    (src_dir / f"{name}.c").write_text(source)
    (src_dir / f"{name}.h").write_text(header)
    build = build_once if once else minildr.build
    return build([src_dir / f"{name}.c"], name=name, exports=src_dir / f"{name}.h",
                 out_dir=tmp_path / "out", **kwargs)


# Set by conftest.py for the test session: one folder shared by its xdist workers.
BUILD_CACHE: "Path | None" = None
# What else decides what the compiler makes of the same files (find_compiler, build.py).
BUILD_ENVIRONMENT = ("CC", "PATH", "CPATH", "C_INCLUDE_PATH", "LIBRARY_PATH", "COMPILER_PATH",
                     "GCC_EXEC_PREFIX")


def _key_part(value):
    """A keyword argument of build as build_once keys on it: a contract by all it writes
    into the build (its repr leaves out its text), a list or tuple as a tuple."""
    if isinstance(value, (list, tuple)):
        return tuple(_key_part(v) for v in value)
    if isinstance(value, minildr.Contract):
        return ("contract", value.name, value.version, value.filename, value.text)
    return value


def build_once(sources, *, name: str, exports, out_dir, **kwargs) -> Path:
    """minildr.build for a test that is not about building: the same inputs are compiled
    once per test session, and each call gets its own fresh copy in out_dir.

    The same inputs: name, keyword arguments (a contract: its name, version, file
    name and text), the environment variables that pick the compiler and its folders,
    and every file in the folders of the sources and of the exports header (what
    they may #include) — read each time. A build
    is installed in the cache by a rename (workers building the same thing at once
    each install the same bytes). Not a BuiltPath: opened as any plugin file is.
    """
    sources = [Path(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]
    if "contracts" in kwargs:
        kwargs["contracts"] = list(kwargs["contracts"])
    if BUILD_CACHE is None:
        return minildr.build(sources, name=name, exports=exports, out_dir=out_dir, **kwargs)
    key = hashlib.sha256(repr((name, [p.name for p in sources], Path(exports).name,
                               sorted((k, _key_part(v)) for k, v in kwargs.items()),
                               [os.environ.get(v) for v in BUILD_ENVIRONMENT])).encode())
    for folder in sorted({p.resolve().parent for p in (*sources, Path(exports))}):
        for entry in sorted(folder.iterdir()):
            if entry.is_file():
                key.update(b"%s\0%d\0" % (os.fsencode(entry.name), entry.stat().st_size))
                key.update(entry.read_bytes())
    cached = BUILD_CACHE / key.hexdigest()[:32] / f"{name}{SUFFIX}"
    if not cached.exists():
        scratch = Path(tempfile.mkdtemp(prefix="building-", dir=BUILD_CACHE))
        built = minildr.build(sources, name=name, exports=exports, out_dir=scratch, **kwargs)
        cached.parent.mkdir(exist_ok=True)
        os.replace(built, cached)
        shutil.rmtree(scratch)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(cached, Path(out_dir) / cached.name))


def run_python(code: str, *args: object, timeout: float = 120,
               memory_limit: "int | None" = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python (this venv) with `args`, within `timeout` seconds.

    For what could hang, exhaust memory or crash the test process when the
    promise it checks is broken: the child takes the blow, the test reads its
    output. `memory_limit` caps the child's address space (RLIMIT_AS, POSIX).
    A child still running after `timeout` is killed: `returncode` is then None.
    """
    def limit() -> None:
        import resource             # POSIX only
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    try:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], text=True,
                              capture_output=True, timeout=timeout, cwd=ROOT,
                              preexec_fn=limit if memory_limit else None)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, None, exc.stdout or "", exc.stderr or "")


# `python -m MODULE ARGS...` with tests/lazy_iri.py imported first (then taken off sys.path):
# the course's commands import nbformat, whose jsonschema builds RFC 3987's grammar at
# import (~1.7 s of CPU) for checks they never make. runpy.run_module with alter_sys is
# what -m runs: the module as __main__, sys.argv[0] its file, its exit status the process's.
_AS_MAIN = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); import lazy_iri; "
            "del sys.path[0]; sys.argv[:] = sys.argv[2:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def python_m(module: str, *args: object) -> "list[str]":
    """The command line of `python -m module args...` (see _AS_MAIN), for subprocess.run."""
    return [sys.executable, "-c", _AS_MAIN, str(TESTS), module, *map(str, args)]


def run_in_worker_first(monkeypatch, code: str) -> None:
    """Make isolated workers started from now on run `code` before they serve.

    The worker's Python ignores the host's environment (PYTHONPATH,
    sitecustomize: python -I), so a test that needs a worker that misbehaves
    changes the one line the host starts it with, process.BOOT.
    """
    start = "from minildr.isolation.worker import main"
    monkeypatch.setattr(process, "BOOT", BOOT.replace(start, f"exec({code!r}); {start}"))


# A subreaper: every orphan of the host below is re-parented to this process,
# so it sees whether anything the host started (its workers, whatever their
# plugins forked) outlived the host. argv: the host's code, then "exit" (the
# host ends by itself) or "kill" (SIGKILL once it printed its first line), and
# optionally how many seconds orphans are given to end once the host has ended
# (10: only a failure waits that long where none should be left; a test that
# expects one left says how long it looks).
# Prints {"state": "none left"} or the processes still running then.
ORPHAN_GUARD = r"""
import ctypes, json, os, signal, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER
host = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
first = host.stdout.readline()
if sys.argv[2] == "kill":
    host.kill()
host.wait()

def children():
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        return [int(p) for p in f.read().split()]

deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 10)
state = "none left"
while True:
    try:
        if os.waitpid(-1, os.WNOHANG)[0]:
            continue                        # one more ended (we reap what comes to us)
    except ChildProcessError:
        break                               # nothing below us any more
    if time.monotonic() > deadline:
        left = children()
        state = f"left running: {left}"
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        break
    time.sleep(0.02)
print(json.dumps({"state": state, "first": first.strip(), "host": host.returncode}))
"""
