"""The AArch64 half of test_native_aarch64.py: run in an AArch64 Python (under qemu-aarch64
on an x86_64 machine), it loads AArch64 libraries through both loaders and prints what it saw.

    python3 aarch64_child.py "[(name, check, args), ...]"

Prints one line, repr() of {name: ("ok", result) or ("error", traceback)}; each
check runs even if one before it failed. Only minildr and the standard library
(the AArch64 Python has no pytest): the thread checks are tls_threads.py's, the
same that test_native_tls.py runs on x86_64.
"""
from __future__ import annotations

import ast
import ctypes
import platform
import sys
import threading
import traceback

import minildr
import minildr.native
from minildr.native.libc import ffi

from tls_threads import (close_while_threads_run, counts_from_four_threads, errno_per_thread,
                         pointer_values)


def machine() -> str:
    return platform.machine()


def trace(path: str) -> tuple:
    """Load natively: (relocations by type, the data of each `tls` event)."""
    with minildr.native.load(path) as lib:
        return (dict(lib.trace.counts()), [e.data for e in lib.trace.events if e.step == "tls"])


def counts(path: str, loader: str) -> dict:
    return counts_from_four_threads(path, loader)


def libm_errno(libm: str) -> tuple:
    """libm's TLS_TPREL against errno, and errno per thread (tls_threads.errno_per_thread)."""
    with minildr.native.load(libm) as m:
        tprel = m.trace.counts()["R_AARCH64_TLS_TPREL"]
    return tprel, errno_per_thread(libm)


def close_and_reload(path: str) -> tuple:
    return close_while_threads_run(path)


def relocs_values(lookup) -> tuple:
    """What relocs.c's functions return (test_native_loader.py's relocs test, on AArch64)."""
    out = ffi.new("char[64]")
    n = lookup("describe", "int (int, char *, size_t)")(3, out, 64)
    return (n, ffi.string(out), lookup("sum_table", "int (void)")(), lookup("answer", "int (void)")(),
            lookup("double_it", "int (int)")(21), lookup("ptr_is_libc_strlen", "int (void)")(),
            lookup("counter", "int")[0], ffi.string(lookup("word", "const char *(int)")(9)))


def relocs_plugin(path: str, loader: str) -> tuple:
    """A relocs plugin (minildr.build) through `loader`."""
    with minildr.open(path, loader=loader) as plugin:
        return relocs_values(plugin.lookup)


def relocs_library(path: str) -> tuple:
    """A plain relocs library (tests/data/aarch64, no manifest) through the native loader."""
    with minildr.native.load(path) as lib:
        return relocs_values(lib.lookup)


def shared_variable(user: str, provider: str) -> tuple:
    """The user (loaded natively) bumps the provider's __thread variable, which the provider
    (loaded by glibc, a DT_NEEDED library) reads back: here (as increments over its value
    before), then in another thread (its own copy, from the initial 7)."""
    with minildr.native.load(user) as lib:
        provider_value = ctypes.CDLL(provider).provider_value       # already loaded: the same
        bump = lib.lookup("bump_shared", "int (void)")
        start = provider_value()                # 7, or more if an earlier check bumped it here
        here = tuple(v - start for v in (bump(), bump(), provider_value()))
        there = []
        thread = threading.Thread(target=lambda: there.extend([bump(), provider_value()]))
        thread.start()
        thread.join()
        del bump
        return dict(lib.trace.counts()), here, tuple(there), provider_value() - start


def shared_in_dynamic_tls(user: str, provider: str) -> tuple:
    """shared_variable; a*b + shared - shared before, with a*b held across the descriptor
    call; and whether the provider's variable is outside static TLS (True: its block is in
    dynamic TLS, where no constant offset from the thread pointer reaches it)."""
    values = shared_variable(user, provider)
    with minildr.native.load(user) as lib:     # values in vector registers across the call
        twice = lib.lookup("bump_twice_keeping", "double (double, double)")
        before = ctypes.CDLL(provider).provider_value()
        kept = twice(1.5, 2.0) - before
        del twice
    shared = ctypes.addressof(ctypes.c_int.in_dll(ctypes.CDLL(provider), "shared"))
    return values + (kept, minildr.native.tls.tp_offset(shared) is None)


def pointers(path: str, loader: str) -> tuple:
    """Pointers as initial values of __thread variables (test_native_tls.py's POINTERS_C)."""
    return pointer_values(path, loader)


CHECKS = {f.__name__: f for f in (machine, trace, counts, libm_errno, close_and_reload,
                                  relocs_plugin, relocs_library, shared_variable,
                                  shared_in_dynamic_tls, pointers)}


def main() -> None:
    results = {}
    for name, check, args in ast.literal_eval(sys.argv[1]):
        print(f"aarch64_child: {name}", file=sys.stderr, flush=True)
        try:
            results[name] = ("ok", CHECKS[check](*args))
        except Exception:                       # report it, run the next check
            results[name] = ("error", traceback.format_exc())
    print(repr(results), flush=True)


if __name__ == "__main__":
    main()
