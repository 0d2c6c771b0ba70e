"""The C library functions the native loader calls: all of its contact with the system.

mmap and munmap lay out memory (mapping.py), mprotect seals RELRO and getauxval
gives what AArch64 IFUNC resolvers are told (relocate.py); dlopen and
dlsym/dlvsym bring in DT_NEEDED libraries and find symbols already in the
process (resolve.py); initialisers receive environ (initfini.py). Everything
else is Python.
"""
from __future__ import annotations

import cffi

ffi = cffi.FFI()
# Addresses are passed and returned as uintptr_t (the same register as a pointer in both
# ABIs), so Python's ints go in and out without a cast per call.
ffi.cdef("""
    uintptr_t mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, long offset);
    int mprotect(uintptr_t addr, size_t length, int prot);
    int munmap(uintptr_t addr, size_t length);
    void *dlopen(const char *filename, int flags);
    uintptr_t dlsym(void *handle, const char *symbol);
    uintptr_t dlvsym(void *handle, const char *symbol, const char *version);
    int dlclose(void *handle);
    char *dlerror(void);
    unsigned long getauxval(unsigned long type);
    uintptr_t pthread_self(void);
    int dlinfo(void *handle, int request, void *info);
    extern char **environ;
""")
libc = ffi.dlopen(None)
for _name in ("mmap", "mprotect", "munmap", "dlopen", "dlsym", "dlvsym", "dlclose", "dlerror",
              "getauxval", "pthread_self", "dlinfo"):
    getattr(libc, _name)            # cffi binds a function on first use: at import, not mid-load
# The C types the steps cast to, parsed once here rather than on a load's first use.
BYTES = ffi.typeof("char *")
FUNCTION = ffi.typeof("uintptr_t (*)(void)")                   # x86-64 IFUNC resolvers
FUNCTION_HWCAP = ffi.typeof("uintptr_t (*)(uint64_t, void *)")  # AArch64 IFUNC resolvers
INITIALISER = ffi.typeof("void (*)(int, char **, char **)")
ARGV = ffi.new("char *[1]")
THREAD_SELF = ffi.typeof("uintptr_t *")                         # tls.thread_pointer()
