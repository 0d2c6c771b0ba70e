"""Thread-local storage through the native loader (minildr/native/tls.py).

Initial-exec references into libraries the system loader already loaded:
libm's R_X86_64_TPOFF64 against glibc's `errno`. Loaded by minildr.native,
libm's functions must set errno in the thread that calls them, and only
there, for threads started before the load and after it. A library with a
TLS block of its own is refused before anything is mapped (not
implemented), with a message that says what to do.

A library's own __thread variables (general-dynamic: DTPMOD64, DTPOFF64,
__tls_get_addr): a module id borrowed from glibc through a stub library;
a counter per thread in four threads, two of them started before the load,
with the same results as the system loader's; closing while other threads
run gives the id back.
"""
from __future__ import annotations

import ctypes
import errno
import subprocess
import threading

import pytest

import minildr
import minildr.native
from minildr.native.libc import ffi

from helpers import write_plugin
from native_util import mappings_of, native_host, system_library

pytestmark = native_host


def call_log(log, argument: float, errno_before: int) -> int:
    """log(argument) in this thread, starting from errno_before; the errno it leaves."""
    ffi.errno = errno_before
    log(argument)
    return ffi.errno


def test_libm_loads_with_its_initial_exec_tls_reference():
    with minildr.native.load(system_library("libm.so.6")) as m:
        assert m.trace.counts()["R_X86_64_TPOFF64"] == 1      # errno@GLIBC_PRIVATE
        log = m.lookup("log", "double (double)")
        assert call_log(log, -1.0, 0) == errno.EDOM
        assert call_log(log, 0.0, 0) == errno.ERANGE
        assert call_log(log, 1.0, 0) == 0
        del log


def test_libm_sets_errno_in_the_calling_thread_only():
    """Threads before and after the load: each sees only its own call's errno."""
    barrier = threading.Barrier(5)
    results = {}
    holder = {}

    def worker(name: str, argument: float) -> None:
        barrier.wait()                         # all four exist; the load happened before or after
        log = holder["log"]
        mine = call_log(log, argument, 0)
        barrier.wait()                         # everyone has called; nobody's errno leaked
        results[name] = (mine, ffi.errno)

    early = [threading.Thread(target=worker, args=(f"early{i}", a)) for i, a in
             enumerate((-1.0, 1.0))]
    for t in early:
        t.start()
    with minildr.native.load(system_library("libm.so.6")) as m:
        holder["log"] = m.lookup("log", "double (double)")
        late = [threading.Thread(target=worker, args=(f"late{i}", a)) for i, a in
                enumerate((0.0, 2.0))]
        for t in late:
            t.start()
        barrier.wait()
        barrier.wait()
        for t in early + late:
            t.join()
        del holder["log"]
    assert results == {"early0": (errno.EDOM, errno.EDOM), "early1": (0, 0),
                       "late0": (errno.ERANGE, errno.ERANGE), "late1": (0, 0)}


def test_close_while_other_threads_use_libm_errno():
    """Close the native libm while other threads go on using the system's errno."""
    stop = threading.Event()
    seen = []

    def busy() -> None:
        while not stop.is_set():
            ffi.errno = 0
            seen.append(ffi.errno)

    threads = [threading.Thread(target=busy) for _ in range(3)]
    for t in threads:
        t.start()
    m = minildr.native.load(system_library("libm.so.6"))
    assert call_log(m.lookup("log", "double (double)"), -1.0, 0) == errno.EDOM
    m.close()
    stop.set()
    for t in threads:
        t.join()
    assert m.unloaded and seen and set(seen) == {0}


COUNTER_C = """
static __thread int calls;              /* .tbss: zero in every thread */
__thread int bumps = 100;               /* .tdata: 100 in every thread */
int count(void) { return ++calls; }
int bump(void) { return ++bumps; }
"""


def counts_from_four_threads(path, loader: str) -> dict:
    ready = threading.Event()
    results = {}
    holder = {}

    def worker(i: int) -> None:
        ready.wait()
        count, bump = holder["count"], holder["bump"]
        results[i] = (max(count() for _ in range(i + 1)), max(bump() for _ in range(i + 1)))

    early = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in early:
        t.start()                                     # these threads exist before the load
    with minildr.open(path, loader=loader) as plugin:
        holder["count"] = plugin.lookup("count", "int (void)")
        holder["bump"] = plugin.lookup("bump", "int (void)")
        main = (holder["count"](), holder["count"](), holder["bump"]())
        late = [threading.Thread(target=worker, args=(i,)) for i in range(2, 4)]
        for t in late:
            t.start()
        ready.set()
        for t in early + late:
            t.join()
        holder.clear()
    return {"main": main, **results}


def test_a_thread_counter_of_its_own_counts_per_thread(tmp_path):
    """A __thread counter: each of four threads (two before the load) gets its own copy."""
    path = write_plugin(tmp_path, "counter", COUNTER_C, "int count(void);\nint bump(void);\n")
    native = counts_from_four_threads(path, "native")
    assert native == counts_from_four_threads(path, "system")
    assert native == {"main": (1, 2, 101), 0: (1, 101), 1: (2, 102), 2: (3, 103), 3: (4, 104)}


