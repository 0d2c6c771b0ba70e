"""Step 4, relocate: patch every address the file left open, then make RELRO read-only.

Code compiled with -fPIC never holds an absolute address; the data that
does (the GOT, pointer tables, vtables) lists each such word in a
relocation: where it is (r_offset), how to compute it (the type: see the
table of each architecture in x86_64.py and aarch64.py), for which symbol,
plus an addend. The loader then writes base + addend (RELATIVE), a
symbol's address as step 2 resolved it (GLOB_DAT, JUMP_SLOT, 64), or what
an IFUNC resolver in the library returns for this CPU (IRELATIVE, and any
symbol of type STT_GNU_IFUNC). DT_RELR packs RELATIVE relocations as a
bitmap (see parse.decode_relr); their addend is the word already in
memory. IFUNC resolvers, which are code of the library, run last, once
every other word is in place.

Then the PT_GNU_RELRO part of the writable segment (GOT, vtables, init
arrays: what only the loader had to write) becomes read-only, so a stray
write cannot redirect a call through it.
"""
from __future__ import annotations

import os
import struct
from typing import Any, Dict

from ..errors import LoadError
from .libc import ffi, libc
from .mapping import PROT_READ
from .parse import Plan, Relocation
from .resolve import Binding
from .trace import Trace

AT_HWCAP, AT_HWCAP2 = 16, 26
WORD = struct.Struct("<Q")


def relocate(plan: Plan, base: int, bound: Dict[int, Binding], trace: Trace) -> None:
    """Write every relocation; those an IFUNC resolver answers last, once the rest are in place."""
    memory = ffi.buffer(ffi.cast("char *", base), plan.span)
    later = []
    for r in plan.relocations:
        how = plan.arch.SUPPORTED[r.type][1]
        kind, value = bound.get(r.symbol, ("abs", 0))
        if how == "ifunc(B + A)" or (how == "S + A" and kind == "ifunc"):
            later.append(r)
        elif how == "B + A":            # a RELR entry's addend is the word already there
            addend = WORD.unpack_from(memory, r.offset)[0] if r.table == "RELR" else r.addend
            write(plan, memory, r, base + addend, trace)
        elif how == "S + A":
            write(plan, memory, r, (base if kind == "own" else 0) + value + r.addend, trace)
    for r in later:                     # what the resolver picks for this CPU (+ A for S + A)
        how = plan.arch.SUPPORTED[r.type][1]
        resolver = r.addend if how == "ifunc(B + A)" else bound[r.symbol][1]
        result = call_resolver(plan, base + resolver) + (0 if how == "ifunc(B + A)" else r.addend)
        write(plan, memory, r, result, trace, f" (from the resolver at base+{resolver:#x})",
              ifunc=True)


def write(plan: Plan, memory: Any, r: Relocation, result: int, trace: Trace, note: str = "",
          **ifunc: bool) -> None:
    """Store one relocated word, and say so: which type, for which symbol, what was there."""
    name = plan.arch.SUPPORTED[r.type][0]
    before = WORD.unpack_from(memory, r.offset)[0]
    WORD.pack_into(memory, r.offset, result & 0xFFFFFFFFFFFFFFFF)
    trace.event("relocate", f"{name:<20} base+{r.offset:#07x} = {result:#x}{note}",
                type=name, offset=r.offset, value=result, before=before, table=r.table,
                symbol=plan.names[r.symbol] if r.symbol else None, **ifunc)


def call_resolver(plan: Plan, address: int) -> int:
    """Run an IFUNC resolver: it returns the implementation to use on this CPU."""
    if plan.arch.MACHINE == "aarch64":          # glibc: (hwcap | _IFUNC_ARG_HWCAP, &ifunc_arg)
        arg = ffi.new("uint64_t[3]", [24, libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)])
        result = ffi.cast(plan.arch.IFUNC_RESOLVER, address)(arg[1] | (1 << 62), arg)
    else:
        result = ffi.cast(plan.arch.IFUNC_RESOLVER, address)()
    return int(ffi.cast("uintptr_t", result))


def protect_relro(plan: Plan, base: int, trace: Trace) -> None:
    """After relocation, what only the loader had to write becomes read-only."""
    if plan.relro and plan.relro[1] > plan.relro[0]:
        start, end = plan.relro
        if libc.mprotect(ffi.cast("void *", base + start), end - start, PROT_READ):
            raise LoadError(plan.path, f"mprotect failed: {os.strerror(ffi.errno)}")
        trace.event("relro", f"made read-only: {end - start} bytes at base+{start:#x}",
                    start=start, end=end)
