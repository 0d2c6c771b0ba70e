"""Fixed C declarations without a C parser at run time: cffi's out-of-line ABI mode, built once.

cffi's in-line mode (`cffi.FFI().cdef(text)`) reads the declarations with
pycparser in every process that makes the FFI, and importing pycparser
alone costs ~14 ms of CPU: an isolated worker paid that at each start for
the few functions it calls itself (dlopen & co., fflush, exit, the C call
loop). cffi's out-of-line ABI mode turns the same declarations, once, into
a small Python module (its recompiler's `make_py_source`: no C compiler is
involved) that builds the FFI from `_cffi_backend`'s tables alone. The
module depends only on the declarations and cffi's version, so it is made
once per user and version: in the user's cache folder, named after a hash
of both, written atomically (two processes making it at once is harmless).
A worker looks in its host's cache folder first (the host puts it on the
worker's sys.path: isolation/process.py): its environment, and with it
$XDG_CACHE_HOME or $HOME, may differ from the host's, and it should make
no folder of its own.

Where no cache folder can be written, or a module in it fails to load, the
declarations are read in-line as before: `declared` gives an FFI with the
same declarations either way (an out-of-line FFI has no `cdef`; nothing
that uses these needs one).
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import _cffi_backend
import cffi

from .atomic import write_atomically
from .ctype import CTypeError, cffi_cdef

PREFIX = "_minildr_ffi_"


def cache_folder() -> Optional[Path]:
    """$XDG_CACHE_HOME/minildr or ~/.cache/minildr, else a folder of this user's in the
    temporary folder; None if none can be made."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for folder in (Path(home) / "minildr",
                   Path(tempfile.gettempdir()) / f"minildr-cache-{os.geteuid()}"):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_uid == os.geteuid() and os.access(folder, os.W_OK):
                return folder
        except OSError:
            continue
    return None


def module_name(name: str, declarations: str) -> str:
    """The generated module's name: `name` and a hash of the declarations and cffi's version."""
    key = hashlib.sha256(b"\0".join([declarations.encode(), _cffi_backend.__version__.encode()]))
    return f"{PREFIX}{name}_{key.hexdigest()[:16]}"


def declared(name: str, declarations: str) -> Any:
    """An FFI that knows `declarations`: out-of-line (made once, see the module), or in-line."""
    module = module_name(name, declarations)
    spec = importlib.util.find_spec(module)     # a worker: in its host's folder, on its path
    path = None
    if spec is None:
        folder = cache_folder()
        path = folder / f"{module}.py" if folder is not None else None
    if path is not None and (path.exists() or generate(module, declarations, path)):
        spec = importlib.util.spec_from_file_location(module, path)
    if spec is not None and spec.loader is not None:
        try:
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
            return loaded.ffi
        except Exception:             # a damaged or foreign file: read the declarations here
            pass
    return inline(declarations)


def generate(module: str, declarations: str, path: Path) -> bool:
    """Write the out-of-line module for `declarations` at `path`; False if it cannot be."""
    from cffi.recompiler import make_py_source    # slow (imports pycparser); once per machine
    ffi = inline(declarations)
    ffi.set_source(module, None)
    text = io.StringIO()
    try:
        make_py_source(ffi, module, text)
        write_atomically(path, text.getvalue(), mode=0o600)
    except (OSError, CTypeError, cffi.CDefError, cffi.VerificationError):
        return False
    except TypeError:                 # cffi before 1.16 writes to a file name only (Debian 12's
        return False                  # 1.15.1, the AArch64 harness's sysroot): in-line there
    return True


def inline(declarations: str) -> Any:
    """cffi's in-line FFI with `declarations` (its parser, pycparser, reads them: under
    ctype's parse lock, as every parse)."""
    ffi = cffi.FFI()
    cffi_cdef(ffi, declarations)
    return ffi
