"""Mach-O, the format of shared libraries on macOS: enough to find a manifest and the exports.

minildr.build puts the manifest in a section `__TEXT,__minildr`. This module
reads the Mach-O header and load commands (names from <mach-o/loader.h>) to
say what a file is and to find that section, without loading anything; and
the export trie, the table dyld searches for dlsym, to list what it exports.
A universal ("fat") file is read by picking the slice for the wanted CPU.
"""
from __future__ import annotations

import os
from typing import Iterator, List, Optional, Tuple

from .reader import Reader, Record, c_string, declare, sizeof

MH_MAGIC, MH_MAGIC_64 = 0xFEEDFACE, 0xFEEDFACF
MH_CIGAM, MH_CIGAM_64 = 0xCEFAEDFE, 0xCFFAEDFE     # the same, byte-swapped
FAT_MAGIC = 0xCAFEBABE                             # universal binary, big-endian
MH_OBJECT, MH_EXECUTE, MH_DYLIB, MH_BUNDLE = 1, 2, 6, 8
MH_FILETYPES = {MH_OBJECT: "object file (.o)", MH_EXECUTE: "executable",
                MH_DYLIB: "shared library", MH_BUNDLE: "shared library"}
LC_SEGMENT_64 = 0x19
LC_REQ_DYLD = 0x80000000                           # "dyld must understand this command"
LC_DYLD_INFO, LC_DYLD_INFO_ONLY = 0x22, 0x22 | LC_REQ_DYLD
LC_DYLD_EXPORTS_TRIE = 0x33 | LC_REQ_DYLD          # the trie alone (with chained fixups)
EXPORT_SYMBOL_FLAGS_REEXPORT = 0x08                # the symbol lives in another dylib
EXPORT_SYMBOL_FLAGS_STUB_AND_RESOLVER = 0x10       # a stub, and a function that resolves it
CPU_ARCH_ABI64 = 0x01000000
CPU_TYPE_X86, CPU_TYPE_ARM, CPU_TYPE_POWERPC = 7, 12, 18
CPU_TYPES = {CPU_TYPE_X86: "i386", CPU_TYPE_X86 | CPU_ARCH_ABI64: "x86_64",
             CPU_TYPE_ARM: "arm", CPU_TYPE_ARM | CPU_ARCH_ABI64: "aarch64",
             CPU_TYPE_POWERPC: "ppc", CPU_TYPE_POWERPC | CPU_ARCH_ABI64: "ppc64"}
MANIFEST_SEGMENT, MANIFEST_SECTION = "__TEXT", "__minildr"


class mach_header_64(Record):
    magic: int          # I
    cputype: int        # i
    cpusubtype: int     # i
    filetype: int       # I   MH_DYLIB or MH_BUNDLE for a loadable library
    ncmds: int          # I
    sizeofcmds: int     # I
    flags: int          # I
    reserved: int       # I


class load_command(Record):
    cmd: int            # I
    cmdsize: int        # I


class segment_command_64(Record):
    cmd: int            # I
    cmdsize: int        # I
    segname: bytes      # 16s
    vmaddr: int         # Q
    vmsize: int         # Q
    fileoff: int        # Q
    filesize: int       # Q
    maxprot: int        # i
    initprot: int       # i
    nsects: int         # I
    flags: int          # I


class section_64(Record):
    sectname: bytes     # 16s
    segname: bytes      # 16s
    addr: int           # Q
    size: int           # Q
    offset: int         # I
    align: int          # I
    reloff: int         # I
    nreloc: int         # I
    flags: int          # I
    reserved1: int      # I
    reserved2: int      # I
    reserved3: int      # I


class dyld_info_command(Record):   # LC_DYLD_INFO(_ONLY): where dyld's tables are
    cmd: int            # I
    cmdsize: int        # I
    rebase_off: int     # I
    rebase_size: int    # I
    bind_off: int       # I
    bind_size: int      # I
    weak_bind_off: int  # I
    weak_bind_size: int  # I
    lazy_bind_off: int  # I
    lazy_bind_size: int  # I
    export_off: int     # I   the export trie: file offset and size
    export_size: int    # I


