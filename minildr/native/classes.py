"""The relocation classes: what a relocation asks the loader to compute, whatever the CPU.

Each architecture numbers its relocation types its own way (x86_64.py,
aarch64.py), but a loader does only a few different things with them. musl's
ldso/dynlink.c names them REL_NONE, REL_SYMBOLIC, REL_RELATIVE, ... and
each arch/*/reloc.h maps its types onto them; this loader does the same, so
step 4 is one branch per class and a new architecture is one small table.

The value of each class is its formula in the psABI's notation: B the load
base, S the symbol's address, A the addend, TP the thread pointer.
"""
from __future__ import annotations

from enum import Enum


class Rel(Enum):
    NONE = "nothing"
    SYMBOLIC = "S + A"              # a symbol's address (GOT entry, PLT slot, data pointer)
    RELATIVE = "B + A"              # an address inside this library (9 in 10 relocations)
    IRELATIVE = "ifunc(B + A)"      # what the IFUNC resolver at B + A returns for this CPU
    TPOFF = "S + A - TP"            # initial-exec TLS: the variable's offset from the thread pointer
    DTPMOD = "module(S)"            # general-dynamic TLS: which module's block holds the variable
    DTPOFF = "S + A in its block"   # ... and where in that block
    TLSDESC = "descriptor(S + A)"   # a TLS descriptor: a resolver function and its argument

    def __str__(self) -> str:
        return self.value
