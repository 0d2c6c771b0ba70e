"""The one-pass survey of an ELF file answers as the usual readers do, or declines.

formats/survey.py reads, in one walk, what a first open asks of a plugin
(its kind and machine, the manifest note, the Go marks, DT_NEEDED and the
search paths, the undefined symbols with their versions, the versions needed
per library, SONAME, DT_FLAGS_1). It must give exactly the answers of
`ElfFile`/`DynamicSection` and the functions built on them, or None (then
those readers run and say what is wrong). Checked on real files and on
damaged copies of them.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import _cffi_backend
import pytest

from minildr import goruntime, linkage, manifest
from minildr.errors import NotAPlugin
from minildr.formats import elf
from minildr.formats.survey import survey

from helpers import fuzz_examples, write_plugin
from platforms import requires_elf

pytestmark = requires_elf

VERSIONED = ('#include <stdio.h>\n#include <math.h>\n'
             'int shout(const char *s) { return puts(s); }\n'
             'double root(double x) { return sqrt(x); }\n')
VERSIONED_H = "int shout(const char *s);\ndouble root(double x);\n"


def usual(data: bytes) -> tuple:
    """The answers of the readers a first open used before the survey (NotAPlugin if any fails)."""
    f = elf.ElfFile(data, "plugin.so")
    info, payload = manifest.examine_elf(f)
    go = goruntime.is_go_elf(f)
    dynamic = elf.DynamicSection(f)
    return info, payload, go, linkage.needs_in(dynamic), dynamic.get(elf.DT_FLAGS_1)


def surveyed(data: bytes):
    found = survey(data)
    if found is None:
        return None
    return (manifest.elf_info(found.e_type, found.e_machine), found.manifest, found.go,
            linkage.Needs(found.needed, found.rpath, found.runpath, found.symbols,
                          found.versions, found.soname), found.flags_1)


def mapped(pattern: str) -> Path:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if re.search(pattern, path):
                return Path(path)
    pytest.skip(f"nothing mapped matches {pattern}")


@pytest.fixture(scope="module")
def files(built, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("survey")
    return {"greet": built["greet"], "echo": built["echo"],
            "versioned": write_plugin(tmp, "versioned", VERSIONED, VERSIONED_H,
                                      cflags=["-lm", "-Wl,-rpath,$ORIGIN/lib",
                                              "-Wl,--enable-new-dtags"]),
            "libc": mapped(r"/libc(\.so|-[0-9.]+\.so)"),
            "cffi_backend": Path(_cffi_backend.__file__)}


@pytest.mark.parametrize("name", ["greet", "echo", "versioned", "libc", "cffi_backend"])
def test_the_survey_of_a_sound_file_is_the_usual_readers_answer(files, name):
    data = files[name].read_bytes()
    assert surveyed(data) == usual(data)


def test_the_survey_reads_what_the_checks_need(files):
    """Not vacuous: the versioned plugin needs libraries, symbols with versions, a RUNPATH."""
    needs = surveyed(files["versioned"].read_bytes())[3]
    assert "libc.so.6" in needs.needed and needs.runpath == ["$ORIGIN/lib"]
    assert ("puts", "GLIBC_2.2.5") in needs.symbols and "GLIBC_2.2.5" in needs.versions["libc.so.6"]


def mutants(data: bytes, count: int, seed: int):
    """Copies with a few bytes changed where the headers and tables are, or cut short."""
    rng = random.Random(seed)
    f = elf.ElfFile(data, "plugin.so")
    dynamic = next(f.segments(elf.PT_DYNAMIC))
    spans = [(0, min(len(data), 0x800)), (dynamic.p_offset, dynamic.p_offset + dynamic.p_filesz)]
    for i in range(count):
        copy = bytearray(data)
        if i % 8 == 7:
            yield bytes(copy[:rng.randrange(len(copy))])
            continue
        for _ in range(rng.randint(1, 3)):
            start, end = rng.choice(spans)
            at = rng.randrange(start, end)
            copy[at] = rng.choice((0, 0xFF, copy[at] ^ (1 << rng.randrange(8)), rng.randrange(256)))
        yield bytes(copy)


@pytest.mark.fuzz
@pytest.mark.parametrize("name", ["greet", "versioned"])
def test_the_survey_of_a_damaged_file_declines_or_agrees(files, name):
    data = files[name].read_bytes()
    declined = agreed = 0
    for mutant in mutants(data, fuzz_examples(400), seed=len(name)):
        found = surveyed(mutant)
        try:
            expected = usual(mutant)
        except NotAPlugin:
            assert found is None, "the survey answered for a file the usual readers refuse"
            declined += 1
            continue
        if found is not None:
            assert found == expected
            agreed += 1
    assert declined and agreed           # both kinds of mutant were met
