"""minildr.open(path, loader="native"): the same plugins, the same answers, the same checks.

Every course plugin runs through both loaders (parametrised), so the native
loader is held to what dlopen does. Then what only the native loader shows:
its trace and layout, W^X and RELRO as /proc/self/maps sees them, the
sealed image it maps, init/fini and atexit order, and clean failure.
"""
from __future__ import annotations

import collections
import gc
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import minildr
import minildr.native
from minildr.formats import elf
from minildr.native.classes import Rel
from minildr.native.parse import parse

from helpers import ROOT, write_plugin
from native_util import (build_relocs, linker_supports, mapped_range, mappings_of, native_host)

pytestmark = native_host
GREET_T = "const char *(void)"
LOADERS = ["system", "native"]
ffi = minildr.ffi


# -- the course's plugins, through both loaders ---------------------------------
@pytest.mark.parametrize("loader", LOADERS)
def test_greet(greet_so, loader):
    with minildr.open(greet_so, loader=loader) as plugin:
        assert ffi.string(plugin.lookup("greet", GREET_T)()) == \
            b"Hello from the greet plugin (version 0.1.0)"
        sym = plugin.lookup("greet")
        assert (sym.name, sym.kind, sym.ctype) == ("greet", "function", GREET_T)
        with pytest.raises(minildr.SymbolNotFound):
            plugin.lookup("message")                 # static: not exported
        with pytest.raises(minildr.SymbolTypeError):
            plugin.lookup("greet", "int (void)")
    with pytest.raises(minildr.PluginClosed):
        plugin.lookup("greet")


@pytest.mark.parametrize("loader", LOADERS)
def test_echo(echo_so, loader):
    with minildr.open(echo_so, loader=loader) as plugin:
        run = plugin.lookup("run", "size_t (const char *, char *, size_t)")
        calls = plugin.lookup("calls", "int")
        out = ffi.new("char[8]")
        assert run(b"hello, world", out, 8) == 12
        assert ffi.string(out) == b"HELLO, "
        assert run(b"abc", out, 8) == 3 and ffi.string(out) == b"ABC"
        assert calls[0] == 2                          # .bss starts at zero, and is shared
        assert ffi.string(plugin.lookup("name", GREET_T)()) == b"echo"


FLAGS = [(), ("-Wl,-z,now",), ("-fno-plt",), ("-fstack-protector-strong",),
         ("-D_FORTIFY_SOURCE=2", "-O2"), ("-Wl,--hash-style=sysv",), ("-Wl,--hash-style=gnu",),
         ("-Wl,-z,pack-relative-relocs",)]


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: " ".join(f) or "default")
def test_relocs_plugin_agrees_across_loaders(tmp_path, monkeypatch, compiler, flags):
    """Every relocation kind (see tests/native/native_src/relocs.c), under each common flag.

    This is how the supported set was established: whatever gcc and clang
    emit here must be in the architecture's table, or parse would refuse it.
    """
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (Debian: apt install {compiler})")
    if "-Wl,-z,pack-relative-relocs" in flags and not linker_supports("pack-relative-relocs"):
        pytest.skip("this linker has no -z pack-relative-relocs (binutils >= 2.38 has)")
    monkeypatch.setenv("CC", compiler)
    path = build_relocs(tmp_path, flags)
    plan = parse(path.read_bytes(), str(path))
    kinds = {plan.arch.SUPPORTED[r.type][1] for r in plan.relocations}
    assert {Rel.RELATIVE, Rel.SYMBOLIC, Rel.IRELATIVE} <= kinds
    results = {}
    for loader in LOADERS:
        with minildr.open(path, loader=loader) as plugin:
            out = ffi.new("char[64]")
            n = plugin.lookup("describe", "int (int, char *, size_t)")(3, out, 64)
            results[loader] = (
                n, ffi.string(out), plugin.lookup("sum_table", "int (void)")(),
                plugin.lookup("answer", "int (void)")(), plugin.lookup("double_it", "int (int)")(21),
                plugin.lookup("ptr_is_libc_strlen", "int (void)")(), plugin.lookup("counter", "int")[0],
                ffi.string(plugin.lookup("word", "const char *(int)")(9)))
    assert results["native"] == results["system"] == (
        10, b"3 is three", 36, 42, 42, 1, 1, b"many")


