"""Step 1, parse: read everything the load needs from the file, and refuse what it cannot do.

Nothing is mapped and nothing runs until this step has read and checked the
whole plan: the segments, the dynamic section, the symbols (as many as the
hash table says), the version needs, and every relocation, each target
inside a writable segment. So a hostile file fails here, with `NotAPlugin`
(damaged) or `UnsupportedELF` (a feature outside the native loader's
scope), never later with an exception from inside or a crash.

Reading the tables is `minildr.elf`'s job (`DynamicSection`, which checks
every address, size and count against the file); this step decides whether
the loader can do what they ask, and that every address they hold lies
inside the library.
"""
from __future__ import annotations

import mmap
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Dict, List, NoReturn, Optional, Tuple

from ..formats import elf
from ..formats.reader import sizeof
from ..formats.elf import Elf64_Phdr, Elf64_Rela, Elf64_Sym
from ..errors import UnsupportedELF
from ..host import HOST
from . import aarch64, x86_64

PAGE = mmap.PAGESIZE
ARCHES: Dict[int, ModuleType] = {elf.EM_X86_64: x86_64, elf.EM_AARCH64: aarch64}
MAX_SPAN = 1 << 32          # no ordinary library asks for 4 GiB of address space


@dataclass(frozen=True)
class Relocation:
    table: str              # "RELA", "JMPREL" or "RELR"
    offset: int             # r_offset: where, relative to the load base
    type: int
    symbol: int             # index into the dynamic symbol table (0: none)
    addend: int


@dataclass
class Plan:
    """What step 1 found: the recipe the other steps follow."""
    path: str
    elf: elf.ElfFile
    arch: ModuleType
    loads: List[Elf64_Phdr]
    span: int                                   # bytes of address space to reserve
    relro: Optional[Tuple[int, int]]            # page-aligned (start, end), or None
    needed: List[str]
    symbols: List[Elf64_Sym]
    names: List[str]
    versions: Dict[int, str]                    # DT_VERSYM index -> needed version name
    versym: Tuple[int, ...]
    gnu: Optional[elf.GnuHash]                  # the hash tables: one or both
    sysv: Optional[elf.SysvHash]
    relocations: List[Relocation]
    init: List[Tuple[str, int]] = field(default_factory=list)    # see read_initfini
    fini: List[Tuple[str, int]] = field(default_factory=list)
    symbolic: bool = False

    @property
    def gnu_hash(self) -> Optional[int]:
        """Where DT_GNU_HASH is in the file, or None."""
        return None if self.gnu is None else self.gnu.offset

    @property
    def sysv_hash(self) -> Optional[int]:
        """Where DT_HASH is in the file, or None."""
        return None if self.sysv is None else self.sysv.offset


def refuse(path: str, feature: str) -> NoReturn:
    raise UnsupportedELF(path, f"uses {feature}, which minildr's native loader does not "
                               "implement; load it with the system loader (loader='system')")


def check_host(path: str, host: Any = HOST) -> None:
    """The native loader maps and runs code: only on the machines its tables describe."""
    if (host.os, host.arch) not in {("linux", "x86_64"), ("linux", "aarch64")} \
            or not sys.platform.startswith("linux"):
        raise UnsupportedELF(path, f"the native loader runs on Linux x86_64 and aarch64 only, "
                                   f"not {host.os} {host.arch}; use loader='system'")


def page_down(n: int) -> int:
    return n & ~(PAGE - 1)


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def parse(data: bytes, path: str) -> Plan:
    """Read and check `data` (the bytes that will be mapped) into a Plan; map nothing."""
    f = elf.ElfFile(data, path)
    arch = check_target(f)
    loads, span, relro = check_segments(f)
    dyn = read_dynamic(f)
    gnu, sysv = dyn.gnu_hash(), dyn.sysv_hash()
    symbols = read_symbols(dyn, gnu, sysv)
    plan = Plan(path=f.path, elf=f, arch=arch, loads=loads, span=span, relro=relro,
                needed=[dyn.string(v, "DT_NEEDED") for v in dyn.all(elf.DT_NEEDED)],
                symbols=symbols, names=[dyn.string(s.st_name, "symbol name") for s in symbols],
                versions=dyn.versions_needed(),
                versym=dyn.array("H", elf.DT_VERSYM, 2 * len(symbols), "DT_VERSYM"),
                gnu=gnu, sysv=sysv, relocations=read_relocations(f, dyn, arch, len(symbols)),
                symbolic=dyn.has(elf.DT_SYMBOLIC) or bool(dyn.get(elf.DT_FLAGS) & elf.DF_SYMBOLIC))
    check_relocations(plan)
    plan.init, plan.fini = read_initfini(plan, dyn)
    return plan


