"""Real Windows and macOS plugins, made on this Linux machine by cross toolchains.

tests/data/crossbuild/ holds greet, echo and upper (a contract plugin) built
by `minildr.build.build_for` (the steps of `minildr.build`) with MinGW-w64 gcc
for Windows and clang + ld64.lld for macOS x86_64 and arm64; its build.py
says how. They are committed, so on every machine:

1. minildr's PE and Mach-O readers say what each file is, find its manifest
   (which records the TARGET platform, not the build machine's) and list
   its exports: exactly what the exports header declares;
2. independent readers agree, field by field: pefile for PE, macholib for
   Mach-O (as pyelftools checks the ELF reader);
3. damaged copies are refused with NotAPlugin naming the file, and mutated
   ones never make a reader fail any other way.

Where the tools are installed, `make cross-test` (CI, after `make test`; these
tests are marked `cross`) runs the recipe again (the rebuilt files
carry the same manifests and exports), and Wine loads the DLLs into
MinGW-built Windows programs: the exports, the manifest section, exported
variables and a contract's vtable as the Windows loader sees them. On macOS and Windows themselves, minildr.open
loads the committed file for that machine and calls it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pefile
import pytest
from hypothesis import given, settings, strategies as st
from macholib.MachO import MachO
from macholib.SymbolTable import SymbolTable

import minildr
from minildr import HOST, manifest
from minildr.formats import macho, pe
from minildr.formats.reader import c_string
from minildr.build import INCLUDE_DIR, BuildError, exported_names
from helpers import TESTS, cross_tool_missing, fuzz_examples

DATA = TESTS / "data" / "crossbuild"
_spec = importlib.util.spec_from_file_location("crossbuild_recipe", DATA / "build.py")
recipe = sys.modules.setdefault("crossbuild_recipe", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(recipe)

SUFFIX = {"windows": ".dll", "darwin": ".dylib"}
FORMAT = {"windows": "PE", "darwin": "Mach-O"}
# What each exports header declares: name -> kind.
EXPORTS = {
    "greet": {"greet": "function"},
    "echo": {"name": "function", "run": "function", "calls": "data"},
    "upper": {"upper": "data", "live_outputs": "data"},
}
TARGETS = {t.folder: t for t in recipe.TARGETS}
FILES = [(t.folder, name) for t in recipe.TARGETS for name in t.plugins]
PE_FILES = [f for f in FILES if TARGETS[f[0]].platform.os == "windows"]
MACHO_FILES = [f for f in FILES if TARGETS[f[0]].platform.os == "darwin"]


def fixture(folder: str, name: str) -> Path:
    return DATA / folder / f"{name}{SUFFIX[TARGETS[folder].platform.os]}"


def file_id(f) -> str:
    return "/".join(f)


UNIVERSAL_FOLDER, UNIVERSAL_NAME, UNIVERSAL_PARTS = recipe.UNIVERSAL
UNIVERSAL = DATA / UNIVERSAL_FOLDER / f"{UNIVERSAL_NAME}.dylib"


def test_every_target_and_plugin_is_committed():
    """(git ignores *.dll and *.dylib but for these: see .gitignore)"""
    assert sorted(TARGETS) == ["macos-arm64", "macos-x86_64", "windows-msvc-x86_64",
                               "windows-x86_64"]
    for path in [*(fixture(*f) for f in FILES), UNIVERSAL]:
        assert path.stat().st_size < 64 * 1024, "keep the fixtures small"
    tracked = shutil.which("git") and subprocess.run(
        ["git", "ls-files", "."], capture_output=True, text=True, cwd=DATA).stdout.split()
    if tracked:         # in a git checkout
        assert len([t for t in tracked if t.endswith((".dll", ".dylib"))]) == len(FILES) + 1


# ---------------------------------------------------------------------------
# 1. What minildr's readers say
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("folder, name", FILES, ids=map(file_id, FILES))
def test_manifest_records_the_target(folder, name):
    target = TARGETS[folder]
    found = minildr.read_manifest(fixture(folder, name))
    # Built on Linux for another platform: the manifest names the target, not the builder.
    assert found.platform == target.platform
    assert (found.name, found.version, found.abi) == (name, recipe.VERSION, minildr.ABI_VERSION)
    assert {e.name: e.kind for e in found.exports.values()} == EXPORTS[name]
    assert found.contracts == ({"command": recipe.COMMAND.ref} if name == "upper" else {})
    assert ("mingw32-gcc" if folder == "windows-x86_64" else "clang") in found.compiler


@pytest.mark.parametrize("folder, name", FILES, ids=map(file_id, FILES))
def test_examine_says_what_the_file_is(folder, name):
    platform = TARGETS[folder].platform
    info, payload = manifest.examine(fixture(folder, name).read_bytes(), "f")
    assert (info.format, info.kind, info.arch, info.os, info.bits) == (
        FORMAT[platform.os], "shared library", platform.arch, platform.os, 64)
    assert payload == minildr.read_manifest(fixture(folder, name)).encode()


@pytest.mark.parametrize("folder, name", FILES, ids=map(file_id, FILES))
def test_exports_are_exactly_the_declared_ones(folder, name):
    """What build's check_exports saw: not the manifest, not static functions, nothing else."""
    path = fixture(folder, name)
    assert exported_names(path, TARGETS[folder].platform.arch) == set(EXPORTS[name])


