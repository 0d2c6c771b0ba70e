"""Relocation types of AArch64 (ELF for the Arm 64-bit Architecture, "AAELF64", 5.7.12).

The same notation as x86_64.py: B the load base, S the symbol's address,
A the addend. The set is what gcc emits for ordinary C shared libraries on
AArch64 (tests/native/test_native_loader.py reads cross-compiled libraries
in tests/data/aarch64/ and checks every type they contain against this
table), which is also the dynamic set the ABI lists apart from TLS and COPY.
AArch64 code cannot run on an x86-64 machine, so on one this table is
checked by decoding, not by loading.
"""
from __future__ import annotations

MACHINE = "aarch64"

SUPPORTED = {
    0: ("R_AARCH64_NONE", "none"),
    256: ("R_AARCH64_NONE", "none"),         # the value the ABI reserves; 0 is accepted too
    257: ("R_AARCH64_ABS64", "S + A"),
    1025: ("R_AARCH64_GLOB_DAT", "S + A"),
    1026: ("R_AARCH64_JUMP_SLOT", "S + A"),  # bound eagerly, like the PLT under -z now
    1027: ("R_AARCH64_RELATIVE", "B + A"),
    1032: ("R_AARCH64_IRELATIVE", "ifunc(B + A)"),
}

RELATIVE = 1027             # R_AARCH64_RELATIVE: what DT_RELR's packed entries are

REFUSED = {
    1024: ("R_AARCH64_COPY", "a COPY relocation (only executables use them)"),
    1028: ("R_AARCH64_TLS_DTPMOD", "thread-local storage"),
    1029: ("R_AARCH64_TLS_DTPREL", "thread-local storage"),
    1030: ("R_AARCH64_TLS_TPREL", "thread-local storage"),
    1031: ("R_AARCH64_TLSDESC", "thread-local storage"),
}

# glibc passes AArch64 resolvers the hardware capabilities (AT_HWCAP) and a
# pointer to a struct with both capability words; see relocate.call_resolver().
IFUNC_RESOLVER = "void *(*)(uint64_t, void *)"
