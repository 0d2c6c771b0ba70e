"""A repeated open of an unchanged file: loader.reopen's flat path keeps every check.

The first open of a file checks its bytes (checks 2-4, SONAME, what it needs)
and records that as facts of the image; a later open of the same unchanged
file (image.unchanged: one stat) skips those and goes straight to the load.
Each test here opens a file once, then again, and makes the second open one
that must be refused or must load other bytes: it fails if the flat path
skipped the check that tells.

A file is trusted by its stat alone only once it has settled (image.py,
git's racy-clean rule): its times older than the start of its read by
image.SETTLED_NS. The files here are written by the test itself, so
`stamped` moves image.py's wall clock on by SETTLED_NS (as if the test had
waited that long) for the tests that need the fast path; the tests at the
end simulate a coarse clock, whose times do not move on a rewrite.
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
def clock_moved_on(monkeypatch):
    """image.py's wall clock SETTLED_NS (and a second) ahead: files written before each
    read count as settled, as they would after waiting that long."""
    real = images._wall_clock_ns
    monkeypatch.setattr(images, "_wall_clock_ns",
                        lambda: real() + images.SETTLED_NS + 1_000_000_000)


@pytest.fixture
def stamped(greet_so, clock_moved_on):
    """greet with 8 bytes appended (after everything a loader reads), first opened once;
    settled (clock_moved_on), so a repeated open may trust its stat alone."""
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
    (lifetime.foreign_threads_since) and then leaves the library mapped (once a lookup
    handed something out: before, no thread can run its code)."""
    plugin = reopened(stamped)
    library = plugin._library
    assert library.loaded_at is not None
    plugin.lookup("greet", GREET_T)                # handed out (and dropped at once)
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


# -- a coarse clock: a rewrite that leaves every time as it was -----------------------
class _HeldTimes:
    """A stat result of the held file, with its mtime and ctime as they were held."""

    def __init__(self, st, ns):
        self._st, self.st_mtime_ns, self.st_ctime_ns = st, ns, ns
        self.st_mtime = self.st_ctime = ns / 1e9

    def __getattr__(self, name):
        return getattr(self._st, name)


@pytest.fixture
def coarse_clock(monkeypatch):
    """hold(path): from now on, a stat of that file (os.stat, os.fstat) shows the mtime and
    ctime it has now, whatever is written to it: what a kernel without multigrain
    timestamps (before Linux 6.13: times from a clock ticking every 1-10 ms) or a file
    system keeping 1 s or 2 s times shows of a rewrite made within one tick."""
    held = {}
    real_stat, real_fstat = os.stat, os.fstat

    def holding(st):
        ns = held.get((st.st_dev, st.st_ino))
        return st if ns is None else _HeldTimes(st, ns)

    monkeypatch.setattr(os, "stat", lambda *a, **kw: holding(real_stat(*a, **kw)))
    monkeypatch.setattr(os, "fstat", lambda fd: holding(real_fstat(fd)))

    def hold(path):
        st = real_stat(path)
        held[(st.st_dev, st.st_ino)] = max(st.st_mtime_ns, st.st_ctime_ns)
    return hold


def reads_of(monkeypatch):
    """A list that gets the path of each file image.py reads (its _read_file)."""
    calls = []
    real = images._read_file

    def spy(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "_read_file", spy)
    return calls


def rewritten(path, value):
    """`path` rewritten in place, the same size, its last 8 bytes `value`; its new digest."""
    data = bytearray(path.read_bytes())
    data[-8:] = value.to_bytes(8, "little")
    with open(path, "r+b") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("how", ["open", "image.read"])
