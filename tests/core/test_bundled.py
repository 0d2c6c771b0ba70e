"""Plugins that ship their own libraries: RUNPATH=$ORIGIN and a libhelper.so beside them.

minildr loads a plugin from a sealed copy (/proc/self/fd/N), where $ORIGIN
would mean /proc/self/fd; linkage.py finds the plugin's libraries from the
folder of the file itself, as plain dlopen of that file would. Under trust=
a bundled library is checked like the plugin and loaded from the checked
bytes, never read again by name.
"""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import minildr
from minildr import image
from minildr.isolation import sandbox
from minildr.trust import TrustStore

from helpers import write_plugin
from platforms import requires_linux, requires_native_loader

builder = importlib.import_module("minildr.build")
pytestmark = requires_linux("$ORIGIN, RUNPATH and SONAME are ELF's, read on Linux")

HELPER = "int helper_answer(void) { return 42; }\n"


# The controls' Python: no site (-S), only ctypes from the standard library; the control is
# the system loader alone, and site (with the editable install's import hook) costs ~25 ms.
PLAIN = ("-S", "-c")


def helper(folder: Path, source: str = HELPER) -> Path:
    """libhelper.so (SONAME libhelper.so) in `folder`, built with the system compiler."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "helper.c").write_text(source)
    out = folder / "libhelper.so"
    subprocess.run([builder.find_compiler().path, "-shared", "-fPIC",
                    "-Wl,-soname,libhelper.so", "-o", str(out), str(folder / "helper.c")],
                   check=True)
    return out


# Each bundle below is built once per module run (two to five compiler runs) into a folder
# of its own; a test gets a fresh copy of that folder (its files newly written, as a
# build's are) as tmp_path/out, to change or delete at will.
_once: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _bundles_built_once(tmp_path_factory):
    _once["folder"] = tmp_path_factory.mktemp("bundles")
    yield
    _once.clear()


def copy_of(build, tmp_path: Path) -> Path:
    """tmp_path/out: a copy of the folder `build` made (built at the module's first call)."""
    if build.__name__ not in _once:
        _once[build.__name__] = build(_once["folder"] / build.__name__)
    built = _once[build.__name__]
    shutil.copytree(built.parent, tmp_path / "out", copy_function=shutil.copy)
    return tmp_path / "out" / built.name


def plugin_with_helper(tmp_path: Path) -> Path:
    """Plugin `bundled` in tmp_path/out, linked against libhelper.so with RUNPATH=$ORIGIN."""
    return copy_of(build_with_helper, tmp_path)


def build_with_helper(tmp_path: Path) -> Path:
    lib = helper(tmp_path / "out")
    return write_plugin(tmp_path, "bundled", """\
extern int helper_answer(void);
int answer(void) { return helper_answer(); }
""", "int answer(void);\n", cflags=["-Wl,--no-as-needed", f"-L{lib.parent}", "-lhelper",
                                   "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"])


def mapped(fragment: str) -> list:
    with open("/proc/self/maps") as maps:
        return [line for line in maps if fragment in line]


@pytest.mark.parametrize("loader", ["system", "native"])
def test_a_bundled_library_loads_through_origin(tmp_path, loader):
    path = plugin_with_helper(tmp_path)
    with minildr.open(path, loader=loader) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42


def test_plain_dlopen_agrees(tmp_path):
    """The control: the system loader alone, on the file itself, finds libhelper too."""
    path = plugin_with_helper(tmp_path)
    code = f"import ctypes; print(ctypes.CDLL({str(path)!r}).answer())"
    done = subprocess.run([sys.executable, *PLAIN, code], capture_output=True, text=True)
    assert done.stdout.strip() == "42", done.stderr


def test_a_missing_bundled_library_is_named_with_where_it_was_looked_for(tmp_path):
    path = plugin_with_helper(tmp_path)
    (path.parent / "libhelper.so").unlink()
    with pytest.raises(minildr.LoadError) as err:
        minildr.open(path)
    message = str(err.value)
    assert "needs libhelper.so, which was not found" in message
    assert str(path.parent) in message                    # $ORIGIN, as the plugin's folder
    assert "-Wl,-rpath,'$ORIGIN'" in message and "LD_LIBRARY_PATH" in message


def test_under_trust_an_unpinned_bundled_library_is_refused(tmp_path):
    path = plugin_with_helper(tmp_path)
    store = TrustStore()
    store.pin(path)                                       # the plugin, not its library
    with pytest.raises(minildr.UntrustedPlugin) as err:
        minildr.open(path, trust=store)
    assert "libhelper.so" in str(err.value) and "not pinned" in str(err.value)
    assert not mapped("libhelper.so")


def test_a_refusal_names_the_library_as_the_plugin_was_named(tmp_path, monkeypatch):
    """A plugin opened by a relative path: its library is named relative too, no folder of ours."""
    path = plugin_with_helper(tmp_path)
    image.clear_cache()              # nothing read by its absolute path stays cached
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(path)
    store = TrustStore()
    store.pin(relative)
    with pytest.raises(minildr.UntrustedPlugin) as err:
        minildr.open(relative, trust=store)
    message = str(err.value)
    assert f"({os.path.join(os.path.dirname(relative), 'libhelper.so')})" in message
    assert str(tmp_path) not in message


LOADERS = ["system", pytest.param("native", marks=requires_native_loader)]


@pytest.mark.parametrize("loader", LOADERS)
def test_under_trust_the_bundled_library_loads_from_its_checked_bytes(tmp_path, loader):
    """Both loaders: the native one opens the plugin's libraries itself (native/resolve.py),
    and used to dlopen libhelper.so by its file's path, beside the checked copy."""
    path = plugin_with_helper(tmp_path)
    lib = path.parent / "libhelper.so"
    store = TrustStore()
    store.pin(path)
    store.pin(lib)
    with minildr.open(path, trust=store, loader=loader) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42
        assert mapped("minildr:libhelper.so"), "libhelper must come from its sealed copy"
        assert not mapped(str(lib))


def test_under_trust_a_bundled_library_without_its_soname_is_refused(tmp_path):
    path = plugin_with_helper(tmp_path)
    lib = path.parent / "libhelper.so"
    subprocess.run([builder.find_compiler().path, "-shared", "-fPIC",
                    "-Wl,-soname,libother.so", "-o", str(lib), str(tmp_path / "out" / "helper.c")],
                   check=True)
    store = TrustStore()
    store.pin(path)
    store.pin(lib)
    with pytest.raises(minildr.LoadError, match="-Wl,-soname,libhelper.so"):
        minildr.open(path, trust=store)


SANDBOX = sandbox.probe()
ISOLATIONS = [pytest.param({"isolate": True}, id="isolate"),
              pytest.param({"sandbox": True}, id="sandbox", marks=pytest.mark.skipif(
                  bool(SANDBOX.missing), reason="sandbox=True needs "
                  + "; ".join(SANDBOX.missing)))]


@pytest.mark.parametrize("how", ISOLATIONS)
def test_a_bundled_library_loads_in_a_worker_as_in_process(tmp_path, how):
    """An isolated worker loads the plugin from its sealed copy too: $ORIGIN must mean the
    plugin's folder there as well. The library comes from the copy the host read (a
    sandboxed worker cannot read the plugin's folder), and the helper is mapped only there."""
    path = plugin_with_helper(tmp_path)
    with minildr.open(path, **how) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42
    assert not mapped("libhelper.so")                    # in the worker, not in the host


@pytest.mark.parametrize("how", ISOLATIONS)
def test_in_a_worker_under_trust_an_unpinned_bundled_library_is_refused(tmp_path, how):
    path = plugin_with_helper(tmp_path)
    store = TrustStore()
    store.pin(path)
    with pytest.raises(minildr.UntrustedPlugin, match="libhelper.so.*not pinned"):
        minildr.open(path, trust=store, **how)
    store.pin(path.parent / "libhelper.so")
    with minildr.open(path, trust=store, **how) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42


def test_in_a_worker_a_missing_bundled_library_is_named(tmp_path):
    path = plugin_with_helper(tmp_path)
    (path.parent / "libhelper.so").unlink()
    with pytest.raises(minildr.LoadError, match="needs libhelper.so, which was not found"):
        minildr.open(path, isolate=True)


# -- a bundled library's own bundled library: libhelper.so needs libhelper2.so beside it ------
HELPER2 = "int helper2_value(void) { return 40; }\n"
HELPER_OF_HELPER2 = "extern int helper2_value(void);\nint helper_answer(void) { return helper2_value() + 2; }\n"


def plugin_with_two_levels(tmp_path: Path) -> Path:
    """Plugin `nested` -> libhelper.so (RUNPATH=$ORIGIN) -> libhelper2.so (its RUNPATH=$ORIGIN),
    all three in tmp_path/out, built with the system compiler."""
    return copy_of(build_two_levels, tmp_path)


def build_two_levels(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    cc = builder.find_compiler().path
    (out / "helper2.c").write_text(HELPER2)
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libhelper2.so", "-o",
                    str(out / "libhelper2.so"), str(out / "helper2.c")], check=True)
    (out / "helper.c").write_text(HELPER_OF_HELPER2)
    subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libhelper.so", "-o",
                    str(out / "libhelper.so"), str(out / "helper.c"), "-Wl,--no-as-needed",
                    f"-L{out}", "-lhelper2", "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"],
                   check=True)
    return write_plugin(tmp_path, "nested", """\
extern int helper_answer(void);
int answer(void) { return helper_answer(); }
""", "int answer(void);\n", cflags=["-Wl,--no-as-needed", f"-L{out}", "-lhelper",
                                   "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"])


