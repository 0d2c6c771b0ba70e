"""Relocation types of x86-64 (System V psABI, AMD64 supplement, table 4.10), by class.

Each supported type maps to its name and its class (classes.py), whose
value is the formula in the ABI's own notation (B the load base, S the
symbol's address, A the addend). The set is what gcc and clang emit into
ordinary C and C++ shared libraries, with and without -z now, -fno-plt,
-fstack-protector-strong, -D_FORTIFY_SOURCE=2 and -z pack-relative-relocs
(tests/native/test_native_loader.py compiles such libraries and checks
that every type they contain is listed here), and what the libraries a
Debian system ships contain (benchmarks/survey_native.py). DT_RELR,
packed RELATIVE relocations, is decoded in parse.decode_relr.
"""
from __future__ import annotations

from .classes import Rel
from .libc import FUNCTION, ffi

MACHINE = "x86_64"

# type: (name, class)
SUPPORTED = {
    0: ("R_X86_64_NONE", Rel.NONE),
    1: ("R_X86_64_64", Rel.SYMBOLIC),
    6: ("R_X86_64_GLOB_DAT", Rel.SYMBOLIC),     # a GOT entry (the ABI says S; A is 0)
    7: ("R_X86_64_JUMP_SLOT", Rel.SYMBOLIC),    # a PLT's GOT entry, bound eagerly
    8: ("R_X86_64_RELATIVE", Rel.RELATIVE),
    37: ("R_X86_64_IRELATIVE", Rel.IRELATIVE),  # call the resolver at B + A
    18: ("R_X86_64_TPOFF64", Rel.TPOFF),        # initial-exec TLS: S + A - TP (see tls.py)
    16: ("R_X86_64_DTPMOD64", Rel.DTPMOD),      # general/local-dynamic TLS: the module id
    17: ("R_X86_64_DTPOFF64", Rel.DTPOFF),      # ... and the offset in its block
    36: ("R_X86_64_TLSDESC", Rel.TLSDESC),      # a TLS descriptor: {function, argument}
}

RELATIVE = 8                # R_X86_64_RELATIVE: what DT_RELR's packed entries are

# Types a loader must know to refuse: the feature each belongs to.
REFUSED = {
    2: ("R_X86_64_PC32", "a text relocation (code built without -fPIC)"),
    5: ("R_X86_64_COPY", "a COPY relocation (only executables use them)"),
    10: ("R_X86_64_32", "a text relocation (code built without -fPIC)"),
    11: ("R_X86_64_32S", "a text relocation (code built without -fPIC)"),
}


def call_resolver(address: int) -> int:
    """Run an IFUNC resolver: glibc's x86-64 resolvers take no arguments (they read the
    CPU features glibc recorded at start-up) and return the implementation to use."""
    return ffi.cast(FUNCTION, address)()