def test_a_rewrite_within_one_tick_of_a_file_not_settled_loads_the_new_bytes(
        greet_so, coarse_clock, how):
    """The file was just written (not settled when read): a same-size rewrite whose times
    the coarse clock left as they were is read again, not served from the cache by its
    stat. Without the racy-clean rule, unchanged (and read) trust the identical stat."""
    with open(greet_so, "ab") as f:
        f.write(bytes(8))
    coarse_clock(greet_so)
    first = minildr.open(greet_so)
    first.close()
    identity = images.read(greet_so).identity
    digest = rewritten(greet_so, 12345)
    st = os.stat(greet_so)
    assert (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == identity
    assert images.unchanged(greet_so) is None
    if how == "open":
        with minildr.open(greet_so) as plugin:
            assert plugin.sha256 == digest != first.sha256
            assert minildr.ffi.string(plugin.lookup("greet", GREET_T)()).startswith(b"Hello")
    else:
        assert images.read(greet_so).sha256 == digest != first.sha256


def test_a_file_is_trusted_by_its_stat_from_the_read_that_finds_it_settled(
        greet_so, coarse_clock, monkeypatch):
    """Not settled: each open reads the file again (the same bytes keep the image and its
    flat path). Once a read begins SETTLED_NS after the file's times (the clock moved on),
    that read marks it trusted, and the next open takes the fast path: one stat, no read.
    Fails without the rule (the second open does not read) and with a rule that never
    trusts (the last one does)."""
    coarse_clock(greet_so)
    reads = reads_of(monkeypatch)
    minildr.open(greet_so).close()
    image = images.read(greet_so)
    assert len(reads) == 2 and image.trusted is None
    assert images.unchanged(greet_so) is None
    reopened(greet_so).close()                              # read again: the same image
    assert len(reads) == 3 and images.read(greet_so) is image and len(reads) == 4

    real = images._wall_clock_ns
    monkeypatch.setattr(images, "_wall_clock_ns", lambda: real() + images.SETTLED_NS)
    reopened(greet_so).close()                              # read once more: now settled
    assert len(reads) == 5 and image.trusted == image.identity
    assert images.unchanged(greet_so) is image
    with reopened(greet_so) as plugin:                      # one stat, no read
        assert len(reads) == 5 and plugin.sha256 == image.sha256


def _built_who(folder, value):
    """`who` built by this process into `folder` (a BuiltPath): who() = value, a variable
    in its data (so a test can find and change it in the file on any machine)."""
    source = f"int value = {value};\nint who(void) {{ return value; }}\n"
    return write_plugin(folder, "who", source, "int who(void);\n")


def test_a_rewrite_within_one_tick_of_a_build_is_opened_as_it_is_now(tmp_path, coarse_clock):
    """open(build(...)) trusts the file this process built by its stat only once it has
    settled: a same-size edit in place made within one tick of the build (times left as
    they were by the coarse clock) is read, and its bytes load. Without the rule the
    build's own bytes were opened (_read_built compared device, inode, size, mtime)."""
    built = _built_who(tmp_path, 0x5EED1234)
    coarse_clock(built)
    with minildr.open(built) as plugin:
        assert plugin.lookup("who", "int (void)")() == 0x5EED1234
        first = plugin.sha256
    before = os.stat(built)
    data = bytearray(built.read_bytes())
    at = data.index((0x5EED1234).to_bytes(4, "little"))      # `value` in .data
    data[at:at + 4] = (0x5EED1235).to_bytes(4, "little")
    with open(built, "r+b") as f:
        f.write(data)
    after = os.stat(built)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)
    with minildr.open(built) as plugin:
        assert plugin.sha256 == hashlib.sha256(data).hexdigest() != first
        assert plugin.lookup("who", "int (void)")() == 0x5EED1235


def test_a_build_is_read_until_it_settles_then_trusted_by_its_stat(tmp_path, monkeypatch):
    """Just built: each open(build(...)) reads the file again (pinned to its inode) and,
    the bytes being the same, loads the build's bytes; once a read begins SETTLED_NS
    after its times, the next opens read nothing."""
    built = _built_who(tmp_path, 3)
    reads = reads_of(monkeypatch)
    digests = set()
    for _ in range(2):
        with minildr.open(built) as plugin:
            assert plugin.lookup("who", "int (void)")() == 3
            digests.add(plugin.sha256)
    assert len(reads) == 2 and digests == {hashlib.sha256(built.read_bytes()).hexdigest()}
    real = images._wall_clock_ns
    monkeypatch.setattr(images, "_wall_clock_ns", lambda: real() + images.SETTLED_NS)
    for _ in range(3):
        with minildr.open(built) as plugin:
            assert plugin.lookup("who", "int (void)")() == 3
    assert len(reads) == 3
