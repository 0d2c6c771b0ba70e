"""minildr: a small, real plugin loader for C shared libraries, and the course built on it.

    import minildr
    path = minildr.build(["greet.c"], name="greet", exports="greet.h")
    with minildr.open(path) as plugin:
        greet = plugin.lookup("greet", "const char *(void)")
        print(minildr.ffi.string(greet()).decode())

The package reads top to bottom in the order a load runs; every module
imports only from the rows above it (no cycles; tests/package/test_imports.py):

    errors.py       every PluginError, with the attributes each one carries
    host.py         this machine: OS, CPU, binary format, plugin SUFFIX
    files.py        reading a file that may be hostile: regular, bounded, non-blocking
    atomic.py       writing a file whole or not at all
    formats/        ELF, Mach-O and PE read-only and bounds-checked (reader.py)
    manifest.py     what build stamps into a plugin: Manifest, Export, ContractRef
    image.py        the file read once: the bytes checked are the bytes loaded
    contracts/      Contract, its layout rules, the calling convention, proxies
    edwards.py      weak Ed25519 public keys, refused
    trust.py        pinned digests, Ed25519 signatures, floors, TrustStore
    checks.py       each check open() makes, in order; read_manifest
    atload.py       what a library runs when loaded, read without loading it
    linkage.py      before any plugin code runs: needed libraries found ($ORIGIN),
                    every undefined symbol and version resolved
    goruntime.py    one Go runtime per process
    plugin.py       Plugin and Symbol, over whichever loader mapped the bytes
    libdl.py        dlopen, dlsym, dlvsym, dladdr, dlinfo: bound once (POSIX)
    system.py       the system loader (dlopen / LoadLibrary)
    native/         minildr's own ELF loader, one module per step (Linux)
    isolation/      a plugin in a worker process: protocol, marshal, process,
                    its process tree (a keeper, a PID namespace), and the
                    sandbox (Landlock, seccomp, rlimits)
    interrupts.py   undoing that an interrupt cannot cut short (finish)
    loader.py       open(): the checks, then one of the loaders above
    discover.py     discover() a folder, plugin_path()
    build.py        the compiler driver: build(), build_many()
    cli.py          python -m minildr
    course/         the course's tooling: %%minildr, exercises, selfcheck, Go

Threads. Every public call may come from several threads at once:

- `open`, `read_manifest`, `discover` and `build` share nothing but the image
  cache (image.py), which one lock guards.
- `Plugin.lookup` and `Plugin.close` hold the plugin's lock: a lookup either
  finishes before close() and what it handed out keeps the library mapped,
  or it sees the plugin closed (PluginClosed). Never a function whose
  library is gone.
- A typed lookup gives a callable of exactly the declared C type, or
  SymbolTypeError: every C parse minildr makes, its own (pycparser) and
  cffi's, holds one lock (ctype.PARSE_LOCK), since both keep a parse's state
  in one shared parser object. cffi calls a host makes itself from several
  threads (its own ffi.cdef, or ffi.typeof on type text) are the host's to
  serialise.
- The count of what keeps a library mapped, and the decision to unload, are
  taken under one lock (lifetime.py): a library unloads exactly once.

Lifetimes. A library stays mapped while a function, pointer or proxy from it
is alive, and while a pointer one of its functions *returned* is alive (a
`const char *` into its data): close() unloads when the last one is dropped.
What no loader can make safe in-process, see lifetime.py: a thread the
plugin started (close() leaves the library mapped, with a LeftMapped warning,
if threads Python did not start appeared since it was loaded), and an
on_exit() handler (undetectable; such a plugin needs isolate=True).

Hostile input. Every file minildr reads (plugins, signatures, trust stores,
keys, contract headers) is read by files.py: regular files only, never
blocking, within a size limit per kind; every failure is a PluginError
subclass that names the file, and every message, log line and table escapes
the control characters a plugin's text may hold (console.printable). Reading
a manifest's declarations costs time linear in their size, once per manifest.

Interrupts. Ctrl-C (KeyboardInterrupt) at any line of open, lookup, close,
discover or build leaves nothing loaded, mapped or open in this process and
the operation can simply be run again; an interrupted close() is finished by
calling close() again (tests/core/test_interrupts.py interrupts each line).
"""
from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:       # what a type checker and a reader see; at run time, _PUBLIC below
    from .build import build, build_many
    from .checks import read_manifest
    from .contracts.contract import Contract
    from .contracts.proxy import ContractProxy
    from .discover import Report, discover, plugin_path
    from .errors import (BadTrustFile, BuildError, CellBuildFailed, CompilerNotFound,
                         ContractMismatch, ContractViolation, DependencyMismatch, LoadError,
                         NotAPlugin, NotImplementedByPlugin, PluginCallError, PluginClosed,
                         PluginCrashed, PluginError, PluginNotFound, PluginProtocolError,
                         PluginTimeout, SandboxUnavailable, SymbolNotFound, SymbolTypeError,
                         UnsupportedELF, UntrustedPlugin, VersionMismatch, WorkerStartError)
    from .host import HOST, SUFFIX, Platform
    from .isolation.policy import Limits, SandboxPolicy
    from .loader import open
    from .manifest import ABI_VERSION, Manifest
    from .plugin import Plugin, Symbol
    from .system import ffi
    from .trust import PublicKey, TrustStore, Verdict

