"""Thread-local storage: variables with one copy per thread (`__thread`, C11 `_Thread_local`).

Source: Ulrich Drepper, "ELF Handling For Thread-Local Storage" (2013
revision). Each module with a PT_TLS segment has a TLS *block*, an image
(.tdata, then zeros for .tbss) copied once per thread (section 2). The
thread pointer (TP) locates a thread's blocks. Two layouts (section 3.4):

- variant II (section 3.4.6, figure 2), x86-64: TP (%fs) points at the
  thread's control block (TCB), whose first word points at itself; the
  blocks of the libraries loaded at start-up, the "static TLS", sit just
  *below* it: their offsets from TP are negative.
- variant I (section 3.4.1, figure 1; the "ARM-style" layout glibc uses on
  AArch64), AArch64: TP (the register tpidr_el0) points at a TCB of two
  words (the dtv pointer, one reserved word: 16 bytes), and the static blocks
  follow it *above* TP: their offsets are positive, the first at 16 rounded up
  to the block's alignment. The AArch64 ELF ABI ("ELF for the Arm 64-bit
  Architecture", AAELF64, section "Thread-local storage" under "Dynamic
  linking"; relocations in its table "Dynamic relocations") defines TPREL on
  that layout.

Code compiled for the initial-exec model (sections 4.3.6 x86-64, 4.3.x
AArch64 likewise) reaches a variable at TP plus a constant that the loader
writes into the GOT: R_X86_64_TPOFF64 or R_AARCH64_TLS_TPREL, "the offset of
the variable from the thread pointer" (section 4.4's relocation tables).
Everything else here works the same on both machines; what differs is in
LAYOUTS below (the direction of static TLS, two short machine-code
functions).

What this loader does, and why it is enough for what libraries ask:

- initial-exec references into libraries the system loader already
  loaded (libm's and libstdc++'s `errno`, libc's resolver state):
  `dlvsym` on a TLS symbol returns the variable's address *in the calling
  thread*; minus this thread's thread pointer it is the TPOFF64/TPREL value,
  the same in every thread because the block is in static TLS. It checks
  that the address really lies in this thread's static TLS area (glibc's
  _dl_get_tls_static_info gives its size; below TP in variant II, above it in
  variant I), and refuses otherwise (a library glibc itself loaded later
  has its block elsewhere, and no constant offset reaches it).
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
  library's own, placed there, and static blocks of loaded libraries; and
  for another library's block in dynamic TLS (`dynamic_descriptor`).
  (On AArch64 gcc's default for -fPIC code is descriptors, -mtls-dialect=desc,
  so an ordinary `__thread` variable takes this path there.)
"""
from __future__ import annotations

import os
import struct
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..errors import LoadError
from ..formats import elf
from ..formats.reader import pack, sizeof
from ..host import HOST
from ..interrupts import under_lock
from .classes import Rel
from .libc import FUNCTION, ffi, libc

RTLD_DI_LINKMAP, RTLD_DI_TLS_MODID = 2, 9                       # <dlfcn.h>
ffi.cdef("""
    struct link_map { uintptr_t l_addr; char *l_name; void *l_ld; struct link_map *l_next, *l_prev; };
    typedef struct { unsigned long module, offset; } tls_index;
    uintptr_t __tls_get_addr(tls_index *index);
    void _dl_get_tls_static_info(size_t *size, size_t *align);
""")


def _words(*words: int) -> bytes:
    """AArch64 instructions (32-bit words, little-endian) as bytes."""
    return struct.pack(f"<{len(words)}I", *words)


class Layout(NamedTuple):
    """What differs between the two machines: where static TLS lies from the thread pointer,
    and two functions of a few instructions each (see `code()`)."""
    variant: int                # Drepper's variant: II blocks below TP, I blocks above it
    tcb_size: int               # variant I: the TCB's bytes at TP, before the first block
    read_tp: bytes              # a function returning this thread's thread pointer
    descriptor_return: bytes    # glibc's _dl_tlsdesc_return: a descriptor's argument, as is
    descriptor_dynamic: Optional[bytes]     # __tls_get_addr(argument) - TP (see dynamic_descriptor)


