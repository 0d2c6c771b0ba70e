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
from tls_threads import (COUNTER_C, COUNTER_H, EXPECTED_COUNTS, IE_COUNTER_C, POINTERS_C,
                         POINTERS_H, PROVIDER_C, USER_C, call_log,
                         close_while_threads_run, counts_from_four_threads, errno_per_thread,
                         pointer_values)

pytestmark = native_host


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
    results = errno_per_thread(system_library("libm.so.6"))
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


def test_a_thread_counter_of_its_own_counts_per_thread(tmp_path):
    """A __thread counter: each of four threads (two before the load) gets its own copy."""
    path = write_plugin(tmp_path, "counter", COUNTER_C, COUNTER_H, once=True)
    native = counts_from_four_threads(path, "native")
    assert native == counts_from_four_threads(path, "system")
    assert native == EXPECTED_COUNTS


def test_the_tls_block_is_borrowed_and_given_back(tmp_path):
    path = write_plugin(tmp_path, "counter", COUNTER_C, COUNTER_H, once=True)
    lib = minildr.native.load(path)
    borrowed = [e for e in lib.trace.events if e.step == "tls"]
    assert len(borrowed) == 1 and borrowed[0].data["size"] == 8 and borrowed[0].data["init_size"] == 4
    assert lib.trace.counts()["R_X86_64_DTPMOD64"] >= 1      # the module id, in the GOT
    lib.close()
    assert close_while_threads_run(path) == ((1, 2), "tls", 3, 1)


def test_static_tls_of_its_own_counts_per_thread(tmp_path):
    """Initial-exec TLS inside the library itself (TPOFF64 against its own block, as libGLX_mesa
    and libubsan have): the stub that borrows the module id asks glibc for static TLS, so a
    constant offset from the thread pointer reaches each thread's copy, threads before the
    load included."""
    path = write_plugin(tmp_path, "ie", IE_COUNTER_C, COUNTER_H)
    with minildr.native.load(path) as lib:
        assert lib.trace.counts()["R_X86_64_TPOFF64"] >= 1
        assert [e.data["static"] for e in lib.trace.events if e.step == "tls"] == [True]
    native = counts_from_four_threads(path, "native")
    assert native == counts_from_four_threads(path, "system")
    assert native == EXPECTED_COUNTS
    assert not mappings_of(path.name)


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


def test_pointers_as_initial_values_of_thread_local_variables(tmp_path):
    """Relocations into the TLS image (as libGLdispatch's): each thread's copy starts relocated."""
    path = write_plugin(tmp_path, "pointers", POINTERS_C, POINTERS_H)
    results = {}
    for loader in ("native", "system"):
        results[loader] = pointer_values(path, loader)
    assert results["native"] == results["system"] == ([20, 30, 5], [20, 5])


def test_tls_descriptors_count_per_thread(tmp_path):
    """-mtls-dialect=gnu2 (R_X86_64_TLSDESC, as libEGL_mesa has): the block goes to static TLS
    and each descriptor is {a function returning its argument, the variable's offset from the
    thread pointer}; four threads count as under the system loader."""
    path = write_plugin(tmp_path, "desc", COUNTER_C, COUNTER_H,
                        cflags=("-mtls-dialect=gnu2",))
    with minildr.native.load(path) as lib:
        assert lib.trace.counts()["R_X86_64_TLSDESC"] >= 1
        assert [e.data["static"] for e in lib.trace.events if e.step == "tls"] == [True]
    native = counts_from_four_threads(path, "native")
    assert native == counts_from_four_threads(path, "system")
    assert native == EXPECTED_COUNTS


VECTOR_USER_C = """
#include <string.h>
extern __thread int shared;
/* Across the descriptor call: values held in %xmm registers (the call saves them) */
double bump_twice_keeping(double a, double b) { shared += 2; return a * b + shared; }
int bump_shared(void) { return ++shared; }
"""


def test_tls_descriptors_into_a_block_in_dynamic_tls(tmp_path):
    """-mtls-dialect=gnu2 against a variable of a library glibc loaded with dlopen and placed in
    dynamic TLS (the provider uses __tls_get_addr itself): the descriptor's function calls
    __tls_get_addr per use, saving what the convention says it must. Per thread, with the
    provider's own code reading the same copy, threads before and after the load."""
    provider = gcc(tmp_path, "provider", PROVIDER_C)
    user = gcc(tmp_path, "user", VECTOR_USER_C, "-mtls-dialect=gnu2", "-O2", f"-L{tmp_path}",
               "-lprovider", "-Wl,-rpath,$ORIGIN")
    ready, seen = threading.Event(), {}

    def other(name: str) -> None:
        ready.wait()
        seen[name] = (bump(), bump(), provider_value(), twice(1.5, 2.0), provider_value())

    early = threading.Thread(target=other, args=("early",))
    early.start()                                  # before the load: its block comes later
    with minildr.native.load(user) as lib:
        assert lib.trace.counts()["R_X86_64_TLSDESC"] == 2          # one descriptor: two words
        provider_value = ctypes.CDLL(provider).provider_value        # already loaded: the same
        shared = ctypes.addressof(ctypes.c_int.in_dll(ctypes.CDLL(provider), "shared"))
        assert minildr.native.tls.tp_offset(shared) is None           # dynamic TLS, not static
        bump = lib.lookup("bump_shared", "int (void)")
        twice = lib.lookup("bump_twice_keeping", "double (double, double)")
        start = provider_value()
        here = (bump() - start, bump() - start, provider_value() - start,
                twice(1.5, 2.0) - start, provider_value() - start)
        late = threading.Thread(target=other, args=("late",))
        late.start()
        ready.set()
        early.join()
        late.join()
        del bump, twice
    assert here == (1, 2, 2, 3.0 + 4, 4)
    assert seen == {"early": (8, 9, 9, 3.0 + 11, 11), "late": (8, 9, 9, 3.0 + 11, 11)}
