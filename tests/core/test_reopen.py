"""A repeated open of an unchanged file: loader.reopen's flat path keeps every check.

The first open of a file checks its bytes (checks 2-4, SONAME, what it needs)
and records that as facts of the image; a later open of the same unchanged
file (image.unchanged: one stat) skips those and goes straight to the load.
Each test here opens a file once, then again, and makes the second open one
that must be refused or must load other bytes: it fails if the flat path
skipped the check that tells.
"""
from __future__ import annotations

import hashlib
import os

import pytest

import minildr
from minildr import image as images
from minildr import lifetime, loader, system
from minildr.trust import TrustStore

from helpers import write_plugin
from platforms import requires_linux, requires_proc

COMMAND_V1 = ("typedef struct command { const char *(*name)(void); int (*run)(const char *); }"
              " command_t;\n")
SHOUT = ('static const char *my_name(void) { return "shout"; }\n'
         "static int my_run(const char *line) { return line[0]; }\n"
         "const command_t shout = { my_name, my_run };\n")
GREET_T = "const char *(void)"


def contract(text: str = COMMAND_V1, version: str = "1.0") -> minildr.Contract:
    return minildr.Contract.from_header(text, name="command", version=version)


@pytest.fixture
def stamped(greet_so):
    """greet with 8 bytes appended (after everything a loader reads), first opened once."""
    with open(greet_so, "ab") as f:
        f.write(bytes(8))
    minildr.open(greet_so).close()
    return greet_so


def reopened(path, **kwargs):
    """minildr.open(path), which must take the flat path of a repeated open."""
    calls = []
    real = loader.reopen

    def spy(*args, **kw):
        calls.append(args)
        return real(*args, **kw)

    loader.reopen = spy
    try:
        plugin = minildr.open(path, **kwargs)
    finally:
        loader.reopen = real
    assert calls, "not a repeated open: the flat path was not taken"
    return plugin


def test_a_repeated_open_takes_the_flat_path_and_loads_the_same_bytes(stamped):
    first = minildr.open(stamped)
    first.close()
    with reopened(stamped) as again:
        assert again.sha256 == first.sha256 == hashlib.sha256(stamped.read_bytes()).hexdigest()
        assert minildr.ffi.string(again.lookup("greet", GREET_T)()).startswith(b"Hello")