LAYOUTS = {
    # x86-64: endbr64; mov %fs:0, %rax (the TCB's first word, itself); ret
    #         endbr64; mov 8(%rax), %rax; ret           (sysdeps/x86_64/dl-tlsdesc.S)
    "x86_64": Layout(2, 0, bytes.fromhex("f30f1efa" "64488b042500000000" "c3"),
                     bytes.fromhex("f30f1efa" "488b4008" "c3"), bytes.fromhex(
                         # endbr64; push %rbp; mov %rsp,%rbp; and $-16,%rsp (aligned for the call)
                         "f30f1efa554889e54883e4f0"
                         # push %rdi, %rsi, %rdx, %rcx, %r8, %r9, %r10, %r11; sub $256,%rsp;
                         # movdqa %xmm0..15, 0..240(%rsp)
                         "5756525141504151415241534881ec00010000660f7f0424660f7f4c2410660f7f5424206"
                         "60f7f5c2430660f7f642440660f7f6c2450660f7f742460660f7f7c247066440f7f842480"
                         "00000066440f7f8c249000000066440f7f9424a000000066440f7f9c24b000000066440f7"
                         "fa424c000000066440f7fac24d000000066440f7fb424e000000066440f7fbc24f0000000"
                         # mov 8(%rax),%rdi (the descriptor's tls_index);
                         # movabs $__tls_get_addr,%rax (patched in); call *%rax; sub %fs:0,%rax
                         "488b7808" "48b8" "0000000000000000" "ffd0" "64482b042500000000"
                         # movdqa 0..240(%rsp), %xmm0..15; add $256,%rsp; pop %r11 .. %rdi;
                         # mov %rbp,%rsp; pop %rbp; ret
                         "660f6f0424660f6f4c2410660f6f542420660f6f5c2430660f6f642440660f6f6c2450660"
                         "f6f742460660f6f7c247066440f6f84248000000066440f6f8c249000000066440f6f9424"
                         "a000000066440f6f9c24b000000066440f6fa424c000000066440f6fac24d000000066440"
                         "f6fb424e000000066440f6fbc24f00000004881c400010000415b415a41594158595a5e5f"
                         "4889ec5dc3")),
    # AArch64: bti c; mrs x0, tpidr_el0; ret
    #          bti c; ldr x0, [x0, #8]; ret              (sysdeps/aarch64/dl-tlsdesc.S)
    "aarch64": Layout(1, 16, struct.pack("<3I", 0xd503245f, 0xd53bd040, 0xd65f03c0),
                      struct.pack("<3I", 0xd503245f, 0xf9400400, 0xd65f03c0), _words(
                          # bti c; stp x29, x30, [sp, #-16]!; mov x29, sp
                          0xd503245f, 0xa9bf7bfd, 0x910003fd,
                          # stp x1, x2 .. x17, x18, [sp, #-16]! (nine pairs)
                          *(0xa9bf03e1 | (n + 1) << 10 | n for n in range(1, 19, 2)),
                          # stp q0, q1 .. q30, q31, [sp, #-32]! (sixteen pairs)
                          *(0xadbf03e0 | (n + 1) << 10 | n for n in range(0, 32, 2)),
                          # ldr x0, [x0, #8] (the descriptor's tls_index); ldr x16, =__tls_get_addr
                          # (the literal below, patched in); blr x16; mrs x1, tpidr_el0; sub x0, x0, x1
                          0xf9400400, 0x580003f0, 0xd63f0200, 0xd53bd041, 0xcb010000,
                          # ldp q30, q31 .. q0, q1, [sp], #32; ldp x17, x18 .. x1, x2, [sp], #16
                          *(0xacc103e0 | (n + 1) << 10 | n for n in range(30, -1, -2)),
                          *(0xa8c103e0 | (n + 1) << 10 | n for n in range(17, 0, -2)),
                          # ldp x29, x30, [sp], #16; ret; then the literal (8-aligned at 0xf0)
                          0xa8c17bfd, 0xd65f03c0, 0, 0)),
}
LAYOUT = LAYOUTS.get(HOST.arch)       # None elsewhere: validate.py refuses such hosts first


