"""ELF, the file format of shared libraries on Linux: structures from the spec.

Every structure is declared once, here, with the names the System V gABI
gives its fields, and read through `ElfFile`, which checks every offset, size
and count against the file before using it. A damaged or hostile file raises
`NotAPlugin` naming the file and what is wrong; it never raises from deep
inside `struct`, and never reads past the end of the bytes.

Only 64-bit ELF is read in full (the platforms minildr loads plugins on);
a 32-bit file is recognised from its identification bytes and refused.

Used by the manifest reader (`manifest.py`), the build check of exported
symbols (`build.py`), and the native loader (`native/`), which reads the
dynamic section, relocations, hash tables and version tables through
`DynamicSection`: the tables a loader finds by address, each located in
the file through the PT_LOAD segments and bounds-checked like the rest.
"""
from __future__ import annotations

import array
import functools
import os
import struct
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Collection, Dict, Iterator, List, Optional, Sequence, Tuple

from .reader import NATIVE_ORDER, Reader, Record, declare, layout, sizeof

# ---------------------------------------------------------------------------
# e_ident: the first 16 bytes, the same in every ELF file
# ---------------------------------------------------------------------------
ELFMAG = b"\x7fELF"
EI_CLASS, EI_DATA, EI_VERSION, EI_OSABI = 4, 5, 6, 7
EI_NIDENT = 16
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EV_CURRENT = 1

# Each small vocabulary is an IntEnum (its names come with it: `PT(1).name` is
# "LOAD"), and each member is also a module constant under its spec name
# (`elf.PT_LOAD`), as C code and the gABI spell it; see `_export`.


def _export(enum: type, prefix: str) -> type:
    """Make every member of `enum` a module constant too: PT.LOAD as PT_LOAD."""
    for member in enum:                                   # type: ignore[attr-defined]
        globals()[prefix + member.name] = member
    return enum


class ET(IntEnum):          # e_type
    NONE, REL, EXEC, DYN, CORE = range(5)


ET_NAMES = {ET.NONE: "unknown", ET.REL: "object file (.o)", ET.EXEC: "executable",
            ET.DYN: "shared library", ET.CORE: "core dump"}      # what a user calls each

# e_machine, with minildr's architecture names (host.normalize_arch)
EM_386, EM_ARM, EM_PPC64, EM_S390, EM_X86_64, EM_AARCH64, EM_RISCV = 3, 40, 21, 22, 62, 183, 243
EM_ARCH = {EM_386: "i386", EM_ARM: "arm", EM_PPC64: "ppc64", EM_S390: "s390x",
           EM_X86_64: "x86_64", EM_AARCH64: "aarch64", EM_RISCV: "riscv64"}


class PT(IntEnum):          # p_type: what a program header describes
    NULL, LOAD, DYNAMIC, INTERP, NOTE, SHLIB, PHDR, TLS = range(8)
    GNU_EH_FRAME, GNU_STACK, GNU_RELRO, GNU_PROPERTY = 0x6474E550, 0x6474E551, 0x6474E552, 0x6474E553


PF_X, PF_W, PF_R = 1, 2, 4      # p_flags

# sh_type
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_HASH, SHT_DYNAMIC, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM = 5, 6, 7, 8, 11
SHN_UNDEF, SHN_ABS = 0, 0xFFF1


class STB(IntEnum):         # symbol binding: ELF64_ST_BIND(st_info)
    LOCAL, GLOBAL, WEAK = range(3)
    GNU_UNIQUE = 10


class STT(IntEnum):         # symbol type: ELF64_ST_TYPE(st_info)
    NOTYPE, OBJECT, FUNC, SECTION, FILE, COMMON, TLS = range(7)
    GNU_IFUNC = 10


class STV(IntEnum):         # symbol visibility: ELF64_ST_VISIBILITY(st_other)
    DEFAULT, INTERNAL, HIDDEN, PROTECTED = range(4)


def ELF64_ST_BIND(st_info: int) -> int:
    return st_info >> 4


def ELF64_ST_TYPE(st_info: int) -> int:
    return st_info & 0xF


def ELF64_ST_VISIBILITY(st_other: int) -> int:
    return st_other & 0x3