@pytest.mark.skipif(HOST.os != "linux", reason="on Linux, PE and Mach-O files are foreign")
@pytest.mark.parametrize("folder", sorted(TARGETS))
def test_open_on_linux_names_the_other_os(folder):
    path = fixture(folder, "greet")
    os_name = {"windows": "Windows", "darwin": "macOS"}[TARGETS[folder].platform.os]
    with pytest.raises(minildr.NotAPlugin, match=f"the format of {os_name}") as err:
        minildr.open(path)
    assert str(path) in str(err.value)


def native_fixture():
    for folder, target in TARGETS.items():
        if target.platform == HOST:
            return fixture(folder, "greet")
    return None


@pytest.mark.skipif(native_fixture() is None,
                    reason=f"no committed fixture was built for this machine ({HOST})")
def test_open_the_fixture_built_for_this_machine(tmp_path):
    """On a Mac or a Windows PC (a fork's CI), the cross-built file loads and runs."""
    path = Path(shutil.copy(native_fixture(), tmp_path))
    with minildr.open(path) as plugin:
        text = plugin.lookup("greet", "const char *(void)")()
        assert minildr.ffi.string(text) == b"Hello from the greet plugin (version 1.0.0)"


# ---------------------------------------------------------------------------
# 2. The same fields, read by pefile and macholib
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("folder, name", PE_FILES, ids=map(file_id, PE_FILES))
def test_pe_reader_agrees_with_pefile(folder, name):
    data = fixture(folder, name).read_bytes()
    ours, theirs = pe.PEFile(data, "f"), pefile.PE(data=data)
    assert ours.arch == {0x8664: "x86_64"}[theirs.FILE_HEADER.Machine]
    assert theirs.is_dll() and ours.kind == "shared library"
    assert ours.optional.Magic == theirs.OPTIONAL_HEADER.Magic == pe.PE32PLUS_MAGIC
    assert [(d.VirtualAddress, d.Size) for d in ours.directories] == [
        (d.VirtualAddress, d.Size) for d in theirs.OPTIONAL_HEADER.DATA_DIRECTORY]
    assert [(c_string(s.Name), s.VirtualAddress, s.VirtualSize, s.SizeOfRawData,
             s.PointerToRawData, s.Characteristics) for s in ours.sections] == [
        (s.Name.rstrip(b"\0").decode(), s.VirtualAddress, s.Misc_VirtualSize, s.SizeOfRawData,
         s.PointerToRawData, s.Characteristics) for s in theirs.sections]
    assert sorted(ours.exports()) == sorted(
        (e.name.decode(), e.ordinal, e.address) for e in theirs.DIRECTORY_ENTRY_EXPORT.symbols)
    section = next(s for s in theirs.sections if s.Name.rstrip(b"\0") == b".minildr")
    raw = section.get_data()[:section.Misc_VirtualSize]
    assert ours.section_bytes(pe.MANIFEST_SECTION) == raw
    assert manifest.parse_note(raw, "f") == minildr.read_manifest(fixture(folder, name)).encode()


