"""Step 1, parse: read everything the load needs from the file, before anything is mapped.

The segments, the dynamic section, the symbols (as many as the hash table
says), the version needs, and every relocation: all read here, and each
checked by step 1b (validate.py) as soon as it is read, so a hostile or
out-of-scope file stops here with `NotAPlugin` or `UnsupportedELF`, never
later with an exception from inside or a crash.

Reading the tables is `minildr.formats.elf`'s job (`DynamicSection`, which
checks every address, size and count against the file); this step turns
them into the Plan the other steps follow. Relocations are sorted by class
as they are read: the RELATIVE ones (nine in ten, and all alike) are kept
as two arrays that step 4 applies in bulk, the rest as columns per type
(bulk.Relocations; `Plan.other` gives them as `Relocation` rows to read).
For a large file, `load` has read only the parts this step reads (sparse.py).
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from itertools import chain, compress
from types import ModuleType
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ..formats import elf
from ..formats.elf import Elf64_Phdr, Elf64_Sym
from ..formats.reader import sizeof
from . import validate
from .bulk import WORD, Relocations, Used, by_type
from .classes import Rel
from .validate import PAGE, page_down, page_up  # noqa: F401  (PAGE: the unit a notebook plots)


class Relocation(NamedTuple):
    """One relocation that is not RELATIVE, as a row (`Plan.other`: for reading)."""
    table: str              # "RELA", "JMPREL" or "RELR"
    offset: int             # r_offset: where, relative to the load base
    type: int
    symbol: int             # index into the dynamic symbol table (0: none)
    addend: int


@dataclass
class Relatives:
    """The RELATIVE relocations (B + A), as arrays: nine in ten of a library's relocations."""
    offsets: "array[int]" = field(default_factory=lambda: array("Q"))  # from DT_RELA: r_offset
    addends: "array[int]" = field(default_factory=lambda: array("Q"))  # ... and r_addend (mod 2**64)
    relr: List[int] = field(default_factory=list)       # from DT_RELR: the addend is the word there

    def __len__(self) -> int:
        return len(self.offsets) + len(self.relr)


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
    symbols: Sequence[Elf64_Sym]
    names: Sequence[str]
    versions: Dict[int, str]                    # DT_VERSYM index -> needed version name
    versym: Sequence[int]
    gnu: Optional[elf.GnuHash]                  # the hash tables: one or both
    sysv: Optional[elf.SysvHash]
    relative: Relatives                         # RELATIVE relocations, applied in bulk
    groups: List[Relocations]                   # every other relocation, by type and table
    used: Used                                  # the symbols they name, by index (step 2's)
    init: List[Tuple[str, int]] = field(default_factory=list)    # see read_initfini
    fini: List[Tuple[str, int]] = field(default_factory=list)
    symbolic: bool = False
    rpath: List[str] = field(default_factory=list)      # DT_RPATH, DT_RUNPATH: the folders
    runpath: List[str] = field(default_factory=list)    # where DT_NEEDED may be (resolve.py)
    tls: Optional[Elf64_Phdr] = None            # PT_TLS: its own thread-local storage (tls.py)

    def rel_class(self, r: "Relocation | Relocations") -> Rel:
        return self.arch.SUPPORTED[r.type][1]

    @property
    def other(self) -> List[Relocation]:
        """The relocations that are not RELATIVE, as rows (set it to load fewer)."""
        return [Relocation(g.table, at, g.type, symbol, addend) for g in self.groups
                for at, symbol, addend in zip(g.offsets, g.symbols, g.addends)]

    @other.setter
    def other(self, rows: List[Relocation]) -> None:
        tables = {t: [r for r in rows if r.table == t] for t in ("RELA", "JMPREL")}
        self.groups = [g for t, mine in tables.items() for g in by_type(
            t, [r.offset for r in mine], [r.type for r in mine], [r.symbol for r in mine],
            [r.addend for r in mine])]
        self.used = Used([i for i in dict.fromkeys(chain.from_iterable(
            g.symbols for g in self.groups)) if i], self.symbols)

    @property
    def relocations(self) -> List[Relocation]:
        """Every relocation as a row, the RELATIVE ones too: for reading, not for loading."""
        signed = [a - (1 << 64) if a >> 63 else a for a in self.relative.addends]
        rela = [Relocation("RELA", at, self.arch.RELATIVE, 0, a)
                for at, a in zip(self.relative.offsets, signed)]
        relr = [Relocation("RELR", at, self.arch.RELATIVE, 0, 0) for at in self.relative.relr]
        return rela + self.other + relr


def parse(data: bytes, path: str) -> Plan:
    """Read and check `data` (the bytes that will be mapped) into a Plan; map nothing."""
    f = elf.ElfFile(data, path)
    arch = validate.check_target(f)
    loads, span, relro = validate.check_segments(f)
    dyn = elf.DynamicSection(f)
    validate.check_dynamic(f, dyn)
    gnu, sysv = dyn.gnu_hash(), dyn.sysv_hash()
    symbols = read_symbols(dyn, gnu, sysv)
    relative, groups = read_relocations(f, dyn, arch, len(symbols))
    used = [i for i in dict.fromkeys(chain.from_iterable(g.symbols for g in groups)) if i]
    plan = Plan(path=f.path, elf=f, arch=arch, loads=loads, span=span, relro=relro,
                needed=[dyn.string(v, "DT_NEEDED") for v in dyn.all(elf.DT_NEEDED)],
                symbols=symbols, names=elf.Names(dyn, symbols), versions=dyn.versions_needed(),
                versym=dyn.array("H", elf.DT_VERSYM, 2 * len(symbols), "DT_VERSYM"),
                gnu=gnu, sysv=sysv, relative=relative, groups=groups,
                used=Used(used, symbols),
                symbolic=dyn.has(elf.DT_SYMBOLIC) or bool(dyn.get(elf.DT_FLAGS) & elf.DF_SYMBOLIC),
                rpath=search_path(dyn, elf.DT_RPATH), runpath=search_path(dyn, elf.DT_RUNPATH),
                tls=validate.check_tls(f, loads))
    validate.check_relocations(plan)
    plan.init, plan.fini = read_initfini(plan, dyn)
    return plan


