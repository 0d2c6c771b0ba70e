"""open(): check everything that can be checked, then load; Plugin and Symbol.

The checks run in this order, on the bytes read once (see image.py), and
each has its own error:

1. `check_file`       the path is an existing regular file        PluginNotFound
2. `check_binary`     a shared library for this OS and CPU          NotAPlugin
3. `check_manifest`   it carries a minildr manifest                 NotAPlugin
4. `check_versions`   same minildr ABI, same platform               VersionMismatch
5. `check_contracts`  every contract both name: same hash, or an    DependencyMismatch
                      append-only change within one major version
6. `check_trust`      a pinned digest or a trusted signature        UntrustedPlugin
                      (only with trust=..., see trust.py)

Only then does a loader map it and run its initialisers: the system loader
(dlopen, `system.py`) or, with loader="native", minildr's own (`native/`).
Both map the same sealed bytes the checks read. With isolate=True, the
system loader does it in a worker process instead (see isolate.py).
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional, Protocol, Sequence, Union

import cffi

from . import ctype, image as images, proxy
from .contract import Contract
from .errors import (DependencyMismatch, NotAPlugin, PluginClosed, PluginError,
                     SymbolNotFound, SymbolTypeError, VersionMismatch)
from .host import BINARY_FORMAT, HOST
from .image import PluginImage
from .manifest import ABI_VERSION, BinaryInfo, Manifest
from .system import SystemLibrary
from .trust import as_store

if TYPE_CHECKING:
    from .native.trace import Trace

log = logging.getLogger("minildr")

_OS_NAMES = {"linux": "Linux", "darwin": "macOS", "windows": "Windows"}


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------
def check_file(path: "os.PathLike[str] | str") -> PluginImage:
    return images.read(path)


def check_binary(image: PluginImage) -> BinaryInfo:
    info, _ = image.examine()
    if info.format != BINARY_FORMAT:
        raise NotAPlugin(image.path, (
            f"a {info.format} file, the format of {_OS_NAMES.get(info.os, info.os)}; this "
            f"machine runs {_OS_NAMES.get(HOST.os, HOST.os)} and loads {BINARY_FORMAT} "
            f"libraries: rebuild the plugin here"))
    if info.kind != "shared library":
        raise NotAPlugin(image.path, f"not a shared library: it is an {info.format} "
                                     f"{info.kind}; build plugins with minildr.build")
    if info.arch != HOST.arch:
        raise NotAPlugin(image.path, f"wrong architecture: a shared library for {info.arch}, "
                                     f"but this machine is {HOST.arch}; rebuild it here")
    return info


def check_manifest(image: PluginImage) -> Manifest:
    return image.manifest()


def check_versions(image: PluginImage, manifest: Manifest) -> None:
    if manifest.abi != ABI_VERSION:
        raise VersionMismatch(image.path, (
            f"built for minildr ABI version {manifest.abi}, but this host uses ABI version "
            f"{ABI_VERSION}; rebuild the plugin with this host's minildr"))
    if manifest.platform != HOST:
        raise VersionMismatch(image.path, (
            f"built for platform {manifest.platform}, but this host is {HOST}; rebuild the "
            "plugin on this platform"))


def check_contracts(image: PluginImage, manifest: Manifest,
                    contracts: Iterable[Contract]) -> None:
    for contract in contracts:
        theirs = manifest.contracts.get(contract.name)
        if theirs is None:
            continue
        why = contract.compatible_with(theirs, manifest.types)
        if why is not None:
            raise DependencyMismatch(image.path, (
                f"plugin was built with a different version of contract {contract.name}: "
                f"the plugin has {contract.name} {theirs.version} (sha256 {theirs.sha256[:16]}), "
                f"the host has {contract.name} {contract.version} (sha256 "
                f"{contract.sha256[:16]}): {why}; rebuild the plugin against the host's "
                f"{contract.filename}"))
        if theirs.sha256 != contract.sha256:
            log.info("open %s: contract %s %s (plugin) and %s (host) differ by appended "
                     "fields only: compatible", image.path, contract.name, theirs.version,
                     contract.version)


class Library(Protocol):
    """What a Plugin needs of a loaded library, whichever loader loaded it."""
    def address(self, name: str) -> Optional[int]: ...
    def keep_mapped_while(self, obj: object) -> None: ...
    def close(self) -> None: ...


def load_library(image: PluginImage, loader: str) -> Library:
    """Map the checked image with the loader asked for."""
    if loader == "native":
        from . import native
        return native.from_image(image)
    return SystemLibrary(image)


def check_trust(image: PluginImage, trust: Any) -> None:
    """With a trust store (or the path of a trust file), refuse what it does not trust."""
    if trust is not None:
        as_store(trust).check(image)


# ---------------------------------------------------------------------------
# Symbols and plugins
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def ffi_for_types(types: str) -> cffi.FFI:
    """A cffi FFI that knows a manifest's type declarations.

    Reading C declarations is the slow part of a lookup, and an FFI only
    holds types, so plugins whose manifests declare the same types (every
    build of the same plugin, every plugin of one contract) share one.
    """
    ffi = cffi.FFI()
    if types:
        ffi.cdef(types)
    return ffi


@dataclass(frozen=True)
class Symbol:
    """An exported symbol, as `lookup(name)` finds it without a type."""
    name: str
    ctype: str           # its C type, from the plugin's exports header
    kind: str            # "function" or "data"
    address: int         # where it is in memory (valid while the plugin is open)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.ctype}"


class Plugin:
    """A loaded plugin. Look up its exports; close it (or use `with`) to unload it.

    `loader` says which loader loaded it: "system" (dlopen), "native"
    (minildr.native) or "isolated" (the system loader, in a worker process;
    see isolate.py). `trace` is the native loader's record of the load (a
    `minildr.native.Trace`: `.events`, `.counts()`), kept after close; None
    for the other loaders, whose work cannot be watched from Python.
    """

    def __init__(self, image: PluginImage, manifest: Manifest, library: Optional[Library],
                 loader: str = "system") -> None:
        self.path = image.path
        self.sha256 = image.sha256
        self.manifest = manifest
        self.name = manifest.name
        self.version = manifest.version
        self.loader: str = loader
        self.trace: Optional["Trace"] = (getattr(library, "trace", None) if loader == "native"
                                         else None)
        self._library: Optional[Library] = library
        self._ffi: Optional[cffi.FFI] = None

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
        try:
            result = self._lookup(name, ctype)
        except PluginError as exc:
            log.info("lookup %s in %s (type %s): refused: %s", name, self.path, ctype, exc.reason)
            raise
        log.info("lookup %s in %s (type %s): ok", name, self.path, ctype)
        return result

    def _lookup(self, name: str, wanted: Union[str, Contract, None]) -> Any:
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
        if wanted is None:
            return Symbol(name, export.ctype, export.kind, address)
        if isinstance(wanted, Contract):                  # a vtable: see proxy.py
            return proxy.bind(self, name, export, address, wanted)
        try:
            asked = ctype.canonical(wanted, self.manifest.types)
        except ctype.CTypeError as exc:
            raise SymbolTypeError(self.path, f"cannot read the C type {wanted!r} asked for "
                                             f"{name!r}: {exc}") from None
        if asked != export.ctype:
            raise SymbolTypeError(self.path, (
                f"{name!r} is declared as '{export.ctype}' but was looked up as "
                f"'{asked}'; use the plugin's type (or rebuild the plugin with the type "
                "the host expects)"))
        pointer = self._cffi().cast(ctype.pointer_to(export.ctype, self.manifest.types), address)
        library.keep_mapped_while(pointer)
        return pointer

    def _cffi(self) -> cffi.FFI:
        if self._ffi is None:
            self._ffi = ffi_for_types(self.manifest.types)
        return self._ffi

    # -- unloading -----------------------------------------------------
    def close(self) -> None:
        """Unload the plugin; later lookups raise PluginClosed. Closing twice is fine."""
        library, self._library = self._library, None
        if library is not None:
            library.close()
            log.info("close %s", self.path)

    def __enter__(self) -> "Plugin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"          # the system loader: unnamed
        by = "" if self.loader == "system" else f"{self.loader} loader, "
        return f"<Plugin {self.name} {self.version} from {self.path} ({by}{state})>"


# ---------------------------------------------------------------------------
# open()
# ---------------------------------------------------------------------------
def open(path: "os.PathLike[str] | str", *, contracts: Iterable[Contract] = (),
         trust: Optional[Any] = None, isolate: Union[bool, float] = False,
         loader: str = "system") -> Plugin:
    """Check the plugin at `path` without running it, then load it.

    contracts: the contracts the host was built with; a plugin built against
        another version of one of them is refused (DependencyMismatch).
    trust: a TrustStore (or the path of a trust file); a plugin it does not
        trust is refused before any of its code runs (UntrustedPlugin).
    isolate: True (or a per-call timeout in seconds) loads the plugin in a
        worker process: a crash gives PluginCrashed, a hang PluginTimeout,
        and the host keeps running (see isolate.py).
    loader: "system" (dlopen) or "native" (minildr.native, the loader in
        Python; Linux x86_64/aarch64, UnsupportedELF for what it cannot load).
        An isolated plugin is loaded by the system loader in its worker.
    """
    if loader not in ("system", "native"):
        raise ValueError(f"loader must be 'system' or 'native', not {loader!r}")
    if isolate and loader == "native":
        raise ValueError("isolate=True loads the plugin with the system loader in a worker "
                         "process; use loader='native' without isolate")
    image: Optional[PluginImage] = None
    try:
        image = check_file(path)
        check_binary(image)
        manifest = check_manifest(image)
        check_versions(image, manifest)
        contracts = list(contracts)
        check_contracts(image, manifest, contracts)
        check_trust(image, trust)
        if isolate:
            from .isolate import open_isolated
            plugin: Plugin = open_isolated(image, manifest, contracts, isolate)
        else:
            plugin = Plugin(image, manifest, load_library(image, loader), loader)
    except PluginError as exc:
        log.warning("open %s sha256=%s: refused: %s", os.fspath(path),
                    image.sha256 if image else "-", exc.reason)
        raise
    log.info("open %s sha256=%s: loaded %s %s%s", image.path, image.sha256, manifest.name,
             manifest.version, " (isolated)" if isolate else "")
    return plugin
