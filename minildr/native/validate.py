"""Step 1b, validate: what a loader that trusts nothing checks before it maps a byte.

Step 1 (parse.py) reads the file's tables; every check here runs on what it
read, before step 2 opens a dependency or step 3 maps anything, and stops
the load with one of two errors naming the file:

- `NotAPlugin`, the file is damaged: its tables contradict each other or
  point outside the library (a hostile file looks the same);
- `UnsupportedELF`, the file is sound but asks for something outside this
  loader's scope (another CPU, text relocations, COPY relocations, ...).

These are the rules of the gABI and of what glibc's loader (elf/dl-load.c)
enforces; a rule glibc has is cited by its function. The point of all of
them: nothing later can write outside the library, run code that is not
the library's, or crash on a table that lies.
"""
from __future__ import annotations

import bisect
import mmap
import sys
from itertools import chain, compress
from types import ModuleType
from typing import Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple

from ..errors import UnsupportedELF
from ..formats import elf
from ..formats.elf import Elf64_Phdr
from ..host import HOST
from . import aarch64, x86_64
from .classes import Rel

PAGE = mmap.PAGESIZE
ARCHES: Dict[int, ModuleType] = {elf.EM_X86_64: x86_64, elf.EM_AARCH64: aarch64}
MAX_SPAN = 1 << 32          # no ordinary library asks for 4 GiB of address space
Range = Tuple[int, int]
TLS_USE = {Rel.TPOFF: "static", Rel.TLSDESC: "static", Rel.DTPMOD: "dynamic", Rel.DTPOFF: "dynamic"}
EI_ABIVERSION, EI_PAD = 8, 9
ELFOSABI_SYSV, ELFOSABI_GNU = 0, 3
LIBC_ABI_MAX = 4            # glibc's libc-abis on x86_64: DEFAULT, UNIQUE, IFUNC, ABSOLUTE (sysv/linux/ldsodefs.h)
DF_1_NOOPEN, DF_1_PIE = 0x40, 0x08000000
SYMBOL_TYPE = bytes(b & 0xF for b in range(256))   # st_info -> its type (ELF64_ST_TYPE)


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


def check_target(f: elf.ElfFile) -> ModuleType:
    """A 64-bit little-endian shared library for a CPU this loader has a table for."""
    if f.order != "<":
        refuse(f.path, "big-endian byte order")
    check_ident(f)
    if f.header.e_type != elf.ET_DYN:
        refuse(f.path, f"the ELF type '{f.kind}' (only shared libraries, ET_DYN, load here)")
    if f.header.e_phentsize != elf.sizeof(elf.Elf64_Phdr):   # open_verify: "phentsize not the expected size"
        f.fail(f"damaged: program headers of {f.header.e_phentsize} bytes, not "
               f"{elf.sizeof(elf.Elf64_Phdr)}")
    # PT_INTERP alone does not make an executable: libc.so.6 has one and runs as a program;
    # glibc's dlopen ignores it and refuses a PIE by its DF_1_PIE flag (check_dynamic_flags).
    arch = ARCHES.get(f.header.e_machine)
    if arch is None:
        raise UnsupportedELF(f.path, f"is a library for another architecture ({f.arch}); the "
                                     "native loader loads x86_64 and aarch64 libraries only")
    return arch


def check_ident(f: elf.ElfFile) -> None:
    """glibc's open_verify (elf/dl-load.c) on e_ident: version, OS ABI, ABI version, padding."""
    ident = f.header.e_ident
    if ident[elf.EI_VERSION] != elf.EV_CURRENT:
        f.fail(f"damaged: ELF identification version {ident[elf.EI_VERSION]}, not 1")
    if ident[elf.EI_OSABI] not in (ELFOSABI_SYSV, ELFOSABI_GNU):      # VALID_ELF_OSABI
        f.fail(f"damaged or not for Linux: OS ABI {ident[elf.EI_OSABI]} (not System V or GNU)")
    if ident[EI_ABIVERSION] and not (ident[elf.EI_OSABI] == ELFOSABI_GNU
                                     and ident[EI_ABIVERSION] < LIBC_ABI_MAX):
        f.fail(f"damaged: ABI version {ident[EI_ABIVERSION]} is not one this C library knows")
    if any(ident[EI_PAD:]):                                             # "nonzero padding in e_ident"
        f.fail("damaged: the padding bytes of the ELF identification are not zero")