# -- Machine code: a few tiny functions on one page --------------------------------------
#
# Python cannot read a register, and glibc does not export the thread pointer
# (pthread_self() is the TCB on x86-64 but lies below it on AArch64, by the
# size of glibc's private struct pthread), nor _dl_tlsdesc_return, the
# function a TLS descriptor for a block in static TLS points at (nor the one for
# a block in dynamic TLS, below). So this
# loader writes the few instructions of each (LAYOUTS) on one page, made
# read-only and executable once per process and kept. It is written while
# not executable, then mprotect'ed: on AArch64 Linux makes the instruction
# cache agree with memory when a user page first becomes executable
# (arch/arm64/mm/flush.c, __sync_icache_dcache, from set_pte_at).
class Code(NamedTuple):
    """The page's functions, and glibc's static TLS size (fixed at start-up)."""
    read_tp: Any                # callable: this thread's thread pointer
    descriptor_return: int      # the address a descriptor for a static block points at
    descriptor_dynamic: int     # ... for a block in dynamic TLS (0: none on this machine)
    static_size: int            # static_tls_size()


_code: List[Code] = []
_code_lock = threading.Lock()


def code() -> Code:
    """This machine's functions (LAYOUT), written on first use."""
    return under_lock(_code_lock, _written_code)


def _written_code() -> Code:
    """Under _code_lock: the page written once, its functions."""
    if not _code:
        if LAYOUT is None:
            raise RuntimeError(f"no thread-local storage layout for {HOST.arch}")
        page = libc.mmap(0, 4096, 3, 0x22, -1, 0)          # PROT_READ|WRITE, PRIVATE|ANONYMOUS
        if page == 2**64 - 1:
            raise OSError(ffi.errno, "mmap failed for the TLS functions")
        ffi.memmove(ffi.cast("char *", page), LAYOUT.read_tp, len(LAYOUT.read_tp))
        ffi.memmove(ffi.cast("char *", page + 64), LAYOUT.descriptor_return,
                    len(LAYOUT.descriptor_return))
        if LAYOUT.descriptor_dynamic:       # __tls_get_addr's address in its 8 zero bytes
            dynamic = LAYOUT.descriptor_dynamic.replace(
                bytes(8), struct.pack("<Q", int(ffi.cast("uintptr_t", libc.__tls_get_addr))), 1)
            ffi.memmove(ffi.cast("char *", page + 128), dynamic, len(dynamic))
        if libc.mprotect(page, 4096, 5):                    # PROT_READ|EXEC, never writable again
            raise OSError(ffi.errno, "mprotect failed for the TLS functions")
        _code.append(Code(ffi.cast(FUNCTION, page), page + 64,
                          page + 128 if LAYOUT.descriptor_dynamic else 0, static_tls_size()))
    return _code[0]


def thread_pointer() -> int:
    """This thread's thread pointer (%fs base on x86-64, tpidr_el0 on AArch64).

    Checked against glibc's pthread_self(), the address of the thread's
    `struct pthread`: on x86-64 the TCB is its first member, so the two are
    one address (Drepper, section 3.4.6; glibc's sysdeps/x86_64/nptl/tls.h);
    on AArch64 struct pthread lies just below the TCB (sysdeps/aarch64/nptl/tls.h:
    THREAD_SELF is the thread pointer minus sizeof(struct pthread)).
    """
    tp, self = code().read_tp(), libc.pthread_self()
    if not (tp == self if LAYOUT.variant == 2 else 0 < tp - self <= 4096):
        raise RuntimeError(f"the thread pointer is not where glibc on {HOST.arch} keeps it")
    return tp


def static_tls_size() -> int:
    """glibc's size of each thread's static TLS area (the TCB included): the static blocks of
    the start-up libraries and the surplus dlopen may use (elf/dl-tls.c)."""
    size, align = ffi.new("size_t *"), ffi.new("size_t *")
    libc._dl_get_tls_static_info(size, align)
    return size[0]


def tp_offset(address: int) -> int | None:
    """TPOFF64/TPREL for a variable at `address` in this thread: its offset from the thread
    pointer, or None if it is not in this thread's static TLS (then no constant offset reaches
    it in every thread): variant II below TP, variant I above the TCB."""
    offset, size = address - thread_pointer(), code().static_size
    inside = -size <= offset < 0 if LAYOUT.variant == 2 else LAYOUT.tcb_size <= offset < size
    return offset if inside else None


def static_offset(plan: Any, r: Any, address: int) -> int:
    """tp_offset, or the LoadError that says no constant offset reaches the variable."""
    offset = tp_offset(address)
    if offset is None:
        raise LoadError(plan.path, f"uses the thread-local variable {plan.names[r.symbol]!r} "
                                   "of a library whose TLS block is not in static TLS; "
                                   "load it with the system loader (loader='system')")
    return offset


