"""The binary formats: ELF checked against pyelftools; Mach-O and PE from synthetic files."""
from __future__ import annotations

import importlib
import json
import re
import shutil
import struct
from pathlib import Path

import _cffi_backend
import pytest
from elftools.elf import enums
from elftools.elf.elffile import ELFFile

import minildr
from minildr import manifest
from minildr.formats import elf
from minildr.host import HOST, Platform

from helpers import cross_tool_missing, write_plugin
from platforms import requires_elf, skip_on

# ---------------------------------------------------------------------------
# ELF: every field minildr reads, compared with an independent reader
# ---------------------------------------------------------------------------
def _libc() -> Path:
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if re.search(r"/libc(\.so|-[0-9.]+\.so)", path):
                return Path(path)
    pytest.skip("libc is not mapped from a file")


def _merged(*names: str) -> dict:
    result: dict = {}
    for name in dir(enums):
        if name.startswith(names):
            result.update(getattr(enums, name))
    return result


P_TYPES = _merged("ENUM_P_TYPE")
NOTE_TYPES = _merged("ENUM_NOTE_N_TYPE", "ENUM_CORE_NOTE_N_TYPE")


def number(value, enum: dict) -> int:
    """pyelftools gives names for the values it knows, numbers for the rest."""
    return value if isinstance(value, int) else enum[value]


def ours_number(name: str, names: dict) -> int:
    """minildr gives names for the values it knows, decimal strings for the rest."""
    reverse = {v: k for k, v in names.items()}
    return reverse[name] if name in reverse else int(name)


@pytest.fixture(params=["greet", "echo", "libc", "cffi_backend"])
def elf_pair(request, built):
    path = {"libc": _libc, "cffi_backend": lambda: Path(_cffi_backend.__file__)}.get(
        request.param, lambda: built[request.param])()
    stream = open(path, "rb")
    yield elf.ElfFile(path.read_bytes(), path), ELFFile(stream)
    stream.close()


@requires_elf
def test_elf_header_matches_pyelftools(elf_pair):
    ours, theirs = elf_pair
    assert ours.header.e_machine == enums.ENUM_E_MACHINE[theirs.header["e_machine"]]
    assert ours.header.e_type == enums.ENUM_E_TYPE[theirs.header["e_type"]]
    assert (ours.arch, ours.kind) == (HOST.arch, "shared library")


@requires_elf
def test_program_headers_match_pyelftools(elf_pair):
    ours, theirs = elf_pair
    expected = [(number(s["p_type"], P_TYPES), s["p_offset"], s["p_vaddr"], s["p_filesz"],
                 s["p_memsz"], s["p_flags"]) for s in theirs.iter_segments()]
    assert [(p.p_type, p.p_offset, p.p_vaddr, p.p_filesz, p.p_memsz, p.p_flags)
            for p in ours.program_headers] == expected
    assert expected


@requires_elf
def test_section_names_match_pyelftools(elf_pair):
    ours, theirs = elf_pair
    names = [ours.section_name(sh) for sh in ours.section_headers]
    assert names == [s.name for s in theirs.iter_sections()]
    assert ".dynsym" in names


@requires_elf
def test_notes_match_pyelftools(elf_pair):
    ours, theirs = elf_pair
    expected = [(n["n_name"], number(n["n_type"], NOTE_TYPES), bytes(n["n_descdata"]))
                for seg in theirs.iter_segments() if seg["p_type"] == "PT_NOTE"
                for n in seg.iter_notes()]
    assert [(n.name, n.type, n.desc) for n in ours.notes()] == expected
    assert expected


@requires_elf
def test_dynamic_symbols_match_pyelftools(elf_pair):
    ours, theirs = elf_pair
    dynsym = theirs.get_section_by_name(".dynsym")
    expected = [(s.name, enums.ENUM_ST_INFO_BIND[s["st_info"]["bind"]]
                 if isinstance(s["st_info"]["bind"], str) else s["st_info"]["bind"],
                 number(s["st_info"]["type"], enums.ENUM_ST_INFO_TYPE),
                 s["st_other"]["visibility"].replace("STV_", ""),
                 s["st_shndx"] != "SHN_UNDEF")
                for s in list(dynsym.iter_symbols())[1:]]
    types = {**{t.value: t.name for t in elf.STT}, elf.STT.GNU_IFUNC: "IFUNC"}
    got = [(s.name, ours_number(s.bind, {b.value: b.name for b in elf.STB}), ours_number(s.type, types),
            s.visibility, s.defined) for s in ours.symbols()]
    assert got == expected
    assert any(defined for *_, defined in got)