def macholib_sections(header) -> list:
    return [(s.segname.rstrip(b"\0").decode(), s.sectname.rstrip(b"\0").decode(), s.addr,
             s.size, s.offset)
            for lc, cmd, data in header.commands if lc.cmd == macho.LC_SEGMENT_64
            for s in data]


@pytest.mark.parametrize("folder, name", MACHO_FILES, ids=map(file_id, MACHO_FILES))
def test_macho_reader_agrees_with_macholib(folder, name):
    path = fixture(folder, name)
    data = path.read_bytes()
    ours = macho.MachOFile(data, "f", TARGETS[folder].platform.arch)
    theirs = MachO(str(path))
    header = theirs.headers[0]
    assert ours.arch == macho.CPU_TYPES[header.header.cputype]
    assert ours.header.filetype == header.header.filetype == macho.MH_DYLIB
    assert ours.header.ncmds == len(header.commands)
    assert [(c_string(s.segname), c_string(s.sectname), s.addr, s.size, s.offset)
            for s in ours.sections()] == macholib_sections(header)
    at, size = next((s[4], s[3]) for s in macholib_sections(header)
                    if s[:2] == ("__TEXT", "__minildr"))
    raw = data[at:at + size]
    assert ours.section_bytes(macho.MANIFEST_SEGMENT, macho.MANIFEST_SECTION) == raw
    assert manifest.parse_note(raw, "f") == minildr.read_manifest(path).encode()

    # The export trie (ours) against the symbol table's external definitions
    # (macholib): same names, same addresses (trie: offset from the header,
    # which __TEXT maps at its vmaddr).
    text = next(cmd for lc, cmd, _ in header.commands
                if lc.cmd == macho.LC_SEGMENT_64 and cmd.segname.rstrip(b"\0") == b"__TEXT")
    symbols = {raw_name.decode().removeprefix("_"): nlist.n_value
               for nlist, raw_name in SymbolTable(theirs).extdefsyms}
    assert {e.name: text.vmaddr + e.address for e in ours.exports()} == symbols
    info = next(cmd for lc, cmd, _ in header.commands if lc.cmd == macho.LC_DYLD_INFO_ONLY)
    assert ours.export_trie() == data[info.export_off:info.export_off + info.export_size]


# A universal file: one slice per CPU, each a whole Mach-O image with its own
# manifest, offsets relative to its slice.
@pytest.mark.parametrize("part", UNIVERSAL_PARTS)
def test_universal_file_gives_each_cpu_its_own_slice(part):
    arch = TARGETS[part].platform.arch
    thin = fixture(part, UNIVERSAL_NAME)
    ours = macho.MachOFile(UNIVERSAL.read_bytes(), "f", arch)
    alone = macho.MachOFile(thin.read_bytes(), "f", arch)
    assert ours.slices == ("x86_64", "aarch64") and ours.base > 0
    assert ours.arch == arch
    raw = ours.section_bytes(macho.MANIFEST_SEGMENT, macho.MANIFEST_SECTION)
    assert minildr.Manifest.decode(manifest.parse_note(raw, "f"), "f").platform.arch == arch
    assert raw == alone.section_bytes(macho.MANIFEST_SEGMENT, macho.MANIFEST_SECTION)
    assert ours.exports() == alone.exports()
    assert exported_names(UNIVERSAL, arch) == {"greet"}
    # macholib reads the same slice at the same offset, with the same sections.
    header = next(h for h in MachO(str(UNIVERSAL)).headers
                  if macho.CPU_TYPES[h.header.cputype] == arch)
    assert header.offset == ours.base
    assert [(c_string(s.segname), c_string(s.sectname), s.addr, s.size, s.offset)
            for s in ours.sections()] == macholib_sections(header)


