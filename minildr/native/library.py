"""The steps in order: a library loaded by the native loader.

    1 parse -> 2 resolve (DT_NEEDED via the system loader, then each symbol)
      -> 3 reserve and map -> 4 relocate, then RELRO -> 5 initialisers
      ... 6 lookup, whenever the host asks ...    close: 5 finalisers -> unmap

`NativeLibrary` has the small interface `minildr.open` uses for either
loader (`address`, `keep_mapped_while`, `close`), plus `lookup`, the
`trace` of the load and its `layout`. Memory is only ever unmapped by an
explicit `close()`, and even then not while a function or pointer handed
out from the library is still alive: garbage collection never pulls code
from under a caller.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
from _thread import RLock           # (threading.RLock is a Python function making this)
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import ctype as ctypes_
from .. import files, goruntime
from ..formats import elf
from ..errors import (FileChanged, LoadError, PluginNotFound, SymbolNotFound, SymbolTypeError,
                      UnreadableFile, UnsupportedELF)
from ..host import HOST
from ..interrupts import finish
from ..lifetime import KeepsMappedWhileReferenced
from . import initfini, lookup, mapping, relocate, resolve, sparse, tls, unwind
from .libc import ffi
from .parse import Plan, parse
from .validate import check_host
from .trace import Event, Segment, Trace, with_gaps

log = logging.getLogger("minildr")
THREAD_EXIT_DESTRUCTORS = {"__cxa_thread_atexit", "__cxa_thread_atexit_impl"}
DF_1_NODELETE = 0x8                     # in DT_FLAGS_1 (gABI: "Dynamic Section")


class NativeLibrary(KeepsMappedWhileReferenced):
    """One ELF shared library, loaded by minildr's own loader from `fd` (holding `data`)."""

    def __init__(self, data: bytes, path: str, fd: int, *,
                 trace: "Optional[Callable[[Event], None]] | bool" = None,
                 on_unload: Optional[Callable[[], None]] = None,
                 needed: Optional[Dict[str, str]] = None) -> None:
        """Load, with Python's cyclic garbage collector paused for the while (and resumed
        after, whatever happens, if it was running). A load makes a few thousand small
        objects, none of them in a cycle; counted by the collector, they would set off a
        collection of the host's young objects in the middle of the load (after `import
        minildr.native`, the first such pass walks what the imports left: 1.6 to 2.7 ms,
        issue 24). Paused, that pass comes at the host's next allocations instead, as it
        would have anyway. Reference counting, which frees almost everything, goes on.

        The collector is resumed by the load's last statement, inside the try that
        undoes the load (not in a `finally` after it: an interrupt there, the library
        loaded, would leave it mapped with no one holding it)."""
        self.lifetime_lock = RLock()        # (lifetime.py; its Plugin's lock too)
        collecting = gc.isenabled()
        try:
            gc.disable()
            self._load(data, path, fd, trace, on_unload, needed, collecting)
        except BaseException:
            if collecting:
                gc.enable()
            raise

    def _load(self, data: bytes, path: str, fd: int,
              trace: "Optional[Callable[[Event], None]] | bool",
              on_unload: Optional[Callable[[], None]],
              needed: Optional[Dict[str, str]], collecting: bool) -> None:
        check_host(path, HOST)
        self.path = path
        self.trace = Trace(trace)
        self.plan: Plan = parse(data, path)
        if self.plan.arch.MACHINE != HOST.arch:
            raise UnsupportedELF(path, f"is a library for {self.plan.arch.MACHINE}, but this "
                                       f"machine is {HOST.arch}: its code cannot run here")
        self._on_unload: Optional[Callable[[], None]] = None
        self._cache: dict = {}
        self._needed: List[Any] = []
        self._tls: Optional[tls.BorrowedModule] = None
        self._unwind: Optional[unwind.Registration] = None
        self._fini: List[Tuple[str, int]] = []
        self._unloaded = False
        self._started: List[int] = []      # the initialisers called (glibc's l_init_called)
        self.base: Optional[int] = None
        try:                                 # every step in it: an interrupt at any line
            if goruntime.is_go_elf(self.plan.elf):
                goruntime.start(path, self)  # claimed here or refused: one Go runtime
            resolve.open_needed(self.plan, self.trace, self._needed, needed)
            bound = resolve.bind_symbols(self.plan, self._needed, self.trace)
            self.base = mapping.reserve(self.plan, self.trace)
            self._layout = mapping.map_segments(self.plan, self.base, fd, self.trace)
            if self.plan.tls is not None:
                self._tls = tls.BorrowedModule()      # owned before it holds anything
                tls.borrow_module(self._tls, self.plan, self.trace, self.base, bound)
            relocate.relocate(self.plan, self.base, bound, self.trace,
                              self._tls.module if self._tls else 0)
            relocate.protect_relro(self.plan, self.base, self.trace)
            self._unwind = unwind.Registration(self.plan, self.base, self.trace)
            self._unwind.start(self._needed)
            inits = initfini.functions(self.plan, self.base, self.plan.init)
            self._fini = initfini.functions(self.plan, self.base, self.plan.fini)
            self._run_initialisers(inits, on_unload)
            if collecting:
                gc.enable()                  # (the caller resumes it if this raises)
        except BaseException:
            # the caller (from_image) releases the image itself when this raises
            if not self._started:
                self._fini = []
                finish(self._release_memory)
                goruntime.stopped(self)      # none of its code ran: no runtime started
            else:
                self._unload()
            raise

    def _run_initialisers(self, inits: List[Tuple[str, int]],
                          on_unload: Optional[Callable[[], None]]) -> None:
        """Step 5; interrupted part-way (KeyboardInterrupt, a trace callback's exception),
        the library is closed (by __init__) before the exception goes on: nothing stays
        half-loaded.

        Once an initialiser has been called, the finalisers run, as dlclose runs
        them for a library whose initialisers were called (l_init_called,
        elf/dl-init.c). That matters beyond tidiness: the C runtime's finaliser
        calls __cxa_finalize, which drops the atexit handlers an initialiser
        registered, pointers into memory about to go. If none was called, none
        of the finalisers runs either.
        """
        initfini.run(self.plan, self.base, inits, "init", self.trace, self._started)
        self._on_unload = on_unload

    # -- what minildr.open uses ------------------------------------------
    def address(self, name: str) -> Optional[int]:
        """Where `name` is in memory, if this library defines and exports it."""
        if self.base is None:
            return None
        if name not in self._cache:
            index = lookup.find(self.plan, name)
            if index is None:
                return None
            sym = self.plan.symbols[index]
            address = self.base + sym.st_value
            if elf.ELF64_ST_TYPE(sym.st_info) == elf.STT_GNU_IFUNC:
                address = relocate.call_resolver(self.plan, address)
            self._cache[name] = address
        return self._cache[name]

    @property
    def _name(self) -> str:
        return self.path

    unload_reruns = True

    def _unload(self) -> None:
        """Finalisers, then unregister, unmap, give back the TLS module, the needed
        libraries and the image. Each step records that it ran in the statement that
        does it (a finaliser is taken off `_fini` as it is called, each resource
        forgotten as it is given back), so the unload, run again after an interrupt
        (here, by interrupts.finish, or by a second close()), does exactly what is
        left and nothing twice: a second __deregister_frame aborts the process, a
        second munmap could unmap what another load has mapped there since."""
        finish(self._unload_steps)

    def _unload_steps(self) -> None:
        if self._unloaded:
            return
        if self._started and self.nodelete:
            self._keep("NODELETE (DF_1_NODELETE): a library that asks never to be unloaded; "
                       "as dlclose, close runs none of its finalisers and unmaps nothing")
        else:
            initfini.run(self.plan, self.base or 0, self._fini, "fini", self.trace, [])
            self._forget()
        self._unloaded = True

    @functools.cached_property
    def nodelete(self) -> bool:
        """Whether the library asks never to be unloaded (DF_1_NODELETE in DT_FLAGS_1).

        glibc's dlclose of such a library does nothing (elf/dl-close.c, _dl_close:
        l_nodelete_active); Go's linker asks it of every c-shared library on ELF
        (cmd/link/internal/ld/lib.go: -Wl,-z,nodelete, "a dlclose will do nothing"),
        because the runtime's threads run its code until the process ends."""
        return bool(elf.DynamicSection(self.plan.elf).get(elf.DT_FLAGS_1) & DF_1_NODELETE)

    def _unmaps(self) -> bool:
        """What close() will do, for the running-thread check (lifetime.py): nothing to
        unmap for a NODELETE library, or one whose thread-exit destructors keep it."""
        return not (self.nodelete or self._thread_exit_destructors)

    @property
    def _thread_exit_destructors(self) -> bool:
        return bool(THREAD_EXIT_DESTRUCTORS & {self.plan.names[i] for i in self.plan.used})

    def _forget(self) -> None:
        """After the finalisers: unmap, unless thread-exit destructors may still need the code."""
        if self._thread_exit_destructors:
            # C++ thread_local objects registered destructors that run when each thread
            # exits, and may be code of this library: glibc defers the unload until they
            # have run (l_tls_dtor_count); this loader cannot count them, so it keeps the
            # code, its TLS block and its DT_NEEDED libraries for the life of the process.
            self._keep("thread_local destructors (registered with __cxa_thread_atexit) may "
                       "still run at thread exit")
            return
        self._release_memory()

    def _keep(self, why: str) -> None:
        """Leave the library mapped for the life of the process: its code, its TLS block, its
        unwind tables and its DT_NEEDED libraries stay; only the image is given back (the
        mappings hold their own reference to the file)."""
        if self.base is not None:
            self.trace.event("unmap", f"kept mapped: {why}", kept=True)
        self.base, self._needed = None, []       # the libraries it calls stay loaded too
        self._release_image()

    def _release_memory(self) -> None:
        """Unregister, unmap, give back the TLS module, the needed libraries and the image,
        in this order (the frames are deregistered while their memory is there:
        __deregister_frame reads it). Each step forgets what it frees in the statement
        that frees it, so run again after an interrupt (interrupts.finish) this finishes
        what is left, in order."""
        self._release_unwind()
        self._release_mapping()
        self._release_tls()
        self._release_needed()
        self._release_image()

    def _release_unwind(self) -> None:
        if self._unwind is not None:                # before the memory it describes goes
            self._unwind.close()
            self._unwind = None

    def _release_mapping(self) -> None:
        base = self.base
        if base is not None:
            self.base = mapping.unmap(base, self.plan.span)     # None: unmapped and forgotten
            self.trace.event("unmap", f"{self.plan.span} bytes at {base:#x}")

    def _release_tls(self) -> None:
        if self._tls is not None:
            module = self._tls.module               # (0 if the stub was never loaded)
            self._tls.close()
            self._tls = None                        # forgotten before the trace callback runs
            if module:
                self.trace.event("tls", f"module {module} given back (the stub dlclosed)",
                                 module=module)

    def _release_needed(self) -> None:
        resolve.close_needed(self._needed)          # the last opened first; forgotten as closed

    def _release_image(self) -> None:
        if self._on_unload is not None:
            self._on_unload()                       # image.release: a second one is harmless
            self._on_unload = None

    @property
    def unloaded(self) -> bool:
        return self._unloaded

    # -- for learners ----------------------------------------------------
    def lookup(self, name: str, ctype: Optional[str] = None) -> Any:
        """The address of `name`; given its C type, a cffi function or pointer to call or read."""
        address = self.address(name)
        if address is None:
            raise SymbolNotFound(self.path, f"does not export {name!r}")
        if ctype is None:
            return address
        try:                   # parsed under ctype.PARSE_LOCK: cffi's parser is not thread-safe
            pointer_type = ctypes_.cffi_type(ffi, ctypes_.pointer_to(ctype))
        except (ctypes_.CTypeError, TypeError) as exc:
            raise SymbolTypeError(self.path, f"cannot read the C type {ctype!r} asked for "
                                             f"{name!r}: {exc}") from None
        pointer = ffi.cast(pointer_type, address)
        self.keep_mapped_while(pointer)
        return pointer

    @property
    def layout(self) -> List[Segment]:
        """The mapped address space: file-backed, zero-filled and inaccessible parts."""
        if self.base is None:
            return []
        return with_gaps(self._layout, self.base, self.plan.span)

    def __enter__(self) -> "NativeLibrary":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "closed" if self.base is None else f"at {self.base:#x}"
        return f"<NativeLibrary {os.path.basename(self.path)} {where}>"


