"""No plugin code before the last check: every symbol is found before dlopen.

A plugin with an IFUNC resolver and a constructor, each of which would leave
a marker file, and a call to a function nothing defines: dlopen would run
the resolver while relocating, then fail; minildr refuses it before dlopen,
naming the symbol and where it looked, and neither marker appears.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import minildr
from minildr import cli, linkage
from minildr.formats import elf
from minildr.image import read as read_image

from helpers import write_plugin
from platforms import requires_elf, requires_linux

LINUX_ELF = requires_linux("the lookup before dlopen reads ELF and asks glibc's dlsym/dlvsym")

# Raw system calls: a resolver runs while its library is being relocated, when
# calling through the library's own GOT into libc may not work yet.
RAW_OPEN = r"""
static long raw_create(const char *path) {
#if defined(__x86_64__)
    long r;
    __asm__ volatile ("syscall" : "=a"(r) : "a"(2L), "D"(path), "S"(0101L), "d"(0644L)
                      : "rcx", "r11", "memory");
    return r;
#elif defined(__aarch64__)
    register long x0 __asm__("x0") = -100;          /* openat(AT_FDCWD, ...) */
    register long x1 __asm__("x1") = (long)path;
    register long x2 __asm__("x2") = 0101, x3 __asm__("x3") = 0644, x8 __asm__("x8") = 56;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x1), "r"(x2), "r"(x3), "r"(x8) : "memory");
    return x0;
#endif
}
"""


def runs_at_load(tmp_path: Path, name: str, missing: str = "") -> tuple:
    """A plugin with an IFUNC resolver and a constructor that each create a marker."""
    marks = tmp_path / f"{name}-resolver-ran", tmp_path / f"{name}-constructor-ran"
    call = (f"extern int {missing}(void);\n"
            f"int call_missing(void) {{ return getenv(\"X\") ? {missing}() : 0; }}\n"
            if missing else "int call_missing(void) { return getenv(\"X\") != 0; }\n")
    source = "#include <stdlib.h>\n" + RAW_OPEN + f"""
static int chosen(void) {{ return 7; }}
static void *choose(void) {{ raw_create({json.dumps(str(marks[0]))}); return (void *)chosen; }}
int picked(void) __attribute__((ifunc("choose")));
int (*picked_pointer)(void) = picked;                /* relocated at load: runs choose() */
__attribute__((constructor)) static void starting(void) {{ raw_create({json.dumps(str(marks[1]))}); }}
{call}"""
    path = write_plugin(tmp_path, name, source, "int picked(void);\nint call_missing(void);\n")
    return path, marks


@LINUX_ELF
@pytest.mark.parametrize("loader", ["system", "native"])
def test_a_missing_symbol_is_refused_before_any_plugin_code_runs(tmp_path, loader):
    path, marks = runs_at_load(tmp_path, "mifunc", missing="nowhere_to_be_found")
    with pytest.raises(minildr.LoadError) as err:
        minildr.open(path, loader=loader)
    message = str(err.value)
    assert "nowhere_to_be_found" in message and "global scope" in message
    assert "libc.so.6" in message                       # where it looked
    assert not marks[0].exists(), "the IFUNC resolver ran"
    assert not marks[1].exists(), "the constructor ran"


@LINUX_ELF
def test_the_same_plugin_without_the_missing_symbol_runs_both(tmp_path):
    """The control: the markers do work, so their absence above means something."""
    path, marks = runs_at_load(tmp_path, "okifunc")
    with minildr.open(path) as plugin:
        assert plugin.lookup("picked", "int (void)")() == 7
    assert marks[0].exists() and marks[1].exists()


def with_future_glibc(tmp_path: Path) -> tuple:
    """A plugin whose getenv asks for a glibc version from the future (GLIBC_9.9.9).

    The version's name is patched in the file's string table (same length);
    a linker would refuse to make such a file from sources.
    """
    path = write_plugin(tmp_path, "future", "#include <stdlib.h>\n"
                        "const char *home(void) { return getenv(\"HOME\"); }\n",
                        "const char *home(void);\n", once=True)     # a copy: patched below
    image = read_image(str(path))
    [version] = linkage.needs_of(image.data, image.path).versions["libc.so.6"]
    future = re.sub(r"\d", "9", version)
    data = bytearray(path.read_bytes())
    start, size = elf.DynamicSection(elf.ElfFile(bytes(data), path)).strtab   # .dynstr
    table = bytes(data[start:start + size])
    assert table.count(version.encode() + b"\0") == 1
    data[start:start + size] = table.replace(version.encode() + b"\0", future.encode() + b"\0")
    path.write_bytes(bytes(data))
    return path, future


@LINUX_ELF
@pytest.mark.parametrize("loader", ["system", "native"])
def test_a_missing_symbol_version_is_refused(tmp_path, loader):
    path, future = with_future_glibc(tmp_path)
    with pytest.raises(minildr.LoadError, match=rf"getenv@{re.escape(future)}") as err:
        minildr.open(path, loader=loader)
    message = str(err.value)          # the version, its library, and what to do
    assert f"needs symbol version {future} (libc.so.6)" in message
    assert "built against a newer release" in message and "oldest release you support" in message


@LINUX_ELF
def test_a_version_no_library_defines_is_named_with_its_library(tmp_path):
    path, future = with_future_glibc(tmp_path)
    image = read_image(str(path))
    needs = linkage.needs_of(image.data, image.path)
    prepared = linkage.Prepared()
    linkage.load_needed(image.path, needs, str(tmp_path), None, prepared)
    try:
        assert linkage.missing_versions(needs, prepared) == [f"{future} (libc.so.6)"]
    finally:
        prepared.close()


@LINUX_ELF
def test_needs_lists_undefined_strong_symbols_with_versions(tmp_path):
    path = write_plugin(tmp_path, "uses", """\
