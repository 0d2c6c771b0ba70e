"""open(), Plugin, Symbol, close and reload, discover, plugin_path, logging."""
from __future__ import annotations

import gc
import logging
import os
import shutil
from pathlib import Path

import pytest

import minildr
from minildr import image as images

from helpers import write_plugin
from minildr.host import SUFFIX
from platforms import requires_elf, requires_linux, requires_posix, requires_proc

GREET_T = "const char *(void)"


def mapped(name: str) -> int:
    """How many mappings of this process come from a minildr image named `name`.

    Tests compare with the count before their open: another test in this
    worker may have left a plugin of the same name mapped on purpose (a
    pointer it returned still alive keeps it mapped: lifetime.py)."""
    with open("/proc/self/maps") as maps:
        return sum(f"minildr:{name}" in line for line in maps)


def greeting(plugin: minildr.Plugin) -> str:
    return minildr.ffi.string(plugin.lookup("greet", GREET_T)()).decode()


# -- open and lookup -----------------------------------------------------
def test_open_reports_manifest_and_digest(greet_so):
    import hashlib
    with minildr.open(greet_so) as plugin:
        assert (plugin.name, plugin.version) == ("greet", "0.1.0")
        assert plugin.path == os.fspath(greet_so)
        assert plugin.sha256 == hashlib.sha256(greet_so.read_bytes()).hexdigest()
        assert plugin.manifest == minildr.read_manifest(greet_so)
        assert plugin.exports == ["greet"]


def test_untyped_lookup_gives_symbol(greet_so):
    with minildr.open(greet_so) as plugin:
        sym = plugin.lookup("greet")
        assert isinstance(sym, minildr.Symbol)
        assert (sym.name, sym.ctype, sym.kind) == ("greet", GREET_T, "function")
        assert sym.address != 0


@pytest.mark.parametrize("spelling", [GREET_T, "char const* (void)", "const char*(void)"])
def test_typed_lookup_calls_the_plugin(greet_so, spelling):
    with minildr.open(greet_so) as plugin:
        greet = plugin.lookup("greet", spelling)
        assert minildr.ffi.string(greet()) == b"Hello from the greet plugin (version 0.1.0)"


@pytest.mark.parametrize("wrong", ["int (void)", "char *(void)", "const char *(int)",
                                   "const char *"])
def test_wrong_type_is_refused_naming_both(greet_so, wrong):
    with minildr.open(greet_so) as plugin:
        with pytest.raises(minildr.SymbolTypeError) as err:
            plugin.lookup("greet", wrong)
    message = str(err.value)
    assert GREET_T in message and minildr.ctype.canonical(wrong) in message
    assert os.fspath(greet_so) in message


def test_unreadable_type_is_a_symbol_type_error(greet_so):
    with minildr.open(greet_so) as plugin, pytest.raises(minildr.SymbolTypeError, match="cannot read"):
        plugin.lookup("greet", "int (")


@pytest.mark.parametrize("name", ["message", "printf", "system", "nothing_at_all"])
def test_unexported_names_are_not_found(greet_so, name):
    """`message` is a static function inside greet.so; printf and system are libc's."""
    with minildr.open(greet_so) as plugin:
        with pytest.raises(minildr.SymbolNotFound) as err:
            plugin.lookup(name)
    assert "greet (const char *(void))" in str(err.value)   # it lists what is exported


@requires_elf
def test_hidden_function_in_binary_is_not_found(tmp_path):
    source = ("const char *greet(void) { return \"hi\"; }\n"
              "int helper(void) { return 42; }\n")          # defined, not declared: hidden
    path = write_plugin(tmp_path, "hidden", source, "const char *greet(void);\n")
    symtab = {s.name for s in minildr.formats.elf.ElfFile(path.read_bytes(), path).symbols(2)}
    assert "helper" in symtab                                   # it is in the binary...
    with minildr.open(path) as plugin:
        with pytest.raises(minildr.SymbolNotFound):
            plugin.lookup("helper")                             # ...but not exported


def test_data_export_gives_a_pointer(echo_so):
    with minildr.open(echo_so) as plugin:
        calls = plugin.lookup("calls", "int")
        run = plugin.lookup("run", "size_t (const char *, char *, size_t)")
        out = minildr.ffi.new("char[32]")
        assert run(b"hello", out, 32) == 5
        assert minildr.ffi.string(out) == b"HELLO"
        assert calls[0] == 1
        assert run(b"truncated", out, 4) == 9 and minildr.ffi.string(out) == b"TRU"
        assert calls[0] == 2


