"""The worker's C call loop (isolation/fastcall.c): same answers as cffi in-process,
everything it does not serve left to Python, and a clean fallback without it."""
from __future__ import annotations

import math
from pathlib import Path
import socket
import struct
import threading

import cffi
import pytest

import minildr
from minildr.isolation import fastcall, fastloop, forkserver, marshal, process, protocol
from minildr.isolation.policy import WORKER_LIMITS
from minildr.isolation.worker import Server
from minildr.isolation.marshal import CallFrames, Marshal, Value

from helpers import write_plugin
from platforms import requires_isolation, requires_linux

pytestmark = [requires_isolation,
              requires_linux("the C call loop knows Linux x86_64/aarch64 calling conventions")]

ABI_H = """
#ifndef ABI_H
#define ABI_H
#include <stdbool.h>
#include <stdint.h>
int8_t neg8(int8_t x);
uint8_t inc8(uint8_t x);
int16_t neg16(int16_t x);
uint16_t inc16(uint16_t x);
int32_t neg32(int32_t x);
uint32_t inc32(uint32_t x);
int64_t neg64(int64_t x);
uint64_t inc64(uint64_t x);
bool flip(bool b);
char next(char c);
double half(double x);
void nothing(void);
double mixed(int a, double b, long c, double d, short e, double f, unsigned g, double h,
             char i, double j, bool k, double l, double m, double n);
long six(long a, long b, long c, long d, long e, long f);
long seven(long a, long b, long c, long d, long e, long f, long g);
int wide_garbage(void);
float quarter(float x);
enum colour { RED = -1, GREEN = 7 };
enum colour pick(enum colour c);
int say(int n);
int nap(int ms);
#endif
"""

ABI_C = r"""
#include <stdio.h>
#include <unistd.h>
#include "abi.h"
int8_t neg8(int8_t x) { return (int8_t)-x; }
uint8_t inc8(uint8_t x) { return (uint8_t)(x + 1); }
int16_t neg16(int16_t x) { return (int16_t)-x; }
uint16_t inc16(uint16_t x) { return (uint16_t)(x + 1); }
int32_t neg32(int32_t x) { return -x; }
uint32_t inc32(uint32_t x) { return x + 1; }
int64_t neg64(int64_t x) { return -x; }
uint64_t inc64(uint64_t x) { return x + 1; }
bool flip(bool b) { return !b; }
char next(char c) { return (char)(c + 1); }
double half(double x) { return x / 2; }
void nothing(void) { }
double mixed(int a, double b, long c, double d, short e, double f, unsigned g, double h,
             char i, double j, bool k, double l, double m, double n)
{
    return a + 10 * b + 100 * c + 1000 * d + 1e4 * e + 1e5 * f + 1e6 * g + 1e7 * h
           + 1e8 * (i - 'a') + 1e9 * j + 1e10 * k + 1e11 * l + 1e12 * m + 1e13 * n;
}
long six(long a, long b, long c, long d, long e, long f) { return a - b + c - d + e - f; }
long seven(long a, long b, long c, long d, long e, long f, long g)
{ return a + b + c + d + e + f + g; }
int wide_garbage(void)
{
    /* a 32-bit result whose register's upper half is not its sign extension */
    long r = 0x7fffffff00000000L | 0xfffffffeL;
    int out;
    __asm__("" : "=r"(out) : "0"(r));
    return out;
}
float quarter(float x) { return x / 4; }
enum colour pick(enum colour c) { return c == RED ? GREEN : RED; }
int say(int n) { printf("say %d\n", n); return n; }
int nap(int ms) { usleep(ms * 1000); printf("napped %d\n", ms); return ms; }
"""

CASES = [
    ("neg8", (-128 + 1,)), ("neg8", (5,)), ("inc8", (254,)), ("inc8", (255,)),
    ("neg16", (-32767,)), ("inc16", (65535,)), ("neg32", (-(2**31) + 1,)),
    ("inc32", (2**32 - 1,)), ("neg64", (-(2**63) + 1,)), ("inc64", (2**63 - 2,)),
    ("inc64", (2**63 - 1,)), ("flip", (True,)), ("flip", (False,)), ("next", (b"a",)),
    ("next", (b"\x7f",)), ("half", (3.0,)), ("half", (math.inf,)), ("nothing", ()),
    ("mixed", (1, 2.0, 3, 4.0, 5, 6.0, 7, 8.0, b"b", 1.0, True, 2.0, 3.0, 4.0)),
    ("six", (1, 2, 3, 4, 5, 6)), ("seven", (1, 2, 3, 4, 5, 6, 7)), ("wide_garbage", ()),
    ("quarter", (2.0,)), ("pick", (-1,)), ("pick", (7,)),
]
REFUSED = [("neg8", (128,)), ("inc8", (-1,)), ("inc16", (65536,)), ("neg32", (2**31,)),
           ("inc32", (-1,)), ("flip", (2,)), ("inc64", (-1,)), ("neg64", (2**63,)),
           ("inc64", (2**64,))]