def check_segments(f: elf.ElfFile) -> Tuple[List[Elf64_Phdr], int, Optional[Range]]:
    """The PT_LOAD segments, the span they need, and the page range of PT_GNU_RELRO.

    The gABI ("Program Header": "loadable segment entries ... appear in
    ascending order, sorted on the p_vaddr member") and glibc's
    _dl_map_object_from_fd / _dl_map_segments (elf/dl-map-segments.h) want
    them in ascending order, each p_vaddr and p_offset congruent modulo the
    page size, one dynamic section with contents; glibc maps the span from
    the first segment to the end of the last, so an out-of-order or
    overlapping table maps garbage. Refused here instead, before any mmap.
    """
    stack = next(f.segments(elf.PT_GNU_STACK), None)
    if stack is not None and stack.p_flags & elf.PF_X:      # glibc >= 2.41 refuses it for dlopen
        refuse(f.path, "an executable stack (PT_GNU_STACK with PF_X)")
    loads = list(f.segments(elf.PT_LOAD))
    dynamic = next(f.segments(elf.PT_DYNAMIC), None)
    if not loads or dynamic is None or not dynamic.p_filesz:    # "object file has no dynamic section"
        f.fail("no loadable segments or no dynamic section: nothing a loader can load")
    if loads != sorted(loads, key=lambda ph: ph.p_vaddr):
        f.fail("damaged: the loadable segments are not in ascending address order (gABI)")
    end = 0
    for ph in loads:
        if ph.p_align < PAGE or ph.p_align & (ph.p_align - 1):
            refuse(f.path, f"a segment alignment (p_align {ph.p_align:#x}) below the page size")
        if ph.p_align > MAX_SPAN:           # glibc's _dl_map_segment cannot reserve span + align
            f.fail(f"damaged: a segment alignment (p_align {ph.p_align:#x}) beyond 4 GiB")
        if (ph.p_vaddr - ph.p_offset) % ph.p_align or ph.p_filesz > ph.p_memsz:
            f.fail("damaged segment: its address and file offset disagree, or it has "
                   "more bytes in the file than in memory")
        if ph.p_flags & elf.PF_W and ph.p_flags & elf.PF_X:
            refuse(f.path, "a segment both writable and executable")
        if page_down(ph.p_vaddr) < end or ph.p_vaddr + ph.p_memsz > MAX_SPAN:
            f.fail("damaged: loadable segments overlap or lie beyond 4 GiB")
        f.check_range(ph.p_offset, ph.p_filesz, "loadable segment")
        end = page_up(ph.p_vaddr + ph.p_memsz)
    if page_down(loads[0].p_vaddr) != 0:
        f.fail("damaged: the first loadable segment does not start at address 0")
    check_dynamic_segment(f, loads, dynamic)
    return loads, end, check_relro(f, loads)


def check_tls(f: elf.ElfFile, loads: List[Elf64_Phdr]) -> Optional[Elf64_Phdr]:
    """PT_TLS, the image of a thread's copy of the library's TLS block (tls.py), if any."""
    tls = next(f.segments(elf.PT_TLS), None)
    if tls is None or not tls.p_memsz:
        return None
    ph = segment_of(loads, tls.p_vaddr, tls.p_filesz)
    if tls.p_filesz > tls.p_memsz or tls.p_align & (tls.p_align - 1) or tls.p_align > PAGE \
            or ph is None or tls.p_offset != ph.p_offset + tls.p_vaddr - ph.p_vaddr:
        f.fail("damaged: the thread-local storage image (PT_TLS) is not where a loadable "
               "segment maps it, or its sizes or alignment are impossible")
    return tls


def check_dynamic_segment(f: elf.ElfFile, loads: List[Elf64_Phdr], dynamic: Elf64_Phdr) -> None:
    """glibc reads the dynamic section from memory, at p_vaddr (0 means none: "object file has
    no dynamic section"); this loader reads it from the file, at p_offset. Both must be the
    same bytes: inside one loadable segment's file contents, at the place it maps them."""
    ph = segment_of(loads, dynamic.p_vaddr, dynamic.p_filesz)
    if not dynamic.p_vaddr or ph is None or dynamic.p_vaddr + dynamic.p_filesz > \
            ph.p_vaddr + ph.p_filesz or dynamic.p_offset != ph.p_offset + dynamic.p_vaddr - ph.p_vaddr:
        f.fail("damaged: the dynamic section (PT_DYNAMIC) is not where a loadable segment maps it")


