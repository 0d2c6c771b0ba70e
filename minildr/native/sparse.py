"""What a load reads of a large file: the tables, not the machine code.

Step 1 reads the ELF header, the program headers, the dynamic section and
the tables it points to (symbols, strings, hashes, versions, relocations),
the notes, the .eh_frame_hdr, the thread-local storage image and the
writable data (where Go's build information is looked for). The code, and
the read-only data beside it, is mapped from the file by step 3 and never
read by the loader: in libcrypto that is 3.4 of its 4.7 MB. So for a file
of at least files.SPARSE_FROM bytes, `load` reads only what `file_ranges`
names (files.read_ranges); every other byte of its copy reads as zero.

A read-only segment is read whole when it holds the headers or a table the
dynamic section points to, so a table is never cut at a segment's end; a
table the loader would need from a segment left out is impossible in a
file this chooser accepts. What the chooser cannot read as a sound 64-bit
ELF file it reads whole, and step 1 then says what is wrong with it.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from ..formats import elf
from ..formats.reader import layout, sizeof

TABLES = {elf.DT_HASH, elf.DT_GNU_HASH, elf.DT_STRTAB, elf.DT_SYMTAB, elf.DT_RELA, elf.DT_REL,
          elf.DT_JMPREL, elf.DT_RELR, elf.DT_VERSYM, elf.DT_VERDEF, elf.DT_VERNEED,
          elf.DT_INIT_ARRAY, elf.DT_FINI_ARRAY, elf.DT_PREINIT_ARRAY}   # what step 1 reads
Span = Tuple[int, int]                                                   # (offset, count)


def file_ranges(pread: Callable[[int, int], bytes], size: int) -> Optional[List[Span]]:
    """The (offset, count) ranges of the file a load reads, or None: read all of it."""
    ehdr_layout, phdr_layout = layout(elf.Elf64_Ehdr), layout(elf.Elf64_Phdr)
    head = pread(0, ehdr_layout.size)
    if len(head) < ehdr_layout.size or head[:4] != elf.ELFMAG or head[4] != 2 or head[5] != 1:
        return None                          # not 64-bit little-endian ELF: parse says so
    header = elf.Elf64_Ehdr._make(ehdr_layout.unpack(head))
    table = pread(header.e_phoff, header.e_phnum * phdr_layout.size)
    if header.e_phentsize != phdr_layout.size or len(table) != header.e_phnum * phdr_layout.size:
        return None
    phdrs = [elf.Elf64_Phdr._make(row) for row in phdr_layout.iter_unpack(table)]
    spans = [(0, ehdr_layout.size), (header.e_phoff, len(table))]
    spans += [(ph.p_offset, ph.p_filesz) for ph in phdrs
              if ph.p_type != elf.PT_LOAD or ph.p_flags & elf.PF_W]
    pointers = [value for tag, value in dynamic_entries(pread, phdrs) if tag in TABLES]
    spans += [(ph.p_offset, ph.p_filesz) for ph in phdrs
              if ph.p_type == elf.PT_LOAD and not ph.p_flags & elf.PF_W and (
                  ph.p_offset <= header.e_phoff < ph.p_offset + ph.p_filesz or ph.p_offset == 0
                  or any(ph.p_vaddr <= at < ph.p_vaddr + ph.p_memsz for at in pointers))]
    return spans


def dynamic_entries(pread: Callable[[int, int], bytes], phdrs: List[elf.Elf64_Phdr]) -> List[Span]:
    """(d_tag, d_val) of every PT_DYNAMIC entry, as the file holds them."""
    row = layout(elf.Elf64_Dyn)
    entries = []
    for ph in phdrs:
        if ph.p_type == elf.PT_DYNAMIC:
            data = pread(ph.p_offset, ph.p_filesz // row.size * row.size)
            entries += list(row.iter_unpack(data[:len(data) // row.size * row.size]))
    return entries
