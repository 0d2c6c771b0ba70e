"""PE, the file format of DLLs on Windows: just enough to find a manifest.

minildr.build puts the manifest in a section named `.minildr`. This module
reads the DOS stub, the COFF file header and the section table (names from
<winnt.h>) to say what a file is and to find that section.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

from .binary import Reader, c_string, declare, sizeof

IMAGE_FILE_MACHINE = {0x14C: "i386", 0x8664: "x86_64", 0xAA64: "aarch64", 0x1C4: "arm"}
IMAGE_FILE_DLL = 0x2000
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
PE32_MAGIC, PE32PLUS_MAGIC = 0x10B, 0x20B
MANIFEST_SECTION = ".minildr"


class IMAGE_DOS_HEADER(NamedTuple):
    e_magic: bytes      # 2s   "MZ"
    e_skip: bytes       # 58s  the DOS stub fields minildr does not need
    e_lfanew: int       # I    where the PE header starts


class IMAGE_FILE_HEADER(NamedTuple):
    Signature: bytes            # 4s  "PE\0\0"
    Machine: int                # H
    NumberOfSections: int       # H
    TimeDateStamp: int          # I
    PointerToSymbolTable: int   # I
    NumberOfSymbols: int        # I
    SizeOfOptionalHeader: int   # H
    Characteristics: int        # H   IMAGE_FILE_DLL for a DLL


class IMAGE_SECTION_HEADER(NamedTuple):
    Name: bytes                 # 8s
    VirtualSize: int            # I
    VirtualAddress: int         # I
    SizeOfRawData: int          # I
    PointerToRawData: int       # I
    PointerToRelocations: int   # I
    PointerToLinenumbers: int   # I
    NumberOfRelocations: int    # H
    NumberOfLinenumbers: int    # H
    Characteristics: int        # I


declare(IMAGE_DOS_HEADER, "2s58sI")
declare(IMAGE_FILE_HEADER, "4sHHIIIHH")
declare(IMAGE_SECTION_HEADER, "8sIIIIIIHHI")


def is_pe(data: bytes) -> bool:
    return data[:2] == b"MZ"


class PEFile(Reader):
    def __init__(self, data: bytes, path: "os.PathLike[str] | str") -> None:
        super().__init__(data, path)
        dos = self.read(IMAGE_DOS_HEADER, 0, "DOS header")
        if dos.e_magic != b"MZ":
            self.fail("not a PE file (no MZ magic)")
        self.header: IMAGE_FILE_HEADER = self.read(IMAGE_FILE_HEADER, dos.e_lfanew, "PE header")
        if self.header.Signature != b"PE\0\0":
            self.fail("an MS-DOS program, not a PE file")
        optional_at = dos.e_lfanew + sizeof(IMAGE_FILE_HEADER)
        magic = int.from_bytes(self.bytes_at(optional_at, 2, "optional header"), "little")
        if magic == PE32_MAGIC:
            self.fail("a 32-bit PE file; minildr loads 64-bit plugins only")
        if magic != PE32PLUS_MAGIC:
            self.fail(f"unknown PE optional header magic {magic:#x}")
        self.sections = self.table(IMAGE_SECTION_HEADER,
                                   optional_at + self.header.SizeOfOptionalHeader,
                                   self.header.NumberOfSections, "section table")

    @property
    def arch(self) -> str:
        return IMAGE_FILE_MACHINE.get(self.header.Machine, f"machine {self.header.Machine:#x}")

    @property
    def kind(self) -> str:
        if self.header.Characteristics & IMAGE_FILE_DLL:
            return "shared library"
        if self.header.Characteristics & IMAGE_FILE_EXECUTABLE_IMAGE:
            return "executable"
        return "object file"

    def section_bytes(self, name: str) -> Optional[bytes]:
        for sect in self.sections:
            if c_string(sect.Name) == name:
                size = min(sect.VirtualSize or sect.SizeOfRawData, sect.SizeOfRawData)
                return self.bytes_at(sect.PointerToRawData, size, f"section {name}")
        return None