def test_universal_file_examined_for_this_machine():
    """read_manifest picks this machine's slice, else the first (x86_64)."""
    found = minildr.read_manifest(UNIVERSAL)
    assert found.platform.arch == (HOST.arch if HOST.arch in ("x86_64", "aarch64")
                                   else "x86_64")
    assert found.platform.os == "darwin"


@pytest.mark.parametrize("folder, name", MACHO_FILES, ids=map(file_id, MACHO_FILES))
def test_exports_trie_command_of_newer_linkers(folder, name):
    """Apple's ld for macOS 12+ points at the trie with LC_DYLD_EXPORTS_TRIE instead
    (lld 14 cannot write it): the same file, its LC_DYLD_INFO_ONLY rewritten so."""
    data = fixture(folder, name).read_bytes()
    arch = TARGETS[folder].platform.arch
    before = macho.MachOFile(data, "f", arch)
    lc, at = next((lc, at) for lc, at in before.load_commands()
                  if lc.cmd == macho.LC_DYLD_INFO_ONLY)
    info = before.command(macho.dyld_info_command, lc, at)
    newer = struct.pack("<IIII", macho.LC_DYLD_EXPORTS_TRIE, lc.cmdsize, info.export_off,
                        info.export_size).ljust(lc.cmdsize, b"\0")
    after = macho.MachOFile(patched(data, at, newer), "f", arch)
    assert not [c for c, _ in after.load_commands() if c.cmd == macho.LC_DYLD_INFO_ONLY]
    assert after.exports() == before.exports() != []


# ---------------------------------------------------------------------------
# 3. The recipe makes them again (where the cross tools are installed)
# ---------------------------------------------------------------------------
def without_compiler(found: minildr.Manifest) -> dict:
    """The manifest but the compiler's version line, which another machine may spell
    differently (Debian's clang 14 and Homebrew's clang 17 make the same plugin)."""
    doc = found.to_json()
    doc.pop("compiler")
    return doc


# A cross toolchain or Wine runs: `make cross-test` (CI), not `make test`; the
# committed files above are checked by make test on every machine.
CROSS = pytest.mark.cross


def needs_tools(target):
    """`target`, or skip naming what this machine lacks to build for it."""
    missing = recipe.missing_tools(target)
    if missing:
        cross_tool_missing(f"{', '.join(missing)} not installed (`make cross-tools` installs Debian's "
                    "gcc-mingw-w64-x86-64, clang, lld, llvm); the committed files are tested "
                    "all the same")
    return target


@pytest.mark.parametrize("folder", sorted(TARGETS))
@CROSS
def test_recipe_rebuilds_the_same_plugins(folder, tmp_path):
    target = needs_tools(TARGETS[folder])
    rebuilt = recipe.build_target(target, tmp_path)
    assert [p.name for p in rebuilt] == [fixture(folder, n).name for n in target.plugins]
    for path in rebuilt:
        committed = fixture(folder, path.stem)
        assert without_compiler(minildr.read_manifest(path)) == without_compiler(
            minildr.read_manifest(committed))
        arch = target.platform.arch
        assert exported_names(path, arch) == exported_names(committed, arch)