def check_relro(f: elf.ElfFile, loads: List[Elf64_Phdr]) -> Optional[Range]:
    relro = next(f.segments(elf.PT_GNU_RELRO), None)
    pages = (page_down(relro.p_vaddr), page_down(relro.p_vaddr + relro.p_memsz)) if relro else None
    if pages and not any(ph.p_flags & elf.PF_W and page_down(ph.p_vaddr) <= pages[0]
                        and pages[1] <= page_up(ph.p_vaddr + ph.p_memsz) for ph in loads):
        f.fail("damaged: PT_GNU_RELRO is not inside a writable segment")
    return pages


def check_dynamic(f: elf.ElfFile, dyn: elf.DynamicSection) -> None:
    """Refuse a dynamic section that asks for what this loader lacks, or that dlopen refuses."""
    if dyn.get(elf.DT_FLAGS_1) & (DF_1_NOOPEN | DF_1_PIE):    # _dl_map_object_from_fd
        refuse(f.path, "a flag that forbids dlopen (DF_1_NOOPEN, or DF_1_PIE: an executable)")
    if dyn.has(elf.DT_REL) or dyn.get(elf.DT_PLTREL, elf.DT_RELA) != elf.DT_RELA:
        refuse(f.path, "DT_REL relocations (without addends)")
    if dyn.has(elf.DT_TEXTREL) or dyn.get(elf.DT_FLAGS) & elf.DF_TEXTREL:
        refuse(f.path, "text relocations (DT_TEXTREL: code built without -fPIC)")
    if not dyn.has(elf.DT_GNU_HASH) and not dyn.has(elf.DT_HASH):
        refuse(f.path, "a dynamic section without a symbol hash table (no DT_GNU_HASH, no DT_HASH)")


def check_type(f: elf.ElfFile, arch: ModuleType, rtype: int, symbol: int, nsyms: int) -> None:
    """A relocation of a type the architecture's table lists, naming a symbol that exists."""
    if rtype not in arch.SUPPORTED:
        name, feature = arch.REFUSED.get(rtype, (f"type {rtype}", "an unknown relocation"))
        refuse(f.path, f"{feature} ({name})")
    if symbol >= nsyms:
        f.fail(f"damaged: a relocation names symbol {symbol}, but there are {nsyms}")


def segment_of(loads: Sequence[Elf64_Phdr], address: int, size: int) -> Optional[Elf64_Phdr]:
    for ph in loads:
        if ph.p_vaddr <= address and address + size <= ph.p_vaddr + ph.p_memsz:
            return ph
    return None


def check_relocations(plan: Any) -> None:
    """Step 1b on parse's Plan: every write in a writable segment, every resolver code,
    every thread-local reference one this loader can make (tls.py)."""
    f, loads = plan.elf, plan.loads
    groups = [(g, plan.rel_class(g)) for g in plan.groups]
    written = [g.offsets for g, cls in groups if cls is not Rel.NONE]     # NONE writes nothing
    check_targets(f, loads, chain(plan.relative.offsets, plan.relative.relr, *written,
                                  [at + 8 for g, cls in groups if cls is Rel.TLSDESC
                                   for at in g.offsets]))      # a TLS descriptor: 2 words
    use = {i: TLS_USE[cls] for g, cls in groups if cls in TLS_USE for i in g.symbols}
    if use and (0 in use or any(plan.symbols[i].st_shndx for i in use)) and plan.tls is None:
        f.fail("damaged: TLS relocations of its own thread-local storage, but no PT_TLS")
    if plan.tls is not None:            # B + A and S + A into the image: tls.relocated_image
        check_targets_outside(f, [*chain(plan.relative.offsets, plan.relative.relr, *written)],
                              [at for g, cls in groups if cls is not Rel.SYMBOLIC
                               for at in g.offsets], plan.tls)
    plan.names.check(plan.used.name)
    check_symbols(f, loads, plan.used, plan.names, use)
    for g, cls in groups:
        for addend in g.addends if cls is Rel.IRELATIVE else ():
            check_code(f, loads, addend, "an IFUNC resolver")