def test_two_levels_plain_dlopen_agrees(tmp_path):
    """The control: the system loader alone, on the file itself, finds both levels."""
    path = plugin_with_two_levels(tmp_path)
    code = f"import ctypes; print(ctypes.CDLL({str(path)!r}).answer())"
    done = subprocess.run([sys.executable, *PLAIN, code], capture_output=True, text=True)
    assert done.stdout.strip() == "42", done.stderr


@pytest.mark.parametrize("loader", ["system", "native"])
def test_a_bundled_librarys_own_bundled_library_loads(tmp_path, loader):
    path = plugin_with_two_levels(tmp_path)
    with minildr.open(path, loader=loader) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42


@pytest.mark.parametrize("loader", LOADERS)
def test_under_trust_the_second_level_is_verified_and_loaded_from_its_checked_bytes(tmp_path,
                                                                                    loader):
    path = plugin_with_two_levels(tmp_path)
    out = path.parent
    store = TrustStore()
    store.pin(path)
    store.pin(out / "libhelper.so")                 # not libhelper2.so: refused, naming it
    with pytest.raises(minildr.UntrustedPlugin) as err:
        minildr.open(path, trust=store, loader=loader)
    assert "libhelper2.so" in str(err.value) and "not pinned" in str(err.value)
    assert not mapped("libhelper")                  # nothing of either level stayed
    store.pin(out / "libhelper2.so")
    with minildr.open(path, trust=store, loader=loader) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42
        assert mapped("minildr:libhelper2.so"), "libhelper2 must come from its sealed copy"
        assert mapped("minildr:libhelper.so")
        assert not mapped(str(out / "libhelper2.so")) and not mapped(str(out / "libhelper.so"))


