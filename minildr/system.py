"""The operating system's loader: dlopen, dlsym, dlclose, called through cffi.

These three calls are all any program uses to load a plugin. `SystemLibrary`
wraps them around a `PluginImage` (so what is loaded is what was checked),
and adds two safeguards a raw dlopen lacks:

- `address` confirms, with dladdr, that a symbol really lives in this
  library: dlsym on a handle also searches the library's dependencies, so
  a name the plugin does not define (say `system`) would otherwise resolve
  to libc's.
- `close` unloads only when no callable handed out from the library is
  still alive. Calling into unmapped code would crash the process, so a
  function you still hold keeps its library mapped until you drop it.

On Windows the same roles are played by LoadLibraryExW, GetProcAddress and
FreeLibrary.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

import cffi

from .errors import LoadError
from .image import PluginImage
from .lifetime import KeepsMappedWhileReferenced

log = logging.getLogger("minildr")

ffi = cffi.FFI()

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    ffi.cdef("""
        void *LoadLibraryExW(const wchar_t *name, void *reserved, unsigned long flags);
        void *GetProcAddress(void *module, const char *name);
        int FreeLibrary(void *module);
        int GetModuleHandleExW(unsigned long flags, const wchar_t *name, void **module);
    """)
    _UNCHANGED_REFCOUNT = 0x2        # GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT
    _kernel32 = ffi.dlopen("kernel32.dll")

    def _open(path: str) -> Any:
        return _kernel32.LoadLibraryExW(path, ffi.NULL, 0)

    def _symbol(handle: Any, name: str) -> Any:
        return _kernel32.GetProcAddress(handle, name.encode())

    def _close(handle: Any) -> None:
        _kernel32.FreeLibrary(handle)

    def _still_loaded(path: str) -> bool:
        return bool(_kernel32.GetModuleHandleExW(_UNCHANGED_REFCOUNT, path,
                                                 ffi.new("void **")))

    def _error() -> str:
        # cffi keeps the error of its last call: GetLastError() through cffi
        # could read one set by cffi's own work in between.
        code, message = ffi.getwinerror()
        return f"{message.strip()} (Windows error {code})"

    def _defined_in(address: Any, path: str) -> bool:
        # GetProcAddress reads only this module's export table: unlike dlsym
        # on a handle, it never finds a dependency's function.
        return True
else:
    ffi.cdef("""
        typedef struct { const char *dli_fname; void *dli_fbase;
                         const char *dli_sname; void *dli_saddr; } Dl_info;
        void *dlopen(const char *filename, int flags);
        void *dlsym(void *handle, const char *symbol);
        int dlclose(void *handle);
        char *dlerror(void);
        int dladdr(const void *addr, Dl_info *info);
    """)
    _libdl = ffi.dlopen(None)           # libc has them since glibc 2.34; macOS always
    try:
        _libdl.dlopen
    except AttributeError:              # pragma: no cover - older glibc
        _libdl = ffi.dlopen("libdl.so.2")
    # Bind each function now: cffi otherwise finds it with dlsym on first
    # use, and that dlsym would clear the message dlerror() is about to give.
    for _name in ("dlopen", "dlsym", "dlclose", "dlerror", "dladdr"):
        getattr(_libdl, _name)

    def _open(path: str) -> Any:
        # RTLD_NOW: resolve every undefined symbol now, so a plugin needing
        # something missing fails here, not halfway through a call.
        # RTLD_LOCAL: its symbols do not leak into later libraries' lookups.
        return _libdl.dlopen(path.encode(), os.RTLD_NOW | os.RTLD_LOCAL)

    def _symbol(handle: Any, name: str) -> Any:
        return _libdl.dlsym(handle, name.encode())

    def _close(handle: Any) -> None:
        _libdl.dlclose(handle)

    def _still_loaded(path: str) -> bool:
        handle = _libdl.dlopen(path.encode(), os.RTLD_NOW | os.RTLD_NOLOAD)
        if handle == ffi.NULL:
            return False
        _libdl.dlclose(handle)
        return True

    def _error() -> str:
        message = _libdl.dlerror()
        return ffi.string(message).decode("utf-8", "replace") if message else "unknown error"

    def _defined_in(address: Any, path: str) -> bool:
        info = ffi.new("Dl_info *")
        if not _libdl.dladdr(address, info) or info.dli_fname == ffi.NULL:
            return False
        return same_library(os.fsdecode(ffi.string(info.dli_fname)), path)


def same_library(reported: str, loaded: str) -> bool:
    """Whether the file dladdr names is the one we loaded.

    glibc reports the path dlopen was given; macOS's dyld may report another
    spelling of it (/private/var/... for /var/..., the folder of temporary
    files), so a different string is compared by file identity.
    """
    if reported == loaded:
        return True
    try:
        return os.path.samefile(reported, loaded)
    except OSError:
        return False


class SystemLibrary(KeepsMappedWhileReferenced):
    """One plugin image, loaded by the operating system's loader."""

    def __init__(self, image: PluginImage) -> None:
        self.image = image
        self.load_path = image.acquire()
        handle = _open(self.load_path)
        if handle == ffi.NULL:
            message = _error().replace(self.load_path, image.path)
            image.release()
            raise LoadError(image.path, f"the system loader refused it: {message}")
        self._handle: Optional[Any] = handle

    def address(self, name: str) -> Optional[int]:
        """Where `name` is in memory, if this library (not a dependency) defines it."""
        if self._handle is None:
            return None
        pointer = _symbol(self._handle, name)
        if pointer == ffi.NULL or not _defined_in(pointer, self.load_path):
            return None
        return int(ffi.cast("uintptr_t", pointer))

    @property
    def _name(self) -> str:
        return self.image.path

    def _unload(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        _close(handle)
        # Other plugins opened from the same image share the handle; only
        # when the last one closes should the library really be gone.
        resident = self.image.users == 1 and _still_loaded(self.load_path)
        if resident:
            log.info("close %s: the system loader keeps it loaded (another handle, or "
                     "it cannot be unloaded)", self.image.path)
        self.image.release(resident=resident)

    @property
    def unloaded(self) -> bool:
        return self._handle is None
