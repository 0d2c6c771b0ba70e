"""Long strings cross between host and worker through the shared arena (isolation/shm.py).

The values are the in-process ones; the frames stay small; a worker that
names a region outside the arena is a protocol violation; a worker that may
not grow the arena (its file size limit) sends its result in the frame instead.
"""
from __future__ import annotations

import pytest

import minildr
from minildr.isolation import marshal, protocol, sandbox, shm
from minildr.isolation.policy import SandboxPolicy

from helpers import run_in_worker_first, write_plugin
from platforms import requires_linux

pytestmark = requires_linux("the arena is a memfd (os.memfd_create)")

SOURCE = r"""
#include <string.h>
long count(const char *s) { long n = 0; for (; *s; s++) n += (*s == 'a'); return n; }
const char *same(const char *s) { return s; }
unsigned long length(const char *a, const char *b) { return strlen(a) + strlen(b); }
"""
HEADER = ("long count(const char *s);\nconst char *same(const char *s);\n"
          "unsigned long length(const char *a, const char *b);\n")
BIG = bytes(range(1, 256)) * 4000 + b"tail"          # 1 MB, every byte value but NUL


@pytest.fixture(scope="module")
def strings(tmp_path_factory):
    return write_plugin(tmp_path_factory.mktemp("shm"), "strings", SOURCE, HEADER)


def test_long_strings_cross_through_the_arena_with_small_frames(strings, monkeypatch):
    sizes = []
    real = marshal.CallFrames.pack_call
    monkeypatch.setattr(marshal.CallFrames, "pack_call",
                        lambda *a: sizes.append(len(real(*a))) or real(*a))
    with minildr.open(strings, isolate=True) as plugin:
        same = plugin.lookup("same", "const char *(const char *)")
        assert minildr.ffi.string(same(BIG)) == BIG                       # there and back
        assert plugin.lookup("count", "long (const char *)")(BIG) == BIG.count(b"a")
        two = plugin.lookup("length", "unsigned long (const char *, const char *)")
        assert two(BIG, BIG + b"x") == 2 * len(BIG) + 1                  # two regions
        assert minildr.ffi.string(same(b"short")) == b"short"             # in the frame
        assert plugin._worker.arena is not None
    assert max(sizes) < 1000, sizes


def test_a_region_outside_the_arena_is_a_protocol_violation(strings, monkeypatch):
    run_in_worker_first(monkeypatch, (
        "import minildr.isolation.marshal as m\n"
        "m.CallFrames.pack_reply = lambda self, seq, value, arena: "
        "m._REPLY[b'a'].pack(m.REPLY_MAGIC, 21, seq, b'a', 0, 1 << 40)\n"))
    with minildr.open(strings, isolate=True) as plugin:
        same = plugin.lookup("same", "const char *(const char *)")
        with pytest.raises(minildr.PluginProtocolError, match="outside the"):
            same(b"x")


@pytest.mark.skipif(bool(sandbox.probe().missing), reason="needs sandbox=True")
def test_a_worker_that_may_not_grow_the_arena_answers_in_the_frame(strings):
    """file_size=0: the worker's ftruncate fails (EFBIG); the result still arrives."""
    with minildr.open(strings, sandbox=SandboxPolicy(file_size=0)) as plugin:
        same = plugin.lookup("same", "const char *(const char *)")
        assert minildr.ffi.string(same(BIG)) == BIG


def test_arena_regions_are_checked():
    arena = shm.Arena.create()
    try:
        offset, length = arena.put(b"hello")
        assert arena.copy_out({"shm": [offset, length]}) == b"hello"
        for bad in ({"shm": [0, 10 ** 9]}, {"shm": [-1, 1]}, {"shm": [0]}, {"shm": ["0", 1]},
                    {"other": 1}, [0, 1]):
            with pytest.raises(protocol.ProtocolViolation):
                arena.region(bad)
    finally:
        arena.close()
