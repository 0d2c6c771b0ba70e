"""Thread-local storage: variables with one copy per thread (`__thread`, C11 `_Thread_local`).

Source: Ulrich Drepper, "ELF Handling For Thread-Local Storage" (2013
revision). Each module with a PT_TLS segment has a TLS *block*, an image
(.tdata, then zeros for .tbss) copied once per thread (section 2). On
x86-64 (variant II, section 3.4.6 and figure 2) the thread pointer, %fs,
points at the thread's control block, whose first word points at itself;
the blocks of the libraries loaded at start-up sit just below it at fixed
offsets, the "static TLS", so code compiled for the initial-exec model
(section 4.3.6) reaches a variable at %fs plus a constant that the loader
writes into the GOT: R_X86_64_TPOFF64, "the offset of the variable from
the thread pointer" (section 4.3.6 and the relocation table of 4.4).

What this loader does, and why it is enough for what libraries ask:

- initial-exec references into libraries the system loader already
  loaded (libm's and libstdc++'s `errno`, libc's resolver state):
  `dlvsym` on a TLS symbol returns the variable's address *in the calling
  thread*; minus this thread's thread pointer it is the TPOFF64 value, the
  same in every thread because the block is in static TLS. It checks that
  the address really lies in the static TLS area just below the thread
  pointer, and refuses otherwise (a library glibc itself loaded later has
  its block elsewhere, and no constant offset reaches it).
- general-dynamic references into libraries the system loader loaded
  (DTPMOD64/DTPOFF64 against an undefined symbol): that library's module id
  and the variable's offset in its block (`by_module`, below).
- a library's own PT_TLS block (the general- and local-dynamic models:
  DTPMOD64, DTPOFF64 and calls to __tls_get_addr): glibc owns the block,
  under a module id this loader borrows (`BorrowedModule`, below). If the
  library also reaches its own block at constant offsets from the thread
  pointer (initial-exec inside a dlopened library, DF_STATIC_TLS), the
  stub asks glibc to put the block in static TLS (`stub_library`).
  Initial values that are pointers (relocations into the TLS image) are
  relocated before glibc gets the image (`relocated_image`). TLS
  descriptors (`static_descriptor`) work for blocks in static TLS: the
  library's own, placed there, and static blocks of loaded libraries.
"""
from __future__ import annotations

import os
import struct
import threading
from typing import Any, Dict, List

from ..errors import LoadError
from ..formats import elf
from ..formats.reader import pack, sizeof
from .classes import Rel
from .libc import THREAD_SELF, ffi, libc

STATIC_TLS_LIMIT = 1 << 20          # static TLS is small: start-up modules plus glibc's surplus
RTLD_DI_LINKMAP, RTLD_DI_TLS_MODID = 2, 9                       # <dlfcn.h>
ffi.cdef("""
    struct link_map { uintptr_t l_addr; char *l_name; void *l_ld; struct link_map *l_next, *l_prev; };
    typedef struct { unsigned long module, offset; } tls_index;
    uintptr_t __tls_get_addr(tls_index *index);
""")


def thread_pointer() -> int:
    """This thread's thread pointer (x86-64's %fs base).

    glibc's pthread_self() is the address of the thread's `struct pthread`,
    whose first member is the TCB (tcbhead_t) the thread pointer points at:
    on x86-64 the two are one address, and its first word points at itself
    (Drepper, section 3.4.6), which is checked.
    """
    tp = libc.pthread_self()
    if ffi.cast(THREAD_SELF, tp)[0] != tp:
        raise RuntimeError("the thread pointer is not where glibc on x86-64 keeps it")
    return tp


def tp_offset(address: int) -> int | None:
    """TPOFF64 for a variable at `address` in this thread: its offset from the thread pointer,
    or None if it is not in static TLS (then no constant offset reaches it in every thread)."""
    offset = address - thread_pointer()
    return offset if -STATIC_TLS_LIMIT <= offset < 0 else None


