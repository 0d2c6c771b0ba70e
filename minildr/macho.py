"""Mach-O, the file format of shared libraries on macOS: just enough to find a manifest.

minildr.build puts the manifest in a section `__TEXT,__minildr`. This module
reads the Mach-O header and load commands (names from <mach-o/loader.h>) to
say what a file is and to find that section, without loading anything.
A universal ("fat") file is read by picking the slice for the wanted CPU.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional, Tuple

from .binary import Reader, c_string, declare, sizeof

MH_MAGIC, MH_MAGIC_64 = 0xFEEDFACE, 0xFEEDFACF
MH_CIGAM, MH_CIGAM_64 = 0xCEFAEDFE, 0xCFFAEDFE     # the same, byte-swapped
FAT_MAGIC = 0xCAFEBABE                             # universal binary, big-endian
MH_OBJECT, MH_EXECUTE, MH_DYLIB, MH_BUNDLE = 1, 2, 6, 8
MH_FILETYPES = {MH_OBJECT: "object file (.o)", MH_EXECUTE: "executable",
                MH_DYLIB: "shared library", MH_BUNDLE: "shared library"}
LC_SEGMENT_64 = 0x19
CPU_ARCH_ABI64 = 0x01000000
CPU_TYPE_X86, CPU_TYPE_ARM, CPU_TYPE_POWERPC = 7, 12, 18
CPU_TYPES = {CPU_TYPE_X86: "i386", CPU_TYPE_X86 | CPU_ARCH_ABI64: "x86_64",
             CPU_TYPE_ARM: "arm", CPU_TYPE_ARM | CPU_ARCH_ABI64: "aarch64",
             CPU_TYPE_POWERPC: "ppc", CPU_TYPE_POWERPC | CPU_ARCH_ABI64: "ppc64"}
MANIFEST_SEGMENT, MANIFEST_SECTION = "__TEXT", "__minildr"


class mach_header_64(NamedTuple):
    magic: int          # I
    cputype: int        # i
    cpusubtype: int     # i
    filetype: int       # I   MH_DYLIB or MH_BUNDLE for a loadable library
    ncmds: int          # I
    sizeofcmds: int     # I
    flags: int          # I
    reserved: int       # I


class load_command(NamedTuple):
    cmd: int            # I
    cmdsize: int        # I


class segment_command_64(NamedTuple):
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


class section_64(NamedTuple):
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


class fat_header(NamedTuple):
    magic: int          # I
    nfat_arch: int      # I


class fat_arch(NamedTuple):
    cputype: int        # i
    cpusubtype: int     # i
    offset: int         # I
    size: int           # I
    align: int          # I


declare(mach_header_64, "IiiIIIII")
declare(load_command, "II")
declare(segment_command_64, "II16sQQQQiiII")
declare(section_64, "16s16sQQIIIIIIII")
declare(fat_header, "II")
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

    def sections(self):
        offset = self.base + sizeof(mach_header_64)
        end = offset + self.header.sizeofcmds
        for _ in range(self.header.ncmds):
            lc = self.read(load_command, offset, "load command")
            if lc.cmdsize < sizeof(load_command) or offset + lc.cmdsize > end:
                self.fail(f"damaged load command (size {lc.cmdsize}) at offset {offset}")
            if lc.cmd == LC_SEGMENT_64:
                seg = self.read(segment_command_64, offset, "segment command")
                first = offset + sizeof(segment_command_64)
                if first + seg.nsects * sizeof(section_64) > offset + lc.cmdsize:
                    self.fail(f"segment {c_string(seg.segname)} claims more sections than fit")
                yield from self.table(section_64, first, seg.nsects, "section table")
            offset += lc.cmdsize

    def section_bytes(self, segname: str, sectname: str) -> Optional[bytes]:
        for sect in self.sections():
            if c_string(sect.segname) == segname and c_string(sect.sectname) == sectname:
                return self.bytes_at(self.base + sect.offset, sect.size, f"section {sectname}")
        return None
