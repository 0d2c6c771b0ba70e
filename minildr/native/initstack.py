"""What initialisers are given: argc, argv and envp, laid out as the process's initial stack.

glibc calls every initialiser of a library it loads with three arguments,
(argc, argv, envp): dlopen passes the program's own `__libc_argc`,
`__libc_argv` and `__environ` down to `_dl_init`, which hands them to each
DT_INIT and DT_INIT_ARRAY function (glibc's dlfcn/dlopen.c, dlopen_doit;
elf/dl-open.c, call_dl_init; elf/dl-init.c, call_init). `__libc_argv` is the
argv the kernel wrote on the initial stack (csu/init-first.c keeps it), and
there the psABI puts more after it: argc, the argument pointers, a NULL, the
environment pointers, a NULL, then the auxiliary vector, pairs of (type,
value) ending in AT_NULL (System V x86-64 psABI §3.4.1 "Initial Stack and
Register State", figure 3.9 "Initial Process Stack"; Linux's
fs/binfmt_elf.c, create_elf_tables, writes the same layout on AArch64).

Some libraries rely on that. Go's runtime, in a c-shared library, is started
by an initialiser that keeps the argc and argv it is given
(runtime/asm_amd64.s, _rt0_amd64_lib); `sysargs` (runtime/os_linux.go) walks
from argv past argc + 1 entries, past the environment to its NULL, and reads
the auxiliary vector it finds there (the page size, AT_RANDOM's bytes, the
vDSO); `goenvs_unix` reads the environment from the same place, and `goargs`
(runtime/runtime1.go) keeps pointers to the argument strings themselves
(gostringnocopy) for the life of the process. Given a lone argv array
holding NULL, Go read whatever memory followed it as the environment and the
auxiliary vector, and its threads crashed the process soon after.

So this loader passes what glibc passes. While `environ` is still the
array the kernel wrote (no setenv has moved it, no unsetenv shortened it),
that is the initial stack itself: argc, argv and envp point into it, as
glibc's do (`kernel_stack`). Otherwise it is a block laid out as that stack:
one block of words, [argc, argv..., NULL, envp..., NULL, auxv..., AT_NULL,
0], with argv and envp pointing into it. The arguments are the program's own
(`sys.orig_argv`, the argv Python was started with); the environment
pointers are those of `environ` now (the same strings glibc's `__environ`
holds); the auxiliary vector is the kernel's (/proc/self/auxv, which Go
itself reads when it finds no vector after the environment; where /proc
cannot be read, rebuilt from `getauxval`, which on x86-64 answers AT_HWCAP
with glibc's own bits rather than the kernel's). A library may keep pointers
into the block, as Go does, so a block is never freed: one is built per
distinct environment (a load after `os.environ` changed gets a new one),
not per load.
"""
from __future__ import annotations

import errno
import os
import struct
import sys
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..interrupts import under_lock
from .libc import ffi, libc

AUXV = "/proc/self/auxv"
AT_NULL, AT_PHDR, AT_PAGESZ, AT_RANDOM = 0, 3, 6, 25
AT_LAST = 64              # getauxval is asked for types 1..63 when /proc cannot be read
WORD = struct.Struct("<Q")
# The C types, parsed once at import (cffi's parser is slow on first use of a type).
WORD_T, WORDS, BLOCK = ffi.typeof("uintptr_t"), ffi.typeof("uintptr_t *"), ffi.typeof("uintptr_t[]")
STRING, POINTERS = ffi.typeof("char[]"), ffi.typeof("char **")


class InitialStack(NamedTuple):
    """One block laid out as the initial process stack, and what its words point to."""
    argc: int
    argv: Any             # char ** into `words`
    envp: Any             # char ** into `words`, after argv's NULL
    words: Any            # uintptr_t[]: argc, argv..., NULL, envp..., NULL, auxv..., AT_NULL, 0
    strings: List[Any]    # the argument strings the block points to


_lock = threading.Lock()
_blocks: Dict[Tuple[int, ...], InitialStack] = {}   # by the environment's pointers; never freed
_auxv: Optional[List[int]] = None


def initial_stack() -> InitialStack:
    """The kernel's stack while environ is its array, whole; else the block for the
    environment as it is now, built on the first load that sees it."""
    kernels = kernel_stack()
    if kernels is not None:
        return kernels
    environment = environment_pointers()
    block = _blocks.get(environment)
    if block is None:                       # two threads loading at once share one block
        block = under_lock(_lock, _block_for, environment)
    return block


def _block_for(environment: Tuple[int, ...]) -> InitialStack:
    """Under _lock: the block for `environment`, built if no other thread built it first."""
    block = _blocks.get(environment)
    if block is None:
        block = _blocks[environment] = build(list(environment))
    return block


def environment_pointers() -> Tuple[int, ...]:
    """The pointers of `environ`, up to its NULL (the strings stay glibc's, as glibc passes them)."""
    environ = ffi.cast(WORDS, environ_address()[0])
    if environ == ffi.NULL:
        return ()
    count = 0
    while environ[count]:
        count += 1
    return tuple(ffi.unpack(environ, count))


_environ: List[Any] = []


def environ_address() -> Any:
    """Where glibc's `environ` variable is (a uintptr_t * to it), found once with dlsym: what
    cffi's own access to the variable does, but without building an accessor object on
    the first load (about 50 us)."""
    if not _environ:
        _environ.append(ffi.cast(WORDS, libc.dlsym(ffi.NULL, b"environ")))
    return _environ[0]