# -- TLS descriptors (R_X86_64_TLSDESC) --------------------------------------------------
#
# Code compiled with -mtls-dialect=gnu2 reaches a variable through a
# descriptor of two words, {function, argument}: it calls the function with
# %rax pointing at the descriptor and adds the offset it returns to %fs
# (the x86-64 TLSDESC specification, Oliva and Drepper, "Thread-Local Storage
# Descriptors for IA32 and AMD64/EM64T"). For a block in static TLS the
# argument is the variable's constant offset from the thread pointer and the
# function returns it: glibc's _dl_tlsdesc_return (sysdeps/x86_64/dl-tlsdesc.S),
# which ld.so does not export. So this loader puts the library's own block in
# static TLS (as for TPOFF64, the stub's relocation asks glibc for it) and
# writes its own copy of that function, five instructions' bytes on one page
# made executable once per process and kept: endbr64; mov 8(%rax), %rax; ret.
RETURN_ARGUMENT = bytes.fromhex("f30f1efa" "488b4008" "c3")
_descriptor_function: List[int] = []
_descriptor_lock = threading.Lock()


def static_descriptor() -> int:
    """The address of the descriptor function for variables in static TLS (made on first use)."""
    with _descriptor_lock:
        if not _descriptor_function:
            page = libc.mmap(0, 4096, 3, 0x22, -1, 0)          # PROT_READ|WRITE, PRIVATE|ANONYMOUS
            if page == 2**64 - 1:
                raise OSError(ffi.errno, "mmap failed for the TLS descriptor function")
            ffi.memmove(ffi.cast("char *", page), RETURN_ARGUMENT, len(RETURN_ARGUMENT))
            if libc.mprotect(page, 4096, 5):                    # PROT_READ|EXEC, never writable again
                raise OSError(ffi.errno, "mprotect failed for the TLS descriptor function")
            _descriptor_function.append(page)
        return _descriptor_function[0]


# -- Another library's variable by module (general-dynamic into a loaded library) --------
#
# A DTPMOD64/DTPOFF64 pair against an undefined symbol names a variable of a
# library the system loader loaded: the pair must hold that library's module
# id and the variable's offset in its block. dlsym on a TLS symbol gives the
# variable's address in the calling thread (allocating the thread's block if
# need be); __tls_get_addr({m, 0}) gives the start of module m's block in the
# same thread, for each module in glibc's list of loaded libraries (the link
# map, dlinfo RTLD_DI_LINKMAP and RTLD_DI_TLS_MODID). Blocks do not overlap,
# so the block starting nearest below the address holds the variable: that
# module, and the address minus that start, are the same in every thread.
def loaded_modules() -> List[int]:
    """The TLS module ids of the libraries the system loader has loaded (0: no PT_TLS)."""
    handle, first, module = libc.dlopen(ffi.NULL, os.RTLD_NOW), ffi.new("struct link_map **"), \
        ffi.new("size_t *")
    libc.dlinfo(handle, RTLD_DI_LINKMAP, first)
    ids, lm = [], ffi.cast("struct link_map *", first[0])
    while lm != ffi.NULL:
        module[0] = 0
        libc.dlinfo(lm, RTLD_DI_TLS_MODID, module)
        ids += [module[0]] if module[0] else []
        lm = lm.l_next
    libc.dlclose(handle)
    return ids


def block(module: int) -> int:
    """Where module `module`'s TLS block starts in this thread (allocated if need be)."""
    return libc.__tls_get_addr(ffi.new("tls_index *", (module, 0)))


def by_module(path: str, address: int, module: bool, addend: int) -> int:
    """DTPMOD64 (`module`) or DTPOFF64 for another library's TLS variable at `address` here."""
    starts = {m: block(m) for m in loaded_modules()}
    below = [m for m, start in starts.items() if start <= address]
    if not below:
        raise LoadError(path, "uses a thread-local variable in no loaded library's TLS block")
    owner = max(below, key=starts.__getitem__)
    return owner if module else address - starts[owner] + addend


