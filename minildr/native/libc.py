"""The C library functions the native loader calls: all of its contact with the system.

mmap and munmap lay out memory (mapping.py), mprotect seals RELRO and getauxval
gives what AArch64 IFUNC resolvers are told (relocate.py); dlopen and
dlsym/dlvsym bring in DT_NEEDED libraries and find symbols already in the
process (resolve.py); initialisers receive environ (initstack.py). Everything
else is Python.
"""
from __future__ import annotations

import types

import cffi

from .. import libdl

ffi = cffi.FFI()
# Addresses are passed and returned as uintptr_t (the same register as a pointer in both
# ABIs), so Python's ints go in and out without a cast per call.
ffi.cdef("""
    uintptr_t mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, long offset);
    int mprotect(uintptr_t addr, size_t length, int prot);
    int munmap(uintptr_t addr, size_t length);
    unsigned long getauxval(unsigned long type);
    uintptr_t pthread_self(void);
    extern char **environ;
""")
# dlsym and dlvsym again, taking addresses as integers: step 2 passes the address of each
# name in the file's string table, computed in C (no cdata object per symbol).
ffi.cdef("""
    uintptr_t dlsym(uintptr_t handle, uintptr_t symbol);
""", override=True)
_c = ffi.dlopen(None)


class _Libc(types.SimpleNamespace):
    """Its functions, bound at import (cffi binds on first use: not mid-load); dlopen & co.
    from minildr/libdl.py, bound once for all of minildr; `environ` read live."""
    def __getattr__(self, name: str) -> object:
        return getattr(_c, name)


libc = _Libc(**{n: getattr(_c, n) for n in ("mmap", "mprotect", "munmap", "getauxval",
                                            "pthread_self")}, dlsym_at=_c.dlsym,
             **{n: getattr(libdl.lib, n) for n in libdl.FUNCTIONS + libdl.GNU_FUNCTIONS})
# The C types the steps cast to, parsed once here rather than on a load's first use.
BYTES, CHARS, ADDRESS = ffi.typeof("char *"), ffi.typeof("char[]"), ffi.typeof("uintptr_t")
FUNCTION = ffi.typeof("uintptr_t (*)(void)")                   # x86-64 IFUNC resolvers, tls.py
FUNCTION_HWCAP = ffi.typeof("uintptr_t (*)(uint64_t, void *)")  # AArch64 IFUNC resolvers
INITIALISER = ffi.typeof("void (*)(int, char **, char **)")
