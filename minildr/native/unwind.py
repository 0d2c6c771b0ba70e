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

Only when the library can throw: when one of its DT_NEEDED libraries brings
libgcc_s, the unwinder (a C++ library's libstdc++ needs it; those are loaded
before this step, and asked for __register_frame in their scope: one dlsym
each). C code throws no C++ exceptions, and bringing libgcc_s in, or even
asking the system loader whether it is there, costs as much as dlopen's
whole load of a small library. Such a library waits in `PENDING`, and is
registered by the first later load whose libraries bring the unwinder
(before any of that library's code runs, so before its first throw). What
this misses: a backtrace, or a pthread_cancel, through the waiting library's
frames before such a load stops at them, where glibc's unwinder, which finds
every library it loaded through dl_iterate_phdr, would go on.
"""
from __future__ import annotations

import os
import struct
from typing import Any, Dict, List, Optional

from ..formats import elf
from .libc import ffi, libc

DW_EH_PE_pcrel, DW_EH_PE_sdata4, DW_EH_PE_udata4, DW_EH_PE_absptr = 0x10, 0x0B, 0x03, 0x00
RTLD_NOLOAD = 4
PENDING: "Dict[int, Registration]" = {}     # waiting for libgcc_s: id -> registration


def unwinder() -> Any:
    """libgcc_s's handle (the unwinder libstdc++ throws through) if it is in the process, or
    None. Asked with RTLD_NOLOAD: never loaded here, only a reference counted."""
    handle = libc.dlopen(b"libgcc_s.so.1", os.RTLD_NOW | RTLD_NOLOAD)
    return handle if handle != ffi.NULL else None


def brought_by(needed: List[Any]) -> bool:
    """Whether one of these DT_NEEDED libraries brings libgcc_s: __register_frame is in
    its scope (dlsym on its handle searches it and the libraries it needs)."""
    return any(libc.dlsym(handle, b"__register_frame") for handle in needed)


def eh_frame(plan: Any, base: int) -> Optional[int]:
    """Where the library's .eh_frame is in memory, read from its .eh_frame_hdr, or None."""
    header = next(plan.elf.segments(elf.PT_GNU_EH_FRAME), None)
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
    """The library's .eh_frame, registered with the unwinder (now, or once it is in the
    process) until `close`.

    Made before it registers (`start`), so the library holds it before the
    frames are registered; `registered` is set in the statement that
    registers and cleared in the one that deregisters: an interrupted close,
    run again, deregisters exactly once (libgcc aborts on a second
    __deregister_frame of the same frames, and an unmapped library left
    registered crashes the next exception that unwinds past its addresses).
    """

    def __init__(self, plan: Any, base: int, trace: Any) -> None:
        self.address, self.gcc, self.trace = eh_frame(plan, base), None, trace
        self.offset = None if self.address is None else self.address - base
        self.registered = False

    def start(self, needed: List[Any]) -> None:
        """Register now if a library it needs brought libgcc_s, else wait in PENDING."""
        if self.address is None:
            return
        if not (brought_by(needed) and self.register()):
            PENDING[id(self)] = self
            self.trace.event("unwind", f".eh_frame at base+{self.offset:#x} waits for the "
                                       "unwinder (no library it needs brings libgcc_s: C code "
                                       "throws no C++ exceptions)", offset=self.offset)
            return
        for waiting in list(PENDING.values()):      # it has come since they were loaded
            waiting.register()

    def register(self) -> bool:
        """__register_frame, if libgcc_s is in the process (each registration holds a
        reference to it: it stays while the .eh_frame it was given is registered)."""
        if self.registered:
            return True
        gcc = unwinder()
        if gcc is None:
            return False
        PENDING.pop(id(self), None)
        self.gcc = gcc
        self.registered = _frame_call(gcc, b"__register_frame", self.address) is None
        self.trace.event("unwind", f".eh_frame at base+{self.offset:#x} registered with "
                                   "the unwinder (__register_frame)", offset=self.offset)
        return True

    def close(self) -> None:
        PENDING.pop(id(self), None)
        if self.registered:
            self.registered = _frame_call(self.gcc, b"__deregister_frame", self.address) is not None
        if self.gcc is not None:
            gcc, self.gcc = self.gcc, None          # an interrupt here keeps libgcc_s: harmless
            libc.dlclose(gcc)                       # the reference unwinder() counted


def _frame_call(gcc: Any, name: bytes, address: int) -> None:
    return ffi.cast(VOID_FN, libc.dlsym(gcc, name))(address)       # None: a void function


VOID_FN = ffi.typeof("void (*)(uintptr_t)")
