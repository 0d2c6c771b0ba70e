"""Thread-local storage checks shared by test_native_tls.py and the AArch64 child under qemu.

Only minildr and the standard library: aarch64_child.py imports this module in an
AArch64 Python under qemu-aarch64, which has no pytest. Each function runs a
check and returns what it saw; the tests compare it with what the system
loader gives and with the expected values.
"""
from __future__ import annotations

import threading

import minildr
import minildr.native
from minildr.native.libc import ffi

COUNTER_C = """
static __thread int calls;              /* .tbss: zero in every thread */
__thread int bumps = 100;               /* .tdata: 100 in every thread */
int count(void) { return ++calls; }
int bump(void) { return ++bumps; }
"""
COUNTER_H = "int count(void);\nint bump(void);\n"
IE_COUNTER_C = """
__attribute__((tls_model("initial-exec"))) static __thread int calls;
__attribute__((tls_model("initial-exec"))) __thread int bumps = 100;
int count(void) { return ++calls; }
int bump(void) { return ++bumps; }
"""
PROVIDER_C = "__thread int shared = 7;\nint provider_value(void) { return shared; }\n"
USER_C = "extern __thread int shared;\nint bump_shared(void) { return ++shared; }\n"
POINTERS_C = """
static int table[3] = {10, 20, 30};
extern int shared_global;
int shared_global = 5;
__thread int *cursor = &table[1];         /* B + A: a RELATIVE relocation into .tdata */
__thread int *other = &shared_global;     /* S + A: a symbolic one */
int next_value(void) { return *cursor++; }
int other_value(void) { return *other; }
"""
POINTERS_H = "int next_value(void);\nint other_value(void);\n"
EXPECTED_COUNTS = {"main": (1, 2, 101), 0: (1, 101), 1: (2, 102), 2: (3, 103), 3: (4, 104)}


def call_log(log, argument: float, errno_before: int) -> int:
    """log(argument) in this thread, starting from errno_before; the errno it leaves."""
    ffi.errno = errno_before
    log(argument)
    return ffi.errno


def errno_per_thread(libm) -> dict:
    """libm's log through the native loader in four threads, two started before the load:
    {thread: (errno right after its own call, errno once all four have called)}."""
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
    try:
        with minildr.native.load(libm) as m:
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
    finally:                            # a failed load: the waiting threads end too
        barrier.abort()
    return results


def counts_from_four_threads(path, loader: str) -> dict:
    """COUNTER_C's count() and bump() in the main thread and four others (two started before
    the load): each thread's own copies (EXPECTED_COUNTS)."""
    ready = threading.Event()
    results = {}
    holder = {}

    def worker(i: int) -> None:
        ready.wait()
        count, bump = holder["count"], holder["bump"]
        results[i] = (max(count() for _ in range(i + 1)), max(bump() for _ in range(i + 1)))

    early, late = [threading.Thread(target=worker, args=(i,)) for i in range(2)], []
    for t in early:
        t.start()                                     # these threads exist before the load
    try:
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
    finally:                            # a failed load: the early threads end (KeyError) too
        ready.set()
        for t in early + late:
            t.join()
    return {"main": main, **results}


def close_while_threads_run(path) -> tuple:
    """Load natively, count twice, close while three other threads use their own thread-local
    data, load again: (the two counts, the last trace step, threads that finished, the count
    after reloading)."""
    lib = minildr.native.load(path)
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
    try:
        count = lib.lookup("count", "int (void)")
        counts = (count(), count())
        del count
        lib.close()
    finally:
        stop.set()
        for t in threads:
            t.join()
    with minildr.native.load(path) as again:          # a fresh block: the module id is free again
        after = again.lookup("count", "int (void)")()
    return counts, [e.step for e in lib.trace.events][-1], len(seen), after


def pointer_values(path, loader: str) -> tuple:
    """next_value(), next_value(), other_value() here, then next_value(), other_value() in a new
    thread: pointers as initial values of __thread variables (test_native_tls.py's POINTERS_C)."""
    with minildr.open(path, loader=loader) as plugin:
        step = plugin.lookup("next_value", "int (void)")
        other = plugin.lookup("other_value", "int (void)")
        here = [step(), step(), other()]
        there = []
        thread = threading.Thread(target=lambda: there.extend([step(), other()]))
        thread.start()
        thread.join()
        del step, other
        return here, there
