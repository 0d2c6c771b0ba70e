"""Libraries this project did not build, loaded by the native loader and checked.

Each function called is checked against an independent implementation: a
CRC or checksum written out in Python from its definition, or a round trip
through the copy of the library that the system loader gave Python's own
module. A library that is not installed skips, naming it.
"""
from __future__ import annotations

import bz2
import os
import random

import pytest

import minildr
import minildr.native
from minildr.native.classes import Rel

from native_util import native_host, system_library

pytestmark = native_host
ffi = minildr.ffi
SAMPLES = [b"", b"a", b"hello, world", bytes(range(256)) * 9, random.Random(5).randbytes(10_000)]


def crc32_reference(data: bytes) -> int:
    """CRC-32 (ISO-HDLC: reflected, polynomial 0xEDB88320), bit by bit from its definition."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def adler32_reference(data: bytes) -> int:
    a, b = 1, 0
    for byte in data:
        a = (a + byte) % 65521
        b = (b + a) % 65521
    return (b << 16) | a


def crc64_reference(data: bytes) -> int:
    """CRC-64/XZ (ECMA-182 polynomial, reflected: 0xC96C5795D7870F42)."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xC96C5795D7870F42 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def test_libz_crc32_and_adler32():
    with minildr.native.load(system_library("libz.so.1")) as z:
        crc32 = z.lookup("crc32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
        adler32 = z.lookup("adler32", "unsigned long (unsigned long, const unsigned char *, unsigned int)")
        version = ffi.string(z.lookup("zlibVersion", "const char *(void)")()).decode()
        for data in SAMPLES[:4]:
            assert crc32(0, data, len(data)) == crc32_reference(data)
            assert adler32(1, data, len(data)) == adler32_reference(data)
        big = SAMPLES[4]
        assert crc32(0, big, len(big)) == crc32_reference(big)
        assert version[0].isdigit()
        del crc32, adler32


def test_libbz2_round_trip_with_pythons_bz2():
    """Compress with the native copy, decompress with Python's; and the other way round."""
    with minildr.native.load(system_library("libbz2.so.1.0")) as lib:
        compress = lib.lookup("BZ2_bzBuffToBuffCompress",
                              "int (char *, unsigned int *, char *, unsigned int, int, int, int)")
        decompress = lib.lookup("BZ2_bzBuffToBuffDecompress",
                                "int (char *, unsigned int *, char *, unsigned int, int, int)")
        for data in SAMPLES[1:]:
            out = ffi.new("char[]", len(data) * 2 + 600)
            size = ffi.new("unsigned int *", len(data) * 2 + 600)
            assert compress(out, size, data, len(data), 9, 0, 0) == 0        # BZ_OK
            packed = ffi.buffer(out, size[0])[:]
            assert bz2.decompress(packed) == data
            theirs = bz2.compress(data, 9)
            back = ffi.new("char[]", len(data) + 1)
            back_size = ffi.new("unsigned int *", len(data) + 1)
            assert decompress(back, back_size, theirs, len(theirs), 0, 0) == 0
            assert ffi.buffer(back, back_size[0])[:] == data
        del compress, decompress


def test_liblzma_crc32_and_crc64():
    with minildr.native.load(system_library("liblzma.so.5")) as lib:
        crc32 = lib.lookup("lzma_crc32", "uint32_t (const uint8_t *, size_t, uint32_t)")
        crc64 = lib.lookup("lzma_crc64", "uint64_t (const uint8_t *, size_t, uint64_t)")
        for data in SAMPLES[:4]:
            assert crc32(data, len(data), 0) == crc32_reference(data)
            assert crc64(data, len(data), 0) == crc64_reference(data)
        del crc32, crc64


def test_system_library_trace_shows_its_relocations():
    with minildr.native.load(system_library("libz.so.1")) as z:
        counts = z.trace.counts()
        relocations = [r for r in z.plan.all_relocations() if z.plan.rel_class(r) is not Rel.NONE]
        assert sum(counts.values()) == len(relocations)
        assert any("RELATIVE" in name for name in counts)
