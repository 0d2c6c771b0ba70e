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
from functools import partial
from itertools import chain, compress, repeat
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from .. import linkage
from ..formats import elf
from ..errors import LoadError
from .libc import ADDRESS, BYTES, CHARS, ffi, libc
from .parse import Plan
from .trace import Trace

RTLD_DEFAULT = ffi.NULL



class Binding(NamedTuple):
    """Where a symbol was found: an address, or an offset from this library's base."""
    value: int
    base_relative: bool = False         # st_value of this library: add the load base
    ifunc: bool = False                 # ... of an IFUNC symbol: call it for the address


NOWHERE = Binding(0)                    # a weak symbol no one defines, or symbol 0


def open_needed(plan: Plan, trace: Trace, handles: List[Any],
                loaded: Optional[Dict[str, str]] = None) -> None:
    """The system loader brings in the DT_NEEDED libraries (and theirs) first.

    Each is found as the system loader would find it for this file
    (linkage.find_library: RPATH, LD_LIBRARY_PATH, RUNPATH with $ORIGIN the
    plugin's own folder, then the system's search), the search `open` also
    makes before loading with either loader. `loaded` names what `open`
    already loaded for a name (linkage.Prepared.targets): a bundled library
    checked under trust= is then opened again from its sealed copy, the
    bytes checked (dlopen of that same path hands back the library already
    loaded), never from its file by name.

    Each handle goes into `handles`, the caller's, in the statement that
    opens it: an interrupt at any line leaves every library opened so far
    where the caller's undoing (close_needed) finds it. A failed dlopen's
    NULL may be there too, for a moment: close_needed skips it.
    """
    needs = linkage.Needs(plan.needed, plan.rpath, plan.runpath, [], {})
    origin = os.path.dirname(os.path.abspath(plan.path)) if plan.rpath or plan.runpath or any(
        "/" in name for name in plan.needed) else ""      # $ORIGIN, where a path can hold it
    for name in plan.needed:
        found = linkage.find_library(name, needs, origin)
        target = (loaded or {}).get(name) or found.path or name
        handles.append(libc.dlopen(target.encode(), os.RTLD_NOW | os.RTLD_LOCAL))
        if handles[-1] == ffi.NULL:     # the message first: dlclose clears it
            message = ffi.string(libc.dlerror()).decode("utf-8", "replace")
            handles.pop()
            raise LoadError(plan.path, linkage.not_found(name, found, message))
        where = (" from its checked copy" if target not in (found.path, name)
                 else f" from {found.path}" if found.path else "")
        trace.event("needed", f"{name} (loaded by the system loader{where})", name=name)


def close_needed(handles: List[Any]) -> None:
    """dlclose each handle, the last opened first, each taken off the list in the statement
    that closes it: run again after an interrupt, it closes what is left, nothing twice."""
    while handles:
        if handles[-1] == ffi.NULL:     # a failed dlopen, interrupted before it was taken off
            handles.pop()
        else:
            libc.dlclose(handles.pop())


def bind_symbols(plan: Plan, handles: List[Any], trace: Trace) -> Dict[int, Binding]:
    """Each symbol the relocations name, bound once however many relocations use it.

    Where a symbol is, as glibc's own loader searches: the library's own
    definition if it always binds to it (`its_own`); else the host process's
    global scope (dlsym/dlvsym on RTLD_DEFAULT, asked for a symbol version if
    the library names one: `fopen@GLIBC_2.2.5`); else its own definition;
    else its DT_NEEDED libraries, in order; else 0 if it is weak. Asked as one
    pass per place over every symbol still unbound, each dlsym called from C
    (`map`) rather than from a line of Python per symbol: libcrypto binds 3,205.
    The trace gets one event per symbol if asked for in detail, else one per
    place the symbols were found, with how many.
    """
    used = plan.used
    asked = list(compress(used.indices, [not own for own in its_own(plan, used)]))
    undefined = [i for i in asked if i in used.undefined]
    strings = ffi.from_buffer(CHARS, plan.elf.raw)      # the file's bytes, as C reads them
    at = int(ffi.cast(ADDRESS, strings)) + plan.names.dyn.strtab[0]      # checked: step 1b
    names = dict(zip(used.indices, map(at.__add__, used.name)))        # each name's address
    versions = {i: plan.versions[v].encode() for i in undefined
                if plan.versym and (v := plan.versym[i] & ~elf.VERSYM_HIDDEN) in plan.versions}
    found: Dict[int, Tuple[str, int]] = {}
    for where, handle in [("the host process", RTLD_DEFAULT), *zip(plan.needed, handles)]:
        wanted = asked if handle is RTLD_DEFAULT else [i for i in undefined if i not in found]
        plain, tagged = [i for i in wanted if i not in versions], [i for i in wanted if i in versions]
        pointers = chain(map(libc.dlsym_at, repeat(int(ffi.cast(ADDRESS, handle))),
                             map(names.get, plain)),
                         map(libc.dlvsym, repeat(handle), [ffi.cast(BYTES, names[i]) for i in tagged],
                             map(versions.get, tagged)))
        found.update((i, (where, pointer)) for i, pointer in zip(plain + tagged, pointers) if pointer)
    bound = {i: Binding(pointer) for i, (_, pointer) in found.items()}
    places = {i: where for i, (where, _) in found.items()}
    undefined_here = used.undefined
    mine = [i not in bound and i not in undefined_here for i in used.indices]
    bound.update(own_bindings(used, mine))
    places.update(zip(compress(used.indices, mine), repeat("this library")))
    for index in [i for i in used.indices if i not in bound]:
        places[index], bound[index] = unfound(plan, index, used[index], versions.get(index))
    traced(plan, trace, places, versions)
    return bound


