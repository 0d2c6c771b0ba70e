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
ffi.cdef("""
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
    int mprotect(void *addr, size_t length, int prot);
    int munmap(void *addr, size_t length);
    void *dlopen(const char *filename, int flags);
    void *dlsym(void *handle, const char *symbol);
    void *dlvsym(void *handle, const char *symbol, const char *version);
    int dlclose(void *handle);
    char *dlerror(void);
    unsigned long getauxval(unsigned long type);
    extern char **environ;
""")
libc = ffi.dlopen(None)