@pytest.mark.parametrize("how", ["in place", "renamed over"])
def test_a_file_changed_with_the_same_size_and_mtime_is_read_again(stamped, how):
    """New bytes of the same length, the mtime set back: in place only the ctime tells; a
    rename gives a new inode (and ctime). Comparing size and mtime alone would load the
    old bytes."""
    before = os.stat(stamped)
    data = bytearray(stamped.read_bytes())
    data[-8:] = (12345).to_bytes(8, "little")
    if how == "in place":
        with open(stamped, "r+b") as f:
            f.write(data)
    else:
        staged = stamped.with_name("staged")
        staged.write_bytes(data)
        os.replace(staged, stamped)
    os.utime(stamped, ns=(before.st_atime_ns, before.st_mtime_ns))
    now = os.stat(stamped)
    assert (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert images.unchanged(stamped) is None
    with minildr.open(stamped) as plugin:
        assert plugin.sha256 == hashlib.sha256(data).hexdigest()


def test_a_trust_store_changed_between_opens_is_asked_again(stamped, tmp_path):
    store = TrustStore()
    store.pin(stamped)
    path = store.save(tmp_path / "trust.txt")
    reopened(stamped, trust=path).close()
    TrustStore().save(path)                        # the pin withdrawn
    with pytest.raises(minildr.UntrustedPlugin):
        reopened(stamped, trust=path)


def test_expect_is_checked_on_a_repeated_open(stamped):
    reopened(stamped, expect="greet").close()
    with pytest.raises(minildr.UntrustedPlugin) as err:
        reopened(stamped, expect="echo")
    assert err.value.verdict.status == "unexpected-plugin"


def test_contracts_are_checked_on_a_repeated_open(tmp_path):
    shout = write_plugin(tmp_path, "shout", SHOUT, "extern const command_t shout;\n",
                         contracts=[contract()])
    minildr.open(shout, contracts=[contract()]).close()
    reopened(shout, contracts=[contract()]).close()
    changed = contract(COMMAND_V1.replace("int (*run)", "long (*run)"), version="1.1")
    with pytest.raises(minildr.DependencyMismatch):
        reopened(shout, contracts=[changed])


@requires_proc
def test_a_repeated_open_loads_the_sealed_copy_of_its_own_image(stamped):
    """The copy's path is made once per copy: after the cache let the copy go, the next
    open makes a new copy and loads that one, not the old path (whatever has its number)."""
    with reopened(stamped) as plugin:
        image = images.unchanged(stamped)
        assert plugin._library.load_path == f"/proc/self/fd/{image.sealed_fd()}"
        assert os.readlink(plugin._library.load_path).startswith("/memfd:minildr:")
    images.clear_cache()                           # the copy is closed
    assert image.sealed_fd() is None
    holder = os.open(os.devnull, os.O_RDONLY)      # the freed number, taken by something else
    try:
        with minildr.open(stamped) as plugin:
            fresh = images.unchanged(stamped)
            assert fresh is not image
            assert plugin._library.load_path == f"/proc/self/fd/{fresh.sealed_fd()}"
            assert os.readlink(plugin._library.load_path).startswith("/memfd:minildr:")
    finally:
        os.close(holder)


@requires_linux("the link map names the file a handle was loaded from")
def test_a_repeated_open_refuses_a_handle_another_library_claims(stamped, monkeypatch):
    """dlopen may hand back a library loaded before under the copy's path (its SONAME):
    the flat path checks the handle's link map too, and leaves nothing loaded."""
    monkeypatch.setattr(system, "_loaded_from", lambda handle: b"/elsewhere/libother.so")
    with pytest.raises(minildr.LoadError, match="another, already loaded"):
        reopened(stamped)
    monkeypatch.undo()
    assert images.unchanged(stamped).users == 0
    with open("/proc/self/maps") as maps:
        assert f"minildr:{stamped.name}" not in maps.read()


@requires_proc
def test_a_repeated_open_is_closed_with_the_running_thread_check(stamped, monkeypatch):
    """close after a repeated open asks whether a foreign thread started since the load
    (lifetime.foreign_threads_since) and then leaves the library mapped."""
    plugin = reopened(stamped)
    library = plugin._library
    assert library.loaded_at is not None
    monkeypatch.setattr(lifetime, "_foreign_threads", lambda: frozenset({4242}))
    monkeypatch.setattr(lifetime, "foreign_threads_since", lambda started, settle=0.05:
                        frozenset({4242}))
    with pytest.warns(lifetime.LeftMapped, match="4242"):
        plugin.close()
    assert plugin.closed
    with open("/proc/self/maps") as maps:
        assert f"minildr:{stamped.name}" in maps.read()       # left mapped, as it must
    monkeypatch.undo()
    library.close()                                # the thread gone: closing again unloads
    assert library.unloaded


@requires_proc
def test_a_repeated_open_closes_only_once_nothing_from_it_is_held(stamped):
    plugin = reopened(stamped)
    greet = plugin.lookup("greet", GREET_T)
    plugin.close()
    with open("/proc/self/maps") as maps:
        assert f"minildr:{stamped.name}" in maps.read()
    assert minildr.ffi.string(greet()).startswith(b"Hello")
    del greet
    with open("/proc/self/maps") as maps:
        assert f"minildr:{stamped.name}" not in maps.read()


@requires_proc
def test_an_image_whose_copy_went_loads_a_new_copy_not_the_old_path(tmp_path):
    """What build() returns is read as the bytes this process built there, the same image
    even after the cache let its sealed copy go; its next load makes a new copy and must
    load that, not the path of the old one (remembered once per copy, forgotten with it)."""
    built = write_plugin(tmp_path, "twice", "int twice(int x) { return 2 * x; }\n",
                         "int twice(int x);\n")
    with minildr.open(built) as plugin:
        old_path = plugin._library.load_path
    images.clear_cache()                           # the copy is closed
    holder = os.open(os.devnull, os.O_RDONLY)      # its number, taken by something else
    try:
        with minildr.open(built) as plugin:
            image = images.read(built)
            assert plugin._library.load_path == f"/proc/self/fd/{image.sealed_fd()}" != old_path
            assert os.readlink(plugin._library.load_path).startswith("/memfd:minildr:")
            assert plugin.lookup("twice", "int (int)")(21) == 42
    finally:
        os.close(holder)