@CROSS
def test_recipe_rebuilds_the_universal_file(tmp_path):
    needed = [t for t in ("llvm-lipo", "clang", "ld64.lld") if recipe.find_tool(t) is None]
    if needed:
        cross_tool_missing(f"{', '.join(needed)} not installed (Debian: llvm, clang, lld)")
    slices = []
    for part in UNIVERSAL_PARTS:
        target = TARGETS[part]
        sources, header, contracts = recipe.PLUGINS[UNIVERSAL_NAME]
        slices.append(recipe.build_for(target.platform, recipe.compiler_for(target), sources,
                                       name=UNIVERSAL_NAME, version=recipe.VERSION,
                                       exports=header, out_dir=tmp_path / part,
                                       cflags=target.cflags))
    rebuilt = recipe.build_universal(tmp_path / "universal", slices)
    for part in UNIVERSAL_PARTS:
        arch = TARGETS[part].platform.arch
        new, old = (macho.MachOFile(p.read_bytes(), p, arch) for p in (rebuilt, UNIVERSAL))
        assert new.slices == old.slices
        assert new.exports() == old.exports()
        payloads = [manifest.parse_note(f.section_bytes(macho.MANIFEST_SEGMENT,
                                                        macho.MANIFEST_SECTION), "f")
                    for f in (new, old)]
        assert without_compiler(minildr.Manifest.decode(payloads[0], "new")) == \
            without_compiler(minildr.Manifest.decode(payloads[1], "old"))


@pytest.mark.parametrize("folder", sorted(TARGETS))
@CROSS
def test_recipe_is_reproducible(folder, tmp_path):
    """The same sources and tools give the same bytes: a pinned digest survives a rebuild."""
    target = needs_tools(TARGETS[folder])
    first, second = (recipe.build_plugin(target, "greet", tmp_path / d) for d in "ab")
    assert first.read_bytes() == second.read_bytes()


# check_exports runs for every format now: an export the header does not
# declare is refused, each format's way of making one.
UNDECLARED = {
    "windows-x86_64": "__declspec(dllexport) int secret(void) { return 7; }\n",
    "windows-msvc-x86_64": "__declspec(dllexport) int secret(void) { return 7; }\n",
    "macos-arm64": '__attribute__((visibility("default"))) int secret(void) { return 7; }\n',
}


def build_p(target, tmp_path: Path) -> Path:
    """Plugin p from tmp_path/p.c and p.h, built for `target`."""
    return recipe.build_for(target.platform, recipe.compiler_for(target),
                            [tmp_path / "p.c", *target.extra_sources], name="p",
                            exports=tmp_path / "p.h", out_dir=tmp_path / "out",
                            cflags=target.cflags)


@pytest.mark.parametrize("folder", sorted(UNDECLARED))
@CROSS
def test_build_for_refuses_an_undeclared_export(folder, tmp_path):
    target = needs_tools(TARGETS[folder])
    (tmp_path / "p.h").write_text("int answer(void);\n")
    (tmp_path / "p.c").write_text("int answer(void) { return 42; }\n" + UNDECLARED[folder])
    with pytest.raises(BuildError, match="also exports secret, which this header does not "
                                         "declare") as err:
        build_p(target, tmp_path)
    assert str(tmp_path / "p.h") in str(err.value)
    assert not (tmp_path / "out" / f"p{SUFFIX[target.platform.os]}").exists()


@pytest.mark.parametrize("name", ["v1.2.3", "my.plugin", "greet-2"])
@CROSS
def test_dll_names_with_dots_and_dashes(name, tmp_path):
    """build's names may hold '.' and '-': the .def file's LIBRARY line must take them."""
    target = needs_tools(TARGETS["windows-x86_64"])
    sources, header, _ = recipe.PLUGINS["greet"]
    path = recipe.build_for(target.platform, recipe.compiler_for(target), sources, name=name,
                            exports=header, out_dir=tmp_path, cflags=target.cflags)
    assert path.name == f"{name}.dll"
    assert pefile.PE(str(path)).DIRECTORY_ENTRY_EXPORT.name == f"{name}.dll".encode()


@pytest.mark.parametrize("folder", sorted(UNDECLARED))
@CROSS
def test_build_for_refuses_a_declared_export_not_defined(folder, tmp_path):
    target = needs_tools(TARGETS[folder])
    (tmp_path / "p.h").write_text("int answer(void);\nint missing(void);\n")
    (tmp_path / "p.c").write_text("int answer(void) { return 42; }\n")
    with pytest.raises(BuildError) as err:
        build_p(target, tmp_path)
    # The Windows linkers refuse the .def entry themselves; on macOS the
    # file links and check_exports finds the name missing.
    assert "missing" in str(err.value)