#include <stdlib.h>
extern int maybe(void) __attribute__((weak));
const char *home(void) { return maybe ? "weak" : getenv("HOME"); }
""", "const char *home(void);\n")
    image = read_image(str(path))
    needs = linkage.needs_of(image.data, image.path)
    names = dict(needs.symbols)
    assert "getenv" in names and names["getenv"].startswith("GLIBC_")
    assert "maybe" not in names                          # weak: may be missing
    assert "libc.so.6" in needs.needed


@requires_elf
def test_inspect_lists_what_runs_at_load(tmp_path, capsys):
    path, marks = runs_at_load(tmp_path, "shown")
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    section = out[out.index("runs at load"):]
    assert "IFUNC resolver" in section and "picked" in section and "choose" in section
    assert "DT_INIT_ARRAY" in section and "starting" in section
    assert "DT_INIT " in section or "DT_INIT\t" in section or "DT_INIT  " in section
    assert not marks[0].exists() and not marks[1].exists()      # inspect runs nothing


@LINUX_ELF
def test_the_link_map_read_through_a_handle_is_dlinfos(tmp_path):
    """libdl.loaded_name reads a handle as its struct link_map (what glibc's dlinfo hands
    back for RTLD_DI_LINKMAP): checked against dlinfo itself, for a plugin's sealed copy,
    libc and the program."""
    libdl = linkage.libdl                     # (bound on Linux only)
    path = write_plugin(tmp_path, "mapped", "int one(void) { return 1; }\n", "int one(void);\n")
    with minildr.open(path) as plugin:
        copy = os.fsencode(plugin._library.load_path)
        for name in (copy, b"libc.so.6", None):
            handle = libdl.lib.dlopen(name if name is not None else libdl.ffi.NULL, os.RTLD_NOW)
            try:
                link = libdl.ffi.new("struct link_map **")
                assert libdl.lib.dlinfo(handle, libdl.RTLD_DI_LINKMAP, link) == 0
                assert libdl.ffi.cast("void *", link[0]) == handle
                assert libdl.loaded_name(handle) == libdl.ffi.string(link[0].l_name)
            finally:
                libdl.lib.dlclose(handle)
        assert libdl.loaded_name(plugin._library._handle) == copy
