"""The worker's call loop in C for numbers-only functions: built once, loaded by the worker.

An empty isolated call used to spend most of its time in the worker's
Python (reading the frame, the cffi call, fflush, packing the reply), more
than the round trip through the kernel itself. fastcall.c does that loop in
C for every function whose parameters and result are integers, _Bool, char
or double, and hands anything else back to Python (worker.serve), which
answers it exactly as before.

The host builds fastcall.c once per machine with the C compiler the course
requires (build.find_compiler: $CC, else cc, gcc, clang) into the user's
cache folder, under a name that is a hash of the source, the compiler, the
machine and the C library (version and file: libc_identity) (written atomically: two hosts building at once is harmless),
and passes the library's path to each worker, which loads it before it
confines itself. Where it cannot be built (no compiler, another machine,
not Linux) or loaded, workers serve every call in Python, and `status()`
says why (`python -m minildr sandbox` prints it). The worker's side (load
the library, register, serve) is fastloop.py: a worker imports no compiler
driver.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import libdl
from ..build import find_compiler, run_tool
from ..errors import CompilerNotFound
from ..interrupts import under_lock
from ..outofline import cache_folder
from .kernel import MACHINE

SOURCE = Path(__file__).with_name("fastcall.c")
MACHINES = ("x86_64", "aarch64")        # the calling conventions fastcall.c knows


@dataclass(frozen=True)
class Status:
    """Whether workers serve numbers-only calls in C: the library's path, or why not."""
    path: str          # "" if not built
    reason: str        # "" if built


_lock = threading.Lock()
_status: Optional[Status] = None


def status() -> Status:
    """The C call loop, built on first use (once per process; the file once per machine).

    Once known, the status is read without the lock (every worker start asks);
    the first build takes it through interrupts.under_lock: a `with` block's
    exit is a line of its own, where an interrupt (a Ctrl-C, or the interrupt
    campaign's, tests/core/interrupt_child.py) skipped the release, so the
    next start waited for the lock forever.
    """
    return _status if _status is not None else under_lock(_lock, _build_once)


def _build_once() -> Status:
    """Under _lock: the status, built unless another thread built it first."""
    global _status
    if _status is None:
        _status = _build()
    return _status


def _build() -> Status:
    if not sys.platform.startswith("linux") or MACHINE not in MACHINES:
        return Status("", f"the C call loop knows Linux on {', '.join(MACHINES)} only "
                          f"(this is {sys.platform} {MACHINE}): calls are served in Python")
    try:
        compiler = find_compiler()
    except CompilerNotFound as exc:
        return Status("", f"no C compiler to build the C call loop ({exc.reason.split('.')[0]}): "
                          "calls are served in Python")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, compiler.version.encode(), MACHINE.encode(),
                                      os.fsencode(libc_identity())])).hexdigest()[:16]
    folder = cache_folder()
    if folder is None:
        return Status("", "no writable cache folder for the C call loop: calls are served "
                          "in Python")
    target = folder / f"fastcall-{MACHINE}-{key}.so"
    if target.exists():
        return Status(str(target), "")
    fd, staged = tempfile.mkstemp(dir=folder, prefix=".fastcall-", suffix=".so")
    os.close(fd)
    try:
        done = run_tool([compiler.path, "-O2", "-shared", "-fPIC", "-o", staged, str(SOURCE)],
                        timeout=120)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            return Status("", f"{compiler.path} could not build the C call loop ({first}): "
                              "calls are served in Python")
        os.replace(staged, target)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Status("", f"the C call loop could not be built ({exc}): calls are served "
                          "in Python")
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
    return Status(str(target), "")


def libc_identity() -> str:
    """The C library this process runs with, for the loop's cache key: its version and
    its file (path, size, modification time), so that after a system upgrade the loop
    is built again rather than reused from a build against another C library.

    The version is confstr(_CS_GNU_LIBC_VERSION) (confstr(3); glibc's
    gnu_get_libc_version()); the file is the one the loader mapped, named by
    dladdr(3) for fflush, which the loop calls.
    """
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):          # not glibc: no such name
        version = ""
    info = libdl.ffi.new("Dl_info *")
    address = libdl.lib.dlsym(libdl.RTLD_DEFAULT, b"fflush")
    if not address or not libdl.lib.dladdr(address, info) or info.dli_fname == libdl.NULL:
        return version
    path = os.fsdecode(libdl.ffi.string(info.dli_fname))
    try:
        st = os.stat(path)
    except OSError:
        return f"{version} {path}"
    return f"{version} {path} {st.st_size} {st.st_mtime_ns}"


def main() -> None:
    """Build it now and say so (`make` runs this at install)."""
    built = status()
    print("minildr: the worker's C call loop is " + ("built" if built.path else
                                                    f"not built: {built.reason}"))