class DT(IntEnum):          # d_tag: what each entry of the dynamic section (PT_DYNAMIC) describes
    (NULL, NEEDED, PLTRELSZ, PLTGOT, HASH, STRTAB, SYMTAB, RELA, RELASZ, RELAENT, STRSZ, SYMENT,
     INIT, FINI, SONAME, RPATH, SYMBOLIC, REL, RELSZ, RELENT, PLTREL, DEBUG, TEXTREL, JMPREL,
     BIND_NOW, INIT_ARRAY, FINI_ARRAY, INIT_ARRAYSZ, FINI_ARRAYSZ, RUNPATH, FLAGS) = range(31)
    PREINIT_ARRAY, PREINIT_ARRAYSZ, SYMTAB_SHNDX, RELRSZ, RELR, RELRENT = range(32, 38)
    GNU_HASH = 0x6FFFFEF5
    VERSYM, RELACOUNT, RELCOUNT, FLAGS_1 = 0x6FFFFFF0, 0x6FFFFFF9, 0x6FFFFFFA, 0x6FFFFFFB
    VERDEF, VERDEFNUM, VERNEED, VERNEEDNUM = 0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF


_export(ET, "ET_")
_export(PT, "PT_")
_export(STB, "STB_")
_export(STT, "STT_")
_export(STV, "STV_")
_export(DT, "DT_")

# DT_FLAGS bits
DF_ORIGIN, DF_SYMBOLIC, DF_TEXTREL, DF_BIND_NOW, DF_STATIC_TLS = 0x1, 0x2, 0x4, 0x8, 0x10
# Symbol versions (DT_VERSYM entries): 0 local, 1 global (unversioned); bit 15 hides it
VER_NDX_LOCAL, VER_NDX_GLOBAL, VERSYM_HIDDEN = 0, 1, 0x8000
VER_FLG_BASE = 0x1
# The relocation types that run or point at code when a library loads, per machine
# (psABI x86-64 4.4.1, AArch64 ELF ABI 5.7): RELATIVE (B + A) and IRELATIVE
# (call the resolver at B + A, store what it returns).
R_RELATIVE = {EM_X86_64: 8, EM_AARCH64: 1027}
R_IRELATIVE = {EM_X86_64: 37, EM_AARCH64: 1032}


# ---------------------------------------------------------------------------
# The structures, each field with its gABI type: the byte layout in the
# file is derived from those types (`reader.declare`), so it is stated once.
# ---------------------------------------------------------------------------
Elf64_Half = Annotated[int, "H"]
Elf64_Word = Annotated[int, "I"]
Elf64_Sword = Annotated[int, "i"]
Elf64_Xword = Annotated[int, "Q"]
Elf64_Sxword = Annotated[int, "q"]
Elf64_Addr = Annotated[int, "Q"]
Elf64_Off = Annotated[int, "Q"]
unsigned_char = Annotated[int, "B"]


@declare
class Elf64_Ehdr(Record):
    e_ident: Annotated[bytes, "16s"]    # magic, class, data encoding, version, OS ABI
    e_type: Elf64_Half          # ET_DYN for a shared library
    e_machine: Elf64_Half       # EM_X86_64, EM_AARCH64, ...
    e_version: Elf64_Word
    e_entry: Elf64_Addr
    e_phoff: Elf64_Off          # where the program header table starts
    e_shoff: Elf64_Off          # where the section header table starts
    e_flags: Elf64_Word
    e_ehsize: Elf64_Half
    e_phentsize: Elf64_Half
    e_phnum: Elf64_Half
    e_shentsize: Elf64_Half
    e_shnum: Elf64_Half
    e_shstrndx: Elf64_Half      # which section holds the section names


@declare
class Elf64_Phdr(Record):
    p_type: Elf64_Word          # PT_LOAD, PT_DYNAMIC, PT_NOTE, ...
    p_flags: Elf64_Word         # PF_R | PF_W | PF_X
    p_offset: Elf64_Off         # where the segment's bytes start in the file
    p_vaddr: Elf64_Addr         # where they go in memory (relative to the load base)
    p_paddr: Elf64_Addr
    p_filesz: Elf64_Xword       # bytes in the file
    p_memsz: Elf64_Xword        # bytes in memory (the rest is zero-filled: .bss)
    p_align: Elf64_Xword


@declare
class Elf64_Shdr(Record):
    sh_name: Elf64_Word         # offset of the name in the section-name string table
    sh_type: Elf64_Word
    sh_flags: Elf64_Xword
    sh_addr: Elf64_Addr
    sh_offset: Elf64_Off
    sh_size: Elf64_Xword
    sh_link: Elf64_Word         # for a symbol table: its string table's index
    sh_info: Elf64_Word
    sh_addralign: Elf64_Xword
    sh_entsize: Elf64_Xword


