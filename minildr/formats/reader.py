"""Reading fixed-layout structures out of a file's bytes, never past the end.

The ELF, Mach-O and PE readers all declare their structures as NamedTuples
with a `struct` layout and read them through a `Reader`, which checks every
offset and size against the data first. A damaged or hostile file therefore
gives `NotAPlugin` naming the file, never an exception from deep inside.
"""
from __future__ import annotations

import os
import struct
from typing import Dict, NoReturn, Tuple, Type, TypeVar

from ..errors import NotAPlugin

T = TypeVar("T")
# What a user can do about a file whose tables point past its end or at nonsense.
REBUILD = "rebuild the plugin, or copy it again if it was damaged on the way"
_LAYOUTS: Dict[Tuple[type, str], struct.Struct] = {}


def declare(cls: Type[T], fmt: str) -> Type[T]:
    """Register the byte layout of a NamedTuple structure (without byte order)."""
    for order in "<>":
        _LAYOUTS[cls, order] = struct.Struct(order + fmt)
    return cls


def sizeof(cls: type) -> int:
    return _LAYOUTS[cls, "<"].size


class Reader:
    """Bytes of one file, with the file's name for error messages."""

    def __init__(self, data: bytes, path: "os.PathLike[str] | str", order: str = "<") -> None:
        self.data = memoryview(data).toreadonly()
        self._bytes = data if isinstance(data, bytes) else bytes(data)
        self.path = os.fspath(path)
        self.order = order

    def nul_at(self, start: int, end: int) -> int:
        """The offset of the first NUL in [start, end), or -1.

        Searches in place: copying the rest of a string table for every name
        would cost time quadratic in the table's size (10,000 exports).
        """
        return self._bytes.find(b"\0", start, end)

    def fail(self, what: str) -> NoReturn:
        raise NotAPlugin(self.path, what)

    def damaged(self, what: str) -> NoReturn:
        """A table of the file is broken: say which, and what to do."""
        self.fail(f"damaged: {what}; {REBUILD}")

    def check_range(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            self.fail(f"damaged or truncated: the {what} (bytes {offset}..{offset + size}) "
                      f"lies outside the file ({len(self.data)} bytes)")

    def read(self, cls: Type[T], offset: int, what: str) -> T:
        layout = _LAYOUTS[cls, self.order]
        self.check_range(offset, layout.size, what)
        return cls._make(layout.unpack_from(self.data, offset))  # type: ignore[attr-defined]

    def table(self, cls: Type[T], offset: int, count: int, what: str) -> list:
        """`count` structures one after another; the whole table is checked once."""
        layout = _LAYOUTS[cls, self.order]
        self.check_range(offset, count * layout.size, what)
        rows = layout.iter_unpack(self.data[offset:offset + count * layout.size])
        return [cls._make(row) for row in rows]  # type: ignore[attr-defined]

    def bytes_at(self, offset: int, size: int, what: str) -> bytes:
        self.check_range(offset, size, what)
        return bytes(self.data[offset:offset + size])


def c_string(raw: bytes) -> str:
    """A fixed-size, NUL-padded name field (Mach-O and PE section names)."""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")