Tracer = "Optional[Callable[[Event], None]] | bool"


def load(path: "os.PathLike[str] | str", *, trace: Tracer = None) -> NativeLibrary:
    """Load the shared library at `path` with the native loader (no manifest needed).

    `trace`: None for a summary (a count per relocation type and per place symbols
    were found), True to record every event, or a function to call with each
    event as it happens.

    As from_image: the descriptor and the library are held from the statement
    that makes each, so an interrupt at any line gives both back before it goes on.
    """
    path = os.fspath(path)
    data, identity = read(path)
    fds: List[int] = []
    library: Optional[NativeLibrary] = None
    try:
        fds.append(open_to_map(path, path, "cannot be opened"))
        if files.contents_key(files.identity(os.fstat(fds[0]))) != files.contents_key(identity):
            raise FileChanged(path, "was replaced or changed between being read and being "
                                    "mapped; try again once the program writing it has finished")
        library = NativeLibrary(data, path, fds[0], trace=trace)
        os.close(fds.pop())               # the mappings keep their own reference
        return library
    except BaseException:
        files.close_all(fds)
        if library is not None:
            finish(library.close)
        raise


def read(path: str) -> Tuple[Any, files.Identity]:
    """The file's bytes, read as every file minildr reads (minildr.files: a FIFO, a device,
    a huge or a changing file is refused, never waited on), and its identity; of a large
    file only the parts step 1 reads (sparse.py: not the machine code, mapped from the file)."""
    try:
        return files.read_ranges(path, files.MAX_PLUGIN_BYTES, sparse.file_ranges)
    except (PluginNotFound, UnreadableFile) as exc:
        if type(exc) not in (PluginNotFound, UnreadableFile):
            raise                                 # a FIFO, a device, a changing file: as named
        raise LoadError(path, f"cannot be opened: {exc.reason}") from None