# -- A library's own TLS block: a module id borrowed from glibc --------------------------
#
# Code compiled for the general- and local-dynamic models (the default for
# -fPIC, Drepper sections 4.1.6 and 4.2.6 for x86-64) reaches its variables by
# calling __tls_get_addr(&{module, offset}): the GOT holds the module id
# (R_X86_64_DTPMOD64) and the variable's offset in the module's block
# (R_X86_64_DTPOFF64). __tls_get_addr is glibc's: it looks the module up in
# the calling thread's dynamic thread vector (dtv, section 3.2), allocating
# and initialising the thread's copy of the block on first use, in threads
# that existed before the load as in threads started after. So rather than
# rebuild that machinery, this loader asks glibc to own the block: it writes
# a tiny ELF library whose only content is a PT_TLS segment with the same
# image (.tdata), size and alignment, lets dlopen load it (glibc gives it a
# module id and records the image), and reads the id back with dlinfo
# (RTLD_DI_TLS_MODID). The library's DTPMOD64 words get that id, its
# DTPOFF64 words the offsets in its own PT_TLS, and closing the library
# dlcloses the stub, which frees the blocks of every thread.
RTLD_DI_TLS_MODID = 9


class BorrowedModule:
    """glibc's TLS module id for a natively loaded library, via a stub library it loads."""

    def __init__(self, path: str, machine: int, segment: Any, image: bytes, static: bool) -> None:
        self.fd = os.memfd_create("minildr-tls-stub", os.MFD_CLOEXEC)
        os.write(self.fd, stub_library(machine, segment, image, static))
        self.handle = libc.dlopen(f"/proc/self/fd/{self.fd}".encode(), os.RTLD_NOW | os.RTLD_LOCAL)
        if self.handle == ffi.NULL:
            os.close(self.fd)
            raise LoadError(path, "the system loader refused the stub that holds its thread-local "
                                  f"storage: {ffi.string(libc.dlerror()).decode(errors='replace')}")
        module = ffi.new("size_t *")
        libc.dlinfo(self.handle, RTLD_DI_TLS_MODID, module)
        self.module = module[0]

    def close(self) -> None:
        """dlclose the stub, close its memfd; each forgotten in the statement that frees it
        (run again after an interrupt, it frees what is left, nothing twice)."""
        if self.handle is not None:
            self.handle = (libc.dlclose(self.handle), None)[1]
        if self.fd >= 0:
            self.fd = os.close(self.fd) or -1


def borrow_module(plan: Any, trace: Any, base: int, bound: Dict[int, Any]) -> BorrowedModule:
    """glibc takes the library's TLS image (from the checked bytes, relocated) under a module
    id of its own."""
    segment = plan.tls
    image = relocated_image(plan, base, bound)
    static = any(plan.rel_class(r) in (Rel.TPOFF, Rel.TLSDESC)
                 and (not r.symbol or plan.symbols[r.symbol].st_shndx) for r in plan.other)
    module = BorrowedModule(plan.path, plan.elf.header.e_machine, segment, image, static)
    trace.event("tls", f"module {module.module} borrowed from the system loader: a stub with "
                       f"PT_TLS of {segment.p_memsz} bytes ({segment.p_filesz} initialised), "
                       f"aligned to {segment.p_align}" + (", in static TLS" if static else ""),
                module=module.module, size=segment.p_memsz, init_size=segment.p_filesz,
                align=segment.p_align, static=static)
    return module


def relocated_image(plan: Any, base: int, bound: Dict[int, Any]) -> bytes:
    """The TLS image with the relocations that write into it applied (pointers as initial
    values: B + A, or S + A): each thread's copy is made from it, so glibc's stub gets the
    relocated bytes, as glibc's own copies come from the relocated .tdata of a library."""
    tls, words = plan.tls, {}
    image = bytearray(plan.elf.data[tls.p_offset:tls.p_offset + tls.p_filesz])
    inside = lambda at: tls.p_vaddr <= at <= tls.p_vaddr + tls.p_filesz - 8   # noqa: E731
    for at, addend in zip(plan.relative.offsets, plan.relative.addends):
        words[at] = base + addend
    for at in plan.relative.relr:
        words[at] = base + struct.unpack_from("<Q", image, at - tls.p_vaddr)[0] if inside(at) else 0
    for r in plan.other:
        if plan.rel_class(r) is Rel.SYMBOLIC and inside(r.offset):
            binding = bound[r.symbol]
            if binding.ifunc:
                raise LoadError(plan.path, "uses an IFUNC's result as a thread-local variable's "
                                           "initial value; load it with the system loader")
            words[r.offset] = binding.value + (base if binding.base_relative else 0) + r.addend
    for at, value in words.items():
        if inside(at):
            struct.pack_into("<Q", image, at - tls.p_vaddr, value % (1 << 64))
    return bytes(image)


