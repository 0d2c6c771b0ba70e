"""A corpus of broken plugin files, made here, each refused with its own error.

Every file is opened with `minildr.open`: each must raise its specific
`PluginError` subclass, name the file, and say what is wrong. Then the
process must still work, `discover` must survive a folder full of them, and
nothing a refused plugin contains may have run. Hypothesis finishes with
arbitrary and mutated bytes through the manifest reader.

Bad manifests are made both ways a real one goes bad: by patching the bytes
of a built plugin (same length, so every offset stays valid), and by
compiling a library that carries a hand-written manifest note
(`minildr.build.manifest_source`), which can stamp any JSON at all.
"""
from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Tuple, Type

import pytest
from hypothesis import assume, given, settings, strategies as st

import minildr
from minildr.formats import elf, macho, pe
from minildr.formats.reader import c_string
from minildr.build import find_compiler, manifest_source
from minildr.errors import (DependencyMismatch, NotAPlugin, NotARegularFile, PluginError,
                            PluginNotFound, SymbolTypeError, VersionMismatch)
from minildr.manifest import Manifest, manifest_from_bytes

from helpers import DATA, build_example, fuzz_examples, write_plugin
from platforms import requires_elf, requires_linux, requires_posix

GREET_T = "const char *(void)"
HOST = minildr.HOST
# An architecture that is not this machine's: its e_machine and minildr's name for it.
FOREIGN_MACHINE, FOREIGN_ARCH = ((elf.EM_X86_64, "x86_64") if HOST.arch == "aarch64"
                                 else (elf.EM_AARCH64, "aarch64"))
# Offsets of Elf64_Ehdr fields (see elf.Elf64_Ehdr).
E_TYPE, E_MACHINE, E_PHENTSIZE, E_SHNUM = 16, 18, 54, 60