@pytest.fixture(scope="module")
def abi(tmp_path_factory):
    return write_plugin(tmp_path_factory.mktemp("abi"), "abi", ABI_C, ABI_H)


@pytest.fixture(scope="module")
def loop_path():
    status = fastcall.status()
    assert status.path, status.reason          # a C compiler is on this machine: it builds
    return status.path


@pytest.fixture(scope="module")
def abi_worker(abi, loop_path):
    """One isolated abi for the tests that only call it (its functions keep no state)."""
    with minildr.open(abi, isolate=True) as plugin:
        yield plugin


@pytest.fixture
def shared_abi(abi_worker):
    """The module's abi worker, checked alive and answering before each test uses it."""
    assert abi_worker._worker.alive, "a test stopped the shared abi worker"
    assert abi_worker.lookup("neg32", "int32_t (int32_t)")(5) == -5
    return abi_worker


def outcome(function, args):
    try:
        value = function(*args)
    except Exception as exc:                   # noqa: BLE001 - the error is the outcome
        return type(exc).__name__
    return value if not isinstance(value, float) or not math.isnan(value) else "nan"


def test_every_value_kind_crosses_as_cffi_gives_it_in_process(abi, shared_abi):
    manifest = minildr.read_manifest(abi)
    remote = shared_abi
    with minildr.open(abi) as local:
        for name, args in CASES + REFUSED:
            t = manifest.exports[name].ctype
            here, there = outcome(local.lookup(name, t), args), outcome(remote.lookup(name, t), args)
            assert here == there and type(here) is type(there), (name, args, here, there)
        assert outcome(local.lookup("wide_garbage", "int (void)"), ()) == -2


def test_the_loop_serves_what_its_table_knows_and_hands_back_the_rest(abi, loop_path):
    """The loop itself, in this process: a registered numbers-only function is answered in
    C; a JSON frame, an unknown handle, wrong kinds and an out-of-range value come back
    to the caller untouched, with nothing called."""
    lib = cffi.FFI()
    lib.cdef("int neg32(int x); double half(double x); int say(int n);")
    plugin = lib.dlopen(str(abi))
    loop = fastloop.Loop(loop_path)
    ffi = cffi.FFI()
    codes = fastloop.type_codes(ffi, "int32_t (int32_t)", "")
    assert codes == ("i", "i") and fastloop.type_codes(ffi, "float (float)", "") is None
    assert loop.register(3, plugin.neg32, codes)
    assert not loop.register(4, plugin.half, ("d", "ddddddddd"))    # 9 doubles: not in registers
    frames = CallFrames(Marshal("function", Value.INT, (Value.INT,)))
    host, worker = socket.socketpair()
    inbox = bytearray(1 << 16)
    try:
        handed = []
        thread = threading.Thread(target=lambda: handed.append(loop.serve(worker.fileno(),
                                                                          inbox)))
        thread.start()
        host.sendall(frames.pack_call(1, 3, (5,), ffi, None))
        reply = host.recv(64)
        assert frames.read_reply(reply[8:], 1, ffi, None) == -5
        json_request = protocol.frame(["lookup", 2, "x", None])
        host.sendall(json_request)
        thread.join(10)
        assert handed == [len(json_request)] and bytes(inbox[:handed[0]]) == json_request
        for frame in (frames.pack_call(3, 9, (5,), ffi, None),              # unknown handle
                      frames.pack_call(4, 3, (2**31,), ffi, None),          # out of range
                      frames.pack_call(5, 3, (5,), ffi, None).replace(b"\x01q", b"\x01d")):
            host.sendall(frame)
            assert loop.serve(worker.fileno(), inbox) == len(frame)
            assert bytes(inbox[:len(frame)]) == frame
        host.close()
        assert loop.serve(worker.fileno(), inbox) == 0               # end of file
    finally:
        loop.clear()
        worker.close()


def test_output_printed_in_a_c_served_call_comes_before_its_result(shared_abi, capfd):
    say = shared_abi.lookup("say", "int (int)")
    capfd.readouterr()
    for n in range(3):
        assert say(n) == n
        assert capfd.readouterr().out == f"say {n}\n"