def from_image(image: Any, *, trace: Tracer = None,
               needed: Optional[Dict[str, str]] = None) -> NativeLibrary:
    """Load a checked `PluginImage`: map its sealed copy, whose bytes are the ones checked.

    `needed`: what `open` already loaded for each DT_NEEDED name
    (linkage.Prepared.targets), opened again from there (resolve.open_needed).

    What it holds (the image, the descriptor it maps from, the library) is
    recorded in the statement that makes it, so an interrupt at any line
    gives everything back before it goes on.
    """
    holder = object()                     # this load's use of the image (image.acquire)
    fds: List[int] = []
    library: Optional[NativeLibrary] = None
    try:
        load_path = image.acquire(holder)
        fds.append(open_to_map(load_path, image.path, "cannot open its sealed copy"))
        library = NativeLibrary(image.data, image.path, fds[0], trace=trace,
                                on_unload=functools.partial(image.release, holder),
                                needed=needed)
        os.close(fds.pop())               # the mappings keep their own reference
        return library
    except BaseException:
        files.close_all(fds)
        if library is not None:
            finish(library.close)         # gives the image back too (on_unload)
        image.release(holder)             # (a second release is harmless)
        raise


def open_to_map(load_path: str, path: str, failure: str) -> int:
    """A descriptor of the file to map (closed after the load: the mappings keep their own)."""
    try:
        return os.open(load_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LoadError(path, f"{failure} ({exc.strerror})") from None
