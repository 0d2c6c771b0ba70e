"""Unwinding: let C++ exceptions (and backtraces) through the library's own code.

When C++ code throws, the unwinder (libgcc_s's _Unwind_RaiseException)
walks the stack frame by frame, and for each return address looks up the
frame description (FDE) that says how to undo that frame: in the .eh_frame
section of the library the address belongs to. It finds that section in one
of two ways (libgcc's unwind-dw2-fde-dispatch.c, _Unwind_Find_FDE): among
the sections registered with __register_frame, then among the libraries
the system loader lists (dl_iterate_phdr, each one's PT_GNU_EH_FRAME). A
library this loader mapped is in no such list, so without a registration
the first throw, even one the library catches itself, finds no FDE and
ends in std::terminate.

So after relocation (the FDEs' pointers are relative to their own place,
and the personality and LSDA pointers they use are relocated words), the
loader finds .eh_frame through PT_GNU_EH_FRAME: the .eh_frame_hdr it
points at starts with a version byte, the encoding of the next field, and
two table encodings, then `eh_frame_ptr`, the address of .eh_frame
(Linux Standard Base Core, "Exception Frames", .eh_frame_hdr); then hands
that address to __register_frame, and to __deregister_frame on close,
before the memory goes away.
"""
from __future__ import annotations

import os
import struct
from typing import Any, Optional

from ..formats import elf
from .libc import ffi, libc

DW_EH_PE_pcrel, DW_EH_PE_sdata4, DW_EH_PE_udata4, DW_EH_PE_absptr = 0x10, 0x0B, 0x03, 0x00
_unwinder: Any = None


def unwinder() -> Any:
    """libgcc_s's registration functions (the unwinder libstdc++ throws through), or None."""
    global _unwinder
    if _unwinder is None:
        handle = libc.dlopen(b"libgcc_s.so.1", os.RTLD_NOW | os.RTLD_GLOBAL)
        _unwinder = handle if handle != ffi.NULL else False
    return _unwinder or None


def eh_frame(plan: Any, base: int) -> Optional[int]:
    """Where the library's .eh_frame is in memory, read from its .eh_frame_hdr, or None."""
    header = next(plan.elf.segments(elf.PT.GNU_EH_FRAME), None)
    if header is None or header.p_memsz < 8:
        return None
    at = plan.elf.file_offset(header.p_vaddr, 8, "the .eh_frame_hdr")
    version, encoding = plan.elf.data[at], plan.elf.data[at + 1]
    if version != 1 or encoding & 0x0F not in (DW_EH_PE_sdata4, DW_EH_PE_udata4) \
            or encoding & 0x70 not in (0, DW_EH_PE_pcrel):
        return None                         # an encoding this reader does not decode
    value = struct.unpack_from("<i" if encoding & 0x0F == DW_EH_PE_sdata4 else "<I",
                               plan.elf.data, at + 4)[0]
    where = value + (header.p_vaddr + 4 if encoding & 0x70 == DW_EH_PE_pcrel else 0)
    if plan.elf.file_offset(where, 4, "the .eh_frame") is None or not readable(plan, where, 4):
        return None
    return base + where


def readable(plan: Any, vaddr: int, size: int) -> bool:
    """Whether [vaddr, vaddr + size) lies in a PT_LOAD segment mapped readable (PF_R).

    __register_frame reads the section at once (its first word) and the
    unwinder walks it later; glibc never reads .eh_frame while loading, so a
    library whose .eh_frame sits in a segment without PF_R still loads
    there. Here it is then left unregistered rather than read (a throw
    through it would fault under glibc too: its unwinder reads the same
    pages through dl_iterate_phdr).
    """
    return any(ph.p_flags & elf.PF_R and ph.p_vaddr <= vaddr and vaddr + size <= ph.p_vaddr + ph.p_memsz
               for ph in plan.loads)


class Registration:
    """The library's .eh_frame, registered with the unwinder until `close`.

    Made before it registers (`register`), so the library holds it before
    the frames are registered; `registered` is set in the statement that
    registers and cleared in the one that deregisters: an interrupted
    close, run again, deregisters exactly once (libgcc aborts on a second
    __deregister_frame of the same frames, and an unmapped library left
    registered crashes the next exception that unwinds past its addresses).
    """

    def __init__(self, plan: Any, base: int) -> None:
        self.address, self.gcc = eh_frame(plan, base), unwinder()
        self.registered = False

    def register(self, base: int, trace: Any) -> None:
        if self.address is None or self.gcc is None or self.registered:
            return
        self.registered = _frame_call(self.gcc, b"__register_frame", self.address) is None
        trace.event("unwind", f".eh_frame at base+{self.address - base:#x} registered with "
                              "the unwinder (__register_frame)", offset=self.address - base)

    def close(self) -> None:
        if self.registered:
            self.registered = _frame_call(self.gcc, b"__deregister_frame", self.address) is not None


def _frame_call(gcc: Any, name: bytes, address: int) -> None:
    return ffi.cast(VOID_FN, libc.dlsym(gcc, name))(address)       # None: a void function


VOID_FN = ffi.typeof("void (*)(uintptr_t)")