# -- TLS descriptors (R_X86_64_TLSDESC, R_AARCH64_TLSDESC) --------------------------------
#
# Code compiled with -mtls-dialect=gnu2 on x86-64, and by default on AArch64
# (-mtls-dialect=desc), reaches a variable through a descriptor of two words,
# {function, argument}: it calls the function with the descriptor's address
# (%rax on x86-64, x0 on AArch64) and adds the offset it returns to the
# thread pointer (Oliva and Drepper, "Thread-Local Storage Descriptors for
# IA32 and AMD64/EM64T"; AAELF64's R_AARCH64_TLSDESC, TLSDESC(S+A)). For a
# block in static TLS the argument is the variable's constant offset from
# the thread pointer and the function returns it: glibc's
# _dl_tlsdesc_return, which ld.so does not export, so `code()` writes it. The
# library's own block goes to static TLS for it (as for TPOFF64, the stub's
# relocation asks glibc for it).
def static_descriptor() -> int:
    """The address of the descriptor function for variables in static TLS (made on first use)."""
    return code().descriptor_return


# A block in dynamic TLS (another library's, which glibc loaded with dlopen
# and did not place in static TLS) has no constant offset: each thread's copy
# is wherever __tls_get_addr allocated it. On x86-64 the descriptor then
# points at a third function, whose argument is a tls_index {module, offset}
# this loader allocates and keeps: it saves every register the descriptor
# convention says it must not change (all but %rax and the flags: the integer
# ones the C ABI lets a call clobber, and %xmm0-15), aligns the stack, calls
# __tls_get_addr(argument) and returns the result minus the thread pointer.
# It calls __tls_get_addr every time, where glibc's _dl_tlsdesc_dynamic
# first tries the thread's dtv: slower, never stale. Like glibc's before
# 2.40 (its bug 31372, fixed there with xsave), it does not save the upper
# halves of AVX registers. On AArch64 the same function saves x1-x18, x29,
# x30 and q0-q31 (the descriptor convention there: only x0 changes), the set
# glibc's _dl_tlsdesc_dynamic saves on its path that calls __tls_get_addr
# (sysdeps/aarch64/dl-tlsdesc.S, bminor/glibc 04277e0), keeps the stack
# 16-byte aligned, and reads __tls_get_addr's address from a literal after
# its code. SVE registers are saved only as far as their q parts, as there.
_indexes: Dict[Tuple[int, int], Any] = {}


def descriptor(plan: Any, r: Any, own: bool, address: int) -> Tuple[int, int]:
    """{function, argument} for relocation `r` of a variable at `address` in this thread: its
    constant offset from the thread pointer (`own` block, or one in static TLS), else another
    library's {module, offset} in dynamic TLS (`dynamic_descriptor`)."""
    if own or tp_offset(address) is not None:
        return static_descriptor(), static_offset(plan, r, address) + r.addend
    dynamic = dynamic_descriptor(by_module(plan.path, address, True, 0),
                                 by_module(plan.path, address, False, r.addend))
    if dynamic is None:                 # no such function on this machine
        static_offset(plan, r, address)     # raises: not in static TLS
    return dynamic


def dynamic_descriptor(module: int, offset: int) -> Tuple[int, int] | None:
    """{function, argument} of a descriptor for the variable at `offset` in `module`'s block
    (dynamic TLS), or None where this machine has no such function."""
    function = code().descriptor_dynamic
    if not function:
        return None
    # kept for the process: descriptors of any library may point here
    index = under_lock(_code_lock, _index, module, offset)
    return function, int(ffi.cast("uintptr_t", index))