__version__ = "0.1.0"

# Lazy, by design (PEP 562). `import minildr` imports none of the rows above:
# each public name is imported from its module the first time it is used
# (`minildr.open`, `from minildr import build`), and so is each submodule
# (`minildr.native`, `minildr.trust`). So a process that needs one room gets
# that room only: an isolated worker (`import minildr.isolation.worker`)
# never imports the compiler driver, the trust store or the contract proxies
# (tests/package/test_imports.py), and `python -m minildr` only the
# CLI. Nothing here is a function-level import of one module by another (the
# package's own names, resolved on access), so tests/package/test_imports.py
# lists none of it.
_PUBLIC: Dict[str, str] = {
    **dict.fromkeys(["build", "build_many"], ".build"),
    "read_manifest": ".checks",
    "Contract": ".contracts.contract",
    "ContractProxy": ".contracts.proxy",
    **dict.fromkeys(["Report", "discover", "plugin_path"], ".discover"),
    **dict.fromkeys(["BadTrustFile", "BuildError", "CellBuildFailed", "CompilerNotFound",
                     "ContractMismatch", "ContractViolation", "DependencyMismatch", "LoadError",
                     "NotAPlugin", "NotImplementedByPlugin", "PluginCallError", "PluginClosed",
                     "PluginCrashed", "PluginError", "PluginNotFound", "PluginProtocolError",
                     "PluginTimeout", "SandboxUnavailable", "SymbolNotFound", "SymbolTypeError",
                     "UnsupportedELF", "UntrustedPlugin", "VersionMismatch", "WorkerStartError"],
                    ".errors"),
    **dict.fromkeys(["HOST", "SUFFIX", "Platform"], ".host"),
    **dict.fromkeys(["Limits", "SandboxPolicy"], ".isolation.policy"),
    "open": ".loader",
    **dict.fromkeys(["ABI_VERSION", "Manifest"], ".manifest"),
    **dict.fromkeys(["Plugin", "Symbol"], ".plugin"),
    "ffi": ".system",
    **dict.fromkeys(["PublicKey", "TrustStore", "Verdict"], ".trust"),
}


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (`minildr.native` after a bare `import minildr`).

    Imported on first use, then kept in the package's namespace. minildr.native
    binds libc's mmap and dlvsym, which exist on Linux only: `import minildr`
    works everywhere, `minildr.native` where it can.
    """
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    elif not name.startswith("_"):
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise                                   # the submodule exists; something it imports does not
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_PUBLIC) | {"native"})


class _Package(types.ModuleType):
    """Keeps `minildr.build` and `minildr.discover` the functions.

    Importing a submodule sets it as an attribute of its package, so
    `from minildr.build import build_many` would otherwise turn `minildr.build`
    into the module minildr.build, and a later `minildr.build([...])` would
    call a module. (Before the package was lazy, `from .build import build`
    here ran last and left the function; this keeps it so.)
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _PUBLIC.get(name) == f".{name}" \
                and value.__name__ == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def load_ipython_extension(ipython) -> None:
    """`%load_ext minildr`: adds the %%minildr cell magic (see course/magic.py)."""
    from .course.magic import load      # IPython is imported only where a notebook asks
    load(ipython)


logging.getLogger("minildr").addHandler(logging.NullHandler())

__all__ = [
    "ABI_VERSION", "SUFFIX", "HOST", "Platform", "build", "build_many", "open", "read_manifest", "discover",
    "plugin_path", "Contract", "Plugin", "Symbol", "Manifest", "Report", "ffi",
    "PluginError", "PluginNotFound", "NotAPlugin", "VersionMismatch", "DependencyMismatch",
    "SymbolNotFound", "SymbolTypeError", "ContractMismatch", "UntrustedPlugin",
    "PluginCrashed", "PluginTimeout", "CompilerNotFound", "UnsupportedELF", "BuildError",
    "LoadError", "PluginClosed", "CellBuildFailed",
    "PluginCallError", "NotImplementedByPlugin", "ContractViolation", "ContractProxy",  # contracts
    "TrustStore", "PublicKey", "Verdict", "BadTrustFile", "PluginProtocolError",
    "SandboxPolicy", "Limits", "SandboxUnavailable", "WorkerStartError",          # isolation
]
