"""Relocation types of x86-64 (System V psABI, AMD64 supplement, table 4.10).

Each supported type maps to how its value is computed, in the ABI's own
notation: B the load base, S the symbol's address, A the addend, and
`*(B + r_offset)` the 8-byte word being written. The set is what gcc and
clang emit into ordinary C shared libraries, with and without -z now,
-fno-plt, -fstack-protector-strong, -D_FORTIFY_SOURCE=2 and
-z pack-relative-relocs (tests/native/test_native_loader.py compiles such
libraries and checks that every type they contain is listed here), and what
the libraries a Debian system ships contain (a survey of /usr/lib found
RELATIVE, GLOB_DAT, JUMP_SLOT, 64 and IRELATIVE, plus the TLS types refused
below). DT_RELR, packed RELATIVE relocations, is decoded in parse.decode_relr.
"""
from __future__ import annotations

MACHINE = "x86_64"

# type: (name, formula)
SUPPORTED = {
    0: ("R_X86_64_NONE", "none"),
    1: ("R_X86_64_64", "S + A"),
    6: ("R_X86_64_GLOB_DAT", "S + A"),      # a GOT entry (the ABI says S; A is 0)
    7: ("R_X86_64_JUMP_SLOT", "S + A"),     # a PLT's GOT entry, bound eagerly
    8: ("R_X86_64_RELATIVE", "B + A"),
    37: ("R_X86_64_IRELATIVE", "ifunc(B + A)"),   # call the resolver at B + A
}

RELATIVE = 8                # R_X86_64_RELATIVE: what DT_RELR's packed entries are

# Types a loader must know to refuse: the feature each belongs to.
REFUSED = {
    2: ("R_X86_64_PC32", "a text relocation (code built without -fPIC)"),
    5: ("R_X86_64_COPY", "a COPY relocation (only executables use them)"),
    10: ("R_X86_64_32", "a text relocation (code built without -fPIC)"),
    11: ("R_X86_64_32S", "a text relocation (code built without -fPIC)"),
    16: ("R_X86_64_DTPMOD64", "thread-local storage"),
    17: ("R_X86_64_DTPOFF64", "thread-local storage"),
    18: ("R_X86_64_TPOFF64", "thread-local storage"),
    36: ("R_X86_64_TLSDESC", "thread-local storage"),
}

# How an IFUNC resolver is called here: glibc's x86-64 resolvers take no
# arguments (they read the CPU features glibc recorded at start-up).
IFUNC_RESOLVER = "void *(*)(void)"
