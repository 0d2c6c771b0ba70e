"""What the native loader refuses: each out-of-scope feature, made for real, named in the error.

Every case is a real file: a plugin compiled with the feature (TLS, a PIE
executable, libm's TLS errno), or the ctor plugin patched in place (same
length, so its manifest and every other offset stay valid) to carry one
feature. Each is refused before any of its code runs (the constructor's
marker file is never created) and leaves nothing mapped.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess

import pytest

import minildr
import minildr.native
from minildr.formats import elf
from minildr.native.parse import parse

from helpers import write_plugin
from native_util import (dynamic_entries, mappings_of, native_host, patched, phdr_offset,
                         rela_entries, set_dynamic)

pytestmark = native_host

CTOR_C = """
#include <fcntl.h>
#include <unistd.h>
static const char *names[] = {"a", "b"};
__attribute__((constructor)) static void start(void)
{ int fd = creat(MARKER, 0644); if (fd >= 0) close(fd); }
const char *pick(int i) { return names[i & 1]; }
"""

# Offsets in Elf64_Ehdr and Elf64_Phdr.
EI_CLASS, EI_DATA, E_TYPE, E_MACHINE = 4, 5, 16, 18
P_FLAGS, P_ALIGN = 4, 48


def relocation_type(data: bytes, rtype: int, which=lambda rows: rows[0]) -> bytes:
    at, r_offset, r_info, addend = which(rela_entries(data))
    return patched(data, at + 8, struct.pack("<Q", (r_info & ~0xFFFFFFFF) | rtype))


def relocation_into_code(data: bytes) -> bytes:
    f = elf.ElfFile(data, "<test>")
    code = next(ph for ph in f.segments(elf.PT_LOAD) if ph.p_flags & elf.PF_X)
    at = rela_entries(data)[0][0]
    return patched(data, at, struct.pack("<Q", code.p_vaddr + 16))


def first_load(field: int, value: bytes):
    return lambda d: patched(d, phdr_offset(d, elf.PT_LOAD) + field, value)


def no_hash_tables(data: bytes) -> bytes:
    for tag in (elf.DT_GNU_HASH, elf.DT_HASH):
        if any(t == tag for _, t, _ in dynamic_entries(data)):
            data = set_dynamic(data, elf.DT_DEBUG, 0, replace=tag)
    return data


# name: (how to damage the plugin, error, words the message must contain)
PATCHES = {
    "32-bit": (lambda d: patched(d, EI_CLASS, b"\x01"), minildr.NotAPlugin, "32-bit"),
    "big-endian": (lambda d: patched(d, EI_DATA, b"\x02"), (minildr.NotAPlugin, minildr.UnsupportedELF), ""),
    "executable": (lambda d: patched(d, E_TYPE, struct.pack("<H", elf.ET_EXEC)),
                   minildr.UnsupportedELF, "executable"),
    "other-arch": (lambda d: patched(d, E_MACHINE, struct.pack("<H", elf.EM_RISCV)),
                   minildr.UnsupportedELF, "another architecture (riscv64)"),
    "small-align": (first_load(P_ALIGN, struct.pack("<Q", 0x100)), minildr.UnsupportedELF,
                    "below the page size"),
    "w-and-x": (first_load(P_FLAGS, struct.pack("<I", elf.PF_R | elf.PF_W | elf.PF_X)),
                minildr.UnsupportedELF, "both writable and executable"),
    "tls-segment": (lambda d: patched(d, phdr_offset(d, elf.PT_GNU_STACK),
                                      struct.pack("<IIQQQQQQ", elf.PT_TLS, 4, 0, 0, 0, 16, 8, 8)),
                    minildr.NotAPlugin, "thread-local storage image"),
    "dt-rel": (lambda d: set_dynamic(d, elf.DT_REL, 0), minildr.UnsupportedELF, "DT_REL"),
    "dt-textrel": (lambda d: set_dynamic(d, elf.DT_TEXTREL, 0), minildr.UnsupportedELF,
                   "text relocations"),
    "text-relocation": (relocation_into_code, minildr.UnsupportedELF, "text relocation"),
    "copy-relocation": (lambda d: relocation_type(d, 5), minildr.UnsupportedELF, "R_X86_64_COPY"),
    "tls-relocation": (lambda d: relocation_type(d, 36), minildr.NotAPlugin,   # TLSDESC
                       "TLS relocations of its own thread-local storage, but no PT_TLS"),
    "unknown-relocation": (lambda d: relocation_type(d, 200), minildr.UnsupportedELF,
                           "an unknown relocation (type 200)"),
    "no-hash-table": (no_hash_tables, minildr.UnsupportedELF, "without a symbol hash table"),
    "symbol-out-of-range": (lambda d: patched(d, rela_entries(d)[-1][0] + 12, b"\xff\xff\x00\x00"),
                            minildr.NotAPlugin, "names symbol"),
    "relocation-outside": (lambda d: patched(d, rela_entries(d)[0][0], struct.pack("<Q", 1 << 40)),
                           minildr.NotAPlugin, "outside the library"),
}


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    """Where the constructor's marker is: one folder per module run, so that the plugin
    (whose source names its marker) is built once, each test patching its own copy."""
    return tmp_path_factory.mktemp("markers")


@pytest.fixture
def ctor(tmp_path, markers):
    marker = markers / "constructor-ran"
    marker.unlink(missing_ok=True)                  # an earlier test's plugin made it
    source = f"#define MARKER {json.dumps(str(marker))}\n" + CTOR_C
    return write_plugin(tmp_path, "ctor", source, "const char *pick(int i);\n", once=True), marker


@pytest.mark.skipif(minildr.HOST.arch != "x86_64", reason="patches x86-64 relocation numbers")
@pytest.mark.parametrize("case", list(PATCHES))
def test_patched_plugin_is_refused_before_any_code_runs(case, ctor):
    path, marker = ctor
    change, error, words = PATCHES[case]
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(error) as err:
        minildr.native.load(path)
    assert words in str(err.value) and os.fspath(path) in str(err.value)
    if isinstance(err.value, minildr.UnsupportedELF) and case != "other-arch":
        assert "loader='system'" in str(err.value)          # says what to do instead
    with pytest.raises(minildr.PluginError):
        minildr.open(path, loader="native")                 # through open: its checks, or ours
    assert not marker.exists()
    assert not mappings_of("minildr:ctor.so")


def test_control_the_unpatched_plugin_loads_and_runs_its_constructor(ctor):
    path, marker = ctor
    with minildr.open(path, loader="native") as plugin:
        assert marker.exists()
        assert minildr.ffi.string(plugin.lookup("pick", "const char *(int)")(3)) == b"b"


def test_thread_local_plugin_loads_through_both(tmp_path):
    path = write_plugin(tmp_path, "tls", "__thread int per_thread = 1;\n"
                        "int get(void) { return per_thread; }\n", "int get(void);\n")
    for loader in ("native", "system"):                      # tests/native/test_native_tls.py
        with minildr.open(path, loader=loader) as plugin:
            assert plugin.lookup("get", "int (void)")() == 1


def test_pie_executable_is_refused(tmp_path):
    source = tmp_path / "main.c"
    source.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "main"
    subprocess.run(["cc", "-fPIE", "-pie", "-o", str(exe), str(source)], check=True)
    with pytest.raises(minildr.UnsupportedELF, match="DF_1_PIE"):
        minildr.native.load(exe)


def test_a_library_with_a_program_interpreter_loads(tmp_path):
    """PT_INTERP in a shared library (as libc.so.6 has, to run as a program): glibc's dlopen
    loads it, so does the native loader; a PIE is refused by its DF_1_PIE flag instead."""
    source = tmp_path / "runnable.c"
    source.write_text('const char interp[] __attribute__((section(".interp"))) = '
                      '"/lib64/ld-linux-x86-64.so.2";\nint answer(void) { return 42; }\n')
    lib = tmp_path / "librunnable.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    assert any(True for _ in elf.ElfFile(lib.read_bytes(), str(lib)).segments(elf.PT.INTERP))
    with minildr.native.load(lib) as native:
        assert native.lookup("answer", "int (void)")() == 42


def test_refusals_are_found_without_mapping(tmp_path, ctor):
    """parse() alone finds them: the loader refuses from the plan, before mmap."""
    path, _ = ctor
    data = PATCHES["copy-relocation"][0](path.read_bytes())
    with pytest.raises(minildr.UnsupportedELF):
        parse(data, str(path))


@pytest.mark.parametrize("content", [b"", b"\x7fELF", b"not an elf at all" * 10])
def test_not_elf_at_all(tmp_path, content):
    path = tmp_path / "junk.so"
    path.write_bytes(content)
    with pytest.raises(minildr.NotAPlugin):
        minildr.native.load(path)


def test_missing_file():
    with pytest.raises(minildr.LoadError, match="cannot be opened"):
        minildr.native.load("no/such/library.so")