def test_a_reply_slower_than_the_first_wait_comes_after_its_output(shared_abi, capfd):
    """call_numbers' slow path: no reply within FIRST_WAIT, so it polls on."""
    nap = shared_abi.lookup("nap", "int (int)")
    capfd.readouterr()
    for ms in (1, int(process.FIRST_WAIT * 1000) * 3):
        assert nap(ms) == ms
        assert capfd.readouterr().out == f"napped {ms}\n"


@pytest.mark.parametrize("c_loop", [True, False], ids=["C loop", "Python loop"])
def test_an_echo_is_a_void_reply_with_nothing_called(abi, monkeypatch, c_loop):
    """protocol.ECHO_HANDLE: the bare round trip benchmarks compare calls with."""
    if not c_loop:
        monkeypatch.setattr(fastcall, "_status", fastcall.Status("", "pretend: no C compiler"))
    with minildr.open(abi, isolate=True) as remote:
        say = remote.lookup("say", "int (int)")
        worker = remote._worker
        once = worker.bare_round_trip()
        with worker.lock:
            for _ in range(3):
                once()
        assert say(4) == 4                      # the channel is in step after the echoes
        host = worker._sock
        with worker.lock:
            host.sendall(marshal.echo_frame(77))
            # The host's socket gives up a recv after FIRST_WAIT (SO_RCVTIMEO, 10 ms): on a
            # loaded machine the reply may come later, so wait for it first.
            assert forkserver.wait_readable(host.fileno(), 30)
            assert host.recv(64) == marshal.VOID_REPLY.pack(protocol.REPLY_MAGIC, 5, 77, b"v")


def test_no_function_gets_the_echo_handle(abi, loop_path):
    loop = fastloop.Loop(loop_path)
    lib = cffi.FFI()
    lib.cdef("int neg32(int x);")
    assert not loop.register(protocol.ECHO_HANDLE, lib.dlopen(str(abi)).neg32, ("i", "i"))
    assert loop.register(protocol.ECHO_HANDLE - 1, lib.dlopen(str(abi)).neg32, ("i", "i"))
    loop.clear()
    server = Server(WORKER_LIMITS, None)
    server.handles = [(None, None)] * protocol.ECHO_HANDLE
    assert server.new_handle(("f", "how")) == protocol.ECHO_HANDLE + 1
    assert server.handles[protocol.ECHO_HANDLE + 1] == ("f", "how")


def test_without_the_c_loop_every_call_is_served_in_python(abi, monkeypatch):
    monkeypatch.setattr(fastcall, "_status", fastcall.Status("", "pretend: no C compiler"))
    manifest = minildr.read_manifest(abi)
    with minildr.open(abi) as local, minildr.open(abi, isolate=True) as remote:
        assert process.worker_command(3, 4, remote._worker.limits)[-1] == ""
        for name, args in CASES + REFUSED:
            t = manifest.exports[name].ctype
            assert outcome(local.lookup(name, t), args) == outcome(remote.lookup(name, t), args)


def test_no_compiler_is_a_reason_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    status = fastcall._build()
    assert status.path == "" and "no C compiler" in status.reason and "Python" in status.reason


def test_a_compiler_that_fails_is_a_reason_too(monkeypatch, tmp_path):
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo fake-cc 1.0 && exit 0\n"
                  "echo 'fastcall.c:1: error: broken' >&2; exit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    status = fastcall._build()
    assert status.path == "" and "fastcall.c:1: error: broken" in status.reason
    assert not [p for p in (tmp_path / "cache" / "minildr").iterdir()]   # nothing half-written


def test_the_loops_cache_key_holds_the_c_library(monkeypatch, tmp_path):
    """A loop built against one C library is not reused under another (a system upgrade)."""
    libc = cffi.FFI()
    libc.cdef("const char *gnu_get_libc_version(void);")
    try:
        version = libc.string(libc.dlopen(None).gnu_get_libc_version()).decode()
    except AttributeError:
        pytest.skip("not glibc: no gnu_get_libc_version to compare with")
    identity = fastcall.libc_identity()
    assert identity.startswith(f"glibc {version} /") and "libc.so" in identity
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = fastcall._build()
    assert first.path and fastcall._build() == first                # reused as it is
    monkeypatch.setattr(fastcall, "libc_identity", lambda: "glibc 9.99 /lib/libc.so.6 1 2")
    other = fastcall._build()
    assert other.path and other.path != first.path
    assert sorted(p.name for p in (tmp_path / "cache" / "minildr").iterdir()) == sorted(
        [Path(first.path).name, Path(other.path).name])