@declare
class Elf64_Sym(Record):
    st_name: Elf64_Word         # offset of the name in the string table
    st_info: unsigned_char      # binding << 4 | type: ELF64_ST_BIND, ELF64_ST_TYPE
    st_other: unsigned_char     # visibility in the low 2 bits: ELF64_ST_VISIBILITY
    st_shndx: Elf64_Half        # SHN_UNDEF when the symbol comes from elsewhere
    st_value: Elf64_Addr
    st_size: Elf64_Xword


@declare
class Elf64_Dyn(Record):
    d_tag: Elf64_Sxword
    d_val: Elf64_Xword


@declare
class Elf64_Nhdr(Record):
    n_namesz: Elf64_Word        # length of the owner's name, with its NUL
    n_descsz: Elf64_Word        # length of the payload
    n_type: Elf64_Word          # meaning chosen by the owner


@declare
class Elf64_Rela(Record):
    r_offset: Elf64_Addr        # where to write (relative to the load base)
    r_info: Elf64_Xword         # symbol index << 32 | relocation type
    r_addend: Elf64_Sxword      # a constant added to the computed value


def ELF64_R_SYM(r_info: int) -> int:
    return r_info >> 32


def ELF64_R_TYPE(r_info: int) -> int:
    return r_info & 0xFFFFFFFF


@declare
class Elf64_Verneed(Record):    # one library whose symbol versions this file needs
    vn_version: Elf64_Half      # 1
    vn_cnt: Elf64_Half          # how many Elf64_Vernaux follow
    vn_file: Elf64_Word         # the library's name (string table offset)
    vn_aux: Elf64_Word          # offset of its first Elf64_Vernaux, from this entry
    vn_next: Elf64_Word         # offset of the next Elf64_Verneed, from this entry (0: last)


@declare
class Elf64_Vernaux(Record):    # one version needed from that library
    vna_hash: Elf64_Word
    vna_flags: Elf64_Half
    vna_other: Elf64_Half       # the index DT_VERSYM entries use for this version
    vna_name: Elf64_Word        # the version's name, such as "GLIBC_2.14"
    vna_next: Elf64_Word        # offset of the next Elf64_Vernaux, from this entry (0: last)


@declare
class Elf64_Verdef(Record):     # one version this file defines (DT_VERDEF)
    vd_version: Elf64_Half      # 1
    vd_flags: Elf64_Half        # VER_FLG_BASE for the entry naming the file itself
    vd_ndx: Elf64_Half          # the index DT_VERSYM entries use for this version
    vd_cnt: Elf64_Half          # how many Elf64_Verdaux follow (the first is its name)
    vd_hash: Elf64_Word
    vd_aux: Elf64_Word          # offset of its first Elf64_Verdaux, from this entry
    vd_next: Elf64_Word         # offset of the next Elf64_Verdef, from this entry (0: last)


@declare
class Elf64_Verdaux(Record):
    vda_name: Elf64_Word        # the version's name (string table offset)
    vda_next: Elf64_Word


@declare
class Elf_HashHeader(Record):   # DT_HASH (System V): then bucket[nbucket], chain[nchain]
    nbucket: Elf64_Word
    nchain: Elf64_Word          # equals the number of symbols


@declare
class Elf_GnuHashHeader(Record):  # DT_GNU_HASH: then bloom[bloom_size] (64-bit words),
    nbuckets: Elf64_Word        #   buckets[nbuckets], chain[] (32-bit words)
    symoffset: Elf64_Word       # symbols below this index are not in the table
    bloom_size: Elf64_Word
    bloom_shift: Elf64_Word


class Note(Record):
    """One ELF note: an owner's name, a type number, and a payload."""
    name: str
    type: int
    desc: bytes


@dataclass(frozen=True)
class Symbol:
    """A symbol table entry with its name and its decoded fields."""
    name: str
    value: int
    size: int
    bind: str           # LOCAL, GLOBAL, WEAK
    type: str           # FUNC, OBJECT, ...
    visibility: str     # DEFAULT, HIDDEN, ...
    defined: bool       # False when the symbol is imported from another library


def arch_name(e_machine: int) -> str:
    """The architecture an e_machine value names, as minildr spells it."""
    return EM_ARCH.get(e_machine, f"machine {e_machine}")


def kind_name(e_type: int) -> str:
    """What kind of file an e_type value says it is ("shared library", ...)."""
    return ET_NAMES.get(e_type, f"ELF type {e_type}")