class linkedit_data_command(Record):   # LC_DYLD_EXPORTS_TRIE and others
    cmd: int            # I
    cmdsize: int        # I
    dataoff: int        # I
    datasize: int       # I


class fat_header(Record):
    magic: int          # I
    nfat_arch: int      # I


class fat_arch(Record):
    cputype: int        # i
    cpusubtype: int     # i
    offset: int         # I
    size: int           # I
    align: int          # I


declare(mach_header_64, "IiiIIIII")
declare(load_command, "II")
declare(segment_command_64, "II16sQQQQiiII")
declare(section_64, "16s16sQQIIIIIIII")
declare(dyld_info_command, "IIIIIIIIIIII")
declare(linkedit_data_command, "IIII")
declare(fat_header, "II")


class MachOExport(Record):
    """One symbol the dylib exports, as dlsym names it (C's leading '_' removed)."""
    name: str
    address: int        # offset from the Mach-O header (0 for a re-export)
    flags: int          # EXPORT_SYMBOL_FLAGS_*
declare(fat_arch, "iiIII")


def is_macho(data: bytes) -> bool:
    if len(data) < 8:
        return False
    magic = int.from_bytes(data[:4], "little")
    if magic in (MH_MAGIC, MH_MAGIC_64, MH_CIGAM, MH_CIGAM_64):
        return True
    # 0xCAFEBABE is also a Java class file; a fat header has few slices,
    # a class file has its version (>= 45) there.
    return int.from_bytes(data[:4], "big") == FAT_MAGIC and int.from_bytes(data[4:8], "big") < 45


