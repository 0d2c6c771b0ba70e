"""The loader's work done in bulk: columns and words handled by C loops, not Python lines.

The steps say what a load does to each relocation and each symbol; this
module is how they do it to thousands at once without a Python object or a
line of Python per item (libcrypto: 21,113 relocations, 3,205 symbols): a
table's fields as columns (lists) unpacked in C, a relocation type's rows
picked with itertools.compress, the mapped library written as an array of
words through map(). A first reading can take each helper at its word:
`Used` is a dict of symbols, `by_type` groups rows by type, `Words.write`
is `memory[at] = value` for each pair. tests/native/test_native_api.py
checks that the image these write is, word for word, the one a write per
relocation (the detailed trace's path) leaves.
"""
from __future__ import annotations

import struct
import sys
from array import array
from collections import deque
from itertools import compress, repeat
from operator import setitem
from typing import Iterable, Iterator, List, Mapping, NamedTuple, Sequence

from ..formats import elf
from ..formats.elf import Elf64_Sym
from .libc import BYTES, ffi

WORD = struct.Struct("<Q")
MASK = (1 << 64) - 1
LOW_BITS = bytes(b & 7 for b in range(256))      # a byte -> its low three bits


class Relocations(NamedTuple):
    """The relocations of one type from one table, as columns: a load reads them a column
    at a time (libcrypto has 4,191 that are not RELATIVE; no object per relocation)."""
    table: str
    type: int
    offsets: List[int]
    symbols: List[int]
    addends: List[int]      # signed


def by_type(table: str, offsets: Sequence[int], types: Sequence[int], symbols: Sequence[int],
            addends: Sequence[int]) -> List[Relocations]:
    """Columns split by relocation type, in the order the table has them (addends signed)."""
    kinds = list(dict.fromkeys(types))
    if len(kinds) == 1:                                 # JMPREL: all JUMP_SLOT
        return [Relocations(table, kinds[0], list(offsets), list(symbols), list(addends))]
    groups = []
    for rtype in kinds:
        mine = list(map(rtype.__eq__, types))
        groups.append(Relocations(table, rtype, list(compress(offsets, mine)),
                                  list(compress(symbols, mine)), list(compress(addends, mine))))
    return groups


class Used(Mapping):
    """The symbols the relocations name (not symbol 0), each once, in the order first named:
    index -> Elf64_Sym, each unpacked when asked for; and the same symbols as columns,
    unpacked in C (`name`, `info`, `other`, `shndx`, `value`, `size`: lists in `indices`'
    order), for steps 1b and 2, which check and bind them all at once (libcrypto: 3,205)."""

    def __init__(self, indices: List[int], symbols: Sequence[Elf64_Sym]) -> None:
        self.indices, self.symbols, self._order = indices, symbols, None
        (self.name, self.info, self.other, self.shndx, self.value,
         self.size) = symbols.columns_at(indices)
        self.undefined = set(compress(indices, map(elf.SHN_UNDEF.__eq__, self.shndx)))

    def __getitem__(self, index: int) -> Elf64_Sym:
        if self._order is None:                 # made when first asked: a load asks for few
            self._order = frozenset(self.indices)
        if index not in self._order:
            raise KeyError(index)
        return self.symbols[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Words:
    """The mapped library as 8-byte words: read and written many at a time."""

    def __init__(self, base: int, span: int) -> None:
        self.bytes = ffi.buffer(ffi.cast(BYTES, base), span)
        self.words = memoryview(self.bytes).cast("B").cast("Q")

    def read(self, offsets: List[int]) -> List[int]:
        if aligned(offsets):
            words = self.words
            return [words[at >> 3] for at in offsets]
        return [WORD.unpack_from(self.bytes, at)[0] for at in offsets]

    def write(self, offsets: "List[int] | array[int]", values: Iterable[int]) -> None:
        if aligned(offsets):                    # one loop in C: words[at >> 3] = value
            values, where = list(values), word_indices(offsets)
            try:
                deque(map(setitem, repeat(self.words), where, values), 0)
            except (ValueError, OverflowError):  # a value out of 0..2**64-1: all again, masked
                deque(map(setitem, repeat(self.words), where, map(MASK.__and__, values)), 0)
        else:                                   # the ABI allows it; compilers never do it
            for at, value in zip(offsets, values):
                WORD.pack_into(self.bytes, at, value & MASK)


def word_indices(offsets: "List[int] | array[int]") -> memoryview:
    """at >> 3 for every offset `at` (each a multiple of 8: `aligned`), at once: the offsets'
    bytes read as one big number and shifted right by 3 bits. Each offset's low 3 bits are
    zero, so no bit crosses from one word into its neighbour."""
    raw = (offsets if isinstance(offsets, array) else array("Q", offsets)).tobytes()
    return memoryview((int.from_bytes(raw, sys.byteorder) >> 3).to_bytes(len(raw), sys.byteorder)).cast("Q")


def aligned(offsets: "List[int] | array[int]") -> bool:
    """Every offset a multiple of 8: the low byte of each (the words' bytes read as an
    array of bytes, every eighth) has its low three bits clear, counted in C."""
    words = offsets if isinstance(offsets, array) else array("Q", offsets)
    low = words.tobytes()[::8]
    return low.translate(LOW_BITS).count(0) == len(low)