def test_the_tls_block_is_borrowed_and_given_back(tmp_path):
    path = write_plugin(tmp_path, "counter", COUNTER_C, "int count(void);\nint bump(void);\n")
    lib = minildr.native.load(path)
    borrowed = [e for e in lib.trace.events if e.step == "tls"]
    assert len(borrowed) == 1 and borrowed[0].data["size"] == 8 and borrowed[0].data["init_size"] == 4
    assert lib.trace.counts()["R_X86_64_DTPMOD64"] >= 1      # the module id, in the GOT
    stop, seen = threading.Event(), []

    def busy() -> None:                 # other threads use their own TLS while the close runs
        local = threading.local()
        local.n = 0
        while not stop.is_set():
            local.n += 1
        seen.append(local.n)

    threads = [threading.Thread(target=busy) for _ in range(3)]
    for t in threads:
        t.start()
    count = lib.lookup("count", "int (void)")
    assert (count(), count()) == (1, 2)
    del count
    lib.close()
    stop.set()
    for t in threads:
        t.join()
    assert [e.step for e in lib.trace.events][-1] == "tls" and len(seen) == 3
    with minildr.native.load(path) as again:          # a fresh block: the module id is free again
        assert again.lookup("count", "int (void)")() == 1


IE_COUNTER_C = """
__attribute__((tls_model("initial-exec"))) static __thread int calls;
__attribute__((tls_model("initial-exec"))) __thread int bumps = 100;
int count(void) { return ++calls; }
int bump(void) { return ++bumps; }
"""


def test_static_tls_of_its_own_counts_per_thread(tmp_path):
    """Initial-exec TLS inside the library itself (TPOFF64 against its own block, as libGLX_mesa
    and libubsan have): the stub that borrows the module id asks glibc for static TLS, so a
    constant offset from the thread pointer reaches each thread's copy, threads before the
    load included."""
    path = write_plugin(tmp_path, "ie", IE_COUNTER_C, "int count(void);\nint bump(void);\n")
    with minildr.native.load(path) as lib:
        assert lib.trace.counts()["R_X86_64_TPOFF64"] >= 1
        assert [e.data["static"] for e in lib.trace.events if e.step == "tls"] == [True]
    native = counts_from_four_threads(path, "native")
    assert native == counts_from_four_threads(path, "system")
    assert native == {"main": (1, 2, 101), 0: (1, 101), 1: (2, 102), 2: (3, 103), 3: (4, 104)}
    assert not mappings_of(path.name)


PROVIDER_C = "__thread int shared = 7;\nint provider_value(void) { return shared; }\n"
USER_C = "extern __thread int shared;\nint bump_shared(void) { return ++shared; }\n"


def gcc(tmp_path, name: str, source: str, *flags: str) -> str:
    (tmp_path / f"{name}.c").write_text(source)
    out = tmp_path / f"lib{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(tmp_path / f"{name}.c"),
                    *flags], check=True)
    return str(out)


def test_general_dynamic_tls_into_a_library_the_system_loader_loaded(tmp_path):
    """DTPMOD64/DTPOFF64 against another library's __thread variable: its module and offset.

    The provider is a DT_NEEDED library (loaded by the system loader); the
    user, loaded natively, increments the provider's variable, which the
    provider's own code then reads: the same copy, per thread."""
    gcc(tmp_path, "provider", PROVIDER_C)
    user = gcc(tmp_path, "user", USER_C, f"-L{tmp_path}", "-lprovider", "-Wl,-rpath,$ORIGIN")
    with minildr.native.load(user) as lib:
        counts = lib.trace.counts()
        assert counts["R_X86_64_DTPMOD64"] == counts["R_X86_64_DTPOFF64"] == 1
        provider = ctypes.CDLL(str(tmp_path / "libprovider.so"))     # the same, already loaded
        bump = lib.lookup("bump_shared", "int (void)")
        assert (bump(), bump(), provider.provider_value()) == (8, 9, 9)
        other = []
        thread = threading.Thread(target=lambda: other.extend([bump(), provider.provider_value()]))
        thread.start()
        thread.join()
        assert other == [8, 8] and provider.provider_value() == 9   # each thread its own copy
        del bump


POINTERS_C = """
static int table[3] = {10, 20, 30};
extern int shared_global;
int shared_global = 5;
__thread int *cursor = &table[1];         /* B + A: a RELATIVE relocation into .tdata */
__thread int *other = &shared_global;     /* S + A: a symbolic one */
int next_value(void) { return *cursor++; }
int other_value(void) { return *other; }
"""


def test_pointers_as_initial_values_of_thread_local_variables(tmp_path):
    """Relocations into the TLS image (as libGLdispatch's): each thread's copy starts relocated."""
    path = write_plugin(tmp_path, "pointers", POINTERS_C,
                        "int next_value(void);\nint other_value(void);\n")
    results = {}
    for loader in ("native", "system"):
        with minildr.open(path, loader=loader) as plugin:
            step = plugin.lookup("next_value", "int (void)")
            other = plugin.lookup("other_value", "int (void)")
            here = [step(), step(), other()]
            there = []
            thread = threading.Thread(target=lambda: there.extend([step(), other()]))
            thread.start()
            thread.join()
            results[loader] = (here, there)
            del step, other
    assert results["native"] == results["system"] == ([20, 30, 5], [20, 5])


def test_tls_descriptors_count_per_thread(tmp_path):
    """-mtls-dialect=gnu2 (R_X86_64_TLSDESC, as libEGL_mesa has): the block goes to static TLS
    and each descriptor is {a function returning its argument, the variable's offset from the
    thread pointer}; four threads count as under the system loader."""
    path = write_plugin(tmp_path, "desc", COUNTER_C, "int count(void);\nint bump(void);\n",
                        cflags=("-mtls-dialect=gnu2",))
    with minildr.native.load(path) as lib:
        assert lib.trace.counts()["R_X86_64_TLSDESC"] >= 1
        assert [e.data["static"] for e in lib.trace.events if e.step == "tls"] == [True]
    native = counts_from_four_threads(path, "native")
    assert native == counts_from_four_threads(path, "system")
    assert native == {"main": (1, 2, 101), 0: (1, 101), 1: (2, 102), 2: (3, 103), 3: (4, 104)}