# ---------------------------------------------------------------------------
# 4. The Windows loader (Wine) loads the DLL
# ---------------------------------------------------------------------------
def find_wine():
    found = shutil.which("wine") or shutil.which("wine64")
    return found or next((p for p in ("/usr/lib/wine/wine64", "/usr/lib/wine/wine")
                          if os.access(p, os.X_OK)), None)


@pytest.fixture(scope="module")
def wine():
    """Wine in a prefix of its own (~700 MB, made in a few seconds), removed afterwards."""
    program = find_wine()
    if program is None or recipe.missing_tools(TARGETS["windows-x86_64"]):
        cross_tool_missing("needs Wine and MinGW-w64 gcc (Debian: wine64, gcc-mingw-w64-x86-64)")
    prefix = tempfile.mkdtemp(prefix="minildr-wine-")
    env = {**os.environ, "WINEPREFIX": prefix, "WINEDEBUG": "-all",
           "WINEDLLOVERRIDES": "mscoree,mshtml="}     # no Mono or Gecko install prompts
    env.pop("DISPLAY", None)
    try:
        yield lambda *args: subprocess.run([program, *map(str, args)], env=env,
                                           capture_output=True, text=True, timeout=300)
    finally:
        server = Path(program).with_name("wineserver")
        server = str(server) if server.exists() else shutil.which("wineserver")
        if server:      # this prefix's own wineserver only
            subprocess.run([server, "-k"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def loadgreet(wine, tmp_path_factory) -> Path:
    host = tmp_path_factory.mktemp("wine") / "loadgreet.exe"
    subprocess.run(["x86_64-w64-mingw32-gcc", "-municode", "-O2", "-s", DATA / "loadgreet.c",
                    "-o", host], check=True)
    return host


@pytest.mark.parametrize("folder", [f for f in sorted(TARGETS)
                                    if TARGETS[f].platform.os == "windows"])
@CROSS
def test_wine_loads_the_greet_dll(wine, loadgreet, folder, tmp_path):
    """Both DLLs, GNU ld's and lld-link's (MSVC's layout), in the Windows loader."""
    host = loadgreet
    dll = Path(shutil.copy(fixture(folder, "greet"), tmp_path))
    payload = len(minildr.read_manifest(dll).encode())
    done = wine(host, dll)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.replace("\r\n", "\n").splitlines() == [
        "greet: Hello from the greet plugin (version 1.0.0)",
        "message exported: no",
        "minildr_manifest exported: no",
        f"manifest section mapped: owner minildr, {payload} bytes of JSON",
    ]


@CROSS
def test_wine_calls_exported_variables_and_a_contract(wine, tmp_path):
    """echo's `calls` and upper's vtable (function pointers the loader relocates)."""
    host = tmp_path / "loadcommand.exe"
    subprocess.run(["x86_64-w64-mingw32-gcc", "-municode", "-O2", "-s", "-Wall", "-Werror",
                    f"-I{INCLUDE_DIR}",
                    f"-I{recipe.EXAMPLES / 'command'}", DATA / "loadcommand.c", "-o", host],
                   check=True)
    dlls = [Path(shutil.copy(fixture("windows-x86_64", n), tmp_path)) for n in ("echo", "upper")]
    done = wine(host, *dlls)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.replace("\r\n", "\n").splitlines() == [
        "echo run: AGAIN, calls: 2",
        "upper upper: status 0, output HI FROM WINE, live outputs 1",
        "upper refuses: status 1, control character 0x01 at byte 4: a command takes one "
        "line of text; live outputs 0",
        "struct_size ok",
    ]


# ---------------------------------------------------------------------------
# 5. Damaged copies
# ---------------------------------------------------------------------------
def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def damage_pe_export_names(data: bytes) -> bytes:
    """Point the export name table far outside the file."""
    f = pe.PEFile(data, "f")
    entry = f.directories[pe.IMAGE_DIRECTORY_ENTRY_EXPORT]
    at = f.file_offset(entry.VirtualAddress, 40, "x") + 32          # AddressOfNames
    return patched(data, at, struct.pack("<I", 0x7FFF0000))


def damage_pe_export_index(data: bytes) -> bytes:
    f = pe.PEFile(data, "f")
    d = f.export_directory()
    at = f.file_offset(d.AddressOfNameOrdinals, 2, "x")
    return patched(data, at, struct.pack("<H", 999))


def trie_at(data: bytes, arch: str = "x86_64") -> int:
    """Where the export trie starts in the file."""
    f = macho.MachOFile(data, "f", arch)
    return next(f.command(macho.dyld_info_command, lc, off).export_off
                for lc, off in f.load_commands() if lc.cmd == macho.LC_DYLD_INFO_ONLY)


def damage_trie_loop(data: bytes) -> bytes:
    """greet's trie: root -> "_greet" -> terminal node; make the edge lead back to the root."""
    at = trie_at(data)
    assert data[at:at + 2] == b"\0\1" and data[at + 2:at + 9] == b"_greet\0"
    return patched(data, at + 9, b"\0")


def damage_trie_number(data: bytes) -> bytes:
    """A LEB128 number that never ends: every byte has its continuation bit."""
    at = trie_at(data)
    return patched(data, at + 9, b"\xff" * 40)


DAMAGED = {
    "pe-export-names-outside": ("windows-x86_64", damage_pe_export_names,
                                "export name table", "is in no section's data"),
    "pe-export-index": ("windows-x86_64", damage_pe_export_index, "index 999 past its"),
    "macho-trie-loop": ("macos-x86_64", damage_trie_loop, "node 0 is reached twice"),
    "macho-trie-number": ("macos-x86_64", damage_trie_number, "runs past the trie"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_exports_are_refused_naming_the_file(case, tmp_path):
    folder, damage, *fragments = DAMAGED[case]
    path = tmp_path / f"bad{SUFFIX[TARGETS[folder].platform.os]}"
    path.write_bytes(damage(fixture(folder, "greet").read_bytes()))
    with pytest.raises(minildr.NotAPlugin) as err:
        exported_names(path, TARGETS[folder].platform.arch)
    assert str(err.value).startswith(f"{path}: ")
    for fragment in [*fragments, "rebuild the plugin, or copy it again"]:
        assert fragment in str(err.value)


def read_everything(data: bytes, arch: str):
    """Everything the readers can say about the bytes: NotAPlugin is the only way to fail."""
    try:
        info, payload = manifest.examine(data, "fuzz")
        f = pe.PEFile(data, "fuzz") if info.format == "PE" else macho.MachOFile(data, "fuzz",
                                                                                arch)
        f.exports()
    except minildr.NotAPlugin as exc:
        assert str(exc).startswith("fuzz: ")


FUZZED = [(fixture(*f), TARGETS[f[0]].platform.arch) for f in FILES] + [
    (UNIVERSAL, arch) for arch in ("x86_64", "aarch64")]


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(60), deadline=None)
@given(st.sampled_from(FUZZED), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)),
                                         min_size=1, max_size=8),
       st.one_of(st.none(), st.integers(0, 64 * 1024)))
def test_fuzz_mutated_real_files(which, edits, cut):
    """Bytes changed in the headers and tables (the first 4 kB), and cuts anywhere."""
    path, arch = which
    data = bytearray(path.read_bytes())
    for at, value in edits:
        data[at % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1):]
    read_everything(bytes(data), arch)


@pytest.mark.fuzz
@settings(max_examples=fuzz_examples(50), deadline=None)
@given(st.sampled_from(MACHO_FILES), st.binary(min_size=1, max_size=64), st.integers(0, 63))
def test_fuzz_export_trie(which, noise, where):
    """Any bytes at all inside the export trie."""
    folder, name = which
    data, arch = fixture(folder, name).read_bytes(), TARGETS[folder].platform.arch
    read_everything(patched(data, trie_at(data, arch) + where, noise), arch)