def stub_library(machine: int, tls: Any, image: bytes, static: bool = False) -> bytes:
    """An ELF shared library with nothing in it but a PT_TLS segment like `tls` (and `image`).

    One read-write PT_LOAD holds the headers, an empty dynamic section, symbol
    and string tables, and the TLS image, placed at an address congruent to
    the original's modulo its alignment (glibc keeps p_vaddr & (p_align - 1)
    as the block's first-byte offset); PT_GNU_STACK asks for no executable stack.
    `static`: the library reaches its own variables at fixed offsets from the
    thread pointer (initial-exec, TPOFF64 against itself), so the block must
    be in static TLS: the stub then has one TPOFF64 relocation against its
    own block, and glibc, relocating it, places the block in static TLS (its
    surplus for dlopen, elf/dl-reloc.c _dl_allocate_static_tls) in every thread.
    """
    head, phnum, ndyn = 64, 4, 8 if static else 5
    dynamic_at = head + phnum * sizeof(elf.Elf64_Phdr)
    symtab_at = dynamic_at + ndyn * sizeof(elf.Elf64_Dyn)
    strtab_at = symtab_at + sizeof(elf.Elf64_Sym)
    align = max(tls.p_align, 1)
    image_at = strtab_at + 8 + (tls.p_vaddr - strtab_at - 8) % align
    rela_at = (image_at + max(len(image), 1) + 7) & ~7
    size = rela_at + (sizeof(elf.Elf64_Rela) + 8 if static else 0)
    ident = elf.ELFMAG + bytes([elf.ELFCLASS64, elf.ELFDATA2LSB, elf.EV_CURRENT]) + bytes(9)
    headers = [elf.Elf64_Phdr(elf.PT.LOAD, elf.PF_R | elf.PF_W, 0, 0, 0, size, size, 0x1000),
               elf.Elf64_Phdr(elf.PT.DYNAMIC, elf.PF_R | elf.PF_W, dynamic_at, dynamic_at,
                              dynamic_at, ndyn * 16, ndyn * 16, 8),
               elf.Elf64_Phdr(elf.PT.TLS, elf.PF_R, image_at, image_at, image_at, len(image),
                              tls.p_memsz, align),
               elf.Elf64_Phdr(elf.PT.GNU_STACK, elf.PF_R | elf.PF_W, 0, 0, 0, 0, 0, 16)]
    dynamic = [elf.Elf64_Dyn(elf.DT.STRTAB, strtab_at), elf.Elf64_Dyn(elf.DT.SYMTAB, symtab_at),
               elf.Elf64_Dyn(elf.DT.STRSZ, 1), elf.Elf64_Dyn(elf.DT.SYMENT, 24)]
    if static:
        dynamic += [elf.Elf64_Dyn(elf.DT.RELA, rela_at), elf.Elf64_Dyn(elf.DT.RELASZ, 24),
                    elf.Elf64_Dyn(elf.DT.RELAENT, 24)]
    dynamic.append(elf.Elf64_Dyn(elf.DT.NULL, 0))
    out = bytearray(size)
    out[:head] = pack(elf.Elf64_Ehdr(ident, elf.ET.DYN, machine, elf.EV_CURRENT, 0, head, 0, 0,
                                     head, sizeof(elf.Elf64_Phdr), phnum, 64, 0, 0))
    out[head:dynamic_at] = b"".join(pack(ph) for ph in headers)
    out[dynamic_at:symtab_at] = b"".join(pack(d) for d in dynamic)
    out[image_at:image_at + len(image)] = image
    if static:                       # TPOFF64, symbol 0 (the stub itself), into the last word
        out[rela_at:rela_at + 24] = pack(elf.Elf64_Rela(rela_at + 24, TPOFF64[machine], 0))
    return bytes(out)


TPOFF64 = {elf.EM_X86_64: 18, elf.EM_AARCH64: 1030}    # R_X86_64_TPOFF64, R_AARCH64_TLS_TPREL64
