"""minildr.native: a dynamic loader in Python, doing by hand what dlopen does.

    import minildr.native
    lib = minildr.native.load("/usr/lib/x86_64-linux-gnu/libz.so.1")
    crc32 = lib.lookup("crc32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
    lib.close()

One module per step, in the order they run (musl's ldso/dynlink.c does the
same work in C):

    parse.py      read and check the whole plan; refuse what is out of scope
    relocate.py   bring in DT_NEEDED, bind symbols, patch addresses, IFUNCs
    map.py        reserve the span, map each PT_LOAD, zero .bss, RELRO
    initfini.py   run initialisers after relocation, finalisers on close
    lookup.py     find an exported name: DT_GNU_HASH (Bloom filter) or DT_HASH
    trace.py      every step as an event; the layout as rows to plot
    x86_64.py, aarch64.py   the relocation types of each architecture
    libc.py       the C functions those steps call (mmap, dlsym, ...), in one place
    library.py    the steps in order: NativeLibrary, load()

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
"""
from __future__ import annotations

import os
import sys
from typing import Any

from .parse import Plan, check_host
from .trace import Event, Segment

if sys.platform.startswith("linux"):
    from .library import NativeLibrary, from_image, load
else:                                        # pragma: no cover - other systems
    NativeLibrary = None                     # mapping needs Linux's mmap and dlvsym

    def load(path: "os.PathLike[str] | str", **_: Any) -> Any:
        check_host(os.fspath(path))

    def from_image(image: Any, **_: Any) -> Any:
        check_host(image.path)

__all__ = ["load", "from_image", "NativeLibrary", "Plan", "Event", "Segment",
           "check_host"]