def test_hash_styles_are_what_the_flags_asked(tmp_path):
    """The two lookups are really exercised: each file has only the table asked for."""
    for style, has_gnu, has_sysv in (("sysv", False, True), ("gnu", True, False), ("both", True, True)):
        path = build_relocs(tmp_path / style, [f"-Wl,--hash-style={style}"])
        plan = parse(path.read_bytes(), str(path))
        assert (plan.gnu is not None, plan.sysv is not None) == (has_gnu, has_sysv)
        with minildr.native.load(path) as lib:
            assert lib.lookup("sum_table", "int (void)")() == 36
            assert lib.address("no_such_symbol") is None
            assert lib.address("answer_generic") is None      # static: not in the table


def test_pack_relative_relocs_gives_relr(tmp_path):
    if not linker_supports("pack-relative-relocs"):
        pytest.skip("this linker has no -z pack-relative-relocs (binutils >= 2.38 has)")
    path = build_relocs(tmp_path, ["-Wl,-z,pack-relative-relocs"])
    plan = parse(path.read_bytes(), str(path))
    relr = [r for r in plan.relocations if r.table == "RELR"]
    assert len(relr) >= 16                             # the words and pointers tables
    assert not any(r.table == "RELA" and r.type == 8 for r in plan.relocations)


# -- the same checks: the bad-input corpus, through loader="native" ---------------
def test_bad_input_corpus_is_refused_the_same_way(built, tmp_path):
    spec = importlib.util.spec_from_file_location("test_bad_inputs", ROOT / "tests" / "core" / "test_bad_inputs.py")
    bad_inputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bad_inputs)
    CORPUS, make_case = bad_inputs.CORPUS, bad_inputs.make_case
    for name, case in CORPUS.items():
        path = make_case(name, tmp_path, built)
        with pytest.raises(minildr.PluginError) as err:
            minildr.open(path, loader="native")
        assert type(err.value) is case.error, f"{name}: {err.value!r}"
        assert os.fspath(path) in str(err.value)
        for fragment in case.fragments:
            assert fragment in str(err.value), name


# -- what it maps: the sealed image, with W^X and RELRO --------------------------
def test_native_maps_the_sealed_image_not_the_file(greet_so, tmp_path):
    path = tmp_path / "sealed-check.so"              # a name no other test maps
    greet_so.rename(path)
    with minildr.open(path, loader="native") as plugin:
        rows = mappings_of("minildr:sealed-check.so")
        assert rows, "the mapping must come from the sealed memfd"
        assert not mappings_of(os.fspath(path))
        assert ffi.string(plugin.lookup("greet", GREET_T)()).startswith(b"Hello")
    assert not mappings_of("minildr:sealed-check.so")


def test_layout_trace_wx_and_relro(echo_so):
    seen = []
    with minildr.native.load(echo_so, trace=seen.append) as lib:
        steps = [e.step for e in lib.trace.events]
        assert seen == lib.trace.events
        for step in ("needed", "resolve", "map", "relocate", "relro", "init"):
            assert step in steps, step
        assert steps.index("relocate") < steps.index("relro") < steps.index("init")
        layout = lib.layout
        assert layout[0].start == 0 and layout[-1].end == lib.plan.span
        assert all(a.end == b.start for a, b in zip(layout, layout[1:]))
        assert {row.prot for row in layout} >= {"r-x", "rw-", "r--"}
        # What the kernel says: never writable and executable; RELRO read-only now.
        maps = mapped_range(lib.base, lib.base + lib.plan.span)
        assert maps and not any("wx" in line.split()[1] for line in maps)
        start, end = lib.plan.relro
        relro = mapped_range(lib.base + start, lib.base + end)
        assert relro and all(line.split()[1].startswith("r--") for line in relro)
        counts = lib.trace.counts()
        assert counts["R_X86_64_JUMP_SLOT" if minildr.HOST.arch == "x86_64"
                      else "R_AARCH64_JUMP_SLOT"] >= 1
        base, span = lib.base, lib.plan.span
        assert lib.layout[0].as_dict()["address"] == base
    assert lib.trace.events[-1].step == "unmap"
    assert not mapped_range(base, base + span) or all(
        "minildr" not in line for line in mapped_range(base, base + span))


