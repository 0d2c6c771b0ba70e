"""Step 6, look up: find a name the host asks for in the library's own hash table.

A library lists its exported symbols in a hash table so that a lookup costs
one bucket, not a scan. Two formats exist, and a file has one or both:

- DT_HASH (System V): bucket[hash % nbucket] starts a chain of symbol
  indices, linked through chain[].
- DT_GNU_HASH: a Bloom filter first (two bits per name; if either is clear
  the name is certainly absent, without touching the symbols), then buckets
  of symbols sorted by hash, whose chain words hold each hash with the low
  bit marking the end of the bucket.

Both give an index into the dynamic symbol table; the symbol's address is
the load base plus its st_value. A symbol counts as found only if that
address lies inside one of the library's loaded segments (for code, an
executable one): a damaged .dynsym could otherwise hand the host an address
anywhere in the process, and the first call through it would crash. This runs after the initialisers (step 5),
whenever the host asks: `NativeLibrary.lookup` / `address`, or
`Plugin.lookup` for a plugin opened with loader="native".
"""
from __future__ import annotations

from typing import Iterator, Optional

from ..formats import elf
from .parse import Plan


def sysv_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        h ^= (h >> 24) & 0xF0
    return h & 0x0FFFFFFF


def gnu_hash(name: bytes) -> int:
    h = 5381
    for c in name:
        h = (h * 33 + c) & 0xFFFFFFFF
    return h


def find(plan: Plan, name: str) -> Optional[int]:
    """The index of the defined, exported, default-version symbol `name`, or None."""
    candidates = gnu_candidates(plan, name) if plan.gnu is not None else sysv_candidates(plan, name)
    for index in candidates:
        if plan.names[index] == name and exported(plan, index) and inside(plan, index):
            return index
    return None


def inside(plan: Plan, index: int) -> bool:
    """Whether the symbol's address lies in a loaded segment; code in an executable one.

    A function (or an IFUNC resolver, which lookup calls) outside the code
    would jump into data or into nothing.
    """
    sym = plan.symbols[index]
    kind = sym.st_info & 0xF
    code = kind in (elf.STT_FUNC, elf.STT_GNU_IFUNC)
    size = max(sym.st_size, 1)
    return any(ph.p_vaddr <= sym.st_value and sym.st_value + size <= ph.p_vaddr + ph.p_memsz
               and (ph.p_flags & elf.PF_X or not code) for ph in plan.loads)


def exported(plan: Plan, index: int) -> bool:
    sym = plan.symbols[index]
    hidden_version = bool(plan.versym) and plan.versym[index] & elf.VERSYM_HIDDEN
    return (sym.st_shndx != elf.SHN_UNDEF and elf.ELF64_ST_BIND(sym.st_info) != elf.STB_LOCAL
            and elf.ELF64_ST_VISIBILITY(sym.st_other) in (elf.STV_DEFAULT, elf.STV_PROTECTED)
            and not hidden_version)


def sysv_candidates(plan: Plan, name: str) -> Iterator[int]:
    buckets, chain = plan.sysv.buckets, plan.sysv.chain
    if not buckets:
        return
    index = buckets[sysv_hash(name.encode()) % len(buckets)]
    for _ in range(len(chain)):                   # a damaged chain must not loop forever
        if not 0 < index < min(len(chain), len(plan.symbols)):
            return
        yield index
        index = chain[index]


def gnu_candidates(plan: Plan, name: str) -> Iterator[int]:
    table, hashed = plan.gnu, gnu_hash(name.encode())
    word = table.bloom[(hashed // 64) % len(table.bloom)]
    mask = (1 << (hashed % 64)) | (1 << ((hashed >> table.bloom_shift) % 64))
    if word & mask != mask:
        return                                     # the Bloom filter says: certainly not here
    index = table.buckets[hashed % len(table.buckets)]
    while table.symoffset <= index < table.symoffset + len(table.chain):
        chained = table.chain[index - table.symoffset]
        if chained | 1 == hashed | 1:
            yield index
        if chained & 1:
            return
        index += 1
