"""An ELF plugin read in one pass: every fact a first open asks of it, each structure once.

A first open asks of a plugin's bytes: what file it is and its manifest
note (checks.py), whether it is a Go library (goruntime.py), what it needs
from the process — DT_NEEDED, its search paths, its undefined symbols and
their versions (linkage.py) — and its SONAME and NODELETE mark (system.py).
Asked one by one, through `ElfFile` and `DynamicSection`, each question
builds its own objects and walks its own tables; for a 15 kB plugin that
costs more than hashing and loading it. `survey` answers them all in one
walk over the headers, with the struct layouts `elf.py` declares and plain
tuples, each table read once.

It answers only for a file it reads without surprise: a little-endian
64-bit ELF file whose every table it touches lies where it must. Anything
else — damaged, truncated, big-endian, odd — gives None, and each question
is then asked the usual way, whose readers find and name what is wrong, at
the check that always found it. So the survey changes no verdict and no
error, only how fast a sound file is read (tests/formats/test_survey.py
compares both readers' answers on every example and on damaged copies).
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

from . import elf
from .reader import Record, layout

_EHDR = layout(elf.Elf64_Ehdr)
_PHDR = layout(elf.Elf64_Phdr)
_SHDR_SIZE = layout(elf.Elf64_Shdr).size
_NHDR = layout(elf.Elf64_Nhdr)
_DYN = layout(elf.Elf64_Dyn)
_SYM = layout(elf.Elf64_Sym)
_VERNEED = layout(elf.Elf64_Verneed)
_VERNAUX = layout(elf.Elf64_Vernaux)
_GNU_HASH = layout(elf.Elf_GnuHashHeader)
_HASH = layout(elf.Elf_HashHeader)
_RELA_SIZE = layout(elf.Elf64_Rela).size

PT_LOAD, PT_DYNAMIC, PT_NOTE = int(elf.PT.LOAD), int(elf.PT.DYNAMIC), int(elf.PT.NOTE)
PF_W, PF_X = int(elf.PF_W), int(elf.PF_X)
DT = {name: int(getattr(elf.DT, name)) for name in (
    "NULL", "NEEDED", "STRTAB", "SYMTAB", "STRSZ", "SYMENT", "RELAENT", "RELRENT", "SONAME",
    "RPATH", "RUNPATH", "FLAGS_1", "GNU_HASH", "HASH", "VERSYM", "VERNEED", "VERNEEDNUM")}
SHN_UNDEF, STB_WEAK, VERSYM_HIDDEN = int(elf.SHN_UNDEF), int(elf.STB_WEAK), elf.VERSYM_HIDDEN
GO_OWNER, NT_GO_BUILDID = b"Go", 4
BUILDINFO_MAGIC, BUILDINFO_ALIGN = b"\xff Go buildinf:", 16     # as goruntime.py
MANIFEST_OWNER, NT_MANIFEST = b"minildr", 0x4D4C4452            # as manifest.py


class Survey(Record):
    """What a first open asks of an ELF file, as its own readers would answer."""
    e_type: int
    e_machine: int
    manifest: Optional[bytes]            # the minildr note's payload (examine_elf)
    go: bool                             # goruntime.is_go_elf
    needed: List[str]                    # linkage.needs_in's fields, in its order
    rpath: List[str]
    runpath: List[str]
    symbols: List[Tuple[str, Optional[str]]]
    versions: Dict[str, List[str]]
    soname: Optional[str]
    flags_1: int


class _Unusual(Exception):
    """The survey declines: the usual readers look at this file (and say what is wrong)."""


def survey(data: bytes) -> Optional[Survey]:
    """Every answer at once for a sound little-endian 64-bit ELF file, else None."""
    try:
        return _Walk(data).survey()
    except (_Unusual, struct.error, IndexError, ValueError, OverflowError):
        return None


class _Walk:
    """One walk over the headers; every offset and size checked as `Reader` checks them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def inside(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise _Unusual

    def survey(self) -> Survey:
        data = self.data
        self.inside(0, _EHDR.size)
        (ident, e_type, e_machine, e_version, _, e_phoff, e_shoff, _, _, e_phentsize, e_phnum,
         e_shentsize, e_shnum, _) = _EHDR.unpack_from(data, 0)
        if (ident[:4] != elf.ELFMAG or ident[elf.EI_CLASS] != elf.ELFCLASS64
                or ident[elf.EI_DATA] != elf.ELFDATA2LSB or e_version != elf.EV_CURRENT
                or (e_phnum and e_phentsize != _PHDR.size)
                or (e_shnum and e_shentsize != _SHDR_SIZE)):
            raise _Unusual
        self.inside(e_phoff, e_phnum * _PHDR.size)
        if e_shnum:
            self.inside(e_shoff, e_shnum * _SHDR_SIZE)
        phdrs = list(_PHDR.iter_unpack(data[e_phoff:e_phoff + e_phnum * _PHDR.size]))
        # (p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align)
        self.loads = [ph for ph in phdrs if ph[0] == PT_LOAD]
        manifest, go = self.notes(phdrs)
        go = go or self.go_buildinfo()
        dynamic = next((ph for ph in phdrs if ph[0] == PT_DYNAMIC), None)
        if dynamic is None:
            raise _Unusual          # DynamicSection refuses it: let it say so
        entries = self.dynamic(dynamic)
        return Survey(e_type, e_machine, manifest, go, *self.needs(entries),
                      entries.get(DT["FLAGS_1"], [0])[0])

    # -- notes: the manifest, and Go's build ID --------------------------
    def notes(self, phdrs: list) -> Tuple[Optional[bytes], bool]:
        data, size = self.data, _NHDR.size
        manifest, go = None, False
        for p_type, _, p_offset, _, _, p_filesz, _, p_align in phdrs:
            if p_type != PT_NOTE:
                continue
            self.inside(p_offset, p_filesz)
            align = 8 if p_align == 8 else 4
            start = offset = p_offset
            end = p_offset + p_filesz
            while offset + size <= end:
                namesz, descsz, ntype = _NHDR.unpack_from(data, offset)
                name_at = offset + size
                desc_at = start + _align(name_at + namesz - start, align)
                if desc_at + descsz > end:
                    raise _Unusual
                owner = data[name_at:name_at + namesz].rstrip(b"\0")
                if owner == MANIFEST_OWNER and ntype == NT_MANIFEST and manifest is None:
                    manifest = data[desc_at:desc_at + descsz]
                elif owner == GO_OWNER and ntype == NT_GO_BUILDID:
                    go = True
                offset = start + _align(desc_at + descsz - start, align)
        return manifest, go

    def go_buildinfo(self) -> bool:
        """goruntime.has_go_buildinfo: the header, aligned, in a writable data segment."""
        for _, p_flags, p_offset, p_vaddr, _, p_filesz, _, _ in self.loads:
            if p_flags & (PF_W | PF_X) != PF_W:
                continue
            segment = self.data[p_offset:p_offset + p_filesz]
            at = segment.find(BUILDINFO_MAGIC)
            while at != -1:
                if (p_vaddr + at) % BUILDINFO_ALIGN == 0:
                    return True
                at = segment.find(BUILDINFO_MAGIC, at + 1)
        return False

    # -- the dynamic section and the tables it points at -------------------
    def dynamic(self, segment: tuple) -> Dict[int, List[int]]:
        p_offset, p_filesz = segment[2], segment[5]
        count = p_filesz // _DYN.size
        self.inside(p_offset, count * _DYN.size)
        entries: Dict[int, List[int]] = {}
        for tag, value in _DYN.iter_unpack(self.data[p_offset:p_offset + count * _DYN.size]):
            if tag == DT["NULL"]:
                break
            if tag in entries:
                entries[tag].append(value)
            else:
                entries[tag] = [value]
        for tag, size in ((DT["SYMENT"], _SYM.size), (DT["RELAENT"], _RELA_SIZE),
                          (DT["RELRENT"], 8)):
            if entries.get(tag, [size])[0] != size:
                raise _Unusual
        if DT["STRTAB"] not in entries or DT["SYMTAB"] not in entries:
            raise _Unusual
        self.strsz = entries.get(DT["STRSZ"], [0])[0]
        self.strtab = self.file_offset(entries[DT["STRTAB"]][0], self.strsz)
        return entries

    def file_offset(self, vaddr: int, size: int) -> int:
        for _, _, p_offset, p_vaddr, _, p_filesz, _, _ in self.loads:
            if p_vaddr <= vaddr and vaddr + size <= p_vaddr + p_filesz:
                offset = p_offset + vaddr - p_vaddr
                self.inside(offset, size)
                return offset
        raise _Unusual

    def string(self, index: int) -> str:
        if index >= self.strsz:
            raise _Unusual
        self.inside(self.strtab, self.strsz)
        start = self.strtab + index
        end = self.data.find(b"\0", start, self.strtab + self.strsz)
        if end < 0:
            raise _Unusual
        return self.data[start:end].decode("utf-8", "replace")

    def needs(self, entries: Dict[int, List[int]]) -> tuple:
        """linkage.needs_in's answer: needed, rpath, runpath, symbols, versions, soname."""
        rows = self.symbols(entries)
        versym: tuple = ()
        if rows and DT["VERSYM"] in entries:
            at = self.file_offset(entries[DT["VERSYM"]][0], 2 * len(rows))
            versym = struct.unpack_from(f"<{len(rows)}H", self.data, at)
        by_index, by_library = self.versions_needed(entries)
        undefined = []
        string = self.string
        for index, (st_name, st_info, _, st_shndx, _, _) in enumerate(rows):
            if not index or st_shndx != SHN_UNDEF or st_info >> 4 == STB_WEAK:
                continue
            name = string(st_name)
            if not name:
                continue
            version = by_index.get(versym[index] & ~VERSYM_HIDDEN) if versym else None
            undefined.append((name, version))

        def paths(tag: int) -> List[str]:
            return [p for v in entries.get(tag, ()) for p in string(v).split(":") if p]
        soname = string(entries[DT["SONAME"]][0]) if DT["SONAME"] in entries else None
        return ([string(v) for v in entries.get(DT["NEEDED"], ())], paths(DT["RPATH"]),
                paths(DT["RUNPATH"]), undefined, by_library, soname)

    def symbols(self, entries: Dict[int, List[int]]) -> list:
        """DynamicSection.symbol_rows: the count from the hash table, then the rows."""
        count = self.symbol_count(entries)
        if not count:
            return []
        at = self.file_offset(entries[DT["SYMTAB"]][0], count * _SYM.size)
        return list(_SYM.iter_unpack(self.data[at:at + count * _SYM.size]))

    def symbol_count(self, entries: Dict[int, List[int]]) -> int:
        data = self.data
        if DT["GNU_HASH"] in entries:
            at = self.file_offset(entries[DT["GNU_HASH"]][0], _GNU_HASH.size)
            nbuckets, symoffset, bloom_size, _ = _GNU_HASH.unpack_from(data, at)
            if not nbuckets or not bloom_size or bloom_size & (bloom_size - 1):
                raise _Unusual
            buckets_at = at + _GNU_HASH.size + 8 * bloom_size
            self.inside(buckets_at, 4 * nbuckets)
            last = max(struct.unpack_from(f"<{nbuckets}I", data, buckets_at))
            if last < symoffset:
                return symoffset
            chain_at = buckets_at + 4 * nbuckets + 4 * (last - symoffset)
            while True:
                self.inside(chain_at, 4)
                last += 1
                if data[chain_at] & 1:         # the word's low bit (little-endian)
                    return last
                chain_at += 4
        if DT["HASH"] not in entries:
            return 0
        at = self.file_offset(entries[DT["HASH"]][0], _HASH.size)
        nbucket, nchain = _HASH.unpack_from(data, at)
        self.file_offset(entries[DT["HASH"]][0], 4 * (2 + nbucket + nchain))
        return nchain

    def versions_needed(self, entries: Dict[int, List[int]]
                        ) -> Tuple[Dict[int, str], Dict[str, List[str]]]:
        """DT_VERNEED walked once: DynamicSection.versions_needed and needed_by_library."""
        by_index: Dict[int, str] = {}
        by_library: Dict[str, List[str]] = {}
        if DT["VERNEED"] not in entries:
            return by_index, by_library
        at = self.file_offset(entries[DT["VERNEED"]][0], _VERNEED.size)
        budget = 1 << 16
        for _ in range(entries.get(DT["VERNEEDNUM"], [0])[0]):
            self.inside(at, _VERNEED.size)
            _, vn_cnt, vn_file, vn_aux, vn_next = _VERNEED.unpack_from(self.data, at)
            names = by_library.setdefault(self.string(vn_file), [])
            aux = at + vn_aux
            for _ in range(vn_cnt):
                budget -= 1
                self.inside(aux, _VERNAUX.size)
                _, _, vna_other, vna_name, vna_next = _VERNAUX.unpack_from(self.data, aux)
                name = self.string(vna_name)
                by_index[vna_other] = name
                names.append(name)
                aux += vna_next
            if not vn_next or budget < 0:
                break
            at += vn_next
        return by_index, by_library


def _align(n: int, to: int) -> int:
    return (n + to - 1) & ~(to - 1)