@requires_elf
def test_minildr_note_is_the_manifest(built):
    f = elf.ElfFile(built["greet"].read_bytes(), built["greet"])
    [note] = [n for n in f.notes() if n.name == "minildr"]
    assert note.type == manifest.NT_MINILDR_MANIFEST
    assert json.loads(note.desc)["name"] == "greet"


@requires_elf
@pytest.mark.parametrize("name, exported", [("greet", {"greet"}),
                                             ("echo", {"name", "run", "calls"})])
def test_exported_symbols_are_exactly_the_header(built, name, exported):
    f = elf.ElfFile(built[name].read_bytes(), built[name])
    assert {s.name for s in f.exported_symbols()} == exported


@requires_elf
def test_static_helper_is_not_exported(built):
    f = elf.ElfFile(built["greet"].read_bytes(), built["greet"])
    assert "message" not in {s.name for s in f.exported_symbols()}
    assert "message" not in {s.name for s in f.symbols()}


@requires_elf
@pytest.mark.skipif(HOST.arch != "x86_64", reason="-fcf-protection is an x86 flag")
def test_plugin_with_8_byte_aligned_property_note_opens(tmp_path):
    # -fcf-protection adds .note.gnu.property, in its own PT_NOTE with p_align 8,
    # as Ubuntu's gcc does by default; -nostdlib keeps the crt files (built without it) out.
    path = write_plugin(tmp_path, "cet", "int answer(void) { return 42; }\n",
                        "int answer(void);\n", cflags=["-fcf-protection=full", "-nostdlib"])
    f = elf.ElfFile(path.read_bytes(), path)
    assert any(p.p_type == elf.PT_NOTE and p.p_align == 8 for p in f.program_headers)
    assert ("GNU", 5) in [(n.name, n.type) for n in f.notes()]    # NT_GNU_PROPERTY_TYPE_0
    with minildr.open(path) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42


builder = importlib.import_module("minildr.build")     # the module, not the function


def feature_bits(path: Path, pr_type: int) -> int:
    """The bits of one GNU property (e.g. x86 FEATURE_1_AND) in the file's property note."""
    f = elf.ElfFile(path.read_bytes(), path)
    (desc,) = [n.desc for n in f.notes() if (n.name, n.type) == ("GNU", 5)]
    offset = 0
    while offset + 8 <= len(desc):
        kind, size = struct.unpack_from("<II", desc, offset)
        if kind == pr_type:
            return struct.unpack_from("<I", desc, offset + 8)[0]
        offset += 8 + (size + 7) // 8 * 8
    return 0


@requires_elf
@pytest.mark.skipif(HOST.arch != "x86_64", reason="-fcf-protection is an x86 flag")
def test_every_object_of_a_build_carries_the_cet_marking(tmp_path):
    """The linker keeps IBT and SHSTK only if every object it links has them: the manifest
    compiled in the first source, and a second source, leave both on (-nostdlib: the crt
    files are built without them)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text("int answer(void) { return 42; }\n")
    (src / "b.c").write_text("int other(void) { return 7; }\n")
    (src / "p.h").write_text("int answer(void);\nint other(void);\n")
    path = minildr.build([src / "a.c", src / "b.c"], name="p", exports=src / "p.h",
                         out_dir=tmp_path, cflags=["-fcf-protection=full", "-nostdlib"])
    assert feature_bits(path, 0xc0000002) == 0b11      # GNU_PROPERTY_X86_FEATURE_1_AND: IBT|SHSTK


@pytest.mark.cross
def test_every_object_of_an_aarch64_build_carries_the_bti_and_pac_marking(tmp_path):
    """The same for AArch64's branch protection (GNU_PROPERTY_AARCH64_FEATURE_1_AND)."""
    gcc = shutil.which("aarch64-linux-gnu-gcc")
    if gcc is None:
        cross_tool_missing("aarch64-linux-gnu-gcc not installed (Debian: gcc-aarch64-linux-gnu)")
    (tmp_path / "a.c").write_text("int answer(void) { return 42; }\n")
    (tmp_path / "p.h").write_text("int answer(void);\n")
    path = builder.build_for(Platform("linux", "aarch64", 64), builder._identify(gcc),
                             [tmp_path / "a.c"], name="p", exports=tmp_path / "p.h",
                             out_dir=tmp_path / "out",
                             cflags=["-mbranch-protection=standard", "-nostdlib"])
    assert feature_bits(path, 0xc0000000) == 0b11      # BTI|PAC


