"""minildr: a small, real plugin loader for C shared libraries, and the course built on it.

    import minildr
    path = minildr.build(["greet.c"], name="greet", exports="greet.h")
    with minildr.open(path) as plugin:
        greet = plugin.lookup("greet", "const char *(void)")
        print(minildr.ffi.string(greet()).decode())

The package reads top to bottom in the order a load runs; every module
imports only from the rows above it (no cycles; tests/package/test_imports.py):

    errors.py       every PluginError, with the attributes each one carries
    logger.py       the "minildr" logger: a host's, attached by this __init__; none in a worker
    host.py         this machine: OS, CPU, binary format, plugin SUFFIX
    files.py        reading a file that may be hostile: regular, bounded, non-blocking
    atomic.py       writing a file whole or not at all
    outofline.py    fixed C declarations made once into cffi's out-of-line mode
    lazy_pycparser.py  pycparser, imported when C text is first read
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
                    the fork server that starts workers (Linux), its process
                    tree (a keeper, a PID namespace), and the sandbox
                    (Landlock, seccomp, rlimits)
    interrupts.py   undoing that an interrupt cannot cut short (finish)
    loader.py       open(): the checks, then one of the loaders above
    discover.py     discover() a folder, plugin_path()
    build.py        the compiler driver: build(), build_many()
    headercache.py  an exports header's preprocessing, reused while nothing it read changed
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

import cffi

from .build import build, build_many
from .checks import read_manifest
from .contracts.contract import Contract
from .discover import Report, discover, plugin_path
from .errors import (BadTrustFile, BuildError, CellBuildFailed, CompilerNotFound, ContractMismatch,
                     ContractViolation, DependencyMismatch, LoadError, NotAPlugin,
                     NotImplementedByPlugin, PluginCallError, PluginClosed, PluginCrashed,
                     PluginError, PluginNotFound, PluginProtocolError, PluginTimeout,
                     SandboxUnavailable, SymbolNotFound, SymbolTypeError, UnsupportedELF,
                     UntrustedPlugin, VersionMismatch, WorkerStartError)
from .host import HOST, SUFFIX, Platform
from .interrupts import under_lock
from .isolation.policy import Limits, SandboxPolicy
from .loader import open
from .logger import LOG
from .manifest import ABI_VERSION, Manifest
from .plugin import Plugin, Symbol
from .ctype import PARSE_LOCK
from .outofline import inline
from .system import DECLARATIONS, ffi as _loaders_ffi
from .trust import PublicKey, TrustStore, Verdict

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """`%load_ext minildr`: adds the %%minildr cell magic (see course/magic.py)."""
    from .course.magic import load      # IPython is imported only where a notebook asks
    load(ipython)


def _public_ffi() -> cffi.FFI:
    """`minildr.ffi`: cffi's in-line FFI, as a learner knows it (cdef, dlopen, string...),
    with the system loader's declarations; made once, at its first use.

    The loader's own binding is out-of-line where it can be (outofline.py: no C
    parser at run time); cdata from either are the same to cffi. An in-line FFI
    imports cffi's C parser (pycparser, ~25 ms of CPU), which most processes
    that import minildr never use: a test's child, a plugin host that prints
    with `ffi.string` later. So it is made here, at the first `minildr.ffi`,
    under ctype.PARSE_LOCK (cffi's parser is shared): threads asking at once
    get the one FFI the first of them made.
    """
    return under_lock(PARSE_LOCK, _make_public_ffi)


def _make_public_ffi() -> cffi.FFI:
    made = globals().get("ffi")
    if made is None:
        made = _loaders_ffi if isinstance(_loaders_ffi, cffi.FFI) else inline(DECLARATIONS)
        globals()["ffi"] = made          # later uses are a plain module attribute
    return made


def __getattr__(name: str):
    """`minildr.ffi`, `minildr.native` and `minildr.ContractProxy`, made at their first
    use (PEP 562).

    `native` is imported on first use: it binds libc's mmap and dlvsym, which
    exist on Linux only, and `import minildr` must work everywhere. `ffi`: see
    _public_ffi. `ContractProxy`: contracts/proxy.py and the calling convention
    it imports cost ~3 ms, which only a host calling through a contract needs.
    """
    if name == "ffi":
        return _public_ffi()
    if name == "ContractProxy":
        return importlib.import_module(".contracts.proxy", __name__).ContractProxy
    if name == "native":
        return importlib.import_module(".native", __name__)
    raise AttributeError(f"module 'minildr' has no attribute {name!r}")


def __dir__() -> list:
    """What `dir(minildr)` and a notebook's tab completion offer: the names made at
    first use (__getattr__) as well, before that use."""
    return sorted(set(globals()) | {"ffi", "native", "ContractProxy"})


# The loader modules an isolated worker shares log through logger.LOG: in a host, to this logger.
logging.getLogger("minildr").addHandler(logging.NullHandler())
LOG.attach(logging.getLogger("minildr"))

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
