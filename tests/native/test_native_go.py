"""A Go c-shared library through the native loader: it loads, runs, closes, and stays alone.

Each test runs in a fresh child process: a Go runtime, once started, never
leaves its process (its threads run until the process ends; Go's linker
marks the library NODELETE), and the one-runtime-per-process rule is about
the process. The library is the course's Go bridge (examples/go/bridge),
built as tests/course/test_golang.py builds it, in a workspace of its own
(the two files may run at once in different workers).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ROOT, run_python
from native_util import native_host
from minildr.course import golang
from minildr.errors import GoToolchainNotFound

pytestmark = native_host
EXAMPLES = ROOT / "examples" / "go"


@pytest.fixture(scope="module")
def bridge() -> Path:
    try:
        golang.find_toolchain()
    except GoToolchainNotFound as exc:
        pytest.skip(f"no Go toolchain: {exc}")
    ws = golang.Workspace(ROOT / "build" / "go-native-tests", sources=EXAMPLES, shown_as="WORK",
                          cache=ROOT / "build" / "go-cache")
    return ws.build_c_shared(ws.src / "bridge", name="gobridge",
                             exports=ws.src / "bridge" / "bridge.h", version="1.2.3")


@pytest.fixture
def other(bridge, tmp_path) -> Path:
    """Another Go library: the bridge's bytes and one more (another file, another digest)."""
    path = tmp_path / "othergo.so"
    path.write_bytes(bridge.read_bytes() + b"\0")
    return path


def child(code: str, *args: object) -> str:
    """Run `code` in a fresh Python; it must exit 0 (a crash shows as its signal)."""
    result = run_python("import sys, time, threading, minildr, minildr.native\n" + code, *args)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-3000:])
    return result.stdout


def test_a_go_library_loads_natively_runs_in_threads_and_closes_without_unmapping(bridge):
    out = child("""
lib = minildr.native.load(sys.argv[1])
add = lib.lookup("go_add", "int (int, int)")
words = lib.lookup("go_count_words", "int (char *)")
version = lib.lookup("go_runtime_version", "char *(void)")
time.sleep(1)                       # the runtime's own threads run meanwhile
results = []
def work(n):
    results.append([add(n, i) - i for i in range(2000)] == [n] * 2000
                   and words(b" a b  c ") == 3)
threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("calls", results.count(True), minildr.ffi.string(version()).decode())
del add, words, version
lib.close()
print("kept", [e.message for e in lib.trace.events if e.step in ("fini", "unmap")])
print("mapped", any(sys.argv[1] in line for line in open("/proc/self/maps")))
time.sleep(0.5)
""", bridge)
    assert f"calls 4 go{golang.GO_VERSION}" in out
    assert "kept ['kept mapped: NODELETE (DF_1_NODELETE)" in out      # no finaliser ran
    assert "mapped True" in out


def test_a_second_go_runtime_is_refused_by_the_native_loader_and_the_first_runs_on(bridge, other):
    out = child("""
lib = minildr.native.load(sys.argv[1])
for name, load in (("same", lambda: minildr.native.load(sys.argv[1])),
                   ("other", lambda: minildr.native.load(sys.argv[2])),
                   ("open-native", lambda: minildr.open(sys.argv[2], loader="native")),
                   ("open-system", lambda: minildr.open(sys.argv[2]))):
    try:
        load()
        print(name, "LOADED")
    except minildr.LoadError as exc:
        print(name, "refused:", exc.reason)
print("mapped-other", any(sys.argv[2] in line for line in open("/proc/self/maps")))
print("first", lib.lookup("go_add", "int (int, int)")(40, 2))
""", bridge, other)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    for name in ("same", "other", "open-native", "open-system"):
        reason = lines[name]
        assert reason.startswith("refused:") and "golang/go#18976" in reason, (name, reason)
        assert f"runs the Go runtime of {bridge}" in reason and "isolate=True" in reason
    assert "maps a new copy of a library on every load" in lines["same"]
    assert lines["mapped-other"] == "False" and lines["first"] == "42"


def test_open_with_the_native_loader_after_a_system_loader_go_open_is_refused(bridge):
    out = child("""
first = minildr.open(sys.argv[1])                     # the system loader starts the runtime
try:
    minildr.open(sys.argv[1], loader="native")
    print("native LOADED")
except minildr.LoadError as exc:
    print("native refused:", exc.reason)
again = minildr.open(sys.argv[1])                     # the same library, handed back
print("again", again.lookup("go_add", "int (int, int)")(1, 2))
print("first", first.lookup("go_add", "int (int, int)")(40, 2))
""", bridge)
    assert "native refused:" in out and "maps a new copy of a library on every load" in out
    assert "isolate=True" in out and "again 3" in out and "first 42" in out