# ---------------------------------------------------------------------------
# Synthetic Mach-O and PE files holding a minildr note
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def payload(built) -> bytes:
    return minildr.read_manifest(built["greet"]).encode()


def note(payload: bytes) -> bytes:
    """The bytes minildr.build.manifest_source puts in the section."""
    padded = payload + b"\0" * (-len(payload) % 4)
    header = struct.pack("<III", 8, len(payload), manifest.NT_MINILDR_MANIFEST)
    return header + b"minildr\0" + padded


MH_MAGIC_64, MH_MAGIC, MH_DYLIB, MH_BUNDLE, MH_EXECUTE = 0xFEEDFACF, 0xFEEDFACE, 6, 8, 2
CPU = {"x86_64": 0x01000007, "aarch64": 0x0100000C}
SEG, SECT = struct.Struct("<II16sQQQQiiII"), struct.Struct("<16s16sQQIIIIIIII")
HEADER = struct.Struct("<IiiIIIII")


def macho(data: bytes, *, arch: str = "x86_64", filetype: int = MH_DYLIB,
          magic: int = MH_MAGIC_64, nsects: int = 1, section_offset=None,
          sizeofcmds=None) -> bytes:
    """mach_header_64, one LC_SEGMENT_64 __TEXT with section __minildr, then the data."""
    cmdsize = SEG.size + SECT.size
    at = HEADER.size + cmdsize
    header = HEADER.pack(magic, CPU[arch], 3, filetype, 1,
                         cmdsize if sizeofcmds is None else sizeofcmds, 0, 0)
    segment = SEG.pack(0x19, cmdsize, b"__TEXT", 0, 0x1000, 0, at + len(data), 5, 5, nsects, 0)
    section = SECT.pack(b"__minildr", b"__TEXT", at, len(data),
                        at if section_offset is None else section_offset, 2, 0, 0, 0, 0, 0, 0)
    return header + segment + section + data


def fat(*slices: bytes, archs) -> bytes:
    """A universal file: big-endian fat header and slice table, slices 4 KiB aligned."""
    table, body, offset = b"", b"", 4096
    for arch, data in zip(archs, slices):
        table += struct.pack(">iiIII", CPU[arch], 3, offset, len(data), 12)
        body += data + b"\0" * (-len(data) % 4096)
        offset += len(data) + (-len(data) % 4096)
    head = struct.pack(">II", 0xCAFEBABE, len(slices)) + table
    return head + b"\0" * (4096 - len(head)) + body


@pytest.mark.parametrize("filetype", [MH_DYLIB, MH_BUNDLE])
@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_macho_examine(payload, filetype, arch):
    info, found = manifest.examine(macho(note(payload), arch=arch, filetype=filetype), "p.dylib")
    assert (info.format, info.kind, info.arch, info.os) == ("Mach-O", "shared library",
                                                            arch, "darwin")
    assert found == payload


def test_macho_executable_kind(payload):
    info, _ = manifest.examine(macho(note(payload), filetype=MH_EXECUTE), "p")
    assert info.kind == "executable"


@pytest.mark.parametrize("order", [("aarch64", "x86_64"), ("x86_64", "aarch64")])
def test_fat_macho_picks_host_slice(order):
    if HOST.arch not in CPU:
        pytest.skip(f"no slice for {HOST.arch}")
    slices = [macho(note(f'{{"arch":"{a}"}}'.encode()), arch=a) for a in order]
    info, found = manifest.examine(fat(*slices, archs=order), "fat.dylib")
    assert info.arch == HOST.arch
    assert json.loads(found) == {"arch": HOST.arch}


def test_macho_read_manifest(tmp_path, payload):
    path = tmp_path / "greet.dylib"
    path.write_bytes(macho(note(payload)))
    assert minildr.read_manifest(path).encode() == payload


