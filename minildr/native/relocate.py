"""Step 4, relocate: patch every address the file left open, then make RELRO read-only.

Code compiled with -fPIC never holds an absolute address; the data that
does (the GOT, pointer tables, vtables) lists each such word in a
relocation: where it is (r_offset), what to compute (its type's class: see
classes.py and the table of each architecture), for which symbol, plus an
addend. One branch per class, as musl's do_relocs:

- RELATIVE, B + A: an address inside the library. Nine in ten relocations
  are these, all alike, so they are computed and written in bulk (DT_RELR
  packs them as a bitmap, see parse.decode_relr; their addend is the word
  already in memory);
- SYMBOLIC, S + A: a symbol's address as step 2 resolved it;
- TPOFF, initial-exec thread-local storage: the variable's offset from
  the thread pointer (tls.py);
- IRELATIVE, and SYMBOLIC for an IFUNC symbol of this library: what the
  IFUNC resolver (code of the library) returns for this CPU. These run
  last, once every other word is in place.

Then the PT_GNU_RELRO part of the writable segment (GOT, vtables, init
arrays: what only the loader had to write) becomes read-only, so a stray
write cannot redirect a call through it.

By default the trace gets one event per relocation type with its count;
`load(path, trace=True)` (or a callback) records every write, with the
word it replaced.
"""
from __future__ import annotations

import os
from itertools import compress
from typing import Any, Dict, Iterable, List, Optional

from ..errors import LoadError
from . import tls
from .classes import Rel
from .bulk import MASK, Words
from .libc import ffi, libc
from .mapping import PROT_READ
from .parse import Plan, Relocation, Relocations
from .resolve import NOWHERE, Binding
from .trace import Trace



def relocate(plan: Plan, base: int, bound: Dict[int, Binding], trace: Trace,
             tls_module: int = 0) -> None:
    """Write every relocation, class by class; those an IFUNC resolver answers last.

    `tls_module`: the module id of the library's own TLS block (tls.py), if it has one.
    """
    memory, rel, relative = Words(base, plan.span), plan.relative, plan.arch.SUPPORTED[plan.arch.RELATIVE][0]
    store(plan, memory, trace, relative, "RELA", rel.offsets, map(base.__add__, rel.addends))
    store(plan, memory, trace, relative, "RELR", rel.relr, [base + w for w in memory.read(rel.relr)])
    later: List[Relocation] = []
    ifuncs = {index for index, binding in bound.items() if binding.ifunc}
    address = {index: b.value + (base if b.base_relative else 0) for index, b in bound.items()}
    for g in plan.groups:
        name, cls = plan.arch.SUPPORTED[g.type]
        if cls is Rel.IRELATIVE or (cls is Rel.SYMBOLIC and not ifuncs.isdisjoint(g.symbols)):
            now = [cls is Rel.SYMBOLIC and s not in ifuncs for s in g.symbols]
            later += [Relocation(g.table, at, g.type, s, a) for at, s, a, n
                      in zip(g.offsets, g.symbols, g.addends, now) if not n]
            g = Relocations(g.table, g.type, *(list(compress(column, now)) for column in g[2:]))
        if cls is Rel.NONE or not g.offsets:
            continue
        offsets, written, symbols = g.offsets, values(plan, cls, g, address, bound, tls_module), g.symbols
        if cls is Rel.TLSDESC:                  # two words: {function, argument} (see values)
            offsets, symbols = offsets + [at + 8 for at in offsets], symbols * 2
        store(plan, memory, trace, name, g.table, offsets, written, symbols)
    for r in later:                     # what the resolver picks for this CPU (+ A for S + A)
        irelative = plan.rel_class(r) is Rel.IRELATIVE
        resolver = r.addend if irelative else bound[r.symbol].value
        result = call_resolver(plan, base + resolver) + (0 if irelative else r.addend)
        store(plan, memory, trace, plan.arch.SUPPORTED[r.type][0], r.table, [r.offset], [result],
              [r.symbol], note=f" (from the resolver at base+{resolver:#x})", ifunc=True)


def values(plan: Plan, cls: Rel, g: Relocations, address: Dict[int, int],
           bound: Dict[int, Binding], module: int) -> List[int]:
    """What to write for relocations of one class: S + A, S the symbol's `address`; for TLS,
    what tls_value says; for TLS descriptors every function, then every argument."""
    if cls in (Rel.DTPMOD, Rel.DTPOFF, Rel.TPOFF, Rel.TLSDESC):
        found = [tls_value(plan, cls, Relocation(g.table, at, g.type, s, a), bound.get(s, NOWHERE),
                           module) for at, s, a in zip(g.offsets, g.symbols, g.addends)]
        return [f for f, _ in found] + [a for _, a in found] if cls is Rel.TLSDESC else found
    return [address.get(s, 0) + a for s, a in zip(g.symbols, g.addends)]


def tls_value(plan: Plan, cls: Rel, r: Relocation, binding: Binding, module: int) -> Any:
    """The module id (DTPMOD), the offset in its block (DTPOFF: st_value in the library's
    PT_TLS), or from the thread pointer (TPOFF); a descriptor's {function, argument}
    (tls.descriptor); another library's variable (an undefined symbol) by its own module
    (tls.by_module)."""
    own = not r.symbol or binding.base_relative           # its own block (in static TLS for TPOFF)
    if cls in (Rel.DTPMOD, Rel.DTPOFF) and not own:
        return tls.by_module(plan.path, binding.value, cls is Rel.DTPMOD, r.addend)
    if cls is Rel.DTPMOD:
        return module
    if cls is Rel.DTPOFF:
        return binding.value + r.addend
    address = tls.block(module) + binding.value if own else binding.value   # in this thread
    if cls is Rel.TLSDESC:
        return tls.descriptor(plan, r, own, address)
    return tls.static_offset(plan, r, address) + r.addend


def store(plan: Plan, memory: Words, trace: Trace, name: str, table: str, offsets: List[int],
          values: Iterable[int], symbols: Optional[List[int]] = None, note: str = "",
          **extra: Any) -> None:
    """Write `values` at `offsets` (relocations of one type), and tell the trace."""
    if not offsets:
        return
    if trace.detailed:              # every write, with the word it replaced
        values = list(values)
        for i, (at, value, before) in enumerate(zip(offsets, values, memory.read(offsets))):
            symbol = symbols[i] if symbols else 0
            trace.event("relocate", f"{name:<20} base+{at:#07x} = {value & MASK:#x}{note}",
                        type=name, offset=at, value=value & MASK, before=before, table=table,
                        symbol=plan.names[symbol] if symbol else None, **extra)
    else:
        trace.event("relocate", f"{name:<20} x {len(offsets)} ({table})", type=name,
                    count=len(offsets), table=table, **extra)
    memory.write(offsets, values)


def call_resolver(plan: Plan, address: int) -> int:
    """Run an IFUNC resolver: it returns the implementation to use on this CPU."""
    return plan.arch.call_resolver(address)


def protect_relro(plan: Plan, base: int, trace: Trace) -> None:
    """After relocation, what only the loader had to write becomes read-only."""
    if plan.relro and plan.relro[1] > plan.relro[0]:
        start, end = plan.relro
        if libc.mprotect(base + start, end - start, PROT_READ):
            raise LoadError(plan.path, f"mprotect failed: {os.strerror(ffi.errno)}")
        trace.event("relro", f"made read-only: {end - start} bytes at base+{start:#x}",
                    start=start, end=end)
