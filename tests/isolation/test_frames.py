"""The binary frames of an isolated call (marshal.CallFrames): both directions, and lies.

A typed call crosses in one struct-packed frame each way; these tests pack
and read frames without processes (every wire kind, every refusal), then
call a real worker with the values at the edges of 64 bits, where a value
that does not fit goes by JSON and still comes back exact.
"""
from __future__ import annotations

import struct

import pytest

import minildr
from minildr.isolation import marshal, protocol, shm
from minildr.isolation.marshal import CallFrames, Marshal, Value
from minildr.isolation.shm import SHM_MIN, Arena

from helpers import write_plugin
from platforms import requires_linux

ffi = minildr.ffi
HEAD = protocol.HEADER.size


def body(frame: bytes) -> bytes:
    """What FrameReader hands on for a binary frame: the payload after the header."""
    reader = protocol.FrameReader(binary=frame[:4])
    reader.feed(frame)
    payload = reader.next()
    assert type(payload) is bytes and reader.next() is None
    return payload


def call_and_back(how: Marshal, args: tuple, arena=None) -> list:
    frames = CallFrames(how)
    payload = body(frames.pack_call(7, 3, args, ffi, arena))
    assert marshal.read_call_head(payload) == (7, 3)
    return frames.read_call(payload, arena)


def test_numbers_cross_in_one_precompiled_frame():
    how = Marshal("function", Value.INT, (Value.INT, Value.FLOAT, Value.BOOL, Value.CHAR))
    frames = CallFrames(how)
    assert frames.numbers and frames.kinds == b"qdqc"
    frame = frames.pack_call(1, 0, (-2**63, 0.5, True, b"x"), ffi, None)
    assert len(frame) == HEAD + 7 + 4 + 8 + 8 + 8 + 1
    assert call_and_back(how, (-2**63, 0.5, True, b"x")) == [-2**63, 0.5, 1, b"x"]


def test_strings_cross_in_the_frame_or_the_arena():
    how = Marshal("function", Value.INT, (Value.STRING, Value.INT, Value.STRING, Value.STRING))
    arena = shm.Arena.create()
    try:
        big = b"a" * shm.SHM_MIN
        arena.begin()
        got = call_and_back(how, (b"short", 5, None, big), arena)
        assert got[:3] == [b"short", 5, marshal._ffi.NULL]
        assert marshal._ffi.string(got[3]) == big            # a pointer into the arena
        frame = CallFrames(how).pack_call(1, 0, (b"short", 5, None, big), ffi, arena)
        assert len(frame) < 100                              # the big one is not in it
    finally:
        arena.close()


@pytest.mark.parametrize("result, value, expect", [
    (Value.VOID, None, None),
    (Value.INT, -5, -5),
    (Value.INT, 2**63 - 1, 2**63 - 1),
    (Value.BOOL, True, True),
    (Value.FLOAT, 2.5, 2.5),
    (Value.CHAR, b"z", b"z"),
])
def test_results_come_back_as_in_process(result, value, expect):
    frames = CallFrames(Marshal("function", result, ()))
    got = frames.read_reply(body(frames.pack_reply(9, value, None)), 9, ffi, None)
    assert got == expect and type(got) is type(expect)


def test_string_results_come_back_as_host_copies():
    frames = CallFrames(Marshal("function", Value.STRING, ()))
    assert frames.read_reply(body(frames.pack_reply(1, None, None)), 1, ffi, None) == ffi.NULL
    copy = frames.read_reply(body(frames.pack_reply(1, b"text", None)), 1, ffi, None)
    assert ffi.string(copy) == b"text" and ffi.typeof(copy) is ffi.typeof("char *")


def test_string_results_in_the_arena_come_back_as_char_pointers():
    arena = Arena.create()
    try:
        frames = CallFrames(Marshal("function", Value.STRING, ()))
        text = b"y" * (SHM_MIN + 5)
        copy = frames.read_reply(body(frames.pack_reply(3, text, arena)), 3, ffi, arena)
        assert ffi.typeof(copy) is ffi.typeof("char *") and ffi.string(copy) == text
        arena.begin()                        # the arena is reused: the copy is the host's own
        arena.put(b"z" * (SHM_MIN + 5))
        assert ffi.string(copy) == text
    finally:
        arena.close()


def test_an_integer_beyond_64_bits_asks_for_json():
    frames = CallFrames(Marshal("function", Value.INT, (Value.INT,)))
    assert frames.pack_call(1, 0, (2**64 - 1,), ffi, None) is None
    assert frames.pack_reply(1, 2**64 - 1, None) is None


def test_arguments_cffi_would_refuse_are_refused_in_the_host():
    frames = CallFrames(Marshal("function", Value.INT, (Value.INT, Value.STRING)))
    with pytest.raises(TypeError, match="takes an int"):
        frames.pack_call(1, 0, ("1", b"x"), ffi, None)
    with pytest.raises(TypeError, match="takes bytes"):
        frames.pack_call(1, 0, (1, "text"), ffi, None)


def reply(seq: int, kind: bytes, rest: bytes = b"") -> bytes:
    return struct.pack("<Ic", seq, kind) + rest


