"""The system loader's C interface (dlopen, dlsym, dlvsym, dlclose, dlerror, dladdr, dlinfo,
dl_iterate_phdr), bound once.

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
from typing import List, NamedTuple, Optional, Tuple

from . import outofline

DECLARATIONS = """
    typedef struct { const char *dli_fname; void *dli_fbase;
                     const char *dli_sname; void *dli_saddr; } Dl_info;
    struct link_map { uintptr_t l_addr; char *l_name; void *l_ld;
                      struct link_map *l_next, *l_prev; };
    struct link_map *dlopen(const char *filename, int flags);   /* glibc: see loaded_name */
    uintptr_t dlsym(void *handle, const char *symbol);
    uintptr_t dlvsym(void *handle, const char *symbol, const char *version);
    int dlclose(void *handle);
    char *dlerror(void);
    int dladdr(uintptr_t address, Dl_info *info);
    int dlinfo(void *handle, int request, void *info);
    typedef struct { uint32_t p_type, p_flags; uint64_t p_offset, p_vaddr, p_paddr,
                     p_filesz, p_memsz, p_align; } Elf64_Phdr;
    struct dl_phdr_info { uintptr_t dlpi_addr; const char *dlpi_name;
                          const Elf64_Phdr *dlpi_phdr; uint16_t dlpi_phnum; };  /* and more */
    int dl_iterate_phdr(int (*callback)(struct dl_phdr_info *, size_t, void *), void *data);
"""
ffi = outofline.declared("libdl", DECLARATIONS)      # no C parser at run time: outofline.py

lib = ffi.dlopen(None)                  # libc has them since glibc 2.34; macOS always
try:
    lib.dlopen
except AttributeError:                  # pragma: no cover - glibc before 2.34
    lib = ffi.dlopen("libdl.so.2")

FUNCTIONS = ("dlopen", "dlsym", "dlclose", "dlerror", "dladdr")
GNU_FUNCTIONS = ("dlvsym", "dlinfo", "dl_iterate_phdr")
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
    per open (this is asked at every open of a plugin); `dlopen` is declared
    to return a `struct link_map *` for that (elsewhere nothing reads it as one),
    so a handle it gave needs no cast either.
    """
    if not HAS_VERSIONS or not handle:
        return None
    name = handle.l_name
    return ffi.string(name) if name else b""


def loaded_from(handle: object) -> Optional[str]:
    """`loaded_name`, decoded as the file system's names are."""
    name = loaded_name(handle)
    return os.fsdecode(name) if name is not None else None


PT_NOTE = 4


class LoadedNotes(NamedTuple):
    """One object the system loader has loaded, and its notes as they are mapped."""

    name: str            # its link map's name ("" for the program itself)
    notes: List[Tuple[int, bytes]]   # each PT_NOTE segment: its alignment, its bytes


def loaded_notes() -> List[LoadedNotes]:
    """Every object in the system loader's list (the program first), with its PT_NOTE segments.

    dl_iterate_phdr (glibc; the LSB) calls back once per loaded object with
    its load address and program headers, holding the loader's lock, so each
    segment is copied inside the callback, while its object cannot be
    unloaded. A PT_NOTE segment is inside a loadable one (the gABI's notes
    are read-only data the loader maps), so reading it reads mapped memory.
    An exception in the callback (an interrupt) stops the walk and is raised
    here, not printed and lost as cffi would. 64-bit objects only ([] elsewhere).
    """
    if not HAS_VERSIONS or ffi.sizeof("void *") != 8:
        return []
    found: List[LoadedNotes] = []
    failed: List[BaseException] = []

    def each(info, size, data):          # type: ignore[no-untyped-def]
        found.append(LoadedNotes(os.fsdecode(ffi.string(info.dlpi_name)), [
            (ph.p_align, ffi.buffer(ffi.cast("char *", info.dlpi_addr + ph.p_vaddr), ph.p_memsz)[:])
            for ph in info.dlpi_phdr[0:info.dlpi_phnum] if ph.p_type == PT_NOTE]))
        return 0

    def stop(kind, value, traceback):    # type: ignore[no-untyped-def]
        failed.append(value)
        return 1
    callback = ffi.callback("int(struct dl_phdr_info *, size_t, void *)", each, onerror=stop)
    lib.dl_iterate_phdr(callback, NULL)
    if failed:
        raise failed[0]
    return found
