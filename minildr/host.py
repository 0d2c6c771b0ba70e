"""Facts about the machine we run on: OS, architecture, pointer size, suffix.

A plugin is only usable on the platform it was built for, so these facts are
both stamped into every manifest (by `build`) and compared at `open`.
"""
from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass

# The machine's name, as platform.machine() gives it: on POSIX that is uname(2)'s
# machine field, read here without importing platform (which compiles a dozen
# regular expressions: ~2 ms of every isolated worker's start).
if hasattr(os, "uname"):
    MACHINE_NAME = os.uname().machine
else:                                   # pragma: no cover - Windows
    import platform
    MACHINE_NAME = platform.machine()

# platform.machine() spells architectures differently on each OS.
_ARCH_ALIASES = {
    "amd64": "x86_64", "x64": "x86_64", "x86_64": "x86_64",
    "arm64": "aarch64", "aarch64": "aarch64",
    "i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "x86": "i386",
    "armv7l": "arm", "armv6l": "arm", "arm": "arm",
    "riscv64": "riscv64", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
}


def normalize_os(name: str) -> str:
    """'linux', 'darwin' or 'windows' from a sys.platform-like name."""
    if name.startswith("linux"):
        return "linux"
    if name == "darwin":
        return "darwin"
    if name in ("win32", "cygwin", "windows"):
        return "windows"
    return name


def normalize_arch(machine: str) -> str:
    return _ARCH_ALIASES.get(machine.lower(), machine.lower())


@dataclass(frozen=True)
class Platform:
    """Where a plugin can run: operating system, CPU architecture, pointer size."""

    os: str
    arch: str
    bits: int

    def __str__(self) -> str:
        return f"{self.os}-{self.arch} ({self.bits}-bit)"

    def as_dict(self) -> dict:
        return {"os": self.os, "arch": self.arch, "bits": self.bits}


HOST = Platform(
    os=normalize_os(sys.platform),
    arch=normalize_arch(MACHINE_NAME),
    bits=struct.calcsize("P") * 8,
)

SUFFIXES = {"linux": ".so", "darwin": ".dylib", "windows": ".dll"}
BINARY_FORMATS = {"linux": "ELF", "darwin": "Mach-O", "windows": "PE"}

SUFFIX: str = SUFFIXES.get(HOST.os, ".so")
BINARY_FORMAT: str = BINARY_FORMATS.get(HOST.os, "ELF")
