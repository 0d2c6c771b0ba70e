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

import os
import sys
from _thread import RLock           # (threading.RLock is a Python function making this)
from typing import Any, FrozenSet, Optional

import cffi

from .console import printable
from .errors import LoadError, PluginError
from .formats import elf
from .image import PluginImage
from .lifetime import KeepsMappedWhileReferenced
from .logger import LOG

log = LOG                   # the "minildr" logger, once a host attached it (logger.py)

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    DECLARATIONS = """
        void *LoadLibraryExW(const wchar_t *name, void *reserved, unsigned long flags);
        void *GetProcAddress(void *module, const char *name);
        int FreeLibrary(void *module);
        int GetModuleHandleExW(unsigned long flags, const wchar_t *name, void **module);
    """
    ffi = cffi.FFI()
    ffi.cdef(DECLARATIONS)
    _UNCHANGED_REFCOUNT = 0x2        # GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT
    _kernel32 = ffi.dlopen("kernel32.dll")

    def _open(path: bytes) -> Any:
        return _kernel32.LoadLibraryExW(os.fsdecode(path), ffi.NULL, 0)

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

    def _loaded_from(handle: Any) -> Optional[str]:
        return None
else:
    from . import libdl             # POSIX: the one binding of dlopen & co.
    ffi, DECLARATIONS = libdl.ffi, libdl.DECLARATIONS
    _libdl = libdl.lib

    _FLAGS = os.RTLD_NOW | os.RTLD_LOCAL
    _LINUX = sys.platform.startswith("linux")

    def _open(path: bytes) -> Any:
        # RTLD_NOW: resolve every undefined symbol now, so a plugin needing
        # something missing fails here, not halfway through a call.
        # RTLD_LOCAL: its symbols do not leak into later libraries' lookups.
        return _libdl.dlopen(path, _FLAGS)

    def _symbol(handle: Any, name: str) -> int:
        return _libdl.dlsym(handle, name.encode())

    def _close(handle: Any) -> None:
        _libdl.dlclose(handle)

    def _still_loaded(path: str) -> bool:
        handle = _libdl.dlopen(path.encode(), os.RTLD_NOW | os.RTLD_NOLOAD)
        if handle == ffi.NULL:
            return False
        _libdl.dlclose(handle)
        return True

    _error = libdl.error

    def _no_link_map(handle: Any) -> Optional[bytes]:
        return None                         # macOS has no dlinfo; nothing to compare

    # The path the system loader loaded a handle's library from (its link map).
    _loaded_from = libdl.loaded_name if _LINUX else _no_link_map

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


def soname(image: PluginImage) -> Optional[str]:
    """The DT_SONAME an ELF image declares, if any (read from its checked bytes, once)."""
    return image.fact("soname", lambda: _soname(image))


def _soname(image: PluginImage) -> Optional[str]:
    if image.data[:4] != elf.ELFMAG:
        return None
    found = image.survey()
    if found is not None:
        return found.soname
    try:
        dynamic = image.dynamic_section()
    except PluginError:
        return None                         # the system loader will say what is wrong
    if not dynamic.has(elf.DT_SONAME):
        return None
    return dynamic.string(dynamic.get(elf.DT_SONAME), "DT_SONAME")


DF_1_NODELETE = 0x8                     # in DT_FLAGS_1 (gABI: "Dynamic Section")


def marked_nodelete(image: PluginImage) -> bool:
    """Whether the ELF image asks never to be unloaded (DF_1_NODELETE: Go's runtime does)."""
    return image.fact("nodelete", lambda: _marked_nodelete(image))


def _marked_nodelete(image: PluginImage) -> bool:
    if image.data[:4] != elf.ELFMAG:
        return False
    found = image.survey()
    if found is not None:
        return bool(found.flags_1 & DF_1_NODELETE)
    try:
        dynamic = image.dynamic_section()
    except PluginError:
        return False
    return bool(dynamic.get(elf.DT_FLAGS_1) & DF_1_NODELETE)


def check_soname(image: PluginImage) -> None:
    """Refuse a SONAME that is a path: the system loader would hand this library out
    for a later dlopen of that path (such as the next plugin's /proc/self/fd/N)."""
    name = soname(image)
    if name is not None and "/" in name:
        raise LoadError(image.path, (
            f"its SONAME {name!r} is a path: while it is loaded, the system loader would "
            "return it for any later load of that path, such as the next plugin's sealed "
            "copy; rebuild it without a '/' in -soname"))


LOADABLE = "system-loadable"        # an image's fact: SONAME checked; its NODELETE mark


def loadable(image: PluginImage) -> bool:
    """Refuse a SONAME that is a path (`check_soname`), else say whether the image is NODELETE.

    Both read the bytes alone: asked once per image, the answer kept as one
    of its facts, so a repeated open of an unchanged file asks a dictionary.
    """
    nodelete = image.known(LOADABLE)
    if nodelete is None:
        check_soname(image)
        nodelete = marked_nodelete(image)
        image.record(LOADABLE, nodelete)
    return nodelete


def misplaced_symbols(image: PluginImage) -> Optional[FrozenSet[str]]:
    """The names with a definition in the image's dynamic symbols that lies outside it.

    dlsym trusts .dynsym: for an IFUNC it *calls* the address found there
    (the resolver), and for any symbol it hands out base + st_value. In a
    damaged file either can lie outside the library or, for code, outside its
    executable segments; asking dlsym would then crash the host. So the
    symbols are checked on the checked bytes first (ELF only: the others'
    loaders read their own export tables), all in one pass: checking the
    one name asked for at each lookup read the whole table each time, so
    looking up every export of a plugin cost exports * symbols.
    None if the tables cannot be read (then dlsym is asked for nothing).
    Answered once per image.
    """
    return image.fact("misplaced", lambda: _misplaced_symbols(image))


