"""The few Linux system calls the worker needs that Python's os module does not offer.

prctl(2) (subreaper, parent-death signal, no_new_privs, seccomp), the three
Landlock calls and capset(2), called through libc with ctypes: a failure is
an OSError with the kernel's errno, like os's own functions. Numbers are
x86_64's (arch/x86/entry/syscalls/syscall_64.tbl) and aarch64's
(include/uapi/asm-generic/unistd.h); elsewhere SYSCALLS is empty and the
callers say the sandbox is unavailable.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Any, Optional

from ..host import MACHINE_NAME

# prctl(2) options (include/uapi/linux/prctl.h)
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2
SI_USER = 0     # a siginfo's si_code for kill() (include/uapi/asm-generic/siginfo.h)

_NUMBERS = {   # the system calls made here, by machine
    "x86_64": {"landlock_create_ruleset": 444, "landlock_add_rule": 445,
               "landlock_restrict_self": 446, "capset": 126},
    "aarch64": {"landlock_create_ruleset": 444, "landlock_add_rule": 445,
                "landlock_restrict_self": 446, "capset": 91},
}
MACHINE = MACHINE_NAME.lower().replace("arm64", "aarch64").replace("amd64", "x86_64")
SYSCALLS = _NUMBERS.get(MACHINE, {}) if sys.platform.startswith("linux") else {}

_libc: Optional[Any] = None


def libc() -> Any:
    """libc through ctypes, errno kept (loaded on first use: Linux only)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _checked(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def prctl(option: int, arg2: Any = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    c = libc()
    c.prctl.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]
    return _checked(c.prctl(option, arg2, arg3, arg4, arg5))


def syscall(name: str, *args: Any) -> int:
    """The system call `name` with ctypes-typed arguments; OSError on failure."""
    if name not in SYSCALLS:
        raise OSError(38, f"{name} is not known to minildr on {sys.platform} {MACHINE}")
    c = libc()
    c.syscall.restype = ctypes.c_long
    return _checked(c.syscall(ctypes.c_long(SYSCALLS[name]), *args))


# unshare(2) flags (include/uapi/linux/sched.h)
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000


def unshare(flags: int) -> None:
    """unshare(2) through libc (os.unshare is Python 3.12's); OSError with the errno."""
    c = libc()
    c.unshare.argtypes = [ctypes.c_int]
    _checked(c.unshare(flags))


# Mount namespaces (mount_namespaces(7)) and mount(2) flags (include/uapi/linux/mount.h)
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 0x40000


def mount(source: Optional[str], target: str, fstype: Optional[str], flags: int) -> None:
    """mount(2) through libc, no data; OSError with the errno."""
    c = libc()
    c.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
    _checked(c.mount(source and source.encode(), target.encode(),
                     fstype and fstype.encode(), flags, None))
