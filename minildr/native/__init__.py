"""minildr.native: a dynamic loader in Python, doing by hand what dlopen does.

    import minildr.native
    lib = minildr.native.load("/usr/lib/x86_64-linux-gnu/libz.so.1")
    crc32 = lib.lookup("crc32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
    lib.close()

One module per step, numbered in the order a load runs them (musl's
ldso/dynlink.c does the same work in C):

    1 parse.py      read the whole plan: segments, dynamic section, symbols, relocations
   1b validate.py   check each part as it is read; refuse the damaged and the out of scope
    2 resolve.py    bring in DT_NEEDED, then find every symbol the library uses
    3 mapping.py    reserve the span (its start is the base), map each PT_LOAD, zero .bss
    4 relocate.py   patch every address the file left open, IFUNCs last; then RELRO
    5 initfini.py   run initialisers (now), finalisers (on close)
    initstack.py    what initialisers get: argc, argv, envp laid out as the initial stack
    6 lookup.py     find an exported name: DT_GNU_HASH (Bloom filter) or DT_HASH
    trace.py        beside every step: each one as an event; the layout as rows to plot
    tls.py          thread-local storage: into loaded libraries, and a block of its own
    unwind.py       its .eh_frame registered with the unwinder, so C++ exceptions work
    classes.py      what a relocation asks for, whatever the CPU: NONE, SYMBOLIC, RELATIVE, ...
    x86_64.py, aarch64.py   the relocation types of each architecture, by class (step 4's tables)
    libc.py         the C functions those steps call (mmap, dlsym, ...), in one place
    library.py      the steps in order: NativeLibrary, load()

`plan(path)` runs step 1 alone: the Plan a load would follow, mapping and
running nothing (on any machine: it only reads). `load(path, trace=f)`
runs them all and calls `f` with each `Event` as it happens; without `trace`
the relocations are counted per type, and the symbols per place they were
found, rather than recorded one by one.

The ELF tables themselves (dynamic section, symbols, hash and version
tables, relocation entries) are read, bounds-checked, by `minildr.formats.elf`
(`DynamicSection`), the one ELF reader of the project; `parse.py` and `validate.py` decide
what the loader can do with them.

Scope: 64-bit little-endian ELF shared libraries (ET_DYN) for x86_64 and
aarch64 on Linux, with RELA and RELR relocations of the types each
architecture's table lists. Thread-local storage loads on both (tls.py:
a block of its own, in static TLS too, and references into libraries
already loaded, TLS descriptors for blocks in static TLS and for another
library's block in dynamic TLS; x86-64's variant II layout and
AArch64's variant I). Refused with UnsupportedELF, before any
code runs: relocations other than addresses into a TLS image, COPY relocations,
text relocations, DT_REL, 32-bit, big-endian, ET_EXEC or PIE executables,
other architectures, p_align below the page size, an executable stack,
unknown relocation types; and every structural rule glibc's loader enforces
(validate.py, each cited by the glibc function that has it).
`minildr.open(path, loader="native")` uses it after the same checks as the
system loader, on the same sealed bytes.

What it does not do that dlopen (glibc's ld.so) does; a loader to read,
not to ship:

- DT_NEEDED libraries are found as ld.so would find them (RPATH,
  LD_LIBRARY_PATH, RUNPATH with $ORIGIN, then the system's search:
  minildr.linkage.find_library) but loaded by the system loader, not by
  this one.
- It keeps no list of loaded libraries: dladdr, gdb and profilers (which
  find code through the system loader's list) do not see its libraries;
  the unwinder does, through the registration in unwind.py, made when a
  library it needs brings libgcc_s (C code waits for the first load of one
  that does; glibc's unwinder finds its libraries at any time).
- A library whose C++ thread_local objects register destructors for
  thread exit (__cxa_thread_atexit) stays mapped after close: glibc counts
  those registrations and defers the unload; this loader cannot count them.
- Nothing is shared between loads: each load maps a new copy, with no
  reference count and no de-duplication by path or SONAME; its symbols
  are reachable through `lookup` only (nothing like RTLD_GLOBAL).
- Finalisers run on `close()` only: a library never closed does not have
  them run at interpreter exit, and a NODELETE one (DF_1_NODELETE, as every
  Go c-shared library) never: its close() does what dlclose does for it,
  nothing (no finaliser, nothing unmapped), and glibc runs them at exit.
- No loader lock: dlopen serialises every load and unload process-wide;
  here each load maps its own copy, and what loads share has a lock of its
  own (tls.py's code page, initstack.py's blocks, goruntime's record of the
  Go runtime; each library's close against its lookups, lifetime.py).
  tests/core/test_threads.py opens, calls and closes from eight threads.
- No lazy binding: everything is bound at load, as RTLD_NOW does.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from .. import files
from ..errors import LoadError, PluginNotFound, UnreadableFile
from .parse import Plan, parse
from .trace import Event, Segment, Trace
from .validate import check_host


def plan(path: "os.PathLike[str] | str") -> Plan:
    """Step 1 alone: read the library at `path` and check it into the Plan a load follows.

    Maps nothing and runs nothing, so it is safe on any file and any machine;
    a damaged or out-of-scope file raises the NotAPlugin / UnsupportedELF
    that `load` would.
    """
    path = os.fspath(path)
    try:
        data, _ = files.read_regular(path, files.MAX_PLUGIN_BYTES)   # a FIFO, /dev/zero...
    except (PluginNotFound, UnreadableFile) as exc:
        raise LoadError(path, f"cannot be read: {exc.reason}") from None
    return parse(data, path)


if sys.platform.startswith("linux"):
    from .library import NativeLibrary, from_image, load
else:                                        # pragma: no cover - other systems
    NativeLibrary = None                     # mapping needs Linux's mmap and dlvsym

    def load(path: "os.PathLike[str] | str", **_: Any) -> Any:
        check_host(os.fspath(path))

    def from_image(image: Any, **_: Any) -> Any:
        check_host(image.path)

__all__ = ["plan", "load", "from_image", "NativeLibrary", "Plan", "Event", "Segment",
           "Trace", "check_host"]