def test_struct_typedefs_from_the_header_are_usable(tmp_path):
    header = ("typedef struct point { int x; int y; } point_t;\n"
              "point_t mirror(point_t p);\n")
    source = "point_t mirror(point_t p) { point_t q = { p.y, p.x }; return q; }\n"
    path = write_plugin(tmp_path, "geometry", source, header)
    with minildr.open(path) as plugin:
        mirror = plugin.lookup("mirror", "point_t (point_t)")
        result = mirror({"x": 1, "y": 2})
        assert (result.x, result.y) == (2, 1)


# -- close, unload, reload -------------------------------------------------
@requires_proc
def test_close_unloads_and_later_lookups_raise(greet_so):
    gc.collect()                       # what earlier tests left to the collector goes first
    before = mapped(f"greet{SUFFIX}")
    plugin = minildr.open(greet_so)
    assert mapped(f"greet{SUFFIX}") > before
    plugin.close()
    gc.collect()
    assert plugin.closed and mapped(f"greet{SUFFIX}") == before
    with pytest.raises(minildr.PluginClosed, match="open the plugin again"):
        plugin.lookup("greet")
    plugin.close()                                   # closing twice is harmless


@requires_proc
def test_a_held_function_keeps_its_library_mapped(greet_so):
    before = mapped(f"greet{SUFFIX}")
    plugin = minildr.open(greet_so)
    greet = plugin.lookup("greet", GREET_T)
    plugin.close()
    assert minildr.ffi.string(greet()).startswith(b"Hello")   # still safe to call
    del greet
    gc.collect()
    assert mapped(f"greet{SUFFIX}") == before


def test_context_manager_closes(greet_so):
    with minildr.open(greet_so) as plugin:
        assert not plugin.closed
    assert plugin.closed


def test_rebuilt_plugin_runs_its_new_code(tmp_path):
    header = "const char *greet(void);\n"
    path = write_plugin(tmp_path, "hot", 'const char *greet(void) { return "one"; }\n', header)
    first = minildr.open(path)
    assert greeting(first) == "one"
    write_plugin(tmp_path, "hot", 'const char *greet(void) { return "two"; }\n', header)
    second = minildr.open(path)
    assert greeting(second) == "two"          # not dlopen's cached copy of the old file
    assert greeting(first) == "one"           # the old plugin is still the old code
    first.close()
    second.close()


def test_file_overwritten_in_place_is_reread(greet_so, echo_so):
    """Same path, same inode, new bytes: the identity (size, mtime, ctime) changes."""
    with minildr.open(greet_so) as plugin:
        assert plugin.name == "greet"
    with open(greet_so, "r+b") as f:             # overwrite in place, keeping the inode
        f.write(echo_so.read_bytes())
        f.truncate()
    with minildr.open(greet_so) as plugin:
        assert plugin.name == "echo"


