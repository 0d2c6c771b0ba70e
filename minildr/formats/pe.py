"""PE, the file format of DLLs on Windows: enough to find a manifest and the exports.

minildr.build puts the manifest in a section named `.minildr`. This module
reads the DOS stub, the COFF file header and the section table (names from
<winnt.h>) to say what a file is and to find that section; and, through the
optional header's data directories, the export directory, to list what the
DLL exports (what GetProcAddress can find).
"""
from __future__ import annotations

import os
import struct
from typing import List, Optional

from .reader import Reader, Record, c_string, declare, sizeof

IMAGE_FILE_MACHINE = {0x14C: "i386", 0x8664: "x86_64", 0xAA64: "aarch64", 0x1C4: "arm"}
IMAGE_FILE_DLL = 0x2000
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
PE32_MAGIC, PE32PLUS_MAGIC = 0x10B, 0x20B
MANIFEST_SECTION = ".minildr"
IMAGE_DIRECTORY_ENTRY_EXPORT = 0   # the first data directory: the export table


class IMAGE_DOS_HEADER(Record):
    e_magic: bytes      # 2s   "MZ"
    e_skip: bytes       # 58s  the DOS stub fields minildr does not need
    e_lfanew: int       # I    where the PE header starts


class IMAGE_FILE_HEADER(Record):
    Signature: bytes            # 4s  "PE\0\0"
    Machine: int                # H
    NumberOfSections: int       # H
    TimeDateStamp: int          # I
    PointerToSymbolTable: int   # I
    NumberOfSymbols: int        # I
    SizeOfOptionalHeader: int   # H
    Characteristics: int        # H   IMAGE_FILE_DLL for a DLL


class IMAGE_OPTIONAL_HEADER64(Record):
    Magic: int                  # H    PE32PLUS_MAGIC
    skip: bytes                 # 106s linker versions, sizes, image base, ... (unused here)
    NumberOfRvaAndSizes: int    # I    how many IMAGE_DATA_DIRECTORY entries follow


class IMAGE_DATA_DIRECTORY(Record):
    VirtualAddress: int         # I    an RVA: an address relative to the image's base
    Size: int                   # I


class IMAGE_EXPORT_DIRECTORY(Record):
    Characteristics: int        # I
    TimeDateStamp: int          # I
    MajorVersion: int           # H
    MinorVersion: int           # H
    Name: int                   # I    RVA of the DLL's own name
    Base: int                   # I    the first ordinal
    NumberOfFunctions: int      # I    entries of AddressOfFunctions
    NumberOfNames: int          # I    entries of AddressOfNames and AddressOfNameOrdinals
    AddressOfFunctions: int     # I    RVA of a table of code/data RVAs, by ordinal - Base
    AddressOfNames: int         # I    RVA of a table of name RVAs, sorted by name
    AddressOfNameOrdinals: int  # I    RVA of a table of 16-bit indexes into AddressOfFunctions


class IMAGE_SECTION_HEADER(Record):
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
declare(IMAGE_OPTIONAL_HEADER64, "H106sI")
declare(IMAGE_DATA_DIRECTORY, "II")
declare(IMAGE_EXPORT_DIRECTORY, "IIHHIIIIIII")


class PEExport(Record):
    """One named export: what GetProcAddress(dll, name) finds."""
    name: str
    ordinal: int
    rva: int            # where it is, relative to the DLL's base address


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
        self.optional: IMAGE_OPTIONAL_HEADER64 = self.read(IMAGE_OPTIONAL_HEADER64, optional_at,
                                                           "optional header")
        self.directories = self._data_directories(optional_at)
        self.sections = self.table(IMAGE_SECTION_HEADER,
                                   optional_at + self.header.SizeOfOptionalHeader,
                                   self.header.NumberOfSections, "section table")

    def _data_directories(self, optional_at: int) -> List[IMAGE_DATA_DIRECTORY]:
        """The table after the optional header's fixed part, inside SizeOfOptionalHeader."""
        at = optional_at + sizeof(IMAGE_OPTIONAL_HEADER64)
        room = (self.header.SizeOfOptionalHeader - sizeof(IMAGE_OPTIONAL_HEADER64)) \
            // sizeof(IMAGE_DATA_DIRECTORY)
        if self.optional.NumberOfRvaAndSizes > room:
            self.damaged(f"the optional header claims {self.optional.NumberOfRvaAndSizes} data "
                         f"directories but has room for {max(room, 0)}")
        return self.table(IMAGE_DATA_DIRECTORY, at, self.optional.NumberOfRvaAndSizes,
                          "data directories")

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

    # -- exports ------------------------------------------------------
    def section_of(self, rva: int, size: int, what: str) -> IMAGE_SECTION_HEADER:
        """The section whose bytes in the file hold `size` bytes at `rva`."""
        for sect in self.sections:
            start = sect.VirtualAddress
            if start <= rva and rva + size <= start + sect.SizeOfRawData:
                return sect
        self.damaged(f"the {what} (RVA {rva:#x}, {size} bytes) is in no section's data")

    def file_offset(self, rva: int, size: int, what: str) -> int:
        """Where the bytes at `rva` (an address once loaded) lie in the file."""
        sect = self.section_of(rva, size, what)
        offset = sect.PointerToRawData + rva - sect.VirtualAddress
        self.check_range(offset, size, what)
        return offset

    def string_at_rva(self, rva: int, what: str) -> str:
        """A NUL-terminated name, never read past the end of its section."""
        sect = self.section_of(rva, 1, what)
        start = self.file_offset(rva, 1, what)
        end = min(sect.PointerToRawData + sect.SizeOfRawData, len(self.data))
        nul = self.raw.find(b"\0", start, end)
        if nul < 0:
            self.damaged(f"the {what} is not NUL-terminated")
        return bytes(self.data[start:nul]).decode("ascii", "replace")

    def export_directory(self) -> Optional[IMAGE_EXPORT_DIRECTORY]:
        if len(self.directories) <= IMAGE_DIRECTORY_ENTRY_EXPORT:
            return None
        entry = self.directories[IMAGE_DIRECTORY_ENTRY_EXPORT]
        if entry.VirtualAddress == 0:
            return None
        at = self.file_offset(entry.VirtualAddress, sizeof(IMAGE_EXPORT_DIRECTORY),
                              "export directory")
        return self.read(IMAGE_EXPORT_DIRECTORY, at, "export directory")

    def array_at_rva(self, code: str, rva: int, count: int, what: str) -> tuple:
        size = struct.calcsize("<" + code) * count
        at = self.file_offset(rva, size, what)
        return struct.unpack_from(f"<{count}{code}", self.data, at)

    def exports(self) -> List[PEExport]:
        """The named exports: name i's RVA is AddressOfFunctions[AddressOfNameOrdinals[i]]."""
        d = self.export_directory()
        if d is None or d.NumberOfNames == 0:
            return []
        names = self.array_at_rva("I", d.AddressOfNames, d.NumberOfNames, "export name table")
        indexes = self.array_at_rva("H", d.AddressOfNameOrdinals, d.NumberOfNames,
                                    "export ordinal table")
        functions = self.array_at_rva("I", d.AddressOfFunctions, d.NumberOfFunctions,
                                      "export address table")
        found = []
        for name_rva, index in zip(names, indexes):
            if index >= d.NumberOfFunctions:
                self.damaged(f"export table: index {index} past its {d.NumberOfFunctions} "
                             "functions")
            found.append(PEExport(self.string_at_rva(name_rva, "export name"),
                                  d.Base + index, functions[index]))
        return found
