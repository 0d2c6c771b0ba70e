"""Step 3, map: put the file's segments in memory where their addresses say.

A shared library can go at any address, but its segments must keep their
distances from each other (code refers to data by those distances). So the
loader first reserves one span of address space, inaccessible (PROT_NONE),
big enough for all of it; the kernel's choice of where is the load base.
Then each PT_LOAD segment is mapped from the file at base + p_vaddr, over
the reservation (MAP_FIXED), and what lies past its file contents (.bss)
is zero-filled: the rest of its last file page by hand, whole pages as
fresh anonymous memory.

Each segment gets the protection its p_flags ask, and is never writable
and executable at once. Read-only segments are not relocated (parse
refused text relocations), so they get their final protection now; the
writable segment is relocated in place (step 4), which then makes its
PT_GNU_RELRO part (GOT, vtables, init arrays) read-only.
"""
from __future__ import annotations

import errno
import os
from typing import List

from ..formats import elf
from ..errors import LoadError
from .libc import BYTES, ffi, libc
from .parse import PAGE, Plan, page_down, page_up
from .trace import Segment, Trace

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
MAP_FAILED = 2**64 - 1


def prot_of(ph: elf.Elf64_Phdr) -> int:
    return ((PROT_READ if ph.p_flags & elf.PF_R else 0) | (PROT_WRITE if ph.p_flags & elf.PF_W else 0)
            | (PROT_EXEC if ph.p_flags & elf.PF_X else 0))


def _mmap(plan: Plan, address: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    result = libc.mmap(address, length, prot, flags, fd, offset)
    if result == MAP_FAILED:
        code = ffi.errno
        if code == errno.EPERM and prot & PROT_EXEC:
            raise LoadError(plan.path, "cannot map its code as executable: the file system it "
                                       "is on is mounted noexec (or a security policy forbids "
                                       "it); copy the library to an executable location")
        raise LoadError(plan.path, f"mmap failed: {os.strerror(code)}")
    return result


def reserve(plan: Plan, trace: Trace) -> int:
    """Reserve the whole span; the address the kernel picks is the load base.

    A segment may ask for more than page alignment (p_align, e.g. 2 MiB for
    huge pages); as glibc's _dl_map_segment does, reserve that much more and
    give back what lies before and after an aligned base.
    """
    align = max(ph.p_align for ph in plan.loads)
    extra = align - PAGE if align > PAGE else 0
    start = _mmap(plan, 0, plan.span + extra, PROT_NONE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    base = (start + align - 1) & ~(align - 1) if extra else start
    if base > start:
        unmap(start, base - start)
    if start + extra > base:
        unmap(base + plan.span, start + extra - base)
    trace.event("reserve", f"{plan.span} bytes at {base:#x}, inaccessible: the base",
                base=base, span=plan.span)
    return base


def map_segments(plan: Plan, base: int, fd: int, trace: Trace) -> List[Segment]:
    layout = []
    for ph in plan.loads:
        prot = prot_of(ph)
        start, file_end = page_down(ph.p_vaddr), ph.p_vaddr + ph.p_filesz
        if file_end > start:
            _mmap(plan, base + start, page_up(file_end) - start, prot,
                  MAP_PRIVATE | MAP_FIXED, fd, page_down(ph.p_offset))
            layout.append(trace.segment("file", base, start, page_up(file_end), prot, ph))
        if ph.p_memsz > ph.p_filesz:
            zero_bss(plan, base, ph, prot, trace, layout)
    return layout


def zero_bss(plan: Plan, base: int, ph: elf.Elf64_Phdr, prot: int, trace: Trace,
             layout: List[Segment]) -> None:
    """Memory the file does not hold starts as zeros: the .bss of C globals.

    The rest of the last file page holds other bytes of the file: zeroed by
    hand. A read-only segment may have .bss too (p_memsz > p_filesz without
    PF_W): as glibc's _dl_map_segments does (elf/dl-map-segments.h, "Dag nab
    it"), that page is made writable for the moment, then given its
    protection back.
    """
    file_end, mem_end = ph.p_vaddr + ph.p_filesz, page_up(ph.p_vaddr + ph.p_memsz)
    tail = min(page_up(file_end), mem_end) - file_end
    for writable in ((True, False) if tail and ph.p_filesz else ()):
        if libc.mprotect(base + page_down(file_end), PAGE, prot | (PROT_WRITE if writable else 0)):
            raise LoadError(plan.path, f"mprotect failed: {os.strerror(ffi.errno)}")
        if writable:
            ffi.memmove(ffi.cast(BYTES, base + file_end), b"\0" * tail, tail)
    start = page_up(file_end) if ph.p_filesz else page_down(ph.p_vaddr)
    if mem_end > start:
        _mmap(plan, base + start, mem_end - start, prot,
              MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
        layout.append(trace.segment("bss", base, start, mem_end, prot, ph))


def unmap(base: int, span: int) -> None:
    libc.munmap(base, span)