class MachOFile(Reader):
    """One Mach-O image (for a fat file: the slice for `arch`)."""

    def __init__(self, data: bytes, path: "os.PathLike[str] | str", arch: str) -> None:
        super().__init__(data, path)
        self.base = 0
        self.slices: Tuple[str, ...] = ()
        if int.from_bytes(bytes(self.data[:4]), "big") == FAT_MAGIC:
            self.base = self._pick_slice(arch)
        magic = int.from_bytes(self.bytes_at(self.base, 4, "Mach-O magic"), "little")
        if magic in (MH_MAGIC, MH_CIGAM):
            self.fail("a 32-bit Mach-O file; minildr loads 64-bit plugins only")
        if magic == MH_CIGAM_64:
            self.order = ">"
        elif magic != MH_MAGIC_64:
            self.fail("not a Mach-O file")
        self.header: mach_header_64 = self.read(mach_header_64, self.base, "Mach-O header")
        self.check_range(self.base + sizeof(mach_header_64), self.header.sizeofcmds,
                         "load commands")

    def _pick_slice(self, arch: str) -> int:
        self.order = ">"
        fat = self.read(fat_header, 0, "fat header")
        slices = self.table(fat_arch, sizeof(fat_header), fat.nfat_arch, "fat slice table")
        self.order = "<"
        self.slices = tuple(CPU_TYPES.get(s.cputype, hex(s.cputype)) for s in slices)
        if not slices:
            self.fail("a universal Mach-O file with no slices")
        # The wanted architecture's slice, or else the first one (whose
        # architecture the caller then sees, and can refuse).
        chosen = next((s for s in slices if CPU_TYPES.get(s.cputype) == arch), slices[0])
        self.check_range(chosen.offset, chosen.size, "universal slice")
        return chosen.offset

    @property
    def arch(self) -> str:
        return CPU_TYPES.get(self.header.cputype, f"cputype {self.header.cputype:#x}")

    @property
    def kind(self) -> str:
        return MH_FILETYPES.get(self.header.filetype, f"Mach-O filetype {self.header.filetype}")

    def load_commands(self) -> Iterator[Tuple[load_command, int]]:
        """Each load command, with its offset; every one must lie inside sizeofcmds."""
        offset = self.base + sizeof(mach_header_64)
        end = offset + self.header.sizeofcmds
        for _ in range(self.header.ncmds):
            lc = self.read(load_command, offset, "load command")
            if lc.cmdsize < sizeof(load_command) or offset + lc.cmdsize > end:
                self.damaged(f"load command (size {lc.cmdsize}) at offset {offset}")
            yield lc, offset
            offset += lc.cmdsize

    def command(self, cls, lc: load_command, offset: int):
        """A load command read as `cls`, which must fit in its cmdsize."""
        if lc.cmdsize < sizeof(cls):
            self.damaged(f"load command {lc.cmd:#x} is {lc.cmdsize} bytes, "
                         f"{cls.__name__} needs {sizeof(cls)}")
        return self.read(cls, offset, cls.__name__)

    def sections(self) -> Iterator[section_64]:
        for lc, offset in self.load_commands():
            if lc.cmd == LC_SEGMENT_64:
                seg = self.command(segment_command_64, lc, offset)
                first = offset + sizeof(segment_command_64)
                if first + seg.nsects * sizeof(section_64) > offset + lc.cmdsize:
                    self.damaged(f"segment {c_string(seg.segname)} claims more sections than fit")
                yield from self.table(section_64, first, seg.nsects, "section table")

    def section_bytes(self, segname: str, sectname: str) -> Optional[bytes]:
        for sect in self.sections():
            if c_string(sect.segname) == segname and c_string(sect.sectname) == sectname:
                return self.bytes_at(self.base + sect.offset, sect.size, f"section {sectname}")
        return None

    # -- exports ------------------------------------------------------
    def export_trie(self) -> bytes:
        """The export trie's bytes, from LC_DYLD_INFO(_ONLY) or LC_DYLD_EXPORTS_TRIE."""
        for lc, offset in self.load_commands():
            if lc.cmd in (LC_DYLD_INFO, LC_DYLD_INFO_ONLY):
                info = self.command(dyld_info_command, lc, offset)
                return self.bytes_at(self.base + info.export_off, info.export_size, "export trie")
            if lc.cmd == LC_DYLD_EXPORTS_TRIE:
                data = self.command(linkedit_data_command, lc, offset)
                return self.bytes_at(self.base + data.dataoff, data.datasize, "export trie")
        return b""

    def exports(self) -> List[MachOExport]:
        """Every name in the export trie.

        The trie shares prefixes: each node may end a name (its "terminal"
        part: flags and address), then lists children, each reached by an
        edge that adds a piece of the name. Names are the edges on the way down.
        """
        trie = self.export_trie()
        found, pending, seen = [], [(0, b"")], set()
        while trie and pending:
            node, prefix = pending.pop()
            if node in seen:
                self.damaged(f"export trie: node {node} is reached twice")
            seen.add(node)
            terminal_size, at = self.uleb128(trie, node)
            if terminal_size:
                found.append(self._terminal(trie, at, prefix))
            at += terminal_size
            if at >= len(trie):
                self.damaged(f"export trie: node {node} ends past the trie")
            children, at = trie[at], at + 1
            for _ in range(children):
                end = trie.find(b"\0", at)
                if end < 0:
                    self.damaged("export trie: an edge name is not NUL-terminated")
                edge = trie[at:end]
                child, at = self.uleb128(trie, end + 1)
                pending.append((child, prefix + edge))
        return sorted(found)

    def _terminal(self, trie: bytes, at: int, name: bytes) -> MachOExport:
        """A node's terminal part: flags, then the address (or where a re-export comes from)."""
        flags, at = self.uleb128(trie, at)
        address = 0
        if not flags & EXPORT_SYMBOL_FLAGS_REEXPORT:
            address, at = self.uleb128(trie, at)    # for a stub-and-resolver: the stub
        text = name.decode("utf-8", "replace")
        return MachOExport(text[1:] if text.startswith("_") else text, address, flags)

    def uleb128(self, data: bytes, at: int) -> Tuple[int, int]:
        """An unsigned LEB128 number (7 bits a byte, low first), and the offset after it."""
        value, shift = 0, 0
        while True:
            if at >= len(data) or shift > 63:
                self.damaged("export trie: a number runs past the trie")
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at