def check_target(f: elf.ElfFile) -> ModuleType:
    if f.order != "<":
        refuse(f.path, "big-endian byte order")
    if f.header.e_type != elf.ET_DYN:
        refuse(f.path, f"the ELF type '{f.kind}' (only shared libraries, ET_DYN, load here)")
    if any(True for _ in f.segments(elf.PT_INTERP)):
        refuse(f.path, "a program interpreter (PT_INTERP): it is an executable, not a library")
    arch = ARCHES.get(f.header.e_machine)
    if arch is None:
        raise UnsupportedELF(f.path, f"is a library for another architecture ({f.arch}); the "
                                     "native loader loads x86_64 and aarch64 libraries only")
    return arch


def check_segments(f: elf.ElfFile) -> Tuple[List[Elf64_Phdr], int, Optional[Tuple[int, int]]]:
    if any(True for _ in f.segments(elf.PT_TLS)):
        refuse(f.path, "thread-local storage (a PT_TLS segment)")
    loads = sorted(f.segments(elf.PT_LOAD), key=lambda ph: ph.p_vaddr)
    if not loads or not any(True for _ in f.segments(elf.PT_DYNAMIC)):
        f.fail("no loadable segments or no dynamic section: nothing a loader can load")
    end = 0
    for ph in loads:
        if ph.p_align < PAGE or ph.p_align & (ph.p_align - 1):
            refuse(f.path, f"a segment alignment (p_align {ph.p_align:#x}) below the page size")
        if (ph.p_vaddr - ph.p_offset) % PAGE or ph.p_filesz > ph.p_memsz:
            f.fail("damaged segment: its address and file offset disagree, or it has "
                   "more bytes in the file than in memory")
        if ph.p_flags & elf.PF_W and ph.p_flags & elf.PF_X:
            refuse(f.path, "a segment both writable and executable")
        if ph.p_memsz > ph.p_filesz and not ph.p_flags & elf.PF_W:
            refuse(f.path, "zero-filled memory (.bss) in a read-only segment")
        if page_down(ph.p_vaddr) < end or ph.p_vaddr + ph.p_memsz > MAX_SPAN:
            f.fail("damaged: loadable segments overlap or lie beyond 4 GiB")
        f.check_range(ph.p_offset, ph.p_filesz, "loadable segment")
        end = page_up(ph.p_vaddr + ph.p_memsz)
    if page_down(loads[0].p_vaddr) != 0:
        f.fail("damaged: the first loadable segment does not start at address 0")
    relro = next(f.segments(elf.PT_GNU_RELRO), None)
    pages = (page_down(relro.p_vaddr), page_down(relro.p_vaddr + relro.p_memsz)) if relro else None
    if pages and not any(ph.p_flags & elf.PF_W and page_down(ph.p_vaddr) <= pages[0]
                        and pages[1] <= page_up(ph.p_vaddr + ph.p_memsz) for ph in loads):
        f.fail("damaged: PT_GNU_RELRO is not inside a writable segment")
    return loads, end, pages


def read_dynamic(f: elf.ElfFile) -> elf.DynamicSection:
    """The dynamic section (checked by elf), refused if it asks for what this loader lacks."""
    dyn = elf.DynamicSection(f)
    if dyn.has(elf.DT_REL) or dyn.get(elf.DT_PLTREL, elf.DT_RELA) != elf.DT_RELA:
        refuse(f.path, "DT_REL relocations (without addends)")
    if dyn.has(elf.DT_TEXTREL) or dyn.get(elf.DT_FLAGS) & elf.DF_TEXTREL:
        refuse(f.path, "text relocations (DT_TEXTREL: code built without -fPIC)")
    if not dyn.has(elf.DT_GNU_HASH) and not dyn.has(elf.DT_HASH):
        refuse(f.path, "a dynamic section without a symbol hash table (no DT_GNU_HASH, no DT_HASH)")
    return dyn


def read_symbols(dyn: elf.DynamicSection, gnu: Optional[elf.GnuHash],
                 sysv: Optional[elf.SysvHash]) -> List[Elf64_Sym]:
    """The dynamic symbols: their count is stored nowhere, so the hash table says."""
    count = gnu.symoffset + len(gnu.chain) if gnu else len(sysv.chain)
    return dyn.table(Elf64_Sym, elf.DT_SYMTAB, count * sizeof(Elf64_Sym), "symbol table")