def test_close_waits_for_live_functions(greet_so):
    plugin = minildr.open(greet_so, loader="native")
    greet = plugin.lookup("greet", GREET_T)
    library = plugin._library
    plugin.close()
    assert not library.unloaded                   # greet is still held: still mapped
    assert ffi.string(greet()).startswith(b"Hello")
    del greet
    gc.collect()
    assert library.unloaded


def test_garbage_collection_never_unmaps(greet_so):
    """Dropping every reference without close() leaves the code mapped (closing is explicit)."""
    lib = minildr.native.load(greet_so)
    base = lib.base
    del lib
    gc.collect()
    assert any("r-x" in line.split()[1] for line in mapped_range(base, base + 0x2000))


# -- initialisers, finalisers and atexit, in a child process ----------------------
LIFECYCLE_C = r"""
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
static void say(const char *what) { write(1, what, strlen(what)); write(1, "\n", 1); }
static void at_exit(void) { say("atexit"); }
__attribute__((constructor)) static void start(void) { say("constructor"); atexit(at_exit); }
__attribute__((destructor)) static void stop(void) { say("destructor"); }
int ping(void) { say("ping"); return 1; }
"""

CHILD = """
import sys, minildr
plugin = minildr.open(sys.argv[1], loader=sys.argv[2])
plugin.lookup("ping", "int (void)")()
if sys.argv[3] == "close":
    plugin.close()
    print("closed", flush=True)
print("exiting", flush=True)
"""


@pytest.mark.parametrize("loader", LOADERS)
def test_constructor_destructor_and_atexit_on_close(tmp_path, loader):
    path = write_plugin(tmp_path, "life", LIFECYCLE_C, "int ping(void);\n", once=True)
    out = run_child(path, loader, "close")
    assert out == ["constructor", "ping", "destructor", "atexit", "closed", "exiting"]


@pytest.mark.parametrize("loader", LOADERS)
def test_atexit_runs_at_exit_when_never_closed(tmp_path, loader):
    """The handler a plugin gave atexit runs at interpreter exit, into still-mapped code."""
    path = write_plugin(tmp_path, "life", LIFECYCLE_C, "int ping(void);\n", once=True)
    out = run_child(path, loader, "keep")
    assert out[:3] == ["constructor", "ping", "exiting"]
    assert "atexit" in out[3:]


def run_child(path: Path, loader: str, mode: str) -> list:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), loader, mode],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


# -- failures leave nothing behind ----------------------------------------------
MISSING_C = r"""
#include <fcntl.h>
#include <unistd.h>
extern int no_such_function_anywhere(void);
__attribute__((constructor)) static void start(void)
{ int fd = creat(MARKER, 0644); if (fd >= 0) close(fd); }
int call_it(void) { return no_such_function_anywhere(); }
"""


@pytest.mark.parametrize("loader", LOADERS)
def test_undefined_symbol_is_named_and_nothing_stays(tmp_path, loader):
    marker = tmp_path / "constructor-ran"
    source = f"#define MARKER {json.dumps(str(marker))}\n" + MISSING_C
    path = write_plugin(tmp_path, "missing", source, "int call_it(void);\n")
    before = len(mappings_of("minildr:missing.so"))
    with pytest.raises(minildr.LoadError, match="no_such_function_anywhere"):
        minildr.open(path, loader=loader)
    assert not marker.exists()
    assert len(mappings_of("minildr:missing.so")) == before == 0


WEAK_C = r"""
extern int maybe_there(void) __attribute__((weak));
extern int maybe_data __attribute__((weak));
int has_it(void) { return (maybe_there != 0) + (&maybe_data != 0); }
"""


@pytest.mark.parametrize("loader", LOADERS)
def test_weak_undefined_symbols_are_zero(tmp_path, loader):
    path = write_plugin(tmp_path, "weak", WEAK_C, "int has_it(void);\n", once=True)
    with minildr.open(path, loader=loader) as plugin:
        assert plugin.lookup("has_it", "int (void)")() == 0