def check_symbols(f: elf.ElfFile, loads: List[Elf64_Phdr], used: Any,
                  names: Sequence[str], use: Dict[int, str]) -> None:
    """check_symbol for every symbol a relocation uses, in bulk, over Plan.used's columns:
    the defined ones' values, sorted once, counted inside the segments by bisection; the
    TLS ones compared as a set. Symbol by symbol only if something is wrong (to name it),
    and for IFUNCs."""
    special = (elf.SHN_UNDEF, elf.SHN_ABS)
    defined = [shndx not in special for shndx in used.shndx]
    if use:                                                   # the TLS ones: as a set, below
        defined = [d and i not in use for d, i in zip(defined, used.indices)]
    values = sorted(compress(used.value, defined))
    inside = sum(bisect.bisect_right(values, ph.p_vaddr + ph.p_memsz)
                 - bisect.bisect_left(values, ph.p_vaddr) for ph in loads)
    types = bytes(used.info).translate(SYMBOL_TYPE)          # st_info & 0xF: ELF64_ST_TYPE
    tls, ifunc = int(elf.STT_TLS), int(elf.STT_GNU_IFUNC)
    wrong = inside != len(values) or types.count(tls) != len(set(use) - {0}) or (
        use and set(compress(used.indices, map(tls.__eq__, types))) != set(use) - {0})
    for index in used if wrong else compress(used.indices, map(ifunc.__eq__, types)):
        check_symbol(f, loads, used[index], names[index], use.get(index))


def check_targets(f: elf.ElfFile, loads: List[Elf64_Phdr], offsets: Iterable[int]) -> None:
    """Every relocation writes 8 bytes inside a writable segment.

    Counted in bulk: the offsets, sorted once, are counted inside each
    writable segment by bisection; only if some are missing does the slow
    search for the first one outside run, to name it.
    """
    ordered = sorted(offsets)
    writable = [(ph.p_vaddr, ph.p_vaddr + ph.p_memsz) for ph in loads if ph.p_flags & elf.PF_W]
    inside = sum(bisect.bisect_right(ordered, end - 8) - bisect.bisect_left(ordered, start)
                 for start, end in writable)
    if inside == len(ordered):
        return
    for at in ordered:
        ph = segment_of(loads, at, 8)
        if ph is None:
            f.fail(f"damaged: a relocation writes at {at:#x}, outside the library")
        if not ph.p_flags & elf.PF_W:
            refuse(f.path, "a text relocation (it writes into a read-only segment)")


def check_targets_outside(f: elf.ElfFile, offsets: List[int], others: List[int],
                          tls: Elf64_Phdr) -> None:
    """No relocation but an address (B + A, S + A) writes into the TLS image: each thread's
    copy is made from it, relocated first (tls.relocated_image); and none straddles its ends."""
    start, end = tls.p_vaddr, tls.p_vaddr + tls.p_filesz
    if any(start - 8 < at < start or end - 8 < at < end for at in offsets) \
            or any(start - 8 < at < end for at in others):
        refuse(f.path, "relocated initial values of thread-local variables other than addresses")


def check_symbol(f: elf.ElfFile, loads: List[Elf64_Phdr], sym: elf.Elf64_Sym, name: str,
                 tls_use: Optional[str]) -> None:
    """A symbol a relocation uses: TLS exactly when a TLS relocation uses it, and then
    another library's; if defined here, inside the library."""
    if (elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_TLS) != bool(tls_use):
        f.fail(f"damaged: symbol {name!r} is used by a relocation of the other kind of storage "
               "(thread-local and ordinary)")
    if sym.st_shndx not in (elf.SHN_UNDEF, elf.SHN_ABS) and not tls_use:
        if segment_of(loads, sym.st_value, 0) is None:
            f.fail(f"damaged: symbol {name!r} lies outside the library")
        if elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_GNU_IFUNC:
            check_code(f, loads, sym.st_value, "an IFUNC resolver")


def check_code(f: elf.ElfFile, loads: List[Elf64_Phdr], address: int, what: str) -> None:
    """`address` is code of this library: inside an executable segment."""
    ph = segment_of(loads, address, 1)
    if ph is None or not ph.p_flags & elf.PF_X:
        f.fail(f"damaged: {what} at {address:#x} is not in an executable segment")


def check_array(f: elf.ElfFile, loads: List[Elf64_Phdr], start: int, size: int, name: str) -> None:
    if segment_of(loads, start, size) is None or size % 8:
        f.fail(f"damaged: {name} lies outside the library")