# ---------------------------------------------------------------------------
# Making broken files
# ---------------------------------------------------------------------------
def manifest_span(data: bytes) -> Tuple[int, int]:
    """(offset, length) of the minildr manifest's JSON payload inside a plugin file."""
    note = next(n for n in elf.ElfFile(data, "<plugin>").notes() if n.name == "minildr")
    assert data.count(note.desc) == 1, "the payload must be findable in exactly one place"
    return data.find(note.desc), len(note.desc)


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def patch_manifest(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace the first `old` inside the manifest payload by `new` (same length)."""
    assert len(old) == len(new)
    at, size = manifest_span(data)
    inside = data[at:at + size].find(old)
    assert inside >= 0, f"{old!r} is not in the manifest"
    return patched(data, at + inside, new)


def cc(*args) -> None:
    done = subprocess.run([find_compiler().path, *map(str, args)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def manifest_doc(**changes) -> dict:
    """A valid manifest for `stamp`'s library; a change of None removes that field."""
    doc = {"minildr": 1, "abi": minildr.ABI_VERSION, "platform": HOST.as_dict(),
           "name": "stamped", "version": "1.0", "types": "", "contracts": {},
           "exports": {"plugin_entry": {"kind": "function", "ctype": "int (void)"}},
           "compiler": "cc"}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def stamp(dest: Path, manifest) -> Path:
    """Compile a shared library whose minildr note holds `manifest` (a dict or raw bytes)."""
    payload = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stamped.c"
        src.write_text(manifest_source(payload) + "int plugin_entry(void) { return 1; }\n")
        cc("-shared", "-fPIC", src, "-o", dest)
    return dest


def libc_path() -> str:
    with open("/proc/self/maps") as maps:
        found = re.search(r"\s(/\S*/libc(?:\.so\.\d+|-[\d.]+\.so))$", maps.read(), re.M)
    assert found, "libc is not mapped into this process?"
    return found.group(1)


def minildr_mappings(path: Path) -> bool:
    """Whether a minildr image of this file is mapped into the process (memfd name)."""
    with open("/proc/self/maps") as maps:
        return f"minildr:{Path(path).name}" in maps.read()


# ---------------------------------------------------------------------------
# The corpus: name -> how to make the file, the error, fragments of its message
# ---------------------------------------------------------------------------
class Case(NamedTuple):
    make: Callable[[Path, dict], Path]      # (suggested path, built plugins) -> path to open
    error: Type[PluginError]
    fragments: Tuple[str, ...]
    in_folder: bool                         # discover can see it (a missing path cannot)
    bad_manifest: bool                      # the binary is fine, its manifest is not


CORPUS: Dict[str, Case] = {}


def case(name: str, error: Type[PluginError], *fragments: str, in_folder: bool = True,
         bad_manifest: bool = False):
    def register(make):
        CORPUS[name] = Case(make, error, fragments, in_folder, bad_manifest)
        return make
    return register


def from_greet(change: Callable[[bytes], bytes]):
    """A maker that writes a changed copy of the built greet plugin."""
    def make(dest: Path, built: dict) -> Path:
        dest.write_bytes(change(built["greet"].read_bytes()))
        return dest
    return make


def stamped(manifest):
    return lambda dest, built: stamp(dest, manifest)


# -- nothing to read ---------------------------------------------------------
@case("empty", NotAPlugin, "the file is empty")
def _empty(dest, built):
    dest.write_bytes(b"")
    return dest


@case("missing", PluginNotFound, "no such file", in_folder=False)
def _missing(dest, built):
    return dest


@case("directory", NotARegularFile, "is a directory")
def _directory(dest, built):
    (dest.with_name("d.so")).mkdir()
    return dest.with_name("d.so")


@case("dangling-symlink", PluginNotFound, "symbolic link", "does not exist")
def _dangling(dest, built):
    dest.symlink_to(dest.with_name("gone-for-good.so"))
    return dest


@case("fifo", NotARegularFile, "not a regular file", "named pipe")
def _fifo(dest, built):
    os.mkfifo(dest)
    return dest


# -- not a binary ------------------------------------------------------------
@case("random-bytes", NotAPlugin, "not a shared library", "unknown format")
def _random(dest, built):
    dest.write_bytes(random.Random(20240601).randbytes(4096))
    return dest


@case("text", NotAPlugin, "not a shared library", "text file")
def _text(dest, built):
    dest.with_name("x.so").write_text("#!/bin/sh\necho 'I am not a plugin'\n")
    return dest.with_name("x.so")


# -- ELF cut short: in e_ident, the ELF header, the program headers, the note, the end
def _cut(at: Callable[[bytes], int]):
    return from_greet(lambda data: data[:at(data)])


case("cut-3", NotAPlugin, "truncated ELF file")(_cut(lambda d: 3))
case("cut-10", NotAPlugin, "truncated ELF identification")(_cut(lambda d: 10))
case("cut-20", NotAPlugin, "ELF header", "outside the file (20 bytes)")(_cut(lambda d: 20))
case("cut-63", NotAPlugin, "ELF header", "outside the file (63 bytes)")(_cut(lambda d: 63))
case("cut-100", NotAPlugin, "program header table", "(100 bytes)")(_cut(lambda d: 100))
case("cut-last-phdr", NotAPlugin, "program header table")(
    _cut(lambda d: 64 + 56 * elf.ElfFile(d, "-").header.e_phnum - 1))
case("cut-in-note", NotAPlugin, "damaged or truncated", "section header table")(
    _cut(lambda d: manifest_span(d)[0] + 40))
case("cut-half", NotAPlugin, "section header table")(_cut(lambda d: len(d) // 2))
case("cut-last-byte", NotAPlugin, "section header table")(_cut(lambda d: len(d) - 1))
# Without section headers (e_shnum = 0) the cut reaches the note reader itself.
case("cut-in-note-no-sections", NotAPlugin, "note segment", "outside the file")(from_greet(
    lambda d: patched(d, E_SHNUM, b"\0\0")[:manifest_span(d)[0] + 40]))


# -- ELF, but not a library for this machine --------------------------------
case("elf-32-bit", NotAPlugin, "32-bit ELF")(
    from_greet(lambda d: patched(d, elf.EI_CLASS, bytes([elf.ELFCLASS32]))))
case("elf-class-3", NotAPlugin, "unknown ELF class 3")(
    from_greet(lambda d: patched(d, elf.EI_CLASS, b"\3")))
case("elf-big-endian", NotAPlugin, "unknown ELF version")(
    from_greet(lambda d: patched(d, elf.EI_DATA, bytes([elf.ELFDATA2MSB]))))
case("elf-bad-phentsize", NotAPlugin, "program header table entries are 32 bytes")(
    from_greet(lambda d: patched(d, E_PHENTSIZE, struct.pack("<H", 32))))
case("foreign-arch", NotAPlugin, "wrong architecture", FOREIGN_ARCH, HOST.arch)(
    from_greet(lambda d: patched(d, E_MACHINE, struct.pack("<H", FOREIGN_MACHINE))))
case("elf-executable", NotAPlugin, "not a shared library", "ELF executable")(
    from_greet(lambda d: patched(d, E_TYPE, struct.pack("<H", elf.ET_EXEC))))
case("elf-core-dump", NotAPlugin, "not a shared library", "core dump")(
    from_greet(lambda d: patched(d, E_TYPE, struct.pack("<H", elf.ET_CORE))))


@case("object-file", NotAPlugin, "not a shared library", "object file (.o)")
def _object(dest, built):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "obj.c"
        src.write_text("int plugin_entry(void) { return 1; }\n")
        cc("-c", "-fPIC", src, "-o", dest)
    return dest


@case("static-archive", NotAPlugin, "not a shared library", "static archive")
def _archive(dest, built):
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "obj.o"
        _object(obj, built)
        subprocess.run(["ar", "rcs", dest, obj], check=True)
    return dest


@case("mach-o", NotAPlugin, "Mach-O file", "macOS", "ELF")
def _macho(dest, built):
    # mach_header_64: MH_MAGIC_64, CPU_TYPE_ARM64, subtype, MH_DYLIB, no load commands
    dest.write_bytes(struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 6, 0, 0, 0, 0)
                     + bytes(4064))
    return dest


@case("pe-dll", NotAPlugin, "PE file", "Windows", "ELF")
def _pe(dest, built):
    dos = b"MZ" + bytes(58) + struct.pack("<I", 64)                  # e_lfanew = 64
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, 0, 0, 0, 0, 240, 0x2022)  # a DLL
    optional = struct.pack("<H", 0x20B) + bytes(238)                # PE32+
    dest.write_bytes(dos + coff + optional + bytes(512))
    return dest


# -- real Windows and macOS plugins (tests/data/crossbuild/), cut short ------
CROSSBUILT = DATA / "crossbuild"


def _cut_real(file: str, at: Callable[[bytes], int]):
    def make(dest: Path, built: dict) -> Path:
        data = (CROSSBUILT / file).read_bytes()
        dest.write_bytes(data[:at(data)])
        return dest
    return make


def _pe_section(data: bytes, name: str):
    return next(s for s in pe.PEFile(data, "-").sections if c_string(s.Name) == name)


def _macho_section(data: bytes, name: str):
    return next(s for s in macho.MachOFile(data, "-", "x86_64").sections()
                if c_string(s.sectname) == name)


case("pe-real-cut-in-section-table", NotAPlugin, "damaged or truncated", "section table",
     "(500 bytes)")(_cut_real("windows-x86_64/greet.dll", lambda d: 500))
case("pe-real-cut-in-manifest", NotAPlugin, "damaged or truncated", "section .minildr")(
    _cut_real("windows-x86_64/greet.dll",
              lambda d: _pe_section(d, ".minildr").PointerToRawData + 40))
case("macho-real-cut-in-load-commands", NotAPlugin, "damaged or truncated", "load commands")(
    _cut_real("macos-x86_64/greet.dylib", lambda d: 100))
case("macho-real-cut-in-manifest", NotAPlugin, "damaged or truncated", "section __minildr")(
    _cut_real("macos-x86_64/greet.dylib", lambda d: _macho_section(d, "__minildr").offset + 40))


# -- a shared library, but no minildr manifest -----------------------------
@case("cffi-backend", NotAPlugin, "without a minildr manifest", "built without minildr.build",
      bad_manifest=True)
def _cffi_backend(dest, built):
    import _cffi_backend
    return Path(_cffi_backend.__file__)


@case("libc", NotAPlugin, "without a minildr manifest", "built without minildr.build",
      bad_manifest=True)
def _libc(dest, built):
    return Path(libc_path())


# -- a damaged manifest ----------------------------------------------------
case("manifest-bad-json", NotAPlugin, "manifest is damaged", "not valid JSON",
     bad_manifest=True)(from_greet(lambda d: patch_manifest(d, b"{", b"X")))
case("manifest-not-utf8", NotAPlugin, "manifest is damaged", "utf-8", bad_manifest=True)(
    from_greet(lambda d: patch_manifest(d, b'"name":"greet"', b'"name":"\xffreet"')))
case("manifest-truncated-note", NotAPlugin, "damaged or truncated note", "65536",
     bad_manifest=True)(
    # n_descsz sits 16 bytes before the payload (n_descsz, n_type, "minildr\0")
    from_greet(lambda d: patched(d, manifest_span(d)[0] - 16, struct.pack("<I", 65536))))
case("manifest-missing-name", NotAPlugin, "field 'name' is missing", bad_manifest=True)(
    stamped(manifest_doc(name=None)))
case("manifest-export-missing-ctype", NotAPlugin, "field 'ctype' of 'plugin_entry' is missing",
     bad_manifest=True)(stamped(manifest_doc(exports={"plugin_entry": {"kind": "function"}})))
case("manifest-abi-is-a-string", NotAPlugin, "field 'abi' should be a int",
     bad_manifest=True)(stamped(manifest_doc(abi="1")))
case("manifest-not-an-object", NotAPlugin, "the manifest should be a dict",
     bad_manifest=True)(stamped(b"[1, 2, 3]"))
case("manifest-huge-number", NotAPlugin, "manifest is damaged", bad_manifest=True)(
    stamped(b'{"abi": ' + b"9" * 5000 + b"}"))
case("manifest-deeply-nested", NotAPlugin, "manifest is damaged", bad_manifest=True)(
    stamped(b"[" * 5000 + b"]" * 5000))

# -- a valid manifest for something else ------------------------------------
case("wrong-abi-patched", VersionMismatch, "ABI version 7", f"ABI version {minildr.ABI_VERSION}")(
    from_greet(lambda d: patch_manifest(d, b'"abi":1,', b'"abi":7,')))
case("wrong-abi-stamped", VersionMismatch, "ABI version 2", f"ABI version {minildr.ABI_VERSION}")(
    stamped(manifest_doc(abi=2)))
case("wrong-os-patched", VersionMismatch, f"lunix-{HOST.arch} ({HOST.bits}-bit)", str(HOST))(
    from_greet(lambda d: patch_manifest(d, b'"os":"linux"', b'"os":"lunix"')))
case("wrong-platform-stamped", VersionMismatch, "windows-riscv64 (32-bit)", str(HOST))(
    stamped(manifest_doc(platform={"os": "windows", "arch": "riscv64", "bits": 32})))


def make_case(name: str, folder: Path, built: dict) -> Path:
    return CORPUS[name].make(folder / f"{name}.so", built)


def expect_refusal(name: str, path: Path) -> PluginError:
    """open(path) raises exactly the case's error, naming the file and the problem."""
    expected = CORPUS[name]
    with pytest.raises(PluginError) as err:
        minildr.open(path)
    assert type(err.value) is expected.error, f"{name}: {err.value!r}"
    message = str(err.value)
    assert os.fspath(path) in message
    for fragment in expected.fragments:
        assert fragment in message, f"{name}: {fragment!r} not in {message!r}"
    return err.value


@pytest.fixture(scope="module")
def corpus(built, tmp_path_factory) -> Tuple[Path, Dict[str, Path]]:
    """Every case in one folder (files from elsewhere linked in), built once."""
    folder = tmp_path_factory.mktemp("corpus")
    paths = {}
    for name in CORPUS:
        path = make_case(name, folder, built)
        if path.parent != folder:                    # the system's own libraries
            (folder / f"{name}.so").symlink_to(path)
            path = folder / f"{name}.so"
        paths[name] = path
    return folder, paths


# ---------------------------------------------------------------------------
# Each broken file, on its own
# ---------------------------------------------------------------------------
def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 15


# The corpus is mostly ELF surgery on the greet plugin built here; these cases are not.
PORTABLE_CASES = {"empty", "missing", "directory", "random-bytes", "text"}
CASE_MARKS = {"dangling-symlink": requires_posix("Windows makes symbolic links for "
                                                 "administrators only"),
              "fifo": requires_posix("named pipes (mkfifo) are POSIX"),
              "mach-o": requires_linux("a Mach-O file is foreign on Linux and Windows only; "
                                       "the Windows case is not set up here"),
              "pe-dll": requires_linux("a PE file is foreign on Linux and macOS only; the "
                                       "macOS case is not set up here")}


def corpus_params():
    return [pytest.param(name, marks=() if name in PORTABLE_CASES
                         else CASE_MARKS.get(name, requires_elf)) for name in CORPUS]


@pytest.mark.parametrize("name", corpus_params())
def test_broken_file_is_refused_with_its_error(name, built, tmp_path):
    path = make_case(name, tmp_path, built)
    expect_refusal(name, path)
    assert not minildr_mappings(path)


@requires_elf
def test_stamped_control_plugin_opens_and_runs(tmp_path):
    """The helper that stamps the bad manifests makes a working plugin from a good one."""
    with minildr.open(stamp(tmp_path / "good.so", manifest_doc())) as plugin:
        assert plugin.name == "stamped"
        assert plugin.lookup("plugin_entry", "int (void)")() == 1


@requires_elf
def test_patched_control_plugin_opens(greet_so):
    """Patching a byte of the manifest with itself changes nothing: the damage is the change."""
    greet_so.write_bytes(patch_manifest(greet_so.read_bytes(), b'"abi":1,', b'"abi":1,'))
    with minildr.open(greet_so) as plugin:
        assert minildr.ffi.string(plugin.lookup("greet", GREET_T)()).startswith(b"Hello")


# ---------------------------------------------------------------------------
# Errors that need a loaded plugin or a host contract
# ---------------------------------------------------------------------------
COMMAND_H = "typedef struct command { const char *(*name)(void); } command_t;\n"


def test_contract_mismatch_names_the_contract_and_both_versions(tmp_path):
    mine = minildr.Contract.from_header(COMMAND_H, name="command", version="1.0")
    path = write_plugin(tmp_path, "cmd", 'static const char *n(void) { return "cmd"; }\n'
                        "const command_t cmd = { n };\n", "extern const command_t cmd;\n",
                        contracts=[mine])
    with minildr.open(path, contracts=[mine]):
        pass
    other = minildr.Contract.from_header(COMMAND_H.replace("const char *", "int "),
                                         name="command", version="2.0")
    with pytest.raises(DependencyMismatch) as err:
        minildr.open(path, contracts=[other])
    message = str(err.value)
    assert os.fspath(path) in message and "contract command" in message
    assert "command 1.0" in message and "command 2.0" in message


def test_wrong_export_type_names_both_types(greet_so):
    with minildr.open(greet_so) as plugin:
        with pytest.raises(SymbolTypeError) as err:
            plugin.lookup("greet", "int (void)")
    message = str(err.value)
    assert os.fspath(greet_so) in message
    assert f"'{GREET_T}'" in message and "'int (void)'" in message


# ---------------------------------------------------------------------------
# After the whole corpus
# ---------------------------------------------------------------------------
@requires_elf
def test_process_keeps_working_after_the_whole_corpus(corpus, greet_so):
    folder, paths = corpus
    for name, path in paths.items():
        expect_refusal(name, path)
    with minildr.open(greet_so) as plugin:
        text = plugin.lookup("greet", GREET_T)()
        assert text != minildr.ffi.NULL
        assert minildr.ffi.string(text).startswith(b"Hello")


@requires_elf
def test_discover_loads_the_good_and_reports_every_broken_one(corpus, built):
    folder, paths = corpus
    shutil.copy(built["greet"], folder / "greet.so")
    shutil.copy(built["echo"], folder / "echo.so")
    (folder / "notes.txt").write_text("not a plugin, and not named like one")
    try:
        with minildr.discover(folder) as report:
            assert sorted(p.name for p in report.loaded) == ["echo", "greet"]
            failed = {path.name: type(err) for path, err in report.failed}
            expected = {paths[n].name: c.error for n, c in CORPUS.items() if c.in_folder}
            assert failed == expected
            assert {"d.so", "dangling-symlink.so", "x.so"} <= set(failed)
            assert all(os.fspath(path) in str(err) for path, err in report.failed)
    finally:
        (folder / "greet.so").unlink()
        (folder / "echo.so").unlink()


@requires_elf
@pytest.mark.parametrize("name", [n for n, c in CORPUS.items() if c.bad_manifest])
def test_read_manifest_refuses_a_bad_manifest_like_open(name, corpus):
    folder, paths = corpus
    path = paths[name]
    with pytest.raises(PluginError) as from_read:
        minildr.read_manifest(path)
    assert type(from_read.value) is NotAPlugin
    assert os.fspath(path) in str(from_read.value)
    assert not minildr_mappings(path)
    with pytest.raises(PluginError) as from_open:
        minildr.open(path)
    assert type(from_open.value) is type(from_read.value)
    assert from_open.value.reason == from_read.value.reason


@requires_elf
def test_read_manifest_reports_what_open_would_refuse(corpus):
    """read_manifest only reads: versions are open's business, so it returns ABI 7."""
    folder, paths = corpus
    assert minildr.read_manifest(paths["wrong-abi-patched"]).abi == 7


# ---------------------------------------------------------------------------
# A refused plugin runs no code
# ---------------------------------------------------------------------------
CTOR_HEADER = "int answer(void);\n"


def ctor_plugin(tmp_path: Path, marker: Path) -> Path:
    source = ("#include <stdio.h>\n"
              "__attribute__((constructor)) static void init(void)\n"
              f"{{ FILE *f = fopen({json.dumps(str(marker))}, \"w\"); if (f) fclose(f); }}\n"
              "int answer(void) { return 42; }\n")
    return write_plugin(tmp_path, "ctor", source, CTOR_HEADER)


DAMAGE = {
    "wrong-abi": (VersionMismatch, lambda d: patch_manifest(d, b'"abi":1,', b'"abi":7,')),
    "wrong-os": (VersionMismatch, lambda d: patch_manifest(d, b'"os":"linux"', b'"os":"lunix"')),
    "bad-json": (NotAPlugin, lambda d: patch_manifest(d, b"{", b"X")),
    "foreign-arch": (NotAPlugin,
                     lambda d: patched(d, E_MACHINE, struct.pack("<H", FOREIGN_MACHINE))),
    "truncated-note": (NotAPlugin,
                       lambda d: patched(d, manifest_span(d)[0] - 16, struct.pack("<I", 65536))),
}


@requires_elf
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_refused_plugin_ran_no_code(damage, tmp_path):
    marker = tmp_path / "constructor-ran"
    path = ctor_plugin(tmp_path, marker)
    error, change = DAMAGE[damage]
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(error) as err:
        minildr.open(path)
    assert os.fspath(path) in str(err.value)
    assert not marker.exists()
    assert not minildr_mappings(path)


def test_constructor_runs_on_open_but_not_on_read_manifest(tmp_path):
    """The control: the same plugin, undamaged, does run its constructor when opened."""
    marker = tmp_path / "constructor-ran"
    path = ctor_plugin(tmp_path, marker)
    assert minildr.read_manifest(path).name == "ctor"
    assert not marker.exists()
    with minildr.open(path) as plugin:
        assert marker.exists()
        assert plugin.lookup("answer", "int (void)")() == 42


# ---------------------------------------------------------------------------
# Hypothesis: the manifest reader raises NotAPlugin, and only that
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def base_plugin() -> bytes:
    """The greet plugin's bytes, built once (hypothesis does not mix with fixtures)."""
    out = Path(tempfile.mkdtemp(prefix="minildr-fuzz-"))
    try:
        return build_example("greet", out, once=True).read_bytes()
    finally:
        shutil.rmtree(out, ignore_errors=True)


def read_fuzzed(data: bytes):
    """manifest_from_bytes gives a Manifest or a NotAPlugin naming the file; nothing else."""
    try:
        manifest = manifest_from_bytes(data, "fuzz.so")
    except NotAPlugin as exc:
        assert str(exc).startswith("fuzz.so: ")
        return exc
    assert isinstance(manifest, Manifest)
    return manifest


MAGICS = [b"", elf.ELFMAG, b"\x7fELF\x02\x01\x01", b"\x7fELF\x02\x02\x01",
          b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe\0\0\0\1", b"MZ",
          b"!<arch>\n"]


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(100), deadline=None)
@given(st.sampled_from(MAGICS), st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes(magic, rest):
    read_fuzzed(magic + rest)


INTERESTING = [0, 1, 2, 3, 4, 7, 8, 12, 56, 64, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF,
               2**63 - 1, 2**64 - 1]


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(100), deadline=None)
@given(edits=st.lists(st.tuples(st.sampled_from(["byte", "u16", "u32", "u64"]),
                                st.booleans(),                       # in the headers/notes?
                                st.integers(0, 2**20),
                                st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255))),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 2**20)))