def test_under_trust_a_second_level_changed_after_pinning_is_refused(tmp_path):
    path = plugin_with_two_levels(tmp_path)
    out = path.parent
    store = TrustStore()
    for lib in (path, out / "libhelper.so", out / "libhelper2.so"):
        store.pin(lib)
    subprocess.run([builder.find_compiler().path, "-shared", "-fPIC",
                    "-Wl,-soname,libhelper2.so", "-o", str(out / "libhelper2.so"), "-x", "c", "-"],
                   input="int helper2_value(void) { return 0; }\n", text=True, check=True)
    with pytest.raises(minildr.UntrustedPlugin, match="libhelper2.so"):
        minildr.open(path, trust=store)


def test_a_missing_second_level_is_named(tmp_path):
    path = plugin_with_two_levels(tmp_path)
    (path.parent / "libhelper2.so").unlink()
    with pytest.raises(minildr.LoadError, match="libhelper2.so"):
        minildr.open(path)
    store = TrustStore()
    store.pin(path)
    store.pin(path.parent / "libhelper.so")
    with pytest.raises(minildr.LoadError, match="needs libhelper2.so, which was not found"):
        minildr.open(path, trust=store)


@pytest.mark.parametrize("how", ISOLATIONS)
def test_two_levels_load_in_a_worker_as_in_process(tmp_path, how):
    path = plugin_with_two_levels(tmp_path)
    with minildr.open(path, **how) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42
    assert not mapped("libhelper")                       # in the worker, not in the host