def search_path(dyn: elf.DynamicSection, tag: int) -> List[str]:
    return [p for v in dyn.all(tag) for p in dyn.string(v, "search path").split(":") if p]


def read_symbols(dyn: elf.DynamicSection, gnu: Optional[elf.GnuHash],
                 sysv: Optional[elf.SysvHash]) -> Sequence[Elf64_Sym]:
    """The dynamic symbols: their count is stored nowhere, so the hash table says.

    Each is read when first used: a load reads those the relocations name
    (`Plan.used`), a lookup one more per name asked for.
    """
    count = gnu.symoffset + len(gnu.chain) if gnu else len(sysv.chain)
    size = count * sizeof(Elf64_Sym)
    return dyn.f.lazy_table(Elf64_Sym, dyn.offset(elf.DT_SYMTAB, size, "symbol table"), count,
                            "symbol table")


def read_relocations(f: elf.ElfFile, dyn: elf.DynamicSection, arch: ModuleType,
                     nsyms: int) -> Tuple[Relatives, List[Relocations]]:
    """RELA, then JMPREL (the PLT's), each of a type the table supports; then RELR.

    A table is read as one array of words (r_offset, r_info, r_addend, ...)
    and kept as columns, split in C: r_info's halves (type, symbol) and the
    signed addends are the same bytes read as other arrays. The RELATIVE
    ones go to `Relatives`, the rest by type.
    """
    relative, groups = Relatives(), []
    for table, addr_tag, size_tag in (("RELA", elf.DT_RELA, elf.DT_RELASZ),
                                      ("JMPREL", elf.DT_JMPREL, elf.DT_PLTRELSZ)):
        size = dyn.get(size_tag) // sizeof(elf.Elf64_Rela) * sizeof(elf.Elf64_Rela)
        if not size or not dyn.has(addr_tag):
            continue                                    # no such table (-z now: no PLT's)
        words = dyn.words(addr_tag, size, f"DT_{table} table")
        offsets, infos, addends = words[0::3], words[1::3], words[2::3]
        first = leading_relatives(infos, dyn.get(elf.DT_RELACOUNT) if table == "RELA" else 0,
                                  arch.RELATIVE)
        relative.offsets += offsets[:first]             # the linker sorts them first: DT_RELACOUNT
        relative.addends += addends[:first]
        offsets, infos, addends = offsets[first:], infos[first:], addends[first:]
        halves = array("I", infos.tobytes())            # r_info: type, symbol (little-endian)
        types, symbols = halves[0::2], halves[1::2]
        most = max(symbols, default=0)
        for rtype in set(types):                        # each type checked once
            validate.check_type(f, arch, rtype, most, nsyms)
        if infos.count(arch.RELATIVE):                  # type RELATIVE, symbol 0: in bulk
            bulk = list(map(arch.RELATIVE.__eq__, infos))
            relative.offsets.extend(compress(offsets, bulk))
            relative.addends.extend(compress(addends, bulk))
            keep = [not b for b in bulk]
            offsets, types, symbols, addends = (array(c.typecode, compress(c, keep))
                                                for c in (offsets, types, symbols, addends))
        groups += by_type(table, offsets, types, symbols, array("q", addends.tobytes()))
    relative.relr = decode_relr(dyn.array("Q", elf.DT_RELR, dyn.get(elf.DT_RELRSZ), "DT_RELR table"))
    return relative, groups


def leading_relatives(infos: Sequence[int], count: int, relative: int) -> int:
    """How many entries at the start are RELATIVE: DT_RELACOUNT says, if it is true (their
    r_info words are all the one word RELATIVE, symbol 0: compared as bytes)."""
    count = min(count, len(infos))
    return count if infos[:count].tobytes() == WORD.pack(relative) * count else 0


def decode_relr(words: Sequence[int]) -> List[int]:
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


def read_initfini(plan: Plan, dyn: elf.DynamicSection) -> Tuple[List[Tuple[str, int]], List[Tuple[str, int]]]:
    """The initialisers and finalisers in calling order, as (tag, address).

    DT_INIT and DT_FINI give a function's address; the arrays give slots
    that hold function pointers once relocated, so their slots are listed.
    """
    def array(tag: int, size_tag: int, name: str) -> List[Tuple[str, int]]:
        if not dyn.has(tag):
            return []
        start, size = dyn.get(tag), dyn.get(size_tag)
        validate.check_array(plan.elf, plan.loads, start, size, name)
        return [(name, slot) for slot in range(start, start + size, 8)]
    init = array(elf.DT_INIT_ARRAY, elf.DT_INIT_ARRAYSZ, "DT_INIT_ARRAY")
    fini = array(elf.DT_FINI_ARRAY, elf.DT_FINI_ARRAYSZ, "DT_FINI_ARRAY")[::-1]
    for tag, name, calls, where in ((elf.DT_INIT, "DT_INIT", init, 0),
                                    (elf.DT_FINI, "DT_FINI", fini, len(fini))):
        if dyn.has(tag):
            validate.check_code(plan.elf, plan.loads, dyn.get(tag), name)
            calls.insert(where, (name, dyn.get(tag)))
    return init, fini
