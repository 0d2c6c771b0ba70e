"""The native loader's reading of ELF agrees with pyelftools on every field it reads.

Over every shared library the native tests use: the course plugins, the
relocs plugin under several flags, the system libraries, and the AArch64
libraries in tests/data/aarch64/ (cross-compiled with Debian's
gcc-aarch64-linux-gnu; see build.sh there). Then the parts with their own
logic: both hash functions and lookups, DT_RELR decoding, and the AArch64
relocation table applied to a real AArch64 file's relocations.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from platforms import host, requires_elf, requires_linux, requires_native_loader

if host()[0] == "windows":     # minildr.native.libc opens the C library with dlopen(NULL)
    pytest.skip("POSIX only (not Windows): the native loader's modules need a POSIX libc",
                allow_module_level=True)

from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_D_TAG, ENUM_RELOC_TYPE_x64

import minildr
from minildr.formats import elf
from minildr.native import aarch64, lookup, relocate, resolve, x86_64
from minildr.native import mapping
from minildr.native.parse import Plan, decode_relr, parse
from minildr.native.classes import Rel
from minildr.native.trace import Trace

from native_util import AARCH64, LIB_DIRS, build_relocs, linker_supports

SYSTEM = ["libz.so.1", "libbz2.so.1.0", "liblzma.so.5"]
AARCH64_FILES = sorted(p.name for p in AARCH64.glob("relocs*.so"))


def find_system(name: str) -> Path:
    for folder in LIB_DIRS:
        if (Path(folder) / name).is_file():
            return (Path(folder) / name).resolve()
    pytest.skip(f"{name} is not installed on this machine")


@pytest.fixture(scope="module")
def libraries(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("elf")
    libs = {"greet": built["greet"], "echo": built["echo"],
            "relocs": build_relocs(out / "plain"),
            "relocs-sysv": build_relocs(out / "sysv", ["-Wl,--hash-style=sysv"]),
            "relocs-noplt-now": build_relocs(out / "now", ["-fno-plt", "-Wl,-z,now"])}
    if linker_supports("pack-relative-relocs"):
        libs["relocs-relr"] = build_relocs(out / "relr", ["-Wl,-z,pack-relative-relocs"])
    return libs


def all_names():
    """Libraries built here or installed (ELF on Linux only), and the committed AArch64 files."""
    here = ["greet", "echo", "relocs", "relocs-sysv", "relocs-noplt-now", "relocs-relr"]
    return ([pytest.param(n, marks=requires_elf) for n in here]
            + [pytest.param(n, marks=requires_linux("reads the system's ELF libraries"))
               for n in SYSTEM]
            + [f"aarch64/{n}" for n in AARCH64_FILES])


def path_of(name: str, request) -> Path:
    if name in SYSTEM:
        return find_system(name)
    if name.startswith("aarch64/"):
        return AARCH64 / name.split("/", 1)[1]
    libraries = request.getfixturevalue("libraries")       # built only where needed
    if name not in libraries:
        pytest.skip(f"{name} needs a linker with -z pack-relative-relocs")
    return libraries[name]


def test_the_aarch64_files_are_there():
    assert len(AARCH64_FILES) >= 4 and (AARCH64 / "tls.so").is_file()


@pytest.mark.parametrize("name", all_names())
def test_agrees_with_pyelftools(name, request):
    path = path_of(name, request)
    plan = parse(path.read_bytes(), str(path))
    with open(path, "rb") as stream:
        theirs = ELFFile(stream)
        check_segments(plan, theirs)
        dyn = next(s for s in theirs.iter_segments() if s["p_type"] == "PT_DYNAMIC")
        check_dynamic(plan, dyn)
        check_symbols(plan, theirs, dyn)
        check_versions(plan, theirs)
        check_relocations(plan, theirs, dyn)
        check_hash_tables(plan, theirs)


def check_segments(plan: Plan, theirs: ELFFile) -> None:
    loads = [s.header for s in theirs.iter_segments() if s["p_type"] == "PT_LOAD"]
    assert [tuple(ph) for ph in plan.loads] == [
        (1, s.p_flags, s.p_offset, s.p_vaddr, s.p_paddr, s.p_filesz, s.p_memsz, s.p_align)
        for s in loads]
    relro = [s for s in theirs.iter_segments() if s["p_type"] == "PT_GNU_RELRO"]
    if relro:
        start, size = relro[0]["p_vaddr"], relro[0]["p_memsz"]
        assert plan.relro == (start & ~4095, (start + size) & ~4095)


def check_dynamic(plan: Plan, dyn) -> None:
    ours = [(d.d_tag, d.d_val) for d in plan.elf.dynamic()]
    tags = [(ENUM_D_TAG.get(t.entry.d_tag, t.entry.d_tag), t.entry.d_val) for t in dyn.iter_tags()
            if t.entry.d_tag != "DT_NULL"]
    assert ours == tags
    assert plan.needed == [t.needed for t in dyn.iter_tags() if t.entry.d_tag == "DT_NEEDED"]


def check_symbols(plan: Plan, theirs: ELFFile, dyn) -> None:
    dynsym = theirs.get_section_by_name(".dynsym")
    assert len(plan.symbols) == dyn.num_symbols() == dynsym.num_symbols()
    for ours, name, sym in zip(plan.symbols, plan.names, dynsym.iter_symbols()):
        e = sym.entry
        assert name == sym.name
        assert (ours.st_value, ours.st_size, ours.st_name) == (e.st_value, e.st_size, e.st_name)
        assert elf.STB(elf.ELF64_ST_BIND(ours.st_info)).name in e.st_info.bind
        assert elf.STT(elf.ELF64_ST_TYPE(ours.st_info)).name in e.st_info.type.replace("STT_LOOS", "STT_GNU_IFUNC")
        assert elf.STV(elf.ELF64_ST_VISIBILITY(ours.st_other)).name in e.st_other.visibility
        shndx = {"SHN_UNDEF": elf.SHN_UNDEF, "SHN_ABS": elf.SHN_ABS}.get(e.st_shndx, e.st_shndx)
        assert ours.st_shndx == shndx


def check_versions(plan: Plan, theirs: ELFFile) -> None:
    versym = theirs.get_section_by_name(".gnu.version")
    if versym is None:
        assert plan.versym == ()
        return
    named = {"VER_NDX_LOCAL": 0, "VER_NDX_GLOBAL": 1}
    assert list(plan.versym) == [named.get(versym.get_symbol(i).entry.ndx, versym.get_symbol(i).entry.ndx)
                                 for i in range(versym.num_symbols())]
    needs = theirs.get_section_by_name(".gnu.version_r")
    expected = {}
    if needs is not None:
        for _, auxes in needs.iter_versions():
            for aux in auxes:
                expected[aux.entry.vna_other] = aux.name
    assert plan.versions == expected


def check_relocations(plan: Plan, theirs: ELFFile, dyn) -> None:
    tables = dyn.get_relocation_tables()
    ours = {t: [(r.offset, r.type, r.symbol, r.addend) for r in plan.relocations if r.table == t]
            for t in ("RELA", "JMPREL", "RELR")}
    for table in ("RELA", "JMPREL"):
        want = [(r.entry.r_offset, r.entry.r_info_type, r.entry.r_info_sym, r.entry.r_addend)
                for r in tables[table].iter_relocations()] if table in tables else []
        assert sorted(ours[table]) == sorted(want), table   # RELATIVE ones first, in bulk
    relr = [r.entry.r_offset for r in tables["RELR"].iter_relocations()] if "RELR" in tables else []
    assert [offset for offset, *_ in ours["RELR"]] == relr


def check_hash_tables(plan: Plan, theirs: ELFFile) -> None:
    gnu, sysv = theirs.get_section_by_name(".gnu.hash"), theirs.get_section_by_name(".hash")
    assert (plan.gnu is None, plan.sysv is None) == (gnu is None, sysv is None)
    if gnu is not None:
        assert plan.elf.read(elf.Elf_GnuHashHeader, plan.gnu.offset, "")._asdict() == {
            k: gnu.params[k] for k in ("nbuckets", "symoffset", "bloom_size", "bloom_shift")}
    if sysv is not None:
        header = plan.elf.read(elf.Elf_HashHeader, plan.sysv.offset, "")
        assert (header.nbucket, header.nchain) == (sysv.params["nbuckets"], sysv.params["nchains"])
    table = gnu or sysv
    for index, name in enumerate(plan.names):
        if index and lookup.exported(plan, index):
            found = lookup.find(plan, name)
            assert found is not None and plan.names[found] == name
            assert table.get_symbol(name) is not None


# -- the hash functions and lookups on their own -----------------------------------
@pytest.mark.parametrize("name, gnu, sysv", [
    (b"", 0x1505, 0), (b"printf", 0x156B2BB8, 0x077905A6), (b"exit", 0x7C967E3F, 0x0006CF04),
    (b"syscall", 0xBAC212A0, 0x0B09985C)])
def test_hash_functions_known_values(name, gnu, sysv):
    """Known values of both functions (the empty name: the GNU seed 5381 and SysV's 0)."""
    assert lookup.gnu_hash(name) == gnu
    assert lookup.sysv_hash(name) == sysv


@requires_elf
def test_bloom_filter_rejects_without_touching_symbols(libraries):
    path = libraries["relocs"]
    plan = parse(path.read_bytes(), str(path))
    assert plan.gnu is not None
    absent = [f"no_such_{i}" for i in range(200)]
    rejected = sum(1 for n in absent if not list(lookup.gnu_candidates(plan, n)))
    assert rejected > 150            # most absent names stop at the Bloom filter
    assert all(lookup.find(plan, n) is None for n in absent)


def test_decode_relr_by_hand():
    # An address, then a bitmap marking words 1, 2 and 63 after it; then one more address.
    words = (0x1000, (1 << 1 | 1 << 2 | 1 << 63) | 1, 0x3000)
    assert decode_relr(words) == [0x1000, 0x1008, 0x1010, 0x1000 + 8 + 62 * 8, 0x3000]
    # Two bitmaps in a row: the second one starts 63 words after the first.
    assert decode_relr((0x2000, 0b11, 0b11)) == [0x2000, 0x2008, 0x2008 + 63 * 8]


# -- AArch64: the table, on real AArch64 files -----------------------------------
def test_x86_64_table_names_the_abi_values():
    for number, (name, _) in list(x86_64.SUPPORTED.items()) + list(x86_64.REFUSED.items()):
        assert ENUM_RELOC_TYPE_x64[name] == number, name


@pytest.mark.parametrize("name", AARCH64_FILES + ["tls.so"])
def test_aarch64_table_names_what_readelf_names(name):
    """Per relocation, our table's name for its number is binutils' name for it.

    (pyelftools' AArch64 dynamic numbers follow an old draft, 1032 is not
    IRELATIVE there, so GNU readelf is the reference here.)
    """
    readelf = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if readelf is None:
        pytest.skip("no readelf (binutils) on this machine")
    path = AARCH64 / name
    listing = subprocess.run([readelf, "-rW", str(path)], capture_output=True, text=True).stdout
    theirs = {int(line.split()[0], 16): line.split()[2] for line in listing.splitlines()
              if " R_AARCH64_" in line}
    data = path.read_bytes()
    f = elf.ElfFile(data, str(path))
    tags = {d.d_tag: d.d_val for d in f.dynamic()}
    seen = 0
    for addr, size in ((elf.DT_RELA, elf.DT_RELASZ), (elf.DT_JMPREL, elf.DT_PLTRELSZ)):
        at = f.file_offset(tags[addr], tags[size], "relocations")
        for i in range(tags[size] // 24):
            r_offset, r_info, _ = struct.unpack_from("<QQq", data, at + 24 * i)
            number = elf.ELF64_R_TYPE(r_info)
            ours = {**aarch64.SUPPORTED, **aarch64.REFUSED}[number][0]
            assert ours == theirs[r_offset], hex(r_offset)
            seen += 1
    assert seen == len(theirs) > 0


@pytest.mark.parametrize("name", AARCH64_FILES)
def test_aarch64_files_use_only_supported_types(name):
    path = AARCH64 / name
    plan = parse(path.read_bytes(), str(path))
    assert plan.arch is aarch64
    used = {aarch64.SUPPORTED[r.type][0] for r in plan.relocations}
    assert {"R_AARCH64_RELATIVE", "R_AARCH64_GLOB_DAT", "R_AARCH64_ABS64",
            "R_AARCH64_IRELATIVE"} <= used


def test_aarch64_tls_is_read():
    """gcc's default on AArch64 is TLS descriptors: tls.so's `per_thread` is one R_AARCH64_TLSDESC
    (loaded for real under qemu-aarch64 in test_native_aarch64.py)."""
    path = AARCH64 / "tls.so"
    plan = parse(path.read_bytes(), str(path))
    assert plan.tls is not None and plan.tls.p_filesz == 4
    assert [plan.names[r.symbol] for r in plan.other if plan.rel_class(r) is Rel.TLSDESC] == ["per_thread"]


@requires_native_loader
def test_aarch64_library_cannot_be_loaded_on_another_machine():
    if minildr.HOST.arch == "aarch64":
        pytest.skip("this machine is AArch64: the file is loadable here")
    with pytest.raises(minildr.UnsupportedELF, match="library for aarch64"):
        minildr.native.load(AARCH64 / "relocs.so")


@requires_linux("maps memory with Linux's mmap")
def test_aarch64_relocations_applied_by_the_table(tmp_path):
    """Map a real AArch64 library (never run it) and apply its relocations by the table.

    Its symbols bind against this process (libc's names exist on every Linux);
    IFUNC resolvers are AArch64 code, so the IFUNC ones are checked, not run.
    """
    path = AARCH64 / "relocs-noplt-now.so"
    plan = parse(path.read_bytes(), str(path))
    plan.versions = {}              # AArch64 glibc's versions (GLIBC_2.17) are not this libc's
    plan.other = [r for r in plan.other
                        if aarch64.SUPPORTED[r.type][1] is not Rel.IRELATIVE
                        and elf.ELF64_ST_TYPE(plan.symbols[r.symbol].st_info) != elf.STT.GNU_IFUNC]
    trace = Trace(True)                 # every symbol's event, not a count per source
    bound = resolve.bind_symbols(plan, [], trace)
    base = mapping.reserve(plan, trace)
    try:
        with open(path, "rb") as f:
            mapping.map_segments(plan, base, f.fileno(), trace)
        relocate.relocate(plan, base, bound, trace)
        memory = relocate.ffi.buffer(relocate.ffi.cast("char *", base), plan.span)
        kinds = set()
        for r in plan.relocations:
            name, how = aarch64.SUPPORTED[r.type]
            word = struct.unpack_from("<Q", memory, r.offset)[0]
            binding = bound.get(r.symbol, resolve.NOWHERE)
            if how is Rel.RELATIVE:
                assert word == base + r.addend, name
            elif how is Rel.SYMBOLIC:
                assert word == (base if binding.base_relative else 0) + binding.value + r.addend, name
            kinds.add(name)
        assert {"R_AARCH64_RELATIVE", "R_AARCH64_GLOB_DAT", "R_AARCH64_ABS64"} <= kinds
        strlen = next(e for e in trace.events if e.step == "resolve" and e.data["symbol"] == "strlen")
        assert strlen.data["source"] == "the host process"
    finally:
        mapping.unmap(base, plan.span)


def test_aarch64_tls_table_has_the_psabi_numbers():
    """AAELF64, table "Dynamic relocations": 1028/1029 are TLS_IMPDEF1/IMPDEF2, which Linux
    implements as DTPMOD/DTPREL (the note under the table); 1030 TLS_TPREL; 1031 TLSDESC."""
    expected = {1028: ("R_AARCH64_TLS_DTPMOD", Rel.DTPMOD), 1029: ("R_AARCH64_TLS_DTPREL", Rel.DTPOFF),
                1030: ("R_AARCH64_TLS_TPREL", Rel.TPOFF), 1031: ("R_AARCH64_TLSDESC", Rel.TLSDESC)}
    assert {n: aarch64.SUPPORTED[n] for n in expected} == expected
    header = Path("/usr/include/elf.h")                 # glibc's names: the platform's choice
    if header.exists():
        defined = dict(re.findall(r"#define\s+(R_AARCH64_\w+)\s+(\d+)", header.read_text()))
        for number, (name, _) in expected.items():
            assert int(defined[name]) == number, name


# -- names: checked at once, decoded when used; a damaged one stops a load only if used --
@requires_native_loader
@pytest.mark.parametrize("name, stops", [("greet", False), ("__cxa_finalize", True)])
def test_a_damaged_symbol_name_stops_a_load_only_if_a_relocation_uses_it(greet_so, name, stops):
    """`greet` is exported and looked up, never relocated; `__cxa_finalize` is bound (GLOB_DAT)."""
    plan = parse(greet_so.read_bytes(), str(greet_so))
    index = plan.names.index(name)
    assert (index in {r.symbol for r in plan.other}) == stops
    symtab = elf.DynamicSection(plan.elf).offset(elf.DT.SYMTAB, 0, "symbol table")
    at = symtab + index * 24                              # st_name: the first 4 bytes of an entry
    greet_so.write_bytes(greet_so.read_bytes()[:at] + struct.pack("<I", 0xFFFFFF)
                         + greet_so.read_bytes()[at + 4:])
    if stops:
        with pytest.raises(minildr.NotAPlugin, match="past its string table"):
            minildr.native.load(greet_so)
    else:
        assert isinstance(minildr.native.plan(greet_so).names, elf.Names)   # each when asked
        with minildr.native.load(greet_so) as lib:          # loads: no relocation names it
            assert not lib.unloaded
            with pytest.raises(minildr.NotAPlugin, match="past its string table"):
                lib.lookup("greet")                           # asked for: now it is used
