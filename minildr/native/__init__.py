"""minildr.native: a dynamic loader in Python, doing by hand what dlopen does.

    import minildr.native
    lib = minildr.native.load("/usr/lib/x86_64-linux-gnu/libz.so.1")
    crc32 = lib.lookup("crc32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
    lib.close()

One module per step, numbered in the order a load runs them (musl's
ldso/dynlink.c does the same work in C):

    1 parse.py      read and check the whole plan; refuse what is out of scope
    2 resolve.py    bring in DT_NEEDED, then find every symbol the library uses
    3 mapping.py    reserve the span (its start is the base), map each PT_LOAD, zero .bss
    4 relocate.py   patch every address the file left open, IFUNCs last; then RELRO
    5 initfini.py   run initialisers (now), finalisers (on close)
    6 lookup.py     find an exported name: DT_GNU_HASH (Bloom filter) or DT_HASH
    trace.py        beside every step: each one as an event; the layout as rows to plot
    x86_64.py, aarch64.py   the relocation types of each architecture (step 4's tables)
    libc.py         the C functions those steps call (mmap, dlsym, ...), in one place
    library.py      the steps in order: NativeLibrary, load()

`plan(path)` runs step 1 alone: the Plan a load would follow, mapping and
running nothing (on any machine: it only reads). `load(path, trace=f)`
runs them all and calls `f` with each `Event` as it happens.

The ELF tables themselves (dynamic section, symbols, hash and version
tables, relocation entries) are read, bounds-checked, by `minildr.elf`
(`DynamicSection`), the one ELF reader of the project; `parse.py` decides
what the loader can do with them.

Scope: 64-bit little-endian ELF shared libraries (ET_DYN) for x86_64 and
aarch64 on Linux, with RELA and RELR relocations of the types each
architecture's table lists. Refused with UnsupportedELF, before any code
runs: thread-local storage (PT_TLS, TLS relocations), COPY relocations,
text relocations, DT_REL, 32-bit, big-endian, ET_EXEC or PIE executables,
other architectures, p_align below the page size, unknown relocation types.
`minildr.open(path, loader="native")` uses it after the same checks as the
system loader, on the same sealed bytes.

What it does not do that dlopen (glibc's ld.so) does; a loader to read,
not to ship:

- DT_NEEDED libraries are found as ld.so would find them (RPATH,
  LD_LIBRARY_PATH, RUNPATH with $ORIGIN, then the system's search:
  minildr.linkage.find_library) but loaded by the system loader, not by
  this one.
- It keeps no list of loaded libraries: dladdr, gdb, profilers, stack
  unwinders and C++ exception handling (which find code through the
  system loader's list) do not see its libraries.
- Nothing is shared between loads: each load maps a new copy, with no
  reference count and no de-duplication by path or SONAME; its symbols
  are reachable through `lookup` only (nothing like RTLD_GLOBAL).
- Finalisers run on `close()` only: a library never closed does not have
  them run at interpreter exit.
- No loader lock: load and close from one thread; dlopen serialises every
  load and unload process-wide.
- No lazy binding: everything is bound at load, as RTLD_NOW does.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from ..errors import LoadError
from .parse import Plan, check_host, parse
from .trace import Event, Segment, Trace


def plan(path: "os.PathLike[str] | str") -> Plan:
    """Step 1 alone: read the library at `path` and check it into the Plan a load follows.

    Maps nothing and runs nothing, so it is safe on any file and any machine;
    a damaged or out-of-scope file raises the NotAPlugin / UnsupportedELF
    that `load` would.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise LoadError(path, f"cannot be read ({exc.strerror})") from None
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