def test_trace_names_symbol_versions(echo_so):
    """In detail, one event per symbol; by default one per place found, with its count."""
    with minildr.native.load(echo_so, trace=True) as lib:
        resolved = {e.data["symbol"]: e.data for e in lib.trace.events if e.step == "resolve"}
    assert resolved["strlen"]["version"].startswith("GLIBC_")
    assert resolved["strlen"]["source"] == "the host process"
    # minildr.build links with -Bsymbolic: the plugin's references to its own
    # exports (echo's `calls`) are bound by the static linker, not looked up.
    assert "calls" not in resolved
    with minildr.native.load(echo_so) as lib:
        summary = {e.data["source"]: e.data["count"] for e in lib.trace.events
                   if e.step == "resolve"}
    assert summary == collections.Counter(d["source"] for d in resolved.values())


# -- where it cannot run --------------------------------------------------------
def test_other_host_is_refused_clearly(greet_so, monkeypatch):
    from minildr.host import Platform
    from minildr.native import library
    monkeypatch.setattr(library, "HOST", Platform("darwin", "arm64", 64))
    with pytest.raises(minildr.UnsupportedELF, match="Linux x86_64 and aarch64 only"):
        minildr.open(greet_so, loader="native")
    with pytest.raises(minildr.UnsupportedELF, match="Linux x86_64 and aarch64 only"):
        minildr.native.load(greet_so)


NOEXEC_CHILD = textwrap.dedent("""
    import shutil, subprocess, sys, minildr, minildr.native
    folder = sys.argv[2]                 # the test's own (a mkdtemp here stayed in /tmp)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=8m", "tmpfs", folder], check=True)
    path = shutil.copy(sys.argv[1], folder)
    try:
        minildr.native.load(path)
    except minildr.LoadError as exc:
        print("REFUSED", exc)
    with minildr.open(path, loader="native") as plugin:   # a plugin maps its sealed memfd
        print("PLUGIN", minildr.ffi.string(plugin.lookup("greet", "const char *(void)")()))
""")


def test_noexec_mount_gives_a_clear_error(greet_so, tmp_path):
    """In a private mount namespace, a noexec tmpfs: mapping code from it is refused."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a private mount namespace here (needs root or user namespaces)")
    (tmp_path / "noexec").mkdir()
    proc = subprocess.run(["unshare", "-m", sys.executable, "-c", NOEXEC_CHILD, str(greet_so),
                           str(tmp_path / "noexec")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    if "mount" in proc.stderr and proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    assert "REFUSED" in proc.stdout and "noexec" in proc.stdout
    assert "PLUGIN b'Hello" in proc.stdout


@pytest.mark.parametrize("loader", LOADERS)
def test_symbol_version_is_honoured(echo_so, loader):
    """Ask for a glibc version that does not exist: both loaders refuse, naming it."""
    data = echo_so.read_bytes()
    f = elf.ElfFile(data, "echo")
    tags = {d.d_tag: d.d_val for d in f.dynamic()}
    start = f.file_offset(tags[elf.DT_STRTAB], tags[elf.DT_STRSZ], "dynstr")
    at = data.index(b"\0GLIBC_2.2.5\0", start, start + tags[elf.DT_STRSZ]) + 1
    echo_so.write_bytes(data[:at] + b"GLIBC_9.9.9" + data[at + 11:])
    with pytest.raises(minildr.LoadError, match="GLIBC_9.9.9"):
        minildr.open(echo_so, loader=loader)


# -- DT_RUNPATH: a dependency beside the library, found through $ORIGIN ------------
@native_host
def test_needed_library_found_through_runpath_origin(tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler (cc)")
    (tmp_path / "lib").mkdir()
    (tmp_path / "dep.c").write_text("int dep_value(void) { return 41; }\n")
    (tmp_path / "top.c").write_text("int dep_value(void);\nint top_value(void) { return dep_value() + 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "lib" / "libdep.so"),
                    str(tmp_path / "dep.c")], check=True)
    top = tmp_path / "libtop.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(top), str(tmp_path / "top.c"),
                    "-L", str(tmp_path / "lib"), "-ldep", "-Wl,-rpath,$ORIGIN/lib",
                    "-Wl,--enable-new-dtags"], check=True)
    with minildr.native.load(top) as lib:
        assert lib.plan.runpath == ["$ORIGIN/lib"]
        assert lib.lookup("top_value", "int (void)")() == 42
    (tmp_path / "lib" / "libdep.so").unlink()
    with pytest.raises(minildr.errors.LoadError, match="needs libdep.so, which was not found"):
        minildr.native.load(top)
