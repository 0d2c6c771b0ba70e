"""Helpers shared by the native loader's tests (tests/native/test_native_*.py)."""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence

import pytest

from helpers import DATA, build_once
from platforms import requires_native_loader
from minildr.formats import elf
from minildr.host import HOST

HERE = Path(__file__).resolve().parent
SRC = HERE / "native_src"
AARCH64 = DATA / "aarch64"
LIB_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]

native_host = requires_native_loader        # declared once, in platforms.py


def build_relocs(out_dir: Path, cflags: Sequence[str] = ()) -> Path:
    """The relocs plugin: every relocation kind an ordinary C library has (a fresh copy
    in out_dir: each compiler and set of flags is built once per test session)."""
    return build_once([SRC / "relocs.c"], name="relocs", exports=SRC / "relocs.h",
                      out_dir=out_dir, cflags=tuple(cflags))


def system_library(soname: str) -> Path:
    """A library this machine ships, or skip the test saying which is missing."""
    for folder in LIB_DIRS:
        path = Path(folder) / soname
        if path.is_file():
            return path.resolve()
    pytest.skip(f"{soname} is not installed on this machine (looked in {', '.join(LIB_DIRS)})")


def linker_supports(flag: str) -> bool:
    probe = subprocess.run(["ld", "--help"], capture_output=True, text=True)
    return flag in probe.stdout


def mappings_of(marker: str) -> List[str]:
    """Lines of /proc/self/maps whose file name contains `marker`."""
    with open("/proc/self/maps") as maps:
        return [line for line in maps if marker in line]


def mapped_range(start: int, end: int) -> List[str]:
    """/proc/self/maps lines overlapping [start, end)."""
    rows = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo < end and hi > start:
                rows.append(line)
    return rows


# -- patching files: same length, so every other offset stays valid ----------
def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def dynamic_entries(data: bytes) -> List[tuple]:
    """(file offset, d_tag, d_val) of every dynamic entry, DT_NULLs included."""
    f = elf.ElfFile(data, "<test>")
    dyn = next(f.segments(elf.PT_DYNAMIC))
    return [(dyn.p_offset + 16 * i, *struct.unpack_from("<qQ", data, dyn.p_offset + 16 * i))
            for i in range(dyn.p_filesz // 16)]


def set_dynamic(data: bytes, tag: int, value: int = 0, replace: Optional[int] = None) -> bytes:
    """Change the entry tagged `replace` to (tag, value), or add one in a spare DT_NULL slot."""
    entries = dynamic_entries(data)
    if replace is None:
        nulls = [e for e in entries if e[1] == elf.DT_NULL]
        assert len(nulls) >= 2, "no spare DT_NULL slot to add an entry in"
        at = nulls[0][0]
    else:
        at = next(e[0] for e in entries if e[1] == replace)
    return patched(data, at, struct.pack("<qQ", tag, value))


def rela_entries(data: bytes) -> List[tuple]:
    """(file offset, r_offset, r_info, r_addend) of every DT_RELA and DT_JMPREL entry."""
    f = elf.ElfFile(data, "<test>")
    tags = {t: v for _, t, v in dynamic_entries(data)}
    rows = []
    for addr, size in ((elf.DT_RELA, elf.DT_RELASZ), (elf.DT_JMPREL, elf.DT_PLTRELSZ)):
        if addr in tags:
            at = f.file_offset(tags[addr], tags[size], "relocations")
            rows += [(at + 24 * i, *struct.unpack_from("<QQq", data, at + 24 * i))
                     for i in range(tags[size] // 24)]
    return rows


def phdr_offset(data: bytes, p_type: int, nth: int = 0) -> int:
    f = elf.ElfFile(data, "<test>")
    hits = [i for i, ph in enumerate(f.program_headers) if ph.p_type == p_type]
    return f.header.e_phoff + hits[nth] * f.header.e_phentsize
