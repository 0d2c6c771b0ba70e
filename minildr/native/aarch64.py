"""Relocation types of AArch64 (ELF for the Arm 64-bit Architecture, "AAELF64", 5.7.12), by class.

The same notation as x86_64.py. The set is what gcc emits for ordinary C
shared libraries on AArch64 (tests/native/test_native_loader.py reads
cross-compiled libraries in tests/data/aarch64/ and checks every type they
contain against this table), which is also the dynamic set the ABI lists
apart from TLS and COPY. AArch64 code cannot run on an x86-64 machine, so
on one this table is checked by decoding, not by loading.
"""
from __future__ import annotations

from .classes import Rel
from .libc import FUNCTION_HWCAP, ffi, libc

MACHINE = "aarch64"

SUPPORTED = {
    0: ("R_AARCH64_NONE", Rel.NONE),
    256: ("R_AARCH64_NONE", Rel.NONE),          # the value the ABI reserves; 0 is accepted too
    257: ("R_AARCH64_ABS64", Rel.SYMBOLIC),
    1025: ("R_AARCH64_GLOB_DAT", Rel.SYMBOLIC),
    1026: ("R_AARCH64_JUMP_SLOT", Rel.SYMBOLIC),  # bound eagerly, like the PLT under -z now
    1027: ("R_AARCH64_RELATIVE", Rel.RELATIVE),
    1032: ("R_AARCH64_IRELATIVE", Rel.IRELATIVE),
}

RELATIVE = 1027             # R_AARCH64_RELATIVE: what DT_RELR's packed entries are

REFUSED = {
    1024: ("R_AARCH64_COPY", "a COPY relocation (only executables use them)"),
    1028: ("R_AARCH64_TLS_DTPMOD", "thread-local storage"),
    1029: ("R_AARCH64_TLS_DTPREL", "thread-local storage"),
    1030: ("R_AARCH64_TLS_TPREL", "thread-local storage"),
    1031: ("R_AARCH64_TLSDESC", "thread-local storage"),
}

AT_HWCAP, AT_HWCAP2 = 16, 26
_IFUNC_ARG_HWCAP = 1 << 62


def call_resolver(address: int) -> int:
    """Run an IFUNC resolver as glibc does on AArch64: with the hardware capabilities
    (AT_HWCAP | _IFUNC_ARG_HWCAP) and a pointer to {size, AT_HWCAP, AT_HWCAP2}."""
    arg = ffi.new("uint64_t[3]", [24, libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)])
    return ffi.cast(FUNCTION_HWCAP, address)(arg[1] | _IFUNC_ARG_HWCAP, arg)
