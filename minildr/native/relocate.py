"""Step 3, relocate: bind every symbol, then patch every address the file left open.

Code compiled with -fPIC never holds an absolute address; the data that
does (the GOT, pointer tables, vtables) lists each such word in a
relocation: where it is (r_offset), how to compute it (the type: see the
table of each architecture in x86_64.py and aarch64.py), for which symbol,
plus an addend. The loader then writes base + addend (RELATIVE), a
symbol's address (GLOB_DAT, JUMP_SLOT, 64), or what an IFUNC resolver in
the library returns for this CPU (IRELATIVE, and any symbol of type
STT_GNU_IFUNC). DT_RELR packs RELATIVE relocations as a bitmap (see
parse.decode_relr); their addend is the word already in memory.

Binding comes first and happens before anything is mapped: each symbol a
relocation names is looked up in the host process (dlsym/dlvsym on
RTLD_DEFAULT, the global scope), then in the library itself if it defines
it, else in its DT_NEEDED libraries (opened by the system loader). A
weak symbol found nowhere is 0; any other is an error naming it, raised
before any code of the library has run. IFUNC resolvers, which are code
of the library, run last, once every other word is in place.
"""
from __future__ import annotations

import os
import struct
from typing import Any, Dict, List, Tuple

from .. import elf
from ..errors import LoadError
from .libc import ffi, libc
from .parse import Plan, Relocation
from .trace import Trace

RTLD_DEFAULT = ffi.NULL
AT_HWCAP, AT_HWCAP2 = 16, 26
WORD = struct.Struct("<Q")

# A bound symbol: ("abs", address) from elsewhere, ("own", st_value) in this
# library, or ("ifunc", st_value) for an IFUNC of this library.
Binding = Tuple[str, int]


def open_needed(plan: Plan, trace: Trace) -> List[Any]:
    """The system loader brings in the DT_NEEDED libraries (and theirs) first."""
    handles = []
    for name in plan.needed:
        handle = libc.dlopen(name.encode(), os.RTLD_NOW | os.RTLD_LOCAL)
        if handle == ffi.NULL:
            close_needed(handles)
            message = ffi.string(libc.dlerror()).decode("utf-8", "replace")
            raise LoadError(plan.path, f"needs {name}, which the system loader cannot "
                                       f"load: {message}")
        handles.append(handle)
        trace.event("needed", f"{name} (loaded by the system loader)", name=name)
    return handles


def close_needed(handles: List[Any]) -> None:
    for handle in reversed(handles):
        libc.dlclose(handle)


def bind_symbols(plan: Plan, handles: List[Any], trace: Trace) -> Dict[int, Binding]:
    bound: Dict[int, Binding] = {}
    for r in plan.relocations:
        if r.symbol and r.symbol not in bound:
            bound[r.symbol] = bind(plan, r.symbol, handles, trace)
    return bound


def bind(plan: Plan, index: int, handles: List[Any], trace: Trace) -> Binding:
    """Where symbol `index` is: the host's global scope first, as glibc's own loader does."""
    sym, name = plan.symbols[index], plan.names[index]
    defined = sym.st_shndx != elf.SHN_UNDEF
    own: Binding = ("ifunc" if sym.st_info & 0xF == elf.STT_GNU_IFUNC else
                    "abs" if sym.st_shndx == elf.SHN_ABS else "own", sym.st_value)
    version = None if defined or not plan.versym else plan.versions.get(
        plan.versym[index] & ~elf.VERSYM_HIDDEN)
    # A local symbol, or -Bsymbolic, or protected visibility: always this library's own.
    if defined and (sym.st_info >> 4 == elf.STB_LOCAL or plan.symbolic
                    or sym.st_other & 3 == elf.STV_PROTECTED):
        return traced(trace, name, "this library", own)
    scopes: List[Tuple[str, Any]] = [("the host process", RTLD_DEFAULT)]
    if not defined:             # a definition of our own comes before the DT_NEEDED libraries'
        scopes += zip(plan.needed, handles)
    for where, handle in scopes:
        pointer = (libc.dlvsym(handle, name.encode(), version.encode()) if version
                   else libc.dlsym(handle, name.encode()))
        if pointer != ffi.NULL:
            return traced(trace, name, where, ("abs", int(ffi.cast("uintptr_t", pointer))), version)
    if defined:
        return traced(trace, name, "this library", own)
    if sym.st_info >> 4 == elf.STB_WEAK:
        return traced(trace, name, "nowhere (weak: 0)", ("abs", 0))
    wanted = f"{name}@{version}" if version else name
    raise LoadError(plan.path, f"undefined symbol {wanted!r}: neither the host process nor "
                               f"{', '.join(plan.needed) or 'any needed library'} defines it; "
                               "load the library that does first, or link against it")


def traced(trace: Trace, name: str, where: str, binding: Binding, version: Any = None) -> Binding:
    trace.event("resolve", f"{name}{'@' + version if version else ''} -> {where}",
                symbol=name, version=version, source=where)
    return binding


def relocate(plan: Plan, base: int, bound: Dict[int, Binding], trace: Trace) -> None:
    """Write every relocation; those an IFUNC resolver answers last, once the rest are in place."""
    memory = ffi.buffer(ffi.cast("char *", base), plan.span)
    later = []
    for r in plan.relocations:
        name, how = plan.arch.SUPPORTED[r.type]
        kind, value = bound.get(r.symbol, ("abs", 0))
        if how == "ifunc(B + A)" or (how == "S + A" and kind == "ifunc"):
            later.append(r)
        elif how == "B + A":            # a RELR entry's addend is the word already there
            addend = WORD.unpack_from(memory, r.offset)[0] if r.table == "RELR" else r.addend
            write(memory, r, name, base + addend, trace)
        elif how == "S + A":
            write(memory, r, name, (base if kind == "own" else 0) + value + r.addend, trace)
    for r in later:                     # what the resolver picks for this CPU (+ A for S + A)
        name, how = plan.arch.SUPPORTED[r.type]
        resolver = r.addend if how == "ifunc(B + A)" else bound[r.symbol][1]
        result = call_resolver(plan, base + resolver) + (0 if how == "ifunc(B + A)" else r.addend)
        write(memory, r, name, result, trace, f" (from the resolver at base+{resolver:#x})",
              ifunc=True)


def write(memory: Any, r: Relocation, name: str, result: int, trace: Trace, note: str = "",
          **ifunc: bool) -> None:
    """Store one relocated word, and say so."""
    WORD.pack_into(memory, r.offset, result & 0xFFFFFFFFFFFFFFFF)
    trace.event("relocate", f"{name:<20} base+{r.offset:#07x} = {result:#x}{note}",
                type=name, offset=r.offset, value=result, table=r.table, **ifunc)


def call_resolver(plan: Plan, address: int) -> int:
    """Run an IFUNC resolver: it returns the implementation to use on this CPU."""
    if plan.arch.MACHINE == "aarch64":          # glibc: (hwcap | _IFUNC_ARG_HWCAP, &ifunc_arg)
        arg = ffi.new("uint64_t[3]", [24, libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)])
        result = ffi.cast(plan.arch.IFUNC_RESOLVER, address)(arg[1] | (1 << 62), arg)
    else:
        result = ffi.cast(plan.arch.IFUNC_RESOLVER, address)()
    return int(ffi.cast("uintptr_t", result))