class ElfFile(Reader):
    """A 64-bit ELF file held in memory, read with every bound checked.

    Construction checks the identification bytes and that the header tables
    lie inside the file; the accessors check everything else they read.
    """

    def __init__(self, data: bytes, path: "os.PathLike[str] | str") -> None:
        super().__init__(data, path)
        ident = bytes(self.data[:EI_NIDENT])
        if ident[:4] != ELFMAG:
            self.fail("not an ELF file (no \\x7fELF magic)")
        if len(ident) < EI_NIDENT:
            self.fail(f"truncated ELF identification ({len(self.data)} bytes)")
        if ident[EI_CLASS] == ELFCLASS32:
            self.fail("a 32-bit ELF file; minildr loads 64-bit plugins only")
        if ident[EI_CLASS] != ELFCLASS64:
            self.fail(f"unknown ELF class {ident[EI_CLASS]}")
        if ident[EI_DATA] not in (ELFDATA2LSB, ELFDATA2MSB):
            self.fail(f"unknown ELF data encoding {ident[EI_DATA]}")
        self.order = "<" if ident[EI_DATA] == ELFDATA2LSB else ">"
        self.header: Elf64_Ehdr = self.read(Elf64_Ehdr, 0, "ELF header")
        if self.header.e_version != EV_CURRENT:
            self.fail(f"unknown ELF version {self.header.e_version}")
        self.program_headers: List[Elf64_Phdr] = self._header_table(
            Elf64_Phdr, self.header.e_phoff, self.header.e_phnum,
            self.header.e_phentsize, "program header table")
        # The section header table is checked now and parsed when first needed.
        if self.header.e_shnum:
            if self.header.e_shentsize != sizeof(Elf64_Shdr):
                self.fail(f"section header table entries are {self.header.e_shentsize} "
                          f"bytes, expected {sizeof(Elf64_Shdr)}")
            self.check_range(self.header.e_shoff, self.header.e_shnum * sizeof(Elf64_Shdr),
                             "section header table")

    @functools.cached_property
    def section_headers(self) -> List[Elf64_Shdr]:
        """The linker's view (sections); loading needs only the program headers."""
        return self._header_table(Elf64_Shdr, self.header.e_shoff, self.header.e_shnum,
                                  self.header.e_shentsize, "section header table")

    def _header_table(self, cls, offset: int, count: int, entsize: int, what: str) -> list:
        if count and entsize != sizeof(cls):
            self.fail(f"{what} entries are {entsize} bytes, expected {sizeof(cls)}")
        return self.table(cls, offset, count, what)

    def string_at(self, table_offset: int, table_size: int, index: int, what: str) -> str:
        """A NUL-terminated string from a string table, never reading past it."""
        if index >= table_size:
            self.fail(f"{what}: name offset {index} is past its string table")
        self.check_range(table_offset, table_size, f"string table of {what}")
        end = self.raw.find(b"\0", table_offset + index, table_offset + table_size)
        if end < 0:
            self.fail(f"{what}: name is not NUL-terminated")
        return self.raw[table_offset + index:end].decode("utf-8", "replace")

    # -- what the rest of minildr asks --------------------------------
    @property
    def arch(self) -> str:
        return arch_name(self.header.e_machine)

    @property
    def kind(self) -> str:
        return kind_name(self.header.e_type)

    def segments(self, p_type: int) -> Iterator[Elf64_Phdr]:
        by_type = self.__dict__.get("_by_type")
        if by_type is None:
            by_type = self._by_type = self._group_by_type()
        return iter(by_type.get(p_type, ()))

    def _group_by_type(self) -> Dict[int, List[Elf64_Phdr]]:
        """The program headers by p_type, in file order (a load asks a dozen times: grouped
        on the first, by hand rather than with functools.cached_property, which takes a
        lock on every first read in Python 3.11)."""
        by_type: Dict[int, List[Elf64_Phdr]] = {}
        for ph in self.program_headers:
            by_type.setdefault(ph.p_type, []).append(ph)
        return by_type

    def array(self, code: str, offset: int, count: int, what: str) -> Sequence[int]:
        """`count` numbers of struct type `code` ("I", "Q", "H") from `offset`: a view of the
        bytes, read where indexed (libcrypto's DT_VERSYM has 5,511: no tuple of them), or,
        in a file of the other byte order, unpacked into a tuple."""
        size = count * struct.calcsize(code)
        self.check_range(offset, size, what)
        if self.order == NATIVE_ORDER:
            return self.data[offset:offset + size].cast(code)
        return struct.unpack_from(f"{self.order}{count}{code}", self.data, offset)

    def file_offset(self, vaddr: int, size: int, what: str) -> int:
        """Where the `size` bytes the loader maps at `vaddr` are in the file.

        The dynamic section gives addresses, not file offsets; a table the
        loader reads must lie in the file-backed part of one PT_LOAD segment.
        """
        for ph in self.segments(PT_LOAD):
            if ph.p_vaddr <= vaddr and vaddr + size <= ph.p_vaddr + ph.p_filesz:
                offset = ph.p_offset + vaddr - ph.p_vaddr
                self.check_range(offset, size, what)
                return offset
        self.fail(f"damaged: the {what} (address {vaddr:#x}, {size} bytes) is not "
                  "inside any loadable segment's file contents")

    def dynamic(self) -> List[Elf64_Dyn]:
        """The entries of the dynamic section (PT_DYNAMIC), up to DT_NULL."""
        return [Elf64_Dyn(tag, value) for tag, value in self.dynamic_pairs()]

    def dynamic_pairs(self) -> List[Tuple[int, int]]:
        """`dynamic` as plain (d_tag, d_val) pairs: what DynamicSection reads at every open."""
        segment = next(self.segments(PT_DYNAMIC), None)
        if segment is None:
            return []
        row = layout(Elf64_Dyn, self.order)
        count = segment.p_filesz // row.size
        self.check_range(segment.p_offset, count * row.size, "dynamic section")
        pairs = list(row.iter_unpack(self.raw[segment.p_offset:segment.p_offset + count * row.size]))
        tags = [tag for tag, _ in pairs]
        return pairs[:tags.index(DT_NULL)] if DT_NULL in tags else pairs

    def notes(self) -> List[Note]:
        """Every note in the PT_NOTE segments (what `readelf -n` lists), read once: the
        manifest and the Go check both look through them."""
        notes = self.__dict__.get("_notes")
        if notes is None:
            notes = self._notes = list(self._read_notes())
        return notes

    def _read_notes(self) -> Iterator[Note]:
        header = layout(Elf64_Nhdr, self.order)
        size, raw = header.size, self.raw
        for ph in self.segments(PT_NOTE):
            self.check_range(ph.p_offset, ph.p_filesz, "note segment")
            align = 8 if ph.p_align == 8 else 4
            start, end = ph.p_offset, ph.p_offset + ph.p_filesz
            offset = start
            while offset + size <= end:
                namesz, descsz, ntype = header.unpack_from(raw, offset)
                # The payload and the next note start at the next `align`
                # boundary (counted from the segment's start) after what precedes them.
                name_at = offset + size
                desc_at = start + _align(name_at + namesz - start, align)
                next_at = start + _align(desc_at + descsz - start, align)
                if desc_at + descsz > end:
                    self.fail(f"damaged or truncated note: it claims {descsz} bytes of "
                              f"payload but its segment ends {end - desc_at} bytes later")
                yield Note(raw[name_at:name_at + namesz].rstrip(b"\0").decode("ascii", "replace"),
                           ntype, raw[desc_at:desc_at + descsz])
                offset = next_at

    def section_name(self, sh: Elf64_Shdr) -> str:
        idx = self.header.e_shstrndx
        if idx >= len(self.section_headers):
            self.fail("section-name string table index is out of range")
        names = self.section_headers[idx]
        return self.string_at(names.sh_offset, names.sh_size, sh.sh_name, "section name")

    def section(self, name: str) -> Optional[Elf64_Shdr]:
        for sh in self.section_headers:
            if self.section_name(sh) == name:
                return sh
        return None

    def symbols(self, sh_type: int = SHT_DYNSYM) -> List[Symbol]:
        """The symbols of the SHT_DYNSYM table (what other code can find) or SHT_SYMTAB."""
        result: List[Symbol] = []
        for sh in self.section_headers:
            if sh.sh_type != sh_type:
                continue
            if sh.sh_entsize != sizeof(Elf64_Sym):
                self.fail(f"symbol table entries are {sh.sh_entsize} bytes, "
                           f"expected {sizeof(Elf64_Sym)}")
            if sh.sh_link >= len(self.section_headers):
                self.fail("symbol table names a string table that does not exist")
            strtab = self.section_headers[sh.sh_link]
            count = sh.sh_size // sh.sh_entsize
            self.check_range(sh.sh_offset, count * sh.sh_entsize, "symbol table")
            for i in range(1, count):          # entry 0 is always the null symbol
                sym = self.read(Elf64_Sym, sh.sh_offset + i * sh.sh_entsize, "symbol")
                result.append(Symbol(
                    name=self.string_at(strtab.sh_offset, strtab.sh_size, sym.st_name, "symbol"),
                    value=sym.st_value, size=sym.st_size,
                    bind=_name(STB, ELF64_ST_BIND(sym.st_info)),
                    type=_name(STT, ELF64_ST_TYPE(sym.st_info), {STT_GNU_IFUNC: "IFUNC"}),
                    visibility=STV(ELF64_ST_VISIBILITY(sym.st_other)).name,
                    defined=sym.st_shndx != SHN_UNDEF))
        return result

    def exported_symbols(self) -> List[Symbol]:
        """Defined, non-local dynamic symbols: what `dlsym` can find."""
        return [s for s in self.symbols(SHT_DYNSYM)
                if s.defined and s.bind != "LOCAL" and s.visibility in ("DEFAULT", "PROTECTED")
                and s.type not in ("SECTION", "FILE")]


