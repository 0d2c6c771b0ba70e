"""Differential fuzzing against glibc: every file glibc's loader refuses, the native loader refuses.

A plugin's bytes are mutated where a loader's structural rules live (the
program headers above all, then the ELF identification and header), each
mutant written to a folder; one child process asks glibc (dlopen) for its
verdict on each, another asks minildr.native (each file in its own forked
process, so a crash costs one verdict, not the run). The reference is
glibc: a file it refuses must be refused by the native loader too, with a
PluginError, and the native loader must never crash, hang or raise
anything else where glibc does not crash itself (a mutant whose code
bytes are garbage crashes both: no loader can check what code does).
(It may refuse more: out of scope is not a crash.)
"""
from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from helpers import build_example, fuzz_examples
from native_util import native_host

HERE = Path(__file__).resolve().parent
COUNT = fuzz_examples(80)
PHDR = struct.Struct("<IIQQQQQQ")
FIELDS = ["p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_align"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to three edits, most to the program headers."""
    buf = bytearray(data)
    phoff, = struct.unpack_from("<Q", buf, 32)
    phnum, = struct.unpack_from("<H", buf, 56)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        i, j = rng.randrange(phnum), rng.randrange(phnum)
        at = phoff + PHDR.size * i
        if roll < 0.15:                                    # swap two program headers
            a, b = bytes(buf[at:at + 56]), bytes(buf[phoff + 56 * j:phoff + 56 * j + 56])
            buf[at:at + 56], buf[phoff + 56 * j:phoff + 56 * j + 56] = b, a
        elif roll < 0.8:                                   # one field of one program header
            row = list(PHDR.unpack_from(buf, at))
            k = rng.randrange(len(FIELDS))
            old = row[k]
            row[k] = rng.choice([0, 1, old + 1, old - 1, old + 0x1000, old - 0x1000, old * 2,
                                 old + rng.randrange(1 << 16), rng.getrandbits(32),
                                 rng.getrandbits(64), 1 << 63, 0x200000])
            row[k] %= 1 << (32 if k < 2 else 64)
            PHDR.pack_into(buf, at, *row)
        elif roll < 0.9:                                   # e_ident's version, OS ABI, padding
            buf[rng.randrange(6, 16)] = rng.choice([0, 1, 3, 9, 255, rng.randrange(256)])
        else:                                              # e_phentsize, e_phnum, e_type, e_version
            offset, fmt = rng.choice([(54, "<H"), (56, "<H"), (16, "<H"), (20, "<I")])
            old, = struct.unpack_from(fmt, buf, offset)
            struct.pack_into(fmt, buf, offset, rng.choice([0, old + 1, max(old - 1, 0), 2, 3]))
    return bytes(buf)


def verdicts(mode: str, folder: Path) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "native_verdict_child.py"), mode, str(folder)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@native_host
@pytest.mark.fuzz
@pytest.mark.differential
def test_native_loader_refuses_what_glibc_refuses(tmp_path):
    base = build_example("greet", tmp_path / "base", once=True)
    data, rng = base.read_bytes(), random.Random(int(os.environ.get("MINILDR_FUZZ_SEED", "24")))
    mutants = tmp_path / "mutants"
    mutants.mkdir()
    (mutants / "0000-original.so").write_bytes(data)
    for n in range(1, COUNT + 1):
        (mutants / f"{n:04d}.so").write_bytes(mutate(data, rng))
    glibc, native = verdicts("glibc", mutants), verdicts("native", mutants)
    assert glibc["0000-original.so"] == native["0000-original.so"] == "loaded"
    # A mutant whose code is garbage crashes glibc as well (it maps the same bytes and runs
    # them): only where glibc loads or refuses must the native loader not crash.
    bad = {name: (glibc[name], v) for name, v in native.items()
           if v.startswith("error") or (not v.startswith(("loaded", "refused"))
                                        and glibc[name].startswith(("loaded", "refused")))}
    assert not bad, f"the native loader crashed or failed on {bad}"
    missed = {name: (glibc[name], native[name]) for name in glibc
              if glibc[name].startswith("refused") and not native[name].startswith("refused")}
    assert not missed, f"glibc refuses these, the native loader does not: {missed}"
    sides = Counter((glibc[n].split(":")[0], native[n].split(":")[0]) for n in glibc)
    assert sides["refused", "refused"] and sides["loaded", "loaded"], sides   # both exercised


def segment_of(data: bytes, vaddr: int) -> int:
    """The index of the program header of the PT_LOAD segment that holds `vaddr`."""
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    for i in range(phnum):
        row = PHDR.unpack_from(data, phoff + PHDR.size * i)
        if row[0] == 1 and row[3] <= vaddr < row[3] + row[6]:
            return i
    raise AssertionError(f"no PT_LOAD holds {vaddr:#x}")


def edit_header(data: bytes, index: int, **fields: int) -> bytes:
    phoff, = struct.unpack_from("<Q", data, 32)
    buf, at = bytearray(data), phoff + PHDR.size * index
    row = dict(zip(FIELDS, PHDR.unpack_from(buf, at)))
    row.update(fields)
    PHDR.pack_into(buf, at, *row.values())
    return bytes(buf)


def unreadable_eh_frame(data: bytes) -> bytes:
    """Found at the long budget (seed 24, mutants 0382, 0464, 0623, ...: PF_R dropped from the
    segment holding .eh_frame_hdr and .eh_frame). glibc maps it PROT_NONE and loads the file
    (nothing reads .eh_frame while loading); the native loader registered .eh_frame with the
    unwinder, which reads it: SIGSEGV."""
    eh = next(row for row in (PHDR.unpack_from(data, 64 + PHDR.size * i) for i in range(9))
              if row[0] == 0x6474E550)                                  # PT_GNU_EH_FRAME
    return edit_header(data, segment_of(data, eh[3]), p_flags=0)


def read_only_bss(data: bytes) -> bytes:
    """A read-only segment with zero-filled memory past its file bytes (p_memsz > p_filesz,
    no PF_W): glibc clears the rest of the page through a moment of PROT_WRITE and loads it;
    the native loader refused it."""
    eh = next(row for row in (PHDR.unpack_from(data, 64 + PHDR.size * i) for i in range(9))
              if row[0] == 0x6474E550)
    index = segment_of(data, eh[3])
    row = PHDR.unpack_from(data, 64 + PHDR.size * index)
    return edit_header(data, index, p_memsz=row[5] + 0x40)


@native_host
def test_crash_classes_found_by_fuzzing_load_as_glibc_loads_them(tmp_path):
    """Each class of mutant the long fuzz found the native loader crashing on (or refusing where
    glibc loads), made once from a fresh build: glibc loads it, so the native loader does too."""
    data = build_example("greet", tmp_path / "base", once=True).read_bytes()
    assert struct.unpack_from("<H", data, 56)[0] == 9       # the layout the recipes read
    cases = tmp_path / "cases"
    cases.mkdir()
    for recipe in (unreadable_eh_frame, read_only_bss):
        (cases / f"{recipe.__name__}.so").write_bytes(recipe(data))
    glibc, native = verdicts("glibc", cases), verdicts("native", cases)
    assert glibc == {f"{r.__name__}.so": "loaded" for r in (unreadable_eh_frame, read_only_bss)}
    assert native == glibc