def _index(module: int, offset: int) -> Any:
    """Under _code_lock: the tls_index {module, offset}, made once."""
    return _indexes.setdefault((module, offset), ffi.new("tls_index *", (module, offset)))


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
    """glibc's TLS module id for a natively loaded library, via a stub library it loads.

    Made empty and handed to its owner first (the library), then filled by
    `borrow`, each resource recorded in the statement that makes it: an
    interrupt at any line leaves the memfd and the stub where close() finds them.
    """

    def __init__(self) -> None:
        self.fd = -1
        self.handle: Any = None
        self.module = 0

    def borrow(self, path: str, machine: int, segment: Any, image: bytes, static: bool) -> None:
        """Write the stub into a memfd and have glibc load it: its module id is ours."""
        self.fd = os.memfd_create("minildr-tls-stub", os.MFD_CLOEXEC)
        os.write(self.fd, stub_library(machine, segment, image, static))
        self.handle = libc.dlopen(f"/proc/self/fd/{self.fd}".encode(), os.RTLD_NOW | os.RTLD_LOCAL)
        if self.handle == ffi.NULL:
            message = ffi.string(libc.dlerror()).decode(errors="replace")
            self.handle = None
            raise LoadError(path, "the system loader refused the stub that holds its thread-local "
                                  f"storage: {message}")
        module = ffi.new("size_t *")
        libc.dlinfo(self.handle, RTLD_DI_TLS_MODID, module)
        self.module = module[0]

    def close(self) -> None:
        """dlclose the stub, close its memfd; each forgotten in the statement that frees it
        (run again after an interrupt, it frees what is left, nothing twice)."""
        if self.handle is not None:
            self.handle = (libc.dlclose(self.handle) if self.handle != ffi.NULL else 0, None)[1]
        if self.fd >= 0:
            self.fd = os.close(self.fd) or -1


def borrow_module(module: BorrowedModule, plan: Any, trace: Any, base: int,
                  bound: Dict[int, Any]) -> None:
    """glibc takes the library's TLS image (from the checked bytes, relocated) under a module
    id of its own, held by `module` (the caller's, so that it can give it back whatever happens)."""
    segment = plan.tls
    image = relocated_image(plan, base, bound)
    static = any(plan.rel_class(r) in (Rel.TPOFF, Rel.TLSDESC)
                 and (not r.symbol or plan.symbols[r.symbol].st_shndx) for r in plan.other)
    module.borrow(plan.path, plan.elf.header.e_machine, segment, image, static)
    trace.event("tls", f"module {module.module} borrowed from the system loader: a stub with "
                       f"PT_TLS of {segment.p_memsz} bytes ({segment.p_filesz} initialised), "
                       f"aligned to {segment.p_align}" + (", in static TLS" if static else ""),
                module=module.module, size=segment.p_memsz, init_size=segment.p_filesz,
                align=segment.p_align, static=static)


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
    headers = [elf.Elf64_Phdr(elf.PT_LOAD, elf.PF_R | elf.PF_W, 0, 0, 0, size, size, 0x1000),
               elf.Elf64_Phdr(elf.PT_DYNAMIC, elf.PF_R | elf.PF_W, dynamic_at, dynamic_at,
                              dynamic_at, ndyn * 16, ndyn * 16, 8),
               elf.Elf64_Phdr(elf.PT_TLS, elf.PF_R, image_at, image_at, image_at, len(image),
                              tls.p_memsz, align),
               elf.Elf64_Phdr(elf.PT_GNU_STACK, elf.PF_R | elf.PF_W, 0, 0, 0, 0, 0, 16)]
    dynamic = [elf.Elf64_Dyn(elf.DT_STRTAB, strtab_at), elf.Elf64_Dyn(elf.DT_SYMTAB, symtab_at),
               elf.Elf64_Dyn(elf.DT_STRSZ, 1), elf.Elf64_Dyn(elf.DT_SYMENT, 24)]
    if static:
        dynamic += [elf.Elf64_Dyn(elf.DT_RELA, rela_at), elf.Elf64_Dyn(elf.DT_RELASZ, 24),
                    elf.Elf64_Dyn(elf.DT_RELAENT, 24)]
    dynamic.append(elf.Elf64_Dyn(elf.DT_NULL, 0))
    out = bytearray(size)
    out[:head] = pack(elf.Elf64_Ehdr(ident, elf.ET_DYN, machine, elf.EV_CURRENT, 0, head, 0, 0,
                                     head, sizeof(elf.Elf64_Phdr), phnum, 64, 0, 0))
    out[head:dynamic_at] = b"".join(pack(ph) for ph in headers)
    out[dynamic_at:symtab_at] = b"".join(pack(d) for d in dynamic)
    out[image_at:image_at + len(image)] = image
    if static:                       # TPOFF64, symbol 0 (the stub itself), into the last word
        out[rela_at:rela_at + 24] = pack(elf.Elf64_Rela(rela_at + 24, TPOFF64[machine], 0))
    return bytes(out)


TPOFF64 = {elf.EM_X86_64: 18, elf.EM_AARCH64: 1030}    # R_X86_64_TPOFF64, R_AARCH64_TLS_TPREL64