def its_own(plan: Plan, used: Any) -> List[bool]:
    """For each symbol: a local symbol, or -Bsymbolic, or protected visibility, or its own
    TLS (tls.py): defined here and always this library's own, whatever the host defines.
    (The ELF64_ST_BIND, _TYPE and _VISIBILITY macros written out, over Plan.used's
    columns: this runs for every symbol.)"""
    local, tls, protected = int(elf.STB_LOCAL), int(elf.STT_TLS), int(elf.STV_PROTECTED)
    symbolic, undefined = plan.symbolic, elf.SHN_UNDEF
    return [shndx != undefined and (symbolic or info >> 4 == local or info & 0xF == tls
                                    or other & 3 == protected)
            for shndx, info, other in zip(used.shndx, used.info, used.other)]


def unfound(plan: Plan, index: int, sym: Any, version: Optional[bytes]) -> Tuple[str, Binding]:
    """An undefined symbol no place has: 0 if weak, else an error naming it."""
    if elf.ELF64_ST_BIND(sym.st_info) == elf.STB_WEAK:
        return "nowhere (weak: 0)", NOWHERE
    wanted = plan.names[index] + (f"@{version.decode()}" if version else "")
    raise LoadError(plan.path, f"undefined symbol {wanted!r}: neither the host process nor "
                               f"{', '.join(plan.needed) or 'any needed library'} defines it; "
                               "load the library that does first, or link against it")


def own_bindings(used: Any, mine: List[bool]) -> Iterator[Tuple[int, Binding]]:
    """(index, `own`) for the symbols `mine` marks, from Plan.used's columns, the Bindings
    made in C (libcrypto binds 3,062 to itself)."""
    ifunc, absolute = int(elf.STT_GNU_IFUNC), elf.SHN_ABS
    return zip(compress(used.indices, mine), map(partial(tuple.__new__, Binding), zip(
        compress(used.value, mine), [shndx != absolute for shndx in compress(used.shndx, mine)],
        [info & 0xF == ifunc for info in compress(used.info, mine)])))     # ELF64_ST_TYPE


def own(sym: Any) -> Binding:
    """A definition of this library: its st_value, from the base unless absolute (SHN_ABS)."""
    return Binding(sym.st_value, sym.st_shndx != elf.SHN_ABS,
                   elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_GNU_IFUNC)


def traced(plan: Plan, trace: Trace, places: Dict[int, str], versions: Dict[int, bytes]) -> None:
    """One event per symbol in detail (name@version -> where), else one per place, counted."""
    if not trace.detailed:
        found = list(map(places.get, plan.used))
        for where, count in zip(dict.fromkeys(found), map(found.count, dict.fromkeys(found))):
            trace.event("resolve", f"{count} symbol{'s' * (count > 1)} -> {where}",
                        source=where, count=count)
        return
    for index in plan.used:
        name, version = plan.names[index], versions[index].decode() if index in versions else None
        trace.event("resolve", f"{name}{'@' + version if version else ''} -> {places[index]}",
                    symbol=name, version=version, source=places[index])