def build(environment: List[int]) -> InitialStack:
    strings = [ffi.new(STRING, os.fsencode(arg)) for arg in sys.orig_argv]
    argv = [int(ffi.cast(WORD_T, s)) for s in strings]
    words = ffi.new(BLOCK, [len(argv), *argv, 0, *environment, 0, *auxiliary_vector()])
    return InitialStack(len(argv), ffi.cast(POINTERS, words + 1),
                        ffi.cast(POINTERS, words + 2 + len(argv)), words, strings)


def auxiliary_vector() -> List[int]:
    """The kernel's auxiliary vector as words, ending in (AT_NULL, 0); read once per process."""
    global _auxv
    if _auxv is None:
        _auxv = from_initial_stack() or read_auxv() or from_getauxval()
    return _auxv


class KernelStack(NamedTuple):
    """The initial stack as initialisers get it, and what says environ is still its array."""
    stack: InitialStack
    envp: int             # the address of the environment array the kernel wrote
    count: int            # how many entries it had


_kernel: List[Optional[KernelStack]] = []      # looked for once per process


def kernel_stack() -> Optional[InitialStack]:
    """The initial stack itself, if `environ` is still the array on it with as many entries
    as the kernel wrote: argv and envp are then the very pointers glibc gives initialisers
    (`__libc_argv`, `__environ`), and the auxiliary vector follows envp's NULL. setenv
    moves environ to the heap and unsetenv shortens it in place (the vector would no
    longer follow its NULL): then None, and a block is built. No copy is made: the first
    load of a process builds nothing (~90 us saved)."""
    if not _kernel:
        _kernel.append(the_kernels())
    kernel = _kernel[0]
    if kernel is None or environ_address()[0] != kernel.envp:
        return None
    envp, count = kernel.stack.envp, kernel.count
    if envp[count] != ffi.NULL or (count and envp[count - 1] == ffi.NULL):
        return None                         # shortened in place
    return kernel.stack


def the_kernels() -> Optional[KernelStack]:
    """argc, argv (after argc) and envp (after argv's NULL) on the initial stack, or None."""
    found = stack_and_vector()
    if found is None:
        return None
    words, vector, _ = found
    argc = words[0]
    envp = words + argc + 2
    return KernelStack(InitialStack(argc, ffi.cast(POINTERS, words + 1), ffi.cast(POINTERS, envp),
                                    words, []),
                       int(ffi.cast(WORD_T, envp)), vector - 1 - (argc + 2))


def from_initial_stack() -> Optional[List[int]]:
    """The vector where the kernel put it (stack_and_vector), as words ending in AT_NULL's."""
    found = stack_and_vector()
    return None if found is None else found[2]


def stack_and_vector() -> Optional[Tuple[Any, int, List[int]]]:
    """The initial stack (a uintptr_t * to argc), the index of its auxiliary vector, and the
    vector's words (ending in AT_NULL's), found from glibc's `__libc_stack_end` (exported
    by ld.so: the address of argc on the initial stack, elf/dl-sysdep.c DL_STACK_END),
    without /proc's open and read (~100 us in a fresh process). Taken only if argc is Python's, the vector ends within 64 pairs and its
    AT_PAGESZ, AT_PHDR and AT_RANDOM are what getauxval says; else None."""
    end = libc.dlsym(ffi.NULL, b"__libc_stack_end")
    if not end:
        return None
    stack = ffi.cast(WORDS, ffi.cast(WORDS, end)[0])
    if stack == ffi.NULL or stack[0] != len(sys.orig_argv) or stack[stack[0] + 1]:
        return None
    at = stack[0] + 2
    while stack[at]:                        # the environment the process started with
        at += 1
    vector = at + 1
    pairs = []                              # word by word: nothing past AT_NULL is read
    for at in range(at + 1, at + 1 + 2 * 64, 2):
        if stack[at] == AT_NULL:
            break
        pairs.append((stack[at], stack[at + 1]))
    else:
        return None
    if any(dict(pairs).get(kind) != libc.getauxval(kind) for kind in (AT_PAGESZ, AT_PHDR, AT_RANDOM)):
        return None
    return stack, vector, [w for pair in pairs for w in pair] + [AT_NULL, 0]


def read_auxv() -> Optional[List[int]]:
    """/proc/self/auxv: the vector the kernel put on the stack, in order; None if unreadable."""
    try:
        fd = os.open(AUXV, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = b""                          # a few hundred bytes, ending in AT_NULL's pair of
        while len(data) < 1 << 16 and not (len(data) % 16 == 0 and data.endswith(bytes(16))):
            chunk = os.read(fd, 4096)       # zeros: one read, unless the kernel gives less
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    words = [w for (w,) in WORD.iter_unpack(data[:len(data) // 16 * 16])]
    pairs = list(zip(words[::2], words[1::2]))
    end = next((i for i, (kind, _) in enumerate(pairs) if kind == AT_NULL), None)
    if end is None:
        return None
    return [w for pair in pairs[:end] for w in pair] + [AT_NULL, 0]


def from_getauxval() -> List[int]:
    """The vector rebuilt from glibc's own copy: every type getauxval knows (ENOENT: absent)."""
    words: List[int] = []
    for kind in range(1, AT_LAST):
        ffi.errno = 0
        value = libc.getauxval(kind)
        if value or ffi.errno != errno.ENOENT:
            words += [kind, value]
    return words + [AT_NULL, 0]
