"""Relocation types of AArch64 (ELF for the Arm 64-bit Architecture, "AAELF64"), by class.

The same notation as x86_64.py. The numbers and formulas are AAELF64's
table "Dynamic relocations" (section "Dynamic relocations" under
"Relocation types"; 5.7.12 in older releases, 5.7.15 in 2025Q4). The set is
what gcc emits for ordinary C shared libraries on AArch64
(tests/native/test_native_loader.py reads cross-compiled libraries in
tests/data/aarch64/ and checks every type they contain against this table),
which is the whole dynamic set the ABI lists but COPY and the pointer
authentication (AUTH) types.

Thread-local storage: 1030 is R_AARCH64_TLS_TPREL, TPREL(S+A), the offset
from the thread pointer (formerly named TLS_TPREL64). 1028 and 1029 are
R_AARCH64_TLS_IMPDEF1 and IMPDEF2 in the ABI, which leaves to each platform
whether IMPDEF1 is DTPMOD and IMPDEF2 DTPREL or the reverse; "the Linux
platform ABI has always implemented" IMPDEF1 = DTPMOD, IMPDEF2 = DTPREL
(the note and footnote under that table; glibc's elf.h: R_AARCH64_TLS_DTPMOD
1028, R_AARCH64_TLS_DTPREL 1029). 1031 is R_AARCH64_TLSDESC, TLSDESC(S+A): a
two-word descriptor {function, argument}, what gcc emits for `__thread` in
-fPIC code by default on AArch64 (-mtls-dialect=desc). tls.py computes the
values on AArch64's layout (Drepper's variant I: the blocks above the
thread pointer). On an x86-64 machine tests/native/test_native_aarch64.py
runs these libraries under qemu-aarch64 (tools/aarch64-sysroot.sh).
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
    1028: ("R_AARCH64_TLS_DTPMOD", Rel.DTPMOD),   # TLS_IMPDEF1 on Linux: LDM(S), the module
    1029: ("R_AARCH64_TLS_DTPREL", Rel.DTPOFF),   # TLS_IMPDEF2 on Linux: DTPREL(S+A)
    1030: ("R_AARCH64_TLS_TPREL", Rel.TPOFF),     # TPREL(S+A): the offset from the thread pointer
    1031: ("R_AARCH64_TLSDESC", Rel.TLSDESC),     # TLSDESC(S+A): {function, argument}
}

RELATIVE = 1027             # R_AARCH64_RELATIVE: what DT_RELR's packed entries are

REFUSED = {
    1024: ("R_AARCH64_COPY", "a COPY relocation (only executables use them)"),
}

AT_HWCAP, AT_HWCAP2 = 16, 26
_IFUNC_ARG_HWCAP = 1 << 62


def call_resolver(address: int) -> int:
    """Run an IFUNC resolver as glibc does on AArch64: with the hardware capabilities
    (AT_HWCAP | _IFUNC_ARG_HWCAP) and a pointer to {size, AT_HWCAP, AT_HWCAP2}."""
    arg = ffi.new("uint64_t[3]", [24, libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)])
    return ffi.cast(FUNCTION_HWCAP, address)(arg[1] | _IFUNC_ARG_HWCAP, arg)
