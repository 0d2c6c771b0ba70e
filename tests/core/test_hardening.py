"""minildr.build hardens every ELF plugin: full RELRO, no executable stack, no interposition.

The flags and why they were chosen are in build.py (ELF_HARDENING). These
tests check the effect on a loaded plugin, not the command line: the GOT's
function slots are read-only once loaded, the stack is not executable, and
a plugin's call to its own export reaches its own definition even when the
process already has a same-named function (libc's getpid).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import cffi
import pytest

import minildr
from minildr.formats import elf

from helpers import write_plugin
from platforms import requires_elf, requires_proc

builder = importlib.import_module("minildr.build")

ffi = cffi.FFI()
ffi.cdef("""
    typedef struct { const char *dli_fname; void *dli_fbase;
                     const char *dli_sname; void *dli_saddr; } Dl_info;
    int dladdr(const void *addr, Dl_info *info);
""")
libc = ffi.dlopen(None)

CALLS_LIBC = """\
#include <stdlib.h>
#include <string.h>
const char *home(void) { return getenv("HOME"); }
int length(const char *s) { return (int)strlen(s); }
"""
CALLS_LIBC_H = "const char *home(void);\nint length(const char *s);\n"


def writable_ranges() -> list:
    """(start, end) of every mapping of this process that is writable, from /proc/self/maps."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            addresses, perms = line.split()[:2]
            if "w" in perms:
                start, end = (int(a, 16) for a in addresses.split("-"))
                ranges.append((start, end))
    return ranges


def load_base(address: int) -> int:
    info = ffi.new("Dl_info *")
    assert libc.dladdr(ffi.cast("void *", address), info)
    return int(ffi.cast("uintptr_t", info.dli_fbase))


def got_function_slots(path: Path) -> list:
    """Where the plugin's function slots are: each JUMP_SLOT / GLOB_DAT relocation's target."""
    plan = minildr.native.plan(path)
    slots = [r.offset for r in plan.relocations
             if r.symbol and plan.names[r.symbol] in ("getenv", "strlen")]
    assert slots, "the plugin calls getenv and strlen: it must have a slot for each"
    return slots


@requires_elf
def test_elf_commands_carry_the_hardening_flags_and_others_do_not():
    gcc = builder.Compiler("/usr/bin/gcc", "gcc", "gcc 12")
    clang = builder.Compiler("/usr/bin/clang", "clang", "clang 16")
    msvc = builder.Compiler("C:/VS/cl.exe", "msvc", "MSVC cl")
    def command(compiler, os_name):
        return builder.compile_command(compiler, os_name, [Path("a.c")], Path("p.so"),
                                       forced_includes=[], include_dirs=[], defines={},
                                       def_file=Path("p.def"))
    for compiler in (gcc, clang):
        assert set(builder.ELF_HARDENING) <= set(command(compiler, "linux"))
    # ld64 (macOS) and MinGW's ld / link.exe (Windows) have no -z or -Bsymbolic for PE/Mach-O.
    for compiler, os_name in ((clang, "darwin"), (gcc, "windows"), (msvc, "windows")):
        cmd = command(compiler, os_name)
        assert not set(builder.ELF_HARDENING) & set(cmd)
        assert not [a for a in cmd if "-z," in a or "Bsymbolic" in a]


@requires_elf
def test_built_plugin_is_marked_bind_now_relro_and_symbolic(tmp_path):
    path = write_plugin(tmp_path, "hard", CALLS_LIBC, CALLS_LIBC_H)
    f = elf.ElfFile(path.read_bytes(), path)
    dyn = elf.DynamicSection(f)
    assert dyn.get(elf.DT_FLAGS) & elf.DF_BIND_NOW
    assert dyn.get(elf.DT_FLAGS) & elf.DF_SYMBOLIC
    assert list(f.segments(elf.PT_GNU_RELRO))
    stack = list(f.segments(elf.PT_GNU_STACK))
    assert stack and not stack[0].p_flags & elf.PF_X


@requires_proc
@pytest.mark.parametrize("loader", ["system", "native"])
def test_got_function_slots_are_read_only_after_load(tmp_path, loader):
    """Full RELRO: every GOT slot of a function the plugin calls is in a read-only page."""
    path = write_plugin(tmp_path, "relro", CALLS_LIBC, CALLS_LIBC_H, once=True)
    with minildr.open(path, loader=loader) as plugin:
        length = plugin.lookup("length", "int (const char *)")
        assert length(b"four") == 4                    # the slots were bound and work
        if loader == "system":
            base = load_base(plugin.lookup("length").address)
        else:
            base = plugin._library.base
        writable = writable_ranges()
        for offset in got_function_slots(path):
            slot = base + offset
            assert not [r for r in writable if r[0] <= slot < r[1]], (
                f"the GOT slot at {offset:#x} is still writable after the load")


@requires_elf
@pytest.mark.parametrize("loader", ["system", "native"])
def test_a_plugin_calls_its_own_export_not_the_process_one(tmp_path, loader):
    """The plugin exports getpid (libc has one too) and calls it: it gets its own."""
    path = write_plugin(tmp_path, "ownpid", """\
int getpid(void) { return 4242; }
int who(void) { return getpid(); }
""", "int getpid(void);\nint who(void);\n", once=True)
    with minildr.open(path, loader=loader) as plugin:
        assert plugin.lookup("who", "int (void)")() == 4242
        assert os.getpid() != 4242