def test_unchanged_file_reuses_its_image(greet_so):
    first = images.read(greet_so)
    assert images.read(greet_so) is first
    st = os.stat(greet_so)                           # a new mtime, one second on: read again
    os.utime(greet_so, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert images.read(greet_so) is not first


def test_swapping_the_file_after_reading_loads_the_checked_bytes(greet_so, echo_so, monkeypatch):
    """The file is replaced between the checks and the load: the checked bytes load."""
    real_acquire = images.PluginImage.acquire

    def swap_then_acquire(self, holder):
        shutil.copy(echo_so, greet_so)               # the attacker's moment
        return real_acquire(self, holder)

    monkeypatch.setattr(images.PluginImage, "acquire", swap_then_acquire)
    with minildr.open(greet_so) as plugin:
        assert plugin.name == "greet"
        assert greeting(plugin).startswith("Hello")


def test_private_copy_path_when_memfd_is_unavailable(greet_so, monkeypatch):
    monkeypatch.setattr(images, "USE_MEMFD", False)
    images.clear_cache()
    with minildr.open(greet_so) as plugin:
        assert greeting(plugin).startswith("Hello")
        copy = plugin._library.load_path
        assert not copy.startswith("/proc/") and Path(copy).read_bytes() == greet_so.read_bytes()
    images.clear_cache()
    assert not Path(copy).exists()          # read-only (0500) and still removed, Windows too


@requires_posix("checks POSIX permission bits (mode 0700), which Windows does not keep")
def test_private_copies_live_in_a_folder_only_this_user_can_write(greet_so, monkeypatch):
    monkeypatch.setattr(images, "USE_MEMFD", False)
    images.clear_cache()
    with minildr.open(greet_so) as plugin:
        copy = plugin._library.load_path
        assert oct(os.stat(Path(copy).parent).st_mode & 0o777) == "0o700"
    images.clear_cache()


@requires_proc
def test_two_opens_of_one_file_share_and_both_close(greet_so):
    before = mapped(f"greet{SUFFIX}")
    a = minildr.open(greet_so)
    b = minildr.open(greet_so)
    a.close()
    assert greeting(b).startswith("Hello")
    b.close()
    gc.collect()
    assert mapped(f"greet{SUFFIX}") == before


@requires_linux("only ELF shared libraries link with undefined symbols; the macOS and Windows "
                "linkers refuse them at build time, so the load never sees one")
def test_missing_dependency_is_a_load_error(tmp_path):
    header = "int uses_missing(void);\n"
    source = "int not_defined_anywhere(void);\nint uses_missing(void) { return not_defined_anywhere(); }\n"
    path = write_plugin(tmp_path, "needy", source, header)
    with pytest.raises(minildr.LoadError) as err:
        minildr.open(path)
    assert "not_defined_anywhere" in str(err.value)
    assert "/proc/self/fd" not in str(err.value) and os.fspath(path) in str(err.value)


@pytest.mark.parametrize("kwargs, match", [({"trust": object()}, "trust= takes"),
                                           ({"isolate": "yes"}, "isolate= takes")])
def test_wrong_option_types_are_type_errors(greet_so, kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        minildr.open(greet_so, **kwargs)


def test_unknown_loader_is_a_value_error(greet_so):
    with pytest.raises(ValueError, match="loader"):
        minildr.open(greet_so, loader="magic")


# -- discover and plugin_path ---------------------------------------------
def test_discover_loads_good_and_reports_bad(built, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(built["greet"], folder / f"greet{SUFFIX}")
    shutil.copy(built["echo"], folder / f"echo{SUFFIX}")
    (folder / f"broken{SUFFIX}").write_text("not a library")
    (folder / "notes.txt").write_text("ignored: wrong suffix")
    with minildr.discover(folder) as report:
        assert sorted(p.name for p in report.loaded) == ["echo", "greet"]
        assert [(p.name, type(e)) for p, e in report.failed] == [(f"broken{SUFFIX}",
                                                                  minildr.NotAPlugin)]
        table = report.table()
        assert f"broken{SUFFIX}" in table and "NotAPlugin" in table and "2 loaded, 1 failed" in table
    assert all(p.closed for p in report.loaded)


def test_discover_of_a_missing_folder(tmp_path):
    with pytest.raises(minildr.PluginNotFound, match="not a folder"):
        minildr.discover(tmp_path / "nope")


def test_plugin_path_ignores_the_working_directory(tmp_path, monkeypatch, greet_so):
    module_file = greet_so.parent / "host.py"
    module_file.write_text("# a host module\n")
    resolved = minildr.plugin_path("greet", module_file)
    assert resolved == greet_so.resolve()
    monkeypatch.chdir(tmp_path.parent)
    assert minildr.plugin_path("greet", module_file) == resolved
    assert minildr.plugin_path(greet_so.name, greet_so.parent) == resolved
    with minildr.open(resolved) as plugin:
        assert plugin.name == "greet"


def test_relative_path_breaks_when_the_directory_changes(greet_so, monkeypatch, tmp_path):
    monkeypatch.chdir(greet_so.parent)
    minildr.open(greet_so.name).close()
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    with pytest.raises(minildr.PluginNotFound, match="plugin_path"):
        minildr.open(greet_so.name)


# -- logging ---------------------------------------------------------------
def test_log_records_opens_and_lookups(greet_so, caplog):
    caplog.set_level(logging.INFO, logger="minildr")
    with minildr.open(greet_so) as plugin:
        plugin.lookup("greet", GREET_T)
        with pytest.raises(minildr.SymbolNotFound):
            plugin.lookup("secret")
    text = caplog.text
    assert f"open {greet_so} sha256={plugin.sha256}: loaded greet 0.1.0" in text
    assert f"lookup greet in {greet_so} (type {GREET_T}): ok" in text
    assert f"lookup secret in {greet_so} (type None): refused" in text


def test_log_records_refused_opens(tmp_path, caplog):
    bad = tmp_path / "bad.so"
    bad.write_text("text")
    caplog.set_level(logging.INFO, logger="minildr")
    with pytest.raises(minildr.NotAPlugin):
        minildr.open(bad)
    assert f"open {bad} sha256=" in caplog.text and "refused" in caplog.text


def test_a_read_only_private_copy_is_still_deleted(monkeypatch):
    """Windows refuses to delete a read-only file; the copy is made writable first.

    Windows' rule is imitated here (unlink of a file without its write bit
    fails), so that the clean-up is checked on every system.
    """
    real_unlink = os.unlink

    def windows_unlink(path, *args, **kwargs):
        if not os.stat(path).st_mode & 0o200:
            raise PermissionError(13, "Access is denied", path)
        real_unlink(path, *args, **kwargs)

    copy = images._private_copy(b"bytes of a plugin", "readonly.so")
    assert not os.stat(copy).st_mode & 0o200               # copies are read-only (0500)
    monkeypatch.setattr(os, "unlink", windows_unlink)
    images._remove_copy(copy)
    assert not os.path.exists(copy)


def test_isolation_on_windows_says_it_needs_posix(greet_so, monkeypatch):
    """What Windows does with isolate=True (sys.platform set as Windows sets it)."""
    from minildr.isolation import plugin as isolated
    monkeypatch.setattr(isolated.sys, "platform", "win32")
    with pytest.raises(NotImplementedError, match="needs a POSIX system"):
        minildr.open(greet_so, isolate=True)


@requires_posix("dladdr is POSIX, and Windows makes symbolic links for administrators only")
def test_a_library_is_recognised_under_another_spelling_of_its_path(greet_so, tmp_path):
    """dladdr may name the loaded file by another path (macOS: /private/var for /var)."""
    from minildr.system import same_library
    alias = tmp_path / "alias"
    alias.symlink_to(greet_so.parent, target_is_directory=True)
    assert same_library(str(alias / greet_so.name), str(greet_so))
    assert same_library(str(greet_so), str(greet_so))
    other = Path(shutil.copy(greet_so, tmp_path / "copy"))
    assert not same_library(str(other), str(greet_so))           # same bytes, another file
    assert not same_library(str(tmp_path / "gone"), str(greet_so))


@requires_proc
def test_a_closed_plugin_unloads_when_its_last_string_goes_even_after_a_collection(greet_so):
    """Closed with a returned pointer alive, the plugin has let go of its library: a
    garbage collection then must not take the library (and the weak references that
    would unload it) away, leaving it mapped for good (seen after test_bad_inputs)."""
    before = mapped(f"greet{SUFFIX}")
    with minildr.open(greet_so) as plugin:
        text = plugin.lookup("greet", GREET_T)()
    gc.collect()
    assert minildr.ffi.string(text).startswith(b"Hello")      # still mapped: still safe
    del text
    gc.collect()
    assert mapped(f"greet{SUFFIX}") == before


def test_messages_name_the_path_given_in_each_call_not_the_first_readers(tmp_path, monkeypatch,
                                                                         caplog):
    # The image cache shares one read of the file between opens; what each
    # call reports must still be the path that call was given.
    so = write_plugin(tmp_path, "named", 'const char *greet(void) { return "hi"; }\n',
                      "const char *greet(void);\n")
    absolute = str(so.resolve())
    images.clear_cache()
    with minildr.open(absolute) as first:
        assert first.path == absolute
    monkeypatch.chdir(so.parent)
    relative = so.name
    caplog.set_level(logging.INFO, logger="minildr")
    with minildr.open(relative) as plugin:          # served by the cache: not read again
        assert plugin.path == relative
        with pytest.raises(minildr.SymbolNotFound) as missing:
            plugin.lookup("nothere")
    assert str(missing.value).startswith(f"{relative}: ")
    assert f"open {relative} sha256=" in caplog.text
    with pytest.raises(minildr.UntrustedPlugin) as unexpected:
        minildr.open(relative, expect="another")
    assert str(unexpected.value).startswith(f"{relative}: ")
    assert minildr.read_manifest(relative).name == "named"
    with minildr.open(absolute) as again:            # and the first name still works as given
        assert again.path == absolute


def test_a_fact_parsed_under_one_name_is_refused_under_the_callers(greet_so):
    # Parsed facts are shared (an ElfFile keeps the name it was read by): a
    # refusal raised while computing one names the caller's path.
    image = images.read(str(greet_so.resolve()))
    view = image.named("plugins/greet.so")
    assert view.same_bytes(image) and view.sha256 == image.sha256

    def damaged():
        raise minildr.NotAPlugin(image.path, "damaged: a test")
    with pytest.raises(minildr.NotAPlugin) as refused:
        view.fact("damaged-for-test", damaged)
    assert refused.value.path == "plugins/greet.so"
    assert str(refused.value) == "plugins/greet.so: damaged: a test"


def test_a_large_file_hashed_by_its_own_thread_has_the_files_digest(greet_so, monkeypatch):
    """Files of DIGEST_IN_THREAD bytes or more are hashed while the open goes on
    (image.Digest); the digest the plugin reports is still the file's."""
    import hashlib
    monkeypatch.setattr(images, "DIGEST_IN_THREAD", 0)      # greet.so takes that path too
    images.clear_cache()
    image = images.read(greet_so)
    assert isinstance(image._sha256, images.Digest)
    with minildr.open(greet_so) as plugin:
        assert plugin.sha256 == hashlib.sha256(greet_so.read_bytes()).hexdigest()
    assert image.sha256 == plugin.sha256