@pytest.mark.parametrize("result, payload, fragment", [
    (Value.INT, reply(8, b"q", bytes(8)), "does not answer call 9"),      # another call's
    (Value.INT, reply(9, b"d", bytes(8)), "does not answer"),             # a double for an int
    (Value.INT, reply(9, b"q", bytes(4)), "does not answer"),             # cut short
    (Value.INT, reply(9, b"q", bytes(9)), "does not answer"),             # too long
    (Value.VOID, reply(9, b"q", bytes(8)), "does not answer"),
    (Value.STRING, reply(9, b"q", bytes(8)), "does not answer"),
    (Value.STRING, reply(9, b"a", bytes(16)), "no arena"),
    (Value.INT, b"\x09\x00", "does not answer"),
    (Value.STRING, b"\x09\x00", "does not answer"),
    (Value.STRING, reply(9, b"n", b"x"), "does not answer"),
])
def test_a_reply_that_is_not_the_answer_is_a_violation(result, payload, fragment):
    frames = CallFrames(Marshal("function", result, ()))
    with pytest.raises(protocol.ProtocolViolation, match=fragment):
        frames.read_reply(payload, 9, ffi, None)


def test_an_arena_region_outside_the_arena_is_a_violation():
    arena = shm.Arena.create()
    try:
        arena.put(b"x")
        frames = CallFrames(Marshal("function", Value.STRING, ()))
        with pytest.raises(protocol.ProtocolViolation, match="outside"):
            frames.read_reply(reply(1, b"a", struct.pack("<QQ", 0, 1 << 40)), 1, ffi, arena)
    finally:
        arena.close()


@pytest.mark.parametrize("params, payload, fragment", [
    ((Value.INT,), struct.pack("<IHB1sd", 1, 0, 1, b"d", 1.0), "kinds b'd' for b'q'"),
    ((Value.INT,), struct.pack("<IHB1sq", 1, 0, 1, b"q", 1) + b"x", "17-byte call frame"),
    ((Value.STRING,), struct.pack("<IHB1sq", 1, 0, 1, b"q", 1), "kind 'q' for a string"),
    ((Value.STRING, Value.INT), struct.pack("<IHB2sd", 1, 0, 2, b"nd", 1.0), "kind 'd' for INT"),
    ((Value.STRING,), struct.pack("<IHB1sI3s", 1, 0, 1, b"s", 3, b"abc") + b"!", "longer"),
])
def test_a_call_frame_that_lies_is_a_violation_in_the_worker(params, payload, fragment):
    frames = CallFrames(Marshal("function", Value.INT, params))
    with pytest.raises(protocol.ProtocolViolation, match=fragment):
        frames.read_call(payload, None)


def test_a_binary_frame_of_the_other_direction_is_not_a_frame():
    """The host reads reply frames only; a worker sending a call frame is violating."""
    reader = protocol.FrameReader(binary=protocol.REPLY_MAGIC)
    reader.feed(protocol.HEADER.pack(protocol.CALL_MAGIC, 0))
    with pytest.raises(protocol.ProtocolViolation, match="frame magic"):
        reader.next()


EDGES_C = r"""
#include <stdint.h>
uint64_t twice_u(uint64_t x) { return x * 2; }
int64_t same_i(int64_t x) { return x; }
uint64_t top(void) { return UINT64_MAX; }
"""
EDGES_H = "#include <stdint.h>\nuint64_t twice_u(uint64_t x);\nint64_t same_i(int64_t x);\nuint64_t top(void);\n"


@requires_linux("isolate=True needs a POSIX worker; the codec above runs anywhere")
def test_values_at_the_edges_of_64_bits_cross_exactly(tmp_path):
    """Beyond int64 a call goes by JSON (both ways), and gives what cffi gives in-process."""
    path = write_plugin(tmp_path, "edges", EDGES_C, EDGES_H)
    with minildr.open(path) as local, minildr.open(path, isolate=True) as remote:
        for name, ctype, args in [("twice_u", "uint64_t (uint64_t)", (2**62,)),
                                  ("twice_u", "uint64_t (uint64_t)", (2**63 + 5,)),
                                  ("same_i", "int64_t (int64_t)", (-2**63,)),
                                  ("top", "uint64_t (void)", ())]:
            assert remote.lookup(name, ctype)(*args) == local.lookup(name, ctype)(*args)
        with pytest.raises(OverflowError):
            local.lookup("twice_u", "uint64_t (uint64_t)")(2**64)
        with pytest.raises(OverflowError):
            remote.lookup("twice_u", "uint64_t (uint64_t)")(2**64)
        assert remote.lookup("top", "uint64_t (void)")() == 2**64 - 1


def test_take_reads_one_frame_whole_or_in_pieces():
    frames = CallFrames(Marshal("function", Value.INT, ()))
    one, two = frames.pack_reply(1, 5, None), frames.pack_reply(2, 6, None)
    reader = protocol.FrameReader(binary=protocol.REPLY_MAGIC)
    assert reader.take(memoryview(one)) == one[HEAD:]                # exactly one frame
    assert reader.take(one[:3]) is None and reader.take(one[3:]) == one[HEAD:]   # split
    assert reader.take(one + two) == one[HEAD:] and reader.next() == two[HEAD:]  # two at once
    assert reader.take(protocol.frame(["ok", 3, None])) == ["ok", 3, None]       # JSON too
    with pytest.raises(protocol.ProtocolViolation):
        reader.take(protocol.HEADER.pack(protocol.CALL_MAGIC, 0))