def test_fuzz_mutated_plugin(edits, cut):
    data = bytearray(base_plugin())
    headers_end = 1024          # e_ident, the ELF header, program headers and the notes
    for kind, in_headers, where, value in edits:
        size = {"byte": 1, "u16": 2, "u32": 4, "u64": 8}[kind]
        at = where % ((headers_end if in_headers else len(data)) - size)
        data[at:at + size] = (value % 256 ** size).to_bytes(size, "little")
    if cut is not None:
        del data[cut % (len(data) + 1):]
    read_fuzzed(bytes(data))


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
MANIFEST_PATHS = [("abi",), ("minildr",), ("platform",), ("platform", "os"), ("platform", "bits"),
                  ("name",), ("version",), ("exports",), ("exports", "greet"),
                  ("exports", "greet", "ctype"), ("exports", "greet", "kind"), ("contracts",),
                  ("types",), ("compiler",), ()]


@requires_elf
@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(100), deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from(MANIFEST_PATHS),
                                  st.one_of(st.just("delete"), JSON)), max_size=3))
def test_fuzz_manifest_documents(changes):
    """Any JSON in a real plugin's note: a well-typed Manifest, or NotAPlugin 'damaged'."""
    data = base_plugin()
    at, size = manifest_span(data)
    doc = json.loads(data[at:at + size])
    for path, value in changes:
        if not path:
            doc = value if value != "delete" else doc
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if value == "delete":
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = value
    payload = json.dumps(doc, separators=(",", ":")).encode()
    slot = (size + 3) & ~3          # the note's payload area, padded to 4
    assume(len(payload) <= slot)
    # Write the new payload and its size; zero what is left of the old one.
    fuzzed = patched(data, at - 16, struct.pack("<I", len(payload)))
    fuzzed = patched(fuzzed, at, payload + bytes(slot - len(payload)))
    result = read_fuzzed(fuzzed)
    if isinstance(result, NotAPlugin):
        assert "manifest is damaged" in result.reason
    else:
        assert type(result.abi) is int and type(result.platform.bits) is int
        assert all(isinstance(v, str) for v in (result.name, result.version, result.types,
                                                 result.platform.os, result.platform.arch))
        assert all(isinstance(e.ctype, str) and isinstance(e.kind, str)
                   for e in result.exports.values())


@requires_posix("named pipes (mkfifo) are POSIX")
def test_read_manifest_refuses_a_fifo_without_blocking(tmp_path):
    """Reading a pipe named like a plugin would wait forever for a writer."""
    fifo = tmp_path / "f.so"
    os.mkfifo(fifo)
    with pytest.raises(PluginNotFound, match="not a regular file") as err:
        minildr.read_manifest(fifo)
    assert str(fifo) in str(err.value)
