"""The native loader under interrupts, threads and hostile files (issue 21's classes).

- An interrupt (KeyboardInterrupt) while a library's initialisers run leaves
  nothing behind: its finalisers run (the C runtime's drops the atexit
  handler an initialiser registered), its memory is unmapped, then the
  interrupt goes on. In a child process: a handler left pointing into
  unmapped memory would crash it at exit.
- NativeLibrary.lookup parses a C type under ctype.PARSE_LOCK, like every
  other parse (cffi's parser is shared and not thread-safe), and a type it
  cannot read is a SymbolTypeError, not cffi's own exception.
- native.load reads the file through minildr.files: a FIFO is refused at
  once instead of blocking the host for ever.
"""
from __future__ import annotations

import os
import subprocess
import threading

import pytest

import minildr.native
from minildr import ctype
from minildr.errors import LoadError, SymbolTypeError

from helpers import run_python
from native_util import native_host, system_library

pytestmark = native_host

CONSTRUCTORS = r"""
#include <stdio.h>
#include <stdlib.h>
static void handler(void) { puts("atexit handler ran"); fflush(stdout); }
__attribute__((constructor(101))) static void first(void) { atexit(handler); }
__attribute__((constructor(102))) static void second(void) { puts("second ran"); }
__attribute__((destructor)) static void last(void) { puts("destructor ran"); fflush(stdout); }
int answer(void) { return 42; }
"""

INTERRUPTED = r"""
import sys
import minildr.native
from minildr.native.trace import Event
seen = {"inits": 0}

def interrupt_at_the_last_initialiser(event: Event) -> None:
    if event.step == "reserve":
        seen["range"] = (event.data["base"], event.data["base"] + event.data["span"])
    if event.step == "init":
        seen["inits"] += 1
        if event.data["offset"] == int(sys.argv[2], 16):
            raise KeyboardInterrupt

try:
    minildr.native.load(sys.argv[1], trace=interrupt_at_the_last_initialiser)
except KeyboardInterrupt:
    print("interrupted after", seen["inits"] - 1, "initialisers", flush=True)
start, end = seen["range"]
with open("/proc/self/maps") as maps:
    left = [line for line in maps
            if int(line.split("-")[0], 16) < end and int(line.split()[0].split("-")[1], 16) > start]
print("left mapped:", len(left), flush=True)
"""


def gcc_library(tmp_path, name: str, source: str) -> str:
    (tmp_path / f"{name}.c").write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(tmp_path / f"{name}.c")],
                   check=True)
    return str(out)


def local_symbol(path: str, name: str) -> int:
    """The address (offset from the base) of a local function, from nm."""
    table = subprocess.run(["nm", path], capture_output=True, text=True, check=True).stdout
    return next(int(line.split()[0], 16) for line in table.splitlines()
                if line.endswith(f" {name}"))


def test_interrupt_during_initialisers_leaves_nothing_mapped_or_registered(tmp_path):
    path = gcc_library(tmp_path, "ctors", CONSTRUCTORS)
    child = run_python(INTERRUPTED, path, f"{local_symbol(path, 'second'):x}", timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]      # no handler left into freed memory
    # DT_INIT (_init) runs first, then .init_array, prioritised constructors first: `first`
    # (registers the handler), then `second`, interrupted; frame_dummy never. Before the unmap the finalisers ran, in reverse:
    # `last`, then the C runtime's, whose __cxa_finalize ran the atexit handler (once: not
    # again at exit, when its code is gone).
    assert child.stdout.splitlines() == ["destructor ran", "atexit handler ran",
                                         "interrupted after 2 initialisers", "left mapped: 0"]


def test_interrupt_before_any_initialiser_runs_no_finaliser(tmp_path):
    path = gcc_library(tmp_path, "ctors", CONSTRUCTORS)
    # the first initialiser (DT_INIT, the C runtime's _init) is interrupted before its call
    child = run_python(INTERRUPTED, path, f"{local_symbol(path, '_init'):x}", timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == ["interrupted after 0 initialisers", "left mapped: 0"]


def test_lookup_parses_the_type_under_the_parse_lock():
    """While another thread holds ctype.PARSE_LOCK, a typed lookup waits for it."""
    with minildr.native.load(system_library("libz.so.1")) as z:
        done = threading.Event()
        got = {}

        def typed_lookup() -> None:
            got["f"] = z.lookup("zlibVersion", "const char *(void)")
            done.set()

        ctype.pointer_to("const char *(void)")      # pycparser's half cached: cffi's is left
        with ctype.PARSE_LOCK:
            worker = threading.Thread(target=typed_lookup)
            worker.start()
            assert not done.wait(0.5), "the lookup parsed its type without the lock"
        worker.join(30)
        assert done.is_set()
        assert minildr.native.libc.ffi.string(got["f"]()).startswith(b"1.")
        del got["f"]


def test_lookup_with_an_unreadable_type_is_a_symbol_type_error():
    with minildr.native.load(system_library("libz.so.1")) as z:
        for text in ["int (", "not_a_type", "int (*)(" * 100]:
            with pytest.raises(SymbolTypeError, match="zlibVersion"):
                z.lookup("zlibVersion", text)


REFUSAL = ("import sys, minildr.native\n"
           "try:\n    minildr.native.load(sys.argv[1])\n"
           "except Exception as exc:\n    print(type(exc).__name__, exc)\n")


def test_load_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "libfifo.so"
    os.mkfifo(fifo)
    child = run_python(REFUSAL, fifo, timeout=60)
    assert child.returncode == 0, "native.load blocked on a FIFO (or crashed)"
    assert child.stdout.startswith("NotARegularFile"), child.stdout
    assert "named pipe" in child.stdout


def test_load_refuses_a_device_without_reading_it():
    """/dev/zero never ends: read whole, it would exhaust the host's memory."""
    child = run_python(REFUSAL, "/dev/zero", timeout=60, memory_limit=4 << 30)
    assert child.returncode == 0, "native.load read /dev/zero (or crashed)"
    assert child.stdout.startswith("NotARegularFile"), child.stdout


def test_load_of_a_missing_file_is_a_load_error():
    with pytest.raises(LoadError, match="cannot be opened"):
        minildr.native.load("/nonexistent/libnothing.so")


def test_a_needed_library_the_system_loader_cannot_load_is_a_clear_error(tmp_path):
    """libneedy uses a symbol that only its sibling libgiver defines (as samba's libraries do,
    where glibc loads them all in one scope): dlopen of libneedy alone fails. The refusal quotes
    the system loader's reason (dlerror was read after dlclose had cleared it: RuntimeError)."""
    gcc_library(tmp_path, "giver", "int given(void) { return 1; }\n")
    gcc_library(tmp_path, "needy", "int given(void);\nint needy(void) { return given(); }\n")
    (tmp_path / "plugin.c").write_text("int needy(void);\nint run(void) { return needy(); }\n")
    plugin = tmp_path / "libplugin.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugin), str(tmp_path / "plugin.c"),
                    f"-L{tmp_path}", "-Wl,--no-as-needed", "-lgiver", "-lneedy",
                    "-Wl,-rpath,$ORIGIN"], check=True)
    glibc = run_python("import ctypes, sys; print(ctypes.CDLL(sys.argv[1]).run())", plugin)
    assert glibc.stdout.strip() == "1", glibc.stderr          # glibc: one scope for all three
    with pytest.raises(LoadError, match="libneedy.so.*undefined symbol: given"):
        minildr.native.load(plugin)
