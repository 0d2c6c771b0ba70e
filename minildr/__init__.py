"""minildr: a small, real plugin loader for C shared libraries, and the course built on it.

    import minildr
    path = minildr.build(["greet.c"], name="greet", exports="greet.h")
    with minildr.open(path) as plugin:
        greet = plugin.lookup("greet", "const char *(void)")
        print(minildr.ffi.string(greet()).decode())

Each idea lives in its own module: manifest (what build stamps), build (the
compiler driver), contract (shared headers), image (the bytes checked are
the bytes loaded), system (dlopen), loader (open, Plugin, Symbol), discover
(folder scans), errors (every PluginError), trust (pinned digests and
signatures), isolate and worker (plugins in a worker process).
"""
from __future__ import annotations

import logging

from .build import build, build_many
from .contract import Contract
from .discover import Report, discover, plugin_path
from .errors import (BuildError, CompilerNotFound, ContractMismatch, DependencyMismatch,
                     LoadError, NotAPlugin, PluginClosed, PluginCrashed, PluginError,
                     PluginNotFound, PluginTimeout, SymbolNotFound, SymbolTypeError,
                     UnsupportedELF, UntrustedPlugin, VersionMismatch)
from .errors import ContractViolation, NotImplementedByPlugin, PluginCallError  # contracts
from .proxy import ContractProxy  # contracts
from .errors import BadTrustFile, PluginProtocolError
from .host import HOST, SUFFIX, Platform
from .loader import Plugin, Symbol, open
from .manifest import ABI_VERSION, Manifest, read_manifest
from .system import ffi
from .trust import PublicKey, TrustStore, Verdict

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """`%load_ext minildr`: adds the %%minildr cell magic (see magic.py)."""
    from .magic import load
    load(ipython)

logging.getLogger("minildr").addHandler(logging.NullHandler())

__all__ = [
    "ABI_VERSION", "SUFFIX", "HOST", "Platform", "build", "build_many", "open", "read_manifest", "discover",
    "plugin_path", "Contract", "Plugin", "Symbol", "Manifest", "Report", "ffi",
    "PluginError", "PluginNotFound", "NotAPlugin", "VersionMismatch", "DependencyMismatch",
    "SymbolNotFound", "SymbolTypeError", "ContractMismatch", "UntrustedPlugin",
    "PluginCrashed", "PluginTimeout", "CompilerNotFound", "UnsupportedELF", "BuildError",
    "LoadError", "PluginClosed",
    "PluginCallError", "NotImplementedByPlugin", "ContractViolation", "ContractProxy",  # contracts
    "TrustStore", "PublicKey", "Verdict", "BadTrustFile", "PluginProtocolError",
]