class GnuHash(Record):
    """DT_GNU_HASH, read in full (see `DynamicSection.gnu_hash`)."""
    offset: int                 # of its header, in the file
    symoffset: int              # symbols below this index are not in the table
    bloom_shift: int
    bloom: Sequence[int]        # 64-bit words: two bits set per name in the table
    buckets: Sequence[int]      # the first symbol of each bucket (0: empty)
    chain: Sequence[int]        # the hash of each symbol from symoffset on; low bit: last in bucket


class SysvHash(Record):
    """DT_HASH, read in full: chain[i] is the next symbol after symbol i in its bucket."""
    offset: int
    buckets: Sequence[int]
    chain: Sequence[int]        # one entry per symbol


class DynamicSection:
    """The dynamic section (PT_DYNAMIC): d_tag -> values, and the tables they point at.

    Its entries give addresses, not file offsets: every table is found with
    `ElfFile.file_offset`, so it must lie in the file contents of one loadable
    segment, and is read bounds-checked. Checked on construction: the entry
    sizes are ELF64's, and the string and symbol tables exist.
    """

    def __init__(self, f: ElfFile) -> None:
        self.f = f
        self.entries: Dict[int, List[int]] = {}
        for tag, value in f.dynamic_pairs():
            self.entries.setdefault(tag, []).append(value)
        for tag, size, name in ((DT_SYMENT, sizeof(Elf64_Sym), "DT_SYMENT"),
                                (DT_RELAENT, sizeof(Elf64_Rela), "DT_RELAENT"),
                                (DT_RELRENT, 8, "DT_RELRENT")):
            if self.get(tag, size) != size:
                f.fail(f"damaged: {name} is {self.get(tag)}, expected {size}")
        if not self.has(DT_STRTAB) or not self.has(DT_SYMTAB):
            f.fail("damaged: the dynamic section has no string or symbol table")
        size = self.get(DT_STRSZ)
        self.strtab = (self.offset(DT_STRTAB, size, "string table"), size)

    def has(self, tag: int) -> bool:
        return tag in self.entries

    def get(self, tag: int, default: int = 0) -> int:
        return self.entries.get(tag, [default])[0]

    def all(self, tag: int) -> List[int]:
        return self.entries.get(tag, [])

    def offset(self, tag: int, size: int, what: str) -> int:
        """Where in the file the `size` bytes at the address `tag` gives are."""
        return self.f.file_offset(self.get(tag), size, what)

    def string(self, index: int, what: str) -> str:
        return self.f.string_at(*self.strtab, index, what)

    def table(self, cls: type, tag: int, size: int, what: str) -> list:
        """The structures in the `size` bytes at `tag`'s address; none if `tag` is absent."""
        if not self.has(tag):
            return []
        return self.f.table(cls, self.offset(tag, size, what), size // sizeof(cls), what)

    def array(self, code: str, tag: int, size: int, what: str) -> Sequence[int]:
        """The numbers (struct `code`) in the `size` bytes at `tag`'s address, or ()."""
        if not self.has(tag):
            return ()
        count = size // struct.calcsize(code)
        return self.f.array(code, self.offset(tag, size, what), count, what)

    def words(self, tag: int, size: int, what: str) -> "array.array[int]":
        """The 64-bit words in the `size` bytes at `tag`'s address (none if `tag` is absent),
        copied into an array in C: no Python object per word (libcrypto's relocation
        tables hold 63,000), none for the garbage collector to walk."""
        words = array.array("Q")
        if self.has(tag):
            at = self.offset(tag, size // 8 * 8, what)
            words.frombytes(self.f.data[at:at + size // 8 * 8])
            if (self.f.order == "<") != (sys.byteorder == "little"):
                words.byteswap()
        return words

    def gnu_hash(self) -> Optional[GnuHash]:
        """DT_GNU_HASH: a header, the Bloom filter, the buckets, then one chain word per
        symbol, up to the end of the last bucket's chain (which is how many symbols exist)."""
        if not self.has(DT_GNU_HASH):
            return None
        at = self.offset(DT_GNU_HASH, sizeof(Elf_GnuHashHeader), "DT_GNU_HASH")
        h = self.f.read(Elf_GnuHashHeader, at, "DT_GNU_HASH")
        buckets_at = at + sizeof(Elf_GnuHashHeader) + 8 * h.bloom_size
        buckets = self.f.array("I", buckets_at, h.nbuckets, "DT_GNU_HASH buckets")
        if not h.nbuckets or h.bloom_size & (h.bloom_size - 1) or not h.bloom_size:
            self.f.fail("damaged DT_GNU_HASH: no buckets, or a Bloom filter size not a power of 2")
        chain_at = buckets_at + 4 * h.nbuckets
        count = max(0, max(buckets) + 1 - h.symoffset)    # up to the last bucket's first symbol,
        while count and not self.f.array("I", chain_at + 4 * (count - 1), 1,
                                         "DT_GNU_HASH chain")[0] & 1:
            count += 1                                    # then on to the end of its chain
        bloom = self.f.array("Q", at + sizeof(Elf_GnuHashHeader), h.bloom_size, "DT_GNU_HASH")
        return GnuHash(at, h.symoffset, h.bloom_shift, bloom, buckets,
                       self.f.array("I", chain_at, count, "DT_GNU_HASH chain"))

    def sysv_hash(self) -> Optional[SysvHash]:
        """DT_HASH: nbucket, nchain, then bucket[nbucket] and chain[nchain]."""
        if not self.has(DT_HASH):
            return None
        at = self.offset(DT_HASH, sizeof(Elf_HashHeader), "DT_HASH")
        h = self.f.read(Elf_HashHeader, at, "DT_HASH")
        words = self.array("I", DT_HASH, 4 * (2 + h.nbucket + h.nchain), "DT_HASH")
        return SysvHash(at, words[2:2 + h.nbucket], words[2 + h.nbucket:])

    def symbol_count(self) -> int:
        """How many entries DT_SYMTAB has: stored nowhere, so the hash table says.

        From DT_GNU_HASH: past the highest bucket's first symbol, to the end
        of its chain (the word with the low bit set); its Bloom filter and the
        other chains are not read (`gnu_hash` reads them all, and checks them).
        """
        if self.has(DT_GNU_HASH):
            f = self.f
            header = layout(Elf_GnuHashHeader, f.order)
            at = self.offset(DT_GNU_HASH, header.size, "DT_GNU_HASH")
            nbuckets, symoffset, bloom_size, _ = header.unpack_from(f.raw, at)
            buckets_at = at + header.size + 8 * bloom_size
            buckets = f.array("I", buckets_at, nbuckets, "DT_GNU_HASH buckets")
            if not nbuckets or not bloom_size or bloom_size & (bloom_size - 1):
                f.fail("damaged DT_GNU_HASH: no buckets, or a Bloom filter size not a power of 2")
            last = max(buckets)
            if last < symoffset:
                return symoffset               # every bucket empty: only the unhashed symbols
            word = struct.Struct(f.order + "I")
            chain_at = buckets_at + 4 * nbuckets + 4 * (last - symoffset)
            while True:
                f.check_range(chain_at, 4, "DT_GNU_HASH chain")
                last += 1
                if word.unpack_from(f.raw, chain_at)[0] & 1:
                    return last
                chain_at += 4
        sysv = self.sysv_hash()
        return len(sysv.chain) if sysv is not None else 0

    def symbol_rows(self) -> List[tuple]:
        """The dynamic symbols (DT_SYMTAB) as plain tuples in Elf64_Sym's field order
        (st_name, st_info, st_other, st_shndx, st_value, st_size), entry 0 included:
        no names decoded, no objects made (what a check of every open reads)."""
        count = self.symbol_count()
        if not self.has(DT_SYMTAB) or not count:
            return []
        row = layout(Elf64_Sym, self.f.order)
        at = self.offset(DT_SYMTAB, count * row.size, "symbol table")
        return list(row.iter_unpack(self.f.raw[at:at + count * row.size]))

    def symbols(self) -> List[Tuple[Elf64_Sym, str]]:
        """The dynamic symbols (DT_SYMTAB) with their names, entry 0 included."""
        count = self.symbol_count()
        table = self.table(Elf64_Sym, DT_SYMTAB, count * sizeof(Elf64_Sym), "symbol table")
        return [(sym, self.string(sym.st_name, "symbol name")) for sym in table]

    def versym(self, count: int) -> Sequence[int]:
        """DT_VERSYM: each dynamic symbol's version index (() if the file has none)."""
        return self.array("H", DT_VERSYM, 2 * count, "DT_VERSYM")

    def relocations(self) -> List[Elf64_Rela]:
        """The DT_RELA and DT_JMPREL (PLT) relocation entries, in that order."""
        return (self.table(Elf64_Rela, DT_RELA, self.get(DT_RELASZ), "DT_RELA table")
                + self.table(Elf64_Rela, DT_JMPREL, self.get(DT_PLTRELSZ), "DT_JMPREL table"))

    def needed_by_library(self) -> Dict[str, List[str]]:
        """DT_VERNEED as library name -> the version names needed from it."""
        needs: Dict[str, List[str]] = {}
        if not self.has(DT_VERNEED):
            return needs
        at = self.offset(DT_VERNEED, sizeof(Elf64_Verneed), "DT_VERNEED")
        budget = 1 << 16
        for _ in range(self.get(DT_VERNEEDNUM)):
            need = self.f.read(Elf64_Verneed, at, "DT_VERNEED entry")
            names = needs.setdefault(self.string(need.vn_file, "DT_VERNEED file"), [])
            aux = at + need.vn_aux
            for _ in range(need.vn_cnt):
                budget -= 1
                entry = self.f.read(Elf64_Vernaux, aux, "DT_VERNEED version")
                names.append(self.string(entry.vna_name, "version"))
                aux += entry.vna_next
            if not need.vn_next or budget < 0:
                break
            at += need.vn_next
        return needs

    def versions_defined(self) -> List[str]:
        """The version names this file defines (DT_VERDEF), without the file's own name."""
        names: List[str] = []
        if not self.has(DT_VERDEF):
            return names
        at = self.offset(DT_VERDEF, sizeof(Elf64_Verdef), "DT_VERDEF")
        for _ in range(min(self.get(DT_VERDEFNUM), 1 << 16)):
            d = self.f.read(Elf64_Verdef, at, "DT_VERDEF entry")
            if d.vd_cnt and not d.vd_flags & VER_FLG_BASE:
                aux = self.f.read(Elf64_Verdaux, at + d.vd_aux, "DT_VERDEF name")
                names.append(self.string(aux.vda_name, "version"))
            if not d.vd_next:
                break
            at += d.vd_next
        return names

    def versions_needed(self) -> Dict[int, str]:
        """The versions this file asks of other libraries (DT_VERNEED): DT_VERSYM index -> name."""
        versions: Dict[int, str] = {}
        if not self.has(DT_VERNEED):
            return versions
        at = self.offset(DT_VERNEED, sizeof(Elf64_Verneed), "DT_VERNEED")
        budget = 1 << 16                      # a cycle of offsets must not loop forever
        for _ in range(self.get(DT_VERNEEDNUM)):
            need = self.f.read(Elf64_Verneed, at, "DT_VERNEED entry")
            aux = at + need.vn_aux
            for _ in range(need.vn_cnt):
                budget -= 1
                entry = self.f.read(Elf64_Vernaux, aux, "DT_VERNEED version")
                versions[entry.vna_other] = self.string(entry.vna_name, "version")
                aux += entry.vna_next
            if not need.vn_next or budget < 0:
                break
            at += need.vn_next
        return versions


class Names(Sequence[str]):
    """The symbols' names, each decoded from the string table when first asked for."""

    def __init__(self, dyn: DynamicSection, symbols: Sequence[Elf64_Sym]) -> None:
        self.dyn, self.symbols, self.cache = dyn, symbols, {}

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index not in self.cache:
            self.cache[index] = self.dyn.string(self.symbols[index].st_name, "symbol name")
        return self.cache[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def check(self, names: Collection[int]) -> int:
        """Each of these names (st_name: offsets in the string table) lies in the string
        table, NUL-terminated: checked at once when the table ends with a NUL; otherwise
        name by name (the first damaged one raises, naming what is wrong). Returns where
        the string table starts in the file."""
        start, size = self.dyn.strtab
        if not size or self.dyn.f.raw[start + size - 1] or max(names, default=0) >= size:
            for name in names:
                self.dyn.string(name, "symbol name")
        return start


def _name(enum: type, value: int, spelled: Optional[Dict[int, str]] = None) -> str:
    """A member's name as readelf prints it, or the number for one the enum lacks."""
    if spelled and value in spelled:
        return spelled[value]
    try:
        return enum(value).name                  # type: ignore[call-arg]
    except ValueError:
        return str(value)


def _align(n: int, to: int) -> int:
    return (n + to - 1) & ~(to - 1)