@pytest.mark.parametrize("how", ISOLATIONS)
def test_in_a_worker_under_trust_an_unpinned_second_level_is_refused(tmp_path, how):
    path = plugin_with_two_levels(tmp_path)
    store = TrustStore()
    store.pin(path)
    store.pin(path.parent / "libhelper.so")
    with pytest.raises(minildr.UntrustedPlugin, match="libhelper2.so.*not pinned"):
        minildr.open(path, trust=store, **how)
    store.pin(path.parent / "libhelper2.so")
    with minildr.open(path, trust=store, **how) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42


# -- a cycle: libcyca.so needs libcycb.so, which needs libcyca.so -----------------------------
def plugin_with_a_cycle(tmp_path: Path) -> Path:
    """Plugin `cyclic` -> libcyca.so <-> libcycb.so, all RUNPATH=$ORIGIN, in tmp_path/out."""
    return copy_of(build_a_cycle, tmp_path)


def build_a_cycle(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    cc = builder.find_compiler().path
    (out / "a.c").write_text("extern int b_value(void);\n"
                             "int a_value(void) { return 40; }\n"
                             "int a_answer(void) { return b_value() + 1; }\n")
    (out / "b.c").write_text("extern int a_value(void);\n"
                             "int b_value(void) { return a_value() + 1; }\n")
    link = ["-Wl,--no-as-needed", f"-L{out}", "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"]

    def shared(name: str, source: str, *libs: str) -> None:
        subprocess.run([cc, "-shared", "-fPIC", f"-Wl,-soname,lib{name}.so", "-o",
                        str(out / f"lib{name}.so"), str(out / source), *link, *libs], check=True)
    shared("cyca", "a.c")                        # first without libcycb, to link libcycb
    shared("cycb", "b.c", "-lcyca")
    shared("cyca", "a.c", "-lcycb")              # now each names the other
    return write_plugin(tmp_path, "cyclic", """\
extern int a_answer(void);
int answer(void) { return a_answer(); }
""", "int answer(void);\n", cflags=[*link, "-lcyca"])


def test_a_cycle_of_bundled_libraries_loads_without_trust_as_plain_dlopen(tmp_path):
    """The control: the system loader maps the cycle from the files, each library once."""
    path = plugin_with_a_cycle(tmp_path)
    code = f"import ctypes; print(ctypes.CDLL({str(path)!r}).answer())"
    done = subprocess.run([sys.executable, *PLAIN, code], capture_output=True, text=True)
    assert done.stdout.strip() == "42", done.stderr
    with minildr.open(path) as plugin:
        assert plugin.lookup("answer", "int (void)")() == 42


def test_under_trust_a_cycle_of_bundled_libraries_is_refused_naming_it(tmp_path):
    """From sealed copies each library of a cycle would have to load before the other: refused
    with the cycle named (was: 'more than 8 deep'), nothing of it left loaded."""
    path = plugin_with_a_cycle(tmp_path)
    out = path.parent
    store = TrustStore()
    for lib in (path, out / "libcyca.so", out / "libcycb.so"):
        store.pin(lib)
    with pytest.raises(minildr.LoadError) as err:
        minildr.open(path, trust=store)
    message = str(err.value)
    assert "cycle (libcyca.so -> libcycb.so -> libcyca.so)" in message
    assert "more than" not in message
    assert not mapped("libcyc")
