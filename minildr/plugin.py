"""A loaded plugin (`Plugin`) and what `lookup` finds in it (`Symbol`).

A `Plugin` holds a `Library`: whichever loader mapped the checked bytes
(`system.py`'s dlopen, `native/`, or a worker process in `isolation/`),
seen through the three methods below. Lookups only ever find what the
plugin's manifest lists, and a typed lookup compares C types first.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence, Tuple, Union

import _cffi_backend
import cffi

from . import ctype
from .console import printable
from .contracts.contract import Contract
from .errors import PluginClosed, PluginError, SymbolNotFound, SymbolTypeError
from .image import PluginImage
from .interrupts import finish, under_lock
from .logger import INFO, LOG
from .manifest import Export, Manifest

if TYPE_CHECKING:
    from .native.trace import Trace

log = LOG                   # the "minildr" logger, once a host attached it (logger.py)
# ffi.cast, for a cffi type whichever FFI made it (the types are the backend's own)
_CAST = _cffi_backend.FFI().cast


class Library(Protocol):
    """What a Plugin needs of a loaded library, whichever loader loaded it."""
    handed_out: bool                        # a lookup found an address in it (lifetime.py)

    def address(self, name: str) -> Optional[int]: ...
    def keep_mapped_while(self, obj: object) -> None: ...
    def results_keep_mapped(self, function: Any) -> Any: ...
    def close(self) -> None: ...




@dataclass(frozen=True)
class Symbol:
    """An exported symbol, as `lookup(name)` finds it without a type."""
    name: str
    ctype: str           # its C type, from the plugin's exports header
    kind: str            # "function" or "data"
    address: int         # where it is in memory (valid while the plugin is open)

    def __str__(self) -> str:
        return printable(f"{self.kind} {self.name}: {self.ctype}")   # the plugin's text


class Plugin:
    """A loaded plugin. Look up its exports; close it (or use `with`) to unload it.

    `loader` says which loader loaded it: "system" (dlopen), "native"
    (minildr.native) or "isolated" (the system loader, in a worker process;
    see isolation/). `trace` is the native loader's record of the load (a
    `minildr.native.Trace`: `.events`, `.counts()`), kept after close; None
    for the other loaders, whose work cannot be watched from Python.
    """

    trace: Optional["Trace"] = None             # (set for the native loader's plugins)
    _ffi: Optional[ctype.CffiTypes] = None      # the manifest's types in cffi, once asked

    def __init__(self, image: PluginImage, manifest: Manifest, library: Optional[Library],
                 loader: str = "system") -> None:
        self.path = image.path
        self.sha256 = image.sha256
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.loader: str = loader
        if loader == "native":
            self.trace = getattr(library, "trace", None)
        self._library: Optional[Library] = library
        # lookup and close hold it: a close() from another thread can never
        # come between finding an address and keeping its library mapped. A
        # library that keeps itself mapped (lifetime.py) has a lock for that
        # already, which lookup and close take inside this one: the same lock
        # serves both (it is reentrant), one made per open instead of two.
        self._lock: threading.RLock = (getattr(library, "lifetime_lock", None)
                                       or threading.RLock())

    # -- lookup --------------------------------------------------------
    @property
    def exports(self) -> Sequence[str]:
        return list(self.manifest.exports)

    @property
    def closed(self) -> bool:
        return self._library is None

    def lookup(self, name: str, ctype: Union[str, Contract, None] = None) -> Any:
        """An export: a `Symbol` without a type; with its exact C type, a callable or pointer.

        `plugin.lookup("greet")` gives a Symbol (name, C type, address).
        `plugin.lookup("greet", "const char *(void)")` gives a function to call;
        for a variable, `lookup("calls", "int")` gives an `int *` pointing at it.
        `plugin.lookup("upper", command_contract)` gives a proxy object whose
        methods call the vtable `upper` (ContractMismatch if its layout differs).
        The type must be the one the plugin's exports header declares
        (spelling aside), or SymbolTypeError says both.
        """
        return self._logged(f"lookup {name} in {self.path} (type {ctype})", self._lookup,
                            name, ctype)

    def lookup_compared(self, name: str, pointer_type: Any) -> Any:
        """A typed lookup of `name` whose C types the caller has already compared, as
        `pointer_type` (a cffi type: a pointer to the export's type, as its manifest
        declares it).

        For an isolated plugin's worker: its host compared the type it was
        asked for with the export's, in this very manifest (the same bytes,
        verified by their digest), and made the pointer type from it; so the
        worker reads no C text at all (isolation/worker.py). Every other
        check of `lookup` is made, with its error.
        """
        return self._logged(f"lookup {name} in {self.path} (type compared by the host)",
                            self._lookup_compared, name, pointer_type)

    def _logged(self, shown: str, step: Any, *args: Any) -> Any:
        """`step(*args)` under the plugin's lock, logged as it ends."""
        shown = printable(shown)
        try:
            result = under_lock(self._lock, step, *args)
        except PluginError as exc:
            log.info("%s: refused: %s", shown, exc.reason)
            raise
        log.info("%s: ok", shown)
        return result

    def _lookup_compared(self, name: str, pointer_type: Any) -> Any:
        library, _, address = self._find(name)
        return self._typed(library, address, pointer_type)

    def _find(self, name: str) -> Tuple[Library, Export, int]:
        """The open library, the export `name` and its address, or why not."""
        library = self._library
        if library is None:
            raise PluginClosed(self.path, f"is closed, so {name!r} cannot be looked up; "
                                          "open the plugin again to use it")
        export = self.manifest.exports.get(name)
        if export is None:
            listing = ", ".join(f"{e.name} ({e.ctype})" for e in self.manifest.exports.values())
            raise SymbolNotFound(self.path, (
                f"does not export {name!r}; it exports: {listing or 'nothing'}. Only what "
                "the plugin's exports header declares is exported"))
        address = library.address(name)
        if address is None:
            raise SymbolNotFound(self.path, (
                f"its manifest lists {name!r}, but the library does not define it: the "
                "plugin is damaged or was altered after minildr.build; rebuild it"))
        library.handed_out = True      # its code may run in any thread now (lifetime.py)
        return library, export, address

    def _lookup(self, name: str, wanted: Union[str, Contract, None]) -> Any:
        library, export, address = self._find(name)
        if wanted is None:
            return Symbol(name, export.ctype, export.kind, address)
        if isinstance(wanted, Contract):                  # a vtable: see proxy.py
            from .contracts.proxy import bind     # slow to import; only a vtable needs it
            return bind(self, name, export, address, wanted)
        try:
            asked = ctype.canonical(wanted, self.manifest.types)
        except (ctype.CTypeError, TypeError) as exc:
            raise SymbolTypeError(self.path, f"cannot read the C type {wanted!r} asked for "
                                             f"{name!r}: {exc}") from None
        if asked != export.ctype:
            raise SymbolTypeError(self.path, (
                f"{name!r} is declared as '{export.ctype}' but was looked up as "
                f"'{asked}'; use the plugin's type (or rebuild the plugin with the type "
                "the host expects)"))
        try:
            pointer_type = self._types().pointer(export.ctype)
        except ctype.CTypeError as exc:
            raise SymbolTypeError(self.path, f"the type of {name!r} in its manifest cannot be "
                                             f"used: {exc}; rebuild the plugin") from None
        return self._typed(library, address, pointer_type)

    def _typed(self, library: Library, address: int, pointer_type: Any) -> Any:
        """The export at `address` as a `pointer_type`, keeping its library mapped."""
        pointer = _CAST(pointer_type, address)
        if pointer_type.kind == "function" and pointer_type.result.kind == "pointer":
            # Its results may point into the library (a const char * in its
            # read-only data): each keeps it mapped while alive (lifetime.py).
            # Any other function is handed out as cffi made it: no wrapper,
            # so a call costs what a raw cffi call costs.
            pointer = library.results_keep_mapped(pointer)
        library.keep_mapped_while(pointer)
        return pointer

    def _types(self) -> ctype.CffiTypes:
        """The manifest's types in cffi, read once (for every export at once)."""
        if self._ffi is None:
            exports = tuple(dict.fromkeys(e.ctype for e in self.manifest.exports.values()))
            self._ffi = ctype.cffi_types(self.manifest.types, exports)
        return self._ffi

    def _cffi(self) -> cffi.FFI:
        """A cffi FFI that knows the manifest's type declarations."""
        return self._types().ffi

    # -- unloading -----------------------------------------------------
    def close(self) -> None:
        """Unload the plugin; later lookups raise PluginClosed. Closing twice is fine.

        Safe against lookups in other threads: a lookup either finishes first
        (and what it handed out keeps the library mapped) or sees the plugin closed.
        """
        under_lock(self._lock, finish, self._close)

    def _close(self) -> None:
        """Close the library, then forget it. Cut short, it is run again (interrupts.finish),
        and does what is left: the library is forgotten only once closed, so an
        interrupted close() can always be called again."""
        library = self._library
        if library is None:
            return
        if self._lock is getattr(library, "lifetime_lock", None):
            library.close_holding_lock()        # type: ignore[union-attr]  (its lock: held)
        else:
            library.close()
        self._library = None
        if log.isEnabledFor(INFO):
            log.info("close %s", printable(self.path))

    def __enter__(self) -> "Plugin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"          # the system loader: unnamed
        by = "" if self.loader == "system" else f"{self.loader} loader, "
        return printable(f"<Plugin {self.name} {self.version} from {self.path} ({by}{state})>")
