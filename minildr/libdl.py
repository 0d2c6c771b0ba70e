"""The system loader's C interface (dlopen, dlsym, dlvsym, dlclose, dlerror, dladdr, dlinfo), bound once.

Three parts of minildr ask the system loader for something: system.py loads
plugins with it, linkage.py resolves a plugin's symbols before that, and the
native loader (native/libc.py) borrows its libraries and TLS module ids.
They share this one binding. POSIX only (Windows has LoadLibraryExW: see
system.py). Addresses come back as uintptr_t, plain Python ints, so no
caller casts per symbol; handles stay `void *`.

Every function is bound at import: cffi otherwise looks a function up with
dlsym on its first use, and that dlsym would clear the message dlerror()
is about to give. dlvsym and dlinfo are GNU extensions (glibc): where the C
library lacks them, `lib` has no such attribute and `HAS_VERSIONS` is False.
"""
from __future__ import annotations

import os
from typing import Optional

import cffi

ffi = cffi.FFI()
ffi.cdef("""
    typedef struct { const char *dli_fname; void *dli_fbase;
                     const char *dli_sname; void *dli_saddr; } Dl_info;
    struct link_map { uintptr_t l_addr; char *l_name; void *l_ld;
                      struct link_map *l_next, *l_prev; };
    void *dlopen(const char *filename, int flags);
    uintptr_t dlsym(void *handle, const char *symbol);
    uintptr_t dlvsym(void *handle, const char *symbol, const char *version);
    int dlclose(void *handle);
    char *dlerror(void);
    int dladdr(uintptr_t address, Dl_info *info);
    int dlinfo(void *handle, int request, void *info);
""")

lib = ffi.dlopen(None)                  # libc has them since glibc 2.34; macOS always
try:
    lib.dlopen
except AttributeError:                  # pragma: no cover - glibc before 2.34
    lib = ffi.dlopen("libdl.so.2")

FUNCTIONS = ("dlopen", "dlsym", "dlclose", "dlerror", "dladdr")
GNU_FUNCTIONS = ("dlvsym", "dlinfo")
for _name in FUNCTIONS:
    getattr(lib, _name)
HAS_VERSIONS = True
for _name in GNU_FUNCTIONS:
    try:
        getattr(lib, _name)
    except AttributeError:              # pragma: no cover - not glibc (macOS)
        HAS_VERSIONS = False

NULL = ffi.NULL
RTLD_DEFAULT = ffi.NULL                 # dlsym's handle for the global scope (glibc: 0)
_LINK_MAP = ffi.typeof("struct link_map *")
RTLD_DI_LINKMAP = 2                     # dlinfo: the struct link_map of a handle


def error() -> str:
    """dlerror()'s message, decoded; "unknown error" if it has none."""
    message = lib.dlerror()
    return ffi.string(message).decode("utf-8", "replace") if message != ffi.NULL else "unknown error"


def loaded_name(handle: object) -> Optional[bytes]:
    """The path a loaded library's link map names, as bytes, or None where it cannot say.

    In glibc (and musl) a dlopen handle *is* the library's `struct link_map`:
    dlinfo(RTLD_DI_LINKMAP) hands back the handle itself (glibc dlfcn/dlinfo.c,
    dlinfo_doit: `*(struct link_map **) args->arg = l` with `l = args->handle`).
    So the name is read through the handle, without a call and an allocation
    per open (this is asked at every open of a plugin).
    """
    if not HAS_VERSIONS or handle == NULL:
        return None
    name = ffi.cast(_LINK_MAP, handle).l_name
    return ffi.string(name) if name != NULL else b""


def loaded_from(handle: object) -> Optional[str]:
    """`loaded_name`, decoded as the file system's names are."""
    name = loaded_name(handle)
    return os.fsdecode(name) if name is not None else None