@pytest.mark.parametrize("data, why", [
    (macho(note(b"{}"))[:100], "outside the file"),
    (macho(note(b"{}"), sizeofcmds=10_000), "load commands"),
    (macho(note(b"{}"), section_offset=1_000_000), "section __minildr"),
    (macho(note(b"{}"), nsects=1000), "more sections than fit; rebuild the plugin"),
    (macho(note(b"{}"), magic=MH_MAGIC), "32-bit"),
], ids=["truncated", "sizeofcmds", "section-outside", "nsects", "32-bit"])
def test_damaged_macho_is_not_a_plugin(tmp_path, data, why):
    path = tmp_path / "bad.dylib"
    path.write_bytes(data)
    with pytest.raises(minildr.NotAPlugin) as err:
        minildr.read_manifest(path)
    assert str(path) in str(err.value)
    assert why in str(err.value)


def test_macho_note_truncated(payload):
    data = macho(note(payload)[:-8])       # the note claims more than the section holds
    with pytest.raises(minildr.NotAPlugin, match="truncated"):
        manifest.examine(data, "p.dylib")


@skip_on("darwin", "a Mach-O file is this host's own format, not a foreign one")
def test_open_macho_off_macos_says_macos(tmp_path, payload):
    path = tmp_path / "greet.so"
    path.write_bytes(macho(note(payload)))
    with pytest.raises(minildr.NotAPlugin) as err:
        minildr.open(path)
    assert "Mach-O" in str(err.value) and "macOS" in str(err.value)
    assert str(path) in str(err.value)


MACHINE = {"x86_64": 0x8664, "aarch64": 0xAA64}
SECTION = struct.Struct("<8sIIIIIIHHI")


def pe(data: bytes, *, arch: str = "x86_64", characteristics: int = 0x2022,
       magic: int = 0x20B, raw_pointer=None) -> bytes:
    """DOS header, PE signature, file header, a PE32+ optional header, one .minildr section."""
    optional = struct.pack("<H", magic) + b"\0" * 238
    at = 64 + 24 + len(optional) + SECTION.size
    dos = struct.pack("<2s58sI", b"MZ", b"\0" * 58, 64)
    file_header = struct.pack("<4sHHIIIHH", b"PE\0\0", MACHINE[arch], 1, 0, 0, 0,
                              len(optional), characteristics)
    section = SECTION.pack(b".minildr", len(data), 0x1000, len(data),
                           at if raw_pointer is None else raw_pointer, 0, 0, 0, 0, 0x40000040)
    return dos + file_header + optional + section + data


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_pe_examine(payload, arch):
    info, found = manifest.examine(pe(note(payload), arch=arch), "p.dll")
    assert (info.format, info.kind, info.arch, info.os) == ("PE", "shared library", arch,
                                                            "windows")
    assert found == payload


def test_pe_exe_without_dll_flag_is_executable(payload):
    info, _ = manifest.examine(pe(note(payload), characteristics=0x0022), "p.exe")
    assert info.kind == "executable"


def test_pe_read_manifest(tmp_path, payload):
    path = tmp_path / "greet.dll"
    path.write_bytes(pe(note(payload)))
    assert minildr.read_manifest(path).encode() == payload


@pytest.mark.parametrize("data, why", [
    (pe(note(b"{}"), magic=0x10B), "32-bit"),
    (pe(note(b"{}"), raw_pointer=1_000_000), "section .minildr"),
    (pe(note(b"{}"))[:200], "outside the file"),
], ids=["pe32", "section-outside", "truncated"])
def test_damaged_pe_is_not_a_plugin(tmp_path, data, why):
    path = tmp_path / "bad.dll"
    path.write_bytes(data)
    with pytest.raises(minildr.NotAPlugin) as err:
        minildr.read_manifest(path)
    assert str(path) in str(err.value)
    assert why in str(err.value)


@skip_on("windows", "a PE file is this host's own format, not a foreign one")
def test_open_pe_off_windows_says_windows(tmp_path, payload):
    path = tmp_path / "greet.so"
    path.write_bytes(pe(note(payload)))
    with pytest.raises(minildr.NotAPlugin, match="a PE file, the format of Windows"):
        minildr.open(path)
