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
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

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
        if handle == ffi.NULL:          # the message first: dlclose clears it
            message = ffi.string(libc.dlerror()).decode("utf-8", "replace")
            close_needed(handles)
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
    scopes: List[Tuple[str, Any]] = [("the host process", RTLD_DEFAULT), *zip(plan.needed, handles)]
    versions = {index: name.encode() for index, name in plan.versions.items()}
    bound = {index: bind(plan, index, scopes, versions, trace, sources) for index in plan.used}
    for where, count in sources.items() if not trace.detailed else ():
        trace.event("resolve", f"{count} symbol{'s' * (count > 1)} -> {where}",
                    source=where, count=count)
    return bound


def bind(plan: Plan, index: int, scopes: List[Tuple[str, Any]], versions: Dict[int, bytes],
         trace: Trace, sources: Counter) -> Binding:
    """Where symbol `index` is: the host's global scope (`scopes[0]`) first, as glibc's own
    loader does; then, if the library does not define it, its DT_NEEDED libraries."""
    sym = plan.used[index]
    defined = sym.st_shndx != elf.SHN_UNDEF
    # A local symbol, or -Bsymbolic, or protected visibility: always this library's own.
    if defined and (elf.ELF64_ST_BIND(sym.st_info) == elf.STB_LOCAL or plan.symbolic
                    or elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_TLS      # its block: tls.py
                    or elf.ELF64_ST_VISIBILITY(sym.st_other) == elf.STV_PROTECTED):
        return traced(plan, trace, sources, index, "this library", own(sym))
    name = plan.names.raw(sym)
    version = None if defined or not plan.versym else versions.get(
        plan.versym[index] & ~elf.VERSYM_HIDDEN)
    for where, handle in scopes[:1] if defined else scopes:  # its own before its DT_NEEDED's
        pointer = libc.dlvsym(handle, name, version) if version else libc.dlsym(handle, name)
        if pointer:
            return traced(plan, trace, sources, index, where, Binding(pointer), version)
    if defined:
        return traced(plan, trace, sources, index, "this library", own(sym))
    if elf.ELF64_ST_BIND(sym.st_info) == elf.STB_WEAK:
        return traced(plan, trace, sources, index, "nowhere (weak: 0)", NOWHERE)
    wanted = plan.names[index] + (f"@{version.decode()}" if version else "")
    raise LoadError(plan.path, f"undefined symbol {wanted!r}: neither the host process nor "
                               f"{', '.join(plan.needed) or 'any needed library'} defines it; "
                               "load the library that does first, or link against it")


def own(sym: Any) -> Binding:
    """A definition of this library: its st_value, from the base unless absolute (SHN_ABS)."""
    return Binding(sym.st_value, sym.st_shndx != elf.SHN_ABS,
                   elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_GNU_IFUNC)


def traced(plan: Plan, trace: Trace, sources: Counter, index: int, where: str,
           binding: Binding, version: Optional[bytes] = None) -> Binding:
    sources[where] += 1
    if trace.detailed:
        name, version = plan.names[index], version.decode() if version else None
        trace.event("resolve", f"{name}{'@' + version if version else ''} -> {where}",
                    symbol=name, version=version, source=where)
    return binding
