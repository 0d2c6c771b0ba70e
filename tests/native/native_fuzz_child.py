"""The fuzzing itself, run by test_native_fuzz.py in a child process.

    python native_fuzz_child.py BASE.so EXAMPLES SEED LAST_INPUT_FILE

Hypothesis mutates the bytes of a real plugin where the loader looks (ELF
header, program headers, dynamic section, symbols, strings, hash and
version tables, relocations) and feeds each result to the native loader's
parse step; a file it accepts is then mapped and relocated, without
running any of its code (no IFUNC resolvers, no initialisers; DT_NEEDED is
not opened), and unmapped. Anything but a PluginError is a failure; a
crash kills only this process, and the input being tried is in
LAST_INPUT_FILE for the parent to report.
"""
from __future__ import annotations

import os
import struct
import sys

from hypothesis import HealthCheck, given, seed, settings, strategies as st

from minildr.formats import elf
from minildr.errors import PluginError
from minildr.native import lookup, mapping, relocate, resolve
from minildr.native.classes import Rel
from minildr.native.parse import parse
from minildr.native.trace import Trace

INTERESTING = [0, 1, 2, 7, 8, 16, 24, 0x7F, 0x80, 0xFF, 0x1000, 0xFFFF, 0x7FFFFFFF,
               0xFFFFFFFF, 0x100000000, 2**63 - 1, 2**64 - 1]


def regions(data: bytes):
    """(start, length) of every part of the file the loader reads."""
    plan = parse(data, "<base>")
    f = plan.elf
    out = [(0, 64), (f.header.e_phoff, f.header.e_phnum * f.header.e_phentsize)]
    dyn = next(f.segments(elf.PT_DYNAMIC))
    out.append((dyn.p_offset, dyn.p_filesz))
    tags = {d.d_tag: d.d_val for d in f.dynamic()}
    for addr, size in ((elf.DT_STRTAB, tags[elf.DT_STRSZ]), (elf.DT_SYMTAB, 24 * len(plan.symbols)),
                       (elf.DT_RELA, tags.get(elf.DT_RELASZ, 0)), (elf.DT_JMPREL, tags.get(elf.DT_PLTRELSZ, 0)),
                       (elf.DT_RELR, tags.get(elf.DT_RELRSZ, 0)), (elf.DT_GNU_HASH, 64),
                       (elf.DT_HASH, 64), (elf.DT_VERSYM, 2 * len(plan.symbols)),
                       (elf.DT_VERNEED, 64), (elf.DT_INIT_ARRAY, 16), (elf.DT_FINI_ARRAY, 16)):
        if addr in tags and size:
            out.append((f.file_offset(tags[addr], size, "region"), size))
    return out


def mutation(regions_):
    where = st.tuples(st.sampled_from(regions_), st.floats(0, 1, exclude_max=True))
    byte = st.tuples(where, st.just("B"), st.integers(0, 255))
    word = st.tuples(where, st.sampled_from(["<I", "<Q", "<H"]),
                     st.sampled_from(INTERESTING) | st.integers(0, 2**32))
    return st.lists(byte | word, min_size=1, max_size=6)


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for ((start, length), frac), fmt, value in edits:
        at = start + int(frac * length)
        size = struct.calcsize(fmt)
        if at + size <= len(buf):
            struct.pack_into(fmt, buf, at, value % (1 << (8 * size)))
    return bytes(buf)


def try_load(data: bytes) -> None:
    """Parse; if accepted, map and relocate without running its code, then unmap."""
    plan = parse(data, "<fuzzed>")
    for name in plan.names[:8]:
        lookup.find(plan, name)
    plan.relocations = [r for r in plan.relocations
                        if plan.rel_class(r) is not Rel.IRELATIVE
                        and elf.ELF64_ST_TYPE(plan.symbols[r.symbol].st_info) != elf.STT.GNU_IFUNC]
    bound = resolve.bind_symbols(plan, [], Trace())
    fd = os.memfd_create("fuzzed", os.MFD_CLOEXEC)
    base = None
    try:
        os.write(fd, data)
        base = mapping.reserve(plan, Trace())
        mapping.map_segments(plan, base, fd, Trace())
        relocate.relocate(plan, base, bound, Trace())
        relocate.protect_relro(plan, base, Trace())
    finally:
        if base is not None:
            mapping.unmap(base, plan.span)
        os.close(fd)


def main() -> None:
    base_path, examples, seed_value, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    data = open(base_path, "rb").read()
    try_load(data)                                   # the control: the original loads
    counts = {"accepted": 0, "refused": 0}
    last_fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    @seed(seed_value)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(mutation(regions(data)))
    def fuzz(edits):
        mutated = mutate(data, edits)
        os.pwrite(last_fd, mutated, 0)
        os.ftruncate(last_fd, len(mutated))
        try:
            try_load(mutated)
            counts["accepted"] += 1
        except PluginError:
            counts["refused"] += 1

    fuzz()
    print(f"FUZZED {counts['accepted'] + counts['refused']} accepted={counts['accepted']} "
          f"refused={counts['refused']}", flush=True)


if __name__ == "__main__":
    main()