def _misplaced_symbols(image: PluginImage) -> Optional[FrozenSet[str]]:
    if image.data[:4] != elf.ELFMAG:
        return frozenset()
    misplaced = set()
    try:
        f, dynamic = image.elf_file(), image.dynamic_section()
        gnu, sysv = dynamic.gnu_hash(), dynamic.sysv_hash()
        count = gnu.symoffset + len(gnu.chain) if gnu else len(sysv.chain) if sysv else 0
        symbols = dynamic.table(elf.Elf64_Sym, elf.DT_SYMTAB, count * elf.sizeof(elf.Elf64_Sym),
                                "symbol table")
        loads = list(f.segments(elf.PT_LOAD))
        for sym in symbols:
            if sym.st_shndx == elf.SHN_UNDEF:
                continue
            name = dynamic.string(sym.st_name, "symbol")     # each name must be readable
            code = sym.st_info & 0xF in (elf.STT_FUNC, elf.STT_GNU_IFUNC)
            end = sym.st_value + max(sym.st_size, 1)
            if not any(ph.p_vaddr <= sym.st_value and end <= ph.p_vaddr + ph.p_memsz
                       and (ph.p_flags & elf.PF_X or not code) for ph in loads):
                misplaced.add(name)
    except PluginError:
        return None                        # tables the checks could not read: do not ask dlsym
    return frozenset(misplaced)


class SystemLibrary(KeepsMappedWhileReferenced):
    """One plugin image, loaded by the operating system's loader.

    Whatever happens part way (a refusal, an exception, KeyboardInterrupt),
    the image is released and the handle closed: nothing stays half-loaded.
    """

    _handle: Optional[Any] = None        # dlopen's handle, once the load is checked
    _released = False                    # the image given back (by _unload)

    def __init__(self, image: PluginImage, loaded_at: Optional[int] = None) -> None:
        nodelete = image.known(LOADABLE)            # (asked at close, maybe twice)
        self._nodelete = loadable(image) if nodelete is None else nodelete
        self.image = image
        self.loaded_at = loaded_at                  # (lifetime.load_started, before the load)
        self.lifetime_lock = RLock()                # (lifetime.py; its Plugin's lock too)
        handle = None
        try:                             # (an interrupt just after acquire gives it back)
            self.load_path = image.acquire(self)
            name = self._load_name = image.load_name
            handle = _open(name)
            if not handle:
                message = _error().replace(self.load_path, image.path)
                raise LoadError(image.path, f"the system loader refused it: {message}")
            loaded_from = _loaded_from(handle)
            if loaded_from is not None and loaded_from != name:
                raise self._another_library(loaded_from)
            self._handle = handle
        except BaseException:
            if handle and self._handle is None:
                _close(handle)
            image.release(self)
            raise

    def _another_library(self, loaded_from: bytes) -> LoadError:
        """The handle is not the library loaded from our sealed copy but one loaded before.

        dlopen matches a path against the SONAMEs of loaded libraries: the
        checked bytes must be the bytes loaded, whatever another library claims.
        """
        return LoadError(self.image.path, (
            f"the system loader returned another, already loaded library "
            f"({os.fsdecode(loaded_from)!r}) for its sealed copy: a library loaded earlier "
            "claims this path as its SONAME; close that plugin (and rebuild it without a path "
            "as -soname)"))

    def address(self, name: str) -> Optional[int]:
        """Where `name` is in memory, if this library (not a dependency) defines it."""
        if self._handle is None:
            return None
        misplaced = misplaced_symbols(self.image)
        if misplaced is None or name in misplaced:
            return None
        address = _symbol(self._handle, name)
        if not address or not _defined_in(address, self.load_path):
            return None
        return int(ffi.cast("uintptr_t", address))

    @property
    def _name(self) -> str:
        return self.image.path

    def _unmaps(self) -> bool:
        # dlclose never unmaps a NODELETE library: its threads cannot lose their code.
        return not self._nodelete

    unload_reruns = True

    def _unload(self) -> None:
        """dlclose, then give the image back. Run again after an interrupt (a second
        close(), interrupts.finish), it does what is left: each step exactly once."""
        if self._handle is not None:
            # dlclose and forgetting the handle in one statement: interrupted
            # before it, the next run closes it; after it, never twice.
            self._handle = _close(self._handle)
        if not self._released:
            # Other plugins opened from the same image share its sealed copy; only
            # when the last one closes may the copy go, and only if the system loader
            # unloaded the library: while it is resident, its fd number must stay
            # ours. For a cached image, whether it is is asked when the copy would
            # go (often never: the cache keeps it); otherwise now. A NODELETE
            # library (Go's) stays for certain: that is said now.
            image = self.image
            if image.cached and not self._nodelete:
                self._released = image.release(self, still_loaded=self._loader_keeps_it) is None
            else:
                resident = image.users == 1 and _still_loaded(self.load_path)
                if resident:
                    log.info("close %s: the system loader keeps it loaded (another handle, "
                             "or it cannot be unloaded)", printable(image.path))
                self._released = image.release(self, resident=resident) is None
        self.unloaded = True

    def _loader_keeps_it(self) -> bool:
        """Whether the system loader still has this library (asked when its copy would go)."""
        return _still_loaded(self.load_path)

    unloaded = False        # (True once _unload has done both: dlclose, and the image given back)