def read_relocations(f: elf.ElfFile, dyn: elf.DynamicSection, arch: ModuleType,
                     nsyms: int) -> List[Relocation]:
    """RELA, then JMPREL (the PLT's), each of a type the table supports; then RELR."""
    relocations: List[Relocation] = []
    for table, addr_tag, size_tag in (("RELA", elf.DT_RELA, elf.DT_RELASZ),
                                      ("JMPREL", elf.DT_JMPREL, elf.DT_PLTRELSZ)):
        for r in dyn.table(Elf64_Rela, addr_tag, dyn.get(size_tag), f"DT_{table} table"):
            rtype, sym = elf.ELF64_R_TYPE(r.r_info), elf.ELF64_R_SYM(r.r_info)
            if rtype not in arch.SUPPORTED:
                name, feature = arch.REFUSED.get(rtype, (f"type {rtype}", "an unknown relocation"))
                refuse(f.path, f"{feature} ({name})")
            if sym >= nsyms:
                f.fail(f"damaged: a relocation names symbol {sym}, but there are {nsyms}")
            relocations.append(Relocation(table, r.r_offset, rtype, sym, r.r_addend))
    words = dyn.array("Q", elf.DT_RELR, dyn.get(elf.DT_RELRSZ), "DT_RELR table")
    return relocations + [Relocation("RELR", at, arch.RELATIVE, 0, 0) for at in decode_relr(words)]


def decode_relr(words: Tuple[int, ...]) -> List[int]:
    """DT_RELR: an address, then bitmaps of which of the next 63 words are relative too.

    An even word is an address to relocate; an odd word is a bitmap whose
    bit i (from 1 to 63) marks the word i places after the last address;
    the next bitmap goes on 63 words later. The addend is the word already there.
    """
    where, out = 0, []                    # where: the word after the last one covered
    for word in words:
        if not word & 1:                  # an address
            out.append(word)
            where = word + 8
        else:                             # a bitmap: bit i marks the word at where + 8 * (i - 1)
            out += [where + 8 * (i - 1) for i in range(1, 64) if word >> i & 1]
            where += 63 * 8
    return out


def segment_of(plan: Plan, address: int, size: int) -> Optional[Elf64_Phdr]:
    for ph in plan.loads:
        if ph.p_vaddr <= address and address + size <= ph.p_vaddr + ph.p_memsz:
            return ph
    return None


def check_relocations(plan: Plan) -> None:
    """Every write lands in a writable segment; every resolver is code of this file."""
    for r in plan.relocations:
        ph = segment_of(plan, r.offset, 8)
        if ph is None:
            plan.elf.fail(f"damaged: a relocation writes at {r.offset:#x}, outside the library")
        if not ph.p_flags & elf.PF_W:
            refuse(plan.path, "a text relocation (it writes into a read-only segment)")
        if plan.arch.SUPPORTED[r.type][1] == "ifunc(B + A)":
            check_code(plan, r.addend, "an IFUNC resolver")
        sym = plan.symbols[r.symbol]
        if r.symbol and sym.st_info & 0xF == elf.STT_TLS:
            refuse(plan.path, "thread-local storage (a TLS symbol)")
        if r.symbol and sym.st_shndx not in (elf.SHN_UNDEF, elf.SHN_ABS):
            if segment_of(plan, sym.st_value, 0) is None:
                plan.elf.fail(f"damaged: symbol {plan.names[r.symbol]!r} lies outside the library")
            if sym.st_info & 0xF == elf.STT_GNU_IFUNC:
                check_code(plan, sym.st_value, "an IFUNC resolver")


def check_code(plan: Plan, address: int, what: str) -> None:
    ph = segment_of(plan, address, 1)
    if ph is None or not ph.p_flags & elf.PF_X:
        plan.elf.fail(f"damaged: {what} at {address:#x} is not in an executable segment")


def read_initfini(plan: Plan, dyn: elf.DynamicSection) -> Tuple[List[Tuple[str, int]], List[Tuple[str, int]]]:
    """The initialisers and finalisers in calling order, as (tag, address).

    DT_INIT and DT_FINI give a function's address; the arrays give slots
    that hold function pointers once relocated, so their slots are listed.
    """
    def array(tag: int, size_tag: int, name: str) -> List[Tuple[str, int]]:
        if not dyn.has(tag):
            return []
        start, size = dyn.get(tag), dyn.get(size_tag)
        if segment_of(plan, start, size) is None or size % 8:
            plan.elf.fail(f"damaged: {name} lies outside the library")
        return [(name, slot) for slot in range(start, start + size, 8)]
    init = array(elf.DT_INIT_ARRAY, elf.DT_INIT_ARRAYSZ, "DT_INIT_ARRAY")
    fini = array(elf.DT_FINI_ARRAY, elf.DT_FINI_ARRAYSZ, "DT_FINI_ARRAY")[::-1]
    if dyn.has(elf.DT_INIT):
        check_code(plan, dyn.get(elf.DT_INIT), "DT_INIT")
        init.insert(0, ("DT_INIT", dyn.get(elf.DT_INIT)))
    if dyn.has(elf.DT_FINI):
        check_code(plan, dyn.get(elf.DT_FINI), "DT_FINI")
        fini.append(("DT_FINI", dyn.get(elf.DT_FINI)))
    return init, fini
