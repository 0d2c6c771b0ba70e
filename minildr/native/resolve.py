"""Step 2, resolve: find every symbol the library uses, before anything is mapped.

A library names the functions and variables it uses but does not define
(and, unless it was linked -Bsymbolic, the ones it defines but lets others
override). Its DT_NEEDED libraries come in first, through the system
loader (dlopen); then each symbol a relocation names is looked up in the
host process (dlsym/dlvsym on RTLD_DEFAULT, the global scope, as glibc's
own loader searches first), then in the library itself if it defines it,
else in its DT_NEEDED libraries. Where the library asks for a symbol
version (`fopen@GLIBC_2.2.5`), dlvsym asks for that one.

A weak symbol found nowhere is 0; any other is an error naming it. glibc
and musl resolve while they relocate, after mapping; this loader resolves
everything first, so a missing name stops the load before a byte is mapped
or any code of the library runs.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any, Dict, List, NamedTuple, Tuple

from .. import linkage
from ..formats import elf
from ..errors import LoadError
from .libc import ffi, libc
from .parse import Plan
from .trace import Trace

RTLD_DEFAULT = ffi.NULL



class Binding(NamedTuple):
    """Where a symbol was found: an address, or an offset from this library's base."""
    value: int
    base_relative: bool = False         # st_value of this library: add the load base
    ifunc: bool = False                 # ... of an IFUNC symbol: call it for the address


NOWHERE = Binding(0)                    # a weak symbol no one defines, or symbol 0


def open_needed(plan: Plan, trace: Trace) -> List[Any]:
    """The system loader brings in the DT_NEEDED libraries (and theirs) first.

    Each is found as the system loader would find it for this file
    (linkage.find_library: RPATH, LD_LIBRARY_PATH, RUNPATH with $ORIGIN the
    plugin's own folder, then the system's search), the search `open` also
    makes before loading with either loader.
    """
    handles = []
    needs = linkage.Needs(plan.needed, plan.rpath, plan.runpath, [], {})
    origin = os.path.dirname(os.path.abspath(plan.path))
    for name in plan.needed:
        found = linkage.find_library(name, needs, origin)
        handle = libc.dlopen((found.path or name).encode(), os.RTLD_NOW | os.RTLD_LOCAL)
        if handle == ffi.NULL:
            close_needed(handles)
            message = ffi.string(libc.dlerror()).decode("utf-8", "replace")
            raise LoadError(plan.path, linkage.not_found(name, found, message))
        handles.append(handle)
        where = f" from {found.path}" if found.path else ""
        trace.event("needed", f"{name} (loaded by the system loader{where})", name=name)
    return handles


def close_needed(handles: List[Any]) -> None:
    for handle in reversed(handles):
        libc.dlclose(handle)


def bind_symbols(plan: Plan, handles: List[Any], trace: Trace) -> Dict[int, Binding]:
    """Each symbol the relocations name, bound once however many relocations use it.

    The trace gets one event per symbol if asked for in detail, else one per
    place the symbols were found, with how many (libcrypto binds 3,205).
    """
    sources: Counter = Counter()
    bound = {index: bind(plan, index, handles, trace, sources)
             for index in dict.fromkeys(r.symbol for r in plan.other) if index}
    for where, count in sources.items() if not trace.detailed else ():
        trace.event("resolve", f"{count} symbol{'s' * (count > 1)} -> {where}",
                    source=where, count=count)
    return bound


def bind(plan: Plan, index: int, handles: List[Any], trace: Trace, sources: Counter) -> Binding:
    """Where symbol `index` is: the host's global scope first, as glibc's own loader does."""
    sym = plan.symbols[index]
    name, kind = plan.names[index], elf.ELF64_ST_TYPE(sym.st_info)
    defined = sym.st_shndx != elf.SHN_UNDEF
    version = None if defined or not plan.versym else plan.versions.get(
        plan.versym[index] & ~elf.VERSYM_HIDDEN)
    # A local symbol, or -Bsymbolic, or protected visibility: always this library's own.
    if defined and (elf.ELF64_ST_BIND(sym.st_info) == elf.STB_LOCAL or plan.symbolic
                    or kind == elf.STT_TLS                            # its block: tls.py
                    or elf.ELF64_ST_VISIBILITY(sym.st_other) == elf.STV_PROTECTED):
        return traced(trace, sources, name, "this library", own(sym))
    scopes: List[Tuple[str, Any]] = [("the host process", RTLD_DEFAULT)]
    if not defined:             # a definition of our own comes before the DT_NEEDED libraries'
        scopes += zip(plan.needed, handles)
    for where, handle in scopes:
        pointer = (libc.dlvsym(handle, name.encode(), version.encode()) if version
                   else libc.dlsym(handle, name.encode()))
        if pointer:
            return traced(trace, sources, name, where, Binding(pointer), version)
    if defined:
        return traced(trace, sources, name, "this library", own(sym))
    if elf.ELF64_ST_BIND(sym.st_info) == elf.STB_WEAK:
        return traced(trace, sources, name, "nowhere (weak: 0)", NOWHERE)
    wanted = f"{name}@{version}" if version else name
    raise LoadError(plan.path, f"undefined symbol {wanted!r}: neither the host process nor "
                               f"{', '.join(plan.needed) or 'any needed library'} defines it; "
                               "load the library that does first, or link against it")


def own(sym: Any) -> Binding:
    """A definition of this library: its st_value, from the base unless absolute (SHN_ABS)."""
    return Binding(sym.st_value, sym.st_shndx != elf.SHN_ABS,
                   elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_GNU_IFUNC)


def traced(trace: Trace, sources: Counter, name: str, where: str, binding: Binding,
           version: Any = None) -> Binding:
    sources[where] += 1
    if trace.detailed:
        trace.event("resolve", f"{name}{'@' + version if version else ''} -> {where}",
                    symbol=name, version=version, source=where)
    return binding
