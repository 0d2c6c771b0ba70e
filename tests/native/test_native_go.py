"""A Go c-shared library through the native loader: it loads, runs, closes, and stays alone.

Each test runs in a fresh child process: a Go runtime, once started, never
leaves its process (its threads run until the process ends; Go's linker
marks the library NODELETE), and the one-runtime-per-process rule is about
the process. The library is the course's Go bridge (examples/go/bridge),
built as tests/course/test_golang.py builds it, in a workspace of its own
(the two files may run at once in different workers).
"""
from __future__ import annotations

import struct
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
    ws = golang.Workspace(ROOT / "build" / "go-native-tests", sources=EXAMPLES, shown_as="WORK")
    return ws.build_c_shared(ws.src / "bridge", name="gobridge",
                             exports=ws.src / "bridge" / "bridge.h", version="1.2.3")


@pytest.fixture
def other(bridge, tmp_path) -> Path:
    """Another Go library: the bridge's bytes and one more (another file, another digest)."""
    path = tmp_path / "othergo.so"
    path.write_bytes(bridge.read_bytes() + b"\0")
    return path


# What every child script starts with: its imports, and try_each, which prints
# for each (name, load) "name LOADED" or "name refused: <the LoadError's reason>".
PRELUDE = """import sys, time, threading, minildr, minildr.native
def try_each(*loads):
    for name, load in loads:
        try:
            load()
            print(name, "LOADED")
        except minildr.LoadError as exc:
            print(name, "refused:", exc.reason)
"""


def child(code: str, *args: object) -> str:
    """Run `code` in a fresh Python; it must exit 0 (a crash shows as its signal)."""
    result = run_python(PRELUDE + code, *args)
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
try_each(("same", lambda: minildr.native.load(sys.argv[1])),
         ("other", lambda: minildr.native.load(sys.argv[2])),
         ("open-native", lambda: minildr.open(sys.argv[2], loader="native")),
         ("open-system", lambda: minildr.open(sys.argv[2])))
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


AFTER_CLAIM = """
from minildr import goruntime
PACKAGE = str(__import__("pathlib").Path(minildr.__file__).resolve().parent)


class AfterTheClaim:
    '''Raise KeyboardInterrupt at the first line event inside minildr once the Go runtime is
    claimed (goruntime._running set): a Ctrl-C landing just after the claim was made.'''
    where = None
    def __call__(self, frame, event, arg):
        return self.local if frame.f_code.co_filename.startswith(PACKAGE) else None
    def local(self, frame, event, arg):
        if event == "line" and self.where is None and goruntime._running:
            self.where = f"{frame.f_code.co_name}"
            raise KeyboardInterrupt
        return self.local


load = {"native.load": lambda: minildr.native.load(sys.argv[1]),
        "open-native": lambda: minildr.open(sys.argv[1], loader="native"),
        "open": lambda: minildr.open(sys.argv[1])}[sys.argv[2]]
interrupt = AfterTheClaim()
sys.settrace(interrupt)
try:
    load()
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted in", interrupt.where)
finally:
    sys.settrace(None)
print("claim left:", goruntime._running)
library = load()                              # the first runtime of the process, now
print("then", library.lookup("go_add", "int (int, int)")(40, 2))
"""


@pytest.mark.parametrize("how", ["native.load", "open-native", "open"])
def test_an_interrupt_just_after_the_go_runtime_is_claimed_gives_the_claim_back(bridge, how):
    """The native loader claimed the runtime (goruntime.start) in a statement before its `try`:
    an interrupt between the two left the claim held with nothing loaded, and every later Go
    load in the process was refused ("already runs the Go runtime of" the one that never
    ran). Now the claim is made inside the load's `try`, and its undoing gives it back;
    open's system-loader path claims the same way, before dlopen."""
    out = child(AFTER_CLAIM, bridge, how)
    assert "interrupted in" in out and "claim left: None" in out and "then 42" in out, out


def test_a_go_library_loaded_by_ctypes_counts_as_the_processs_go_runtime(bridge, other):
    """A Go library minildr did not load (ctypes.CDLL here; a Go program hosting Python alike)
    was not seen by the one-runtime rule: minildr.open of another Go library started a second
    runtime beside it. Now the system loader's list of loaded objects is read for a Go build
    ID note before a Go library loads, and each such load is refused naming the first."""
    out = child("""
import ctypes
ctypes.CDLL(sys.argv[1])                           # its initialisers start the Go runtime
try_each(("open-other", lambda: minildr.open(sys.argv[2])),
         ("open-same-file", lambda: minildr.open(sys.argv[1])),
         ("open-native", lambda: minildr.open(sys.argv[2], loader="native")),
         ("native.load", lambda: minildr.native.load(sys.argv[2])))
print("mapped-other", any(sys.argv[2] in line for line in open("/proc/self/maps")))
print("memfd", any("memfd:" in line and "gobridge" in line for line in open("/proc/self/maps")))
""", bridge, other)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    for name in ("open-other", "open-same-file", "open-native", "native.load"):
        reason = lines[name]
        assert reason.startswith("refused:") and "golang/go#18976" in reason, (name, reason)
        assert f"runs the Go runtime of {bridge}" in reason and "isolate=True" in reason
        assert "loaded by other means than minildr" in reason
    assert lines["mapped-other"] == "False" and lines["memfd"] == "False"


def test_the_scan_finds_no_go_runtime_where_none_was_loaded():
    """The scan itself: the test process's own objects carry no Go build ID note (unless a Go
    library was loaded here), and a note segment is read as the gABI lays notes out."""
    from minildr import goruntime
    go = struct.pack("=III", 4, 8, goruntime.NT_GO_BUILDID) + b"Go\0\0" + b"buildid!"
    gnu = struct.pack("=III", 4, 20, 3) + b"GNU\0" + bytes(20)
    assert goruntime._has_go_build_id(4, gnu + go) and not goruntime._has_go_build_id(4, gnu)
    assert not goruntime._has_go_build_id(4, struct.pack("=III", 4, 8, 1) + b"Go\0\0" + bytes(8))
    out = child("from minildr import goruntime\nprint('found', goruntime.go_object_loaded())")
    assert "found None" in out
