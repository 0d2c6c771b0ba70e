"""Reading fixed-layout structures out of a file's bytes, never past the end.

The ELF, Mach-O and PE readers all declare their structures as named tuples
(`Record`) with a `struct` layout and read them through a `Reader`, which checks
every offset and size against the data first. A damaged or hostile file therefore
gives `NotAPlugin` naming the file, never an exception from deep inside.
"""
from __future__ import annotations

import collections
import functools
import mmap
import operator
import os
import struct
import sys
from typing import Any, Dict, Iterator, List, Sequence, NoReturn, Optional, Tuple, Type, TypeVar

from ..errors import NotAPlugin

T = TypeVar("T")
# What a user can do about a file whose tables point past its end or at nonsense.
REBUILD = "rebuild the plugin, or copy it again if it was damaged on the way"
_LAYOUTS: Dict[Tuple[type, str], struct.Struct] = {}
NATIVE_ORDER = "<" if sys.byteorder == "little" else ">"      # struct's, of this machine
VIEWS_FROM = 64             # Table.columns_at: rows picked from views from this many on


class _RecordType(type):
    """Makes each subclass of `Record` a collections.namedtuple, as typing.NamedTuple does."""

    # what namedtuple makes itself, and what a class statement adds that it must not copy
    _OWN = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields",
                      "_field_defaults", "_make", "_replace", "_asdict", "_source",
                      "__module__", "__annotations__"})

    def __new__(meta, name: str, bases: tuple, namespace: Dict[str, Any]) -> type:
        if not bases:                                   # Record itself
            return super().__new__(meta, name, bases, namespace)
        annotations = namespace.get("__annotations__", {})
        fields = list(annotations)
        defaults = [namespace[f] for f in fields if f in namespace]
        if defaults and any(f not in namespace for f in fields[len(fields) - len(defaults):]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        record = collections.namedtuple(name, fields, defaults=defaults or None,
                                        module=namespace["__module__"])
        record.__annotations__ = record.__new__.__annotations__ = annotations
        for key, value in namespace.items():            # docstring, methods, properties
            if key not in meta._OWN and key not in annotations:
                setattr(record, key, value)
        return record


class Record(metaclass=_RecordType):
    """A class declared as typing.NamedTuple declares one (fields annotated in order,
    defaults, methods), made into the same kind of class: a collections.namedtuple.

    typing.NamedTuple checks each field's annotation first, which with this
    package's postponed annotations means compiling each one: ~0.26 ms per class
    against ~0.1, and the formats declare some thirty, imported by every host and
    at every isolated worker's start (isolation/worker.py). `isinstance(x, Record)`
    is False, as `isinstance(x, NamedTuple)` is.
    """


def declare(cls: Type[T], fmt: Optional[str] = None) -> Type[T]:
    """Register the byte layout of a Record structure (without byte order).

    Without `fmt`, the layout is read from the fields' types: each field
    annotated `Annotated[int, "I"]` (or a named alias of one, as elf.py's
    `Elf64_Word`) contributes its struct letter, in field order, so a field
    and its place in the file are written once. Usable as a decorator.
    """
    if fmt is None:
        module = vars(sys.modules[cls.__module__])
        fmt = "".join(_letter(cls.__annotations__[name], module)
                      for name in cls._fields)                   # type: ignore[attr-defined]
    for order in "<>":
        _LAYOUTS[cls, order] = struct.Struct(order + fmt)
    return cls


def _letter(annotation: Any, module: Dict[str, Any]) -> str:
    """The struct letter of a field annotated `Annotated[int, "I"]` or an alias of one (the
    annotation is the text of it, postponed: evaluated in its module, as get_type_hints would)."""
    if not isinstance(annotation, str):
        hint = annotation
    elif annotation in module:          # an alias by name (Elf64_Word): no compile, as eval
        hint = module[annotation]       # would give (~70 of them at every import)
    else:
        hint = eval(annotation, module)
    return hint.__metadata__[0]


def layout(cls: type, order: str = "<") -> struct.Struct:
    """A declared structure's struct layout, for a reader unpacking plain tuples in a hot loop."""
    return _LAYOUTS[cls, order]


def sizeof(cls: type) -> int:
    return _LAYOUTS[cls, "<"].size


def pack(row: tuple, order: str = "<") -> bytes:
    """A declared structure's bytes, as the file holds them (for files minildr writes)."""
    return _LAYOUTS[type(row), order].pack(*row)


class Reader:
    """Bytes of one file, with the file's name for error messages."""

    def __init__(self, data: bytes, path: "os.PathLike[str] | str", order: str = "<") -> None:
        self.data = memoryview(data).toreadonly()
        # for find() without copies (an mmap, files.read_ranges' sparse read, has find() too)
        self.raw = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        self.path = os.fspath(path)
        self.order = order

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
        return list(map(functools.partial(tuple.__new__, cls), rows))   # cls._make, in C

    def lazy_table(self, cls: Type[T], offset: int, count: int, what: str) -> "Table[T]":
        """Like `table`, but each structure is unpacked when first asked for (big tables)."""
        layout = _LAYOUTS[cls, self.order]
        self.check_range(offset, count * layout.size, what)
        return Table(cls, layout, self.data, offset, count)

    def bytes_at(self, offset: int, size: int, what: str) -> bytes:
        self.check_range(offset, size, what)
        return bytes(self.data[offset:offset + size])


class Table(Sequence[T]):
    """A table of structures read on demand: a library's 5,000 symbols cost nothing until used."""

    def __init__(self, cls: Type[T], layout: struct.Struct, data: memoryview, offset: int,
                 count: int) -> None:
        self.cls, self.layout, self.data, self.offset, self.count = cls, layout, data, offset, count
        self.rows: Dict[int, T] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        row = self.rows.get(index)
        if row is None:
            if index < 0:
                index += self.count
            if not 0 <= index < self.count:
                raise IndexError(index)
            fields = self.layout.unpack_from(self.data, self.offset + index * self.layout.size)
            row = self.rows[index] = tuple.__new__(self.cls, fields)  # _make, without its checks
        return row

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def rows_at(self, indices: Sequence[int]) -> List[T]:
        """The structures at `indices` (each in range), unpacked in C, not one Python call
        each (a load wants 3,205 of libcrypto's 5,511 symbols)."""
        return list(map(functools.partial(tuple.__new__, self.cls), self.tuples_at(indices)))

    def columns_at(self, indices: Sequence[int]) -> List[Sequence[int]]:
        """The fields of the structures at `indices`, one sequence per field (column).

        Each field of every row is the table's bytes read as numbers of that field's
        size, every (row size / field size)-th from the field's place: a strided view
        (`field_views`), from which operator.itemgetter picks the rows asked for, in C,
        with no tuple per row. A layout that cannot be read so (another byte order,
        a field not aligned to its size) is unpacked row by row, also in C, and so are
        a few rows (under VIEWS_FROM: setting up the views costs more than they save)."""
        views = self.field_views() if len(indices) >= VIEWS_FROM else None
        if views is None:
            columns = list(map(list, zip(*self.tuples_at(indices))))
            return columns or [[] for _ in self.cls._fields]      # type: ignore[attr-defined]
        pick = operator.itemgetter(*indices)
        return [pick(view) for view in views]

    def field_views(self) -> Optional[List[memoryview]]:
        """Per field, a view of that field in every row (see columns_at), or None."""
        fmt, size = self.layout.format, self.layout.size
        if fmt[0] != NATIVE_ORDER or not fmt[1:].isalpha():
            return None
        table = self.data[self.offset:self.offset + self.count * size]
        views, at = [], 0
        for code in fmt[1:]:
            width = struct.calcsize("<" + code)
            if at % width or size % width:
                return None
            views.append(table.cast(code)[at // width::size // width])
            at += width
        return views

    def tuples_at(self, indices: Sequence[int]) -> "Iterator[tuple]":
        size, unpack = self.layout.size, functools.partial(self.layout.unpack_from, self.data)
        return map(unpack, map((self.offset).__add__, map(size.__mul__, indices)))


def c_string(raw: bytes) -> str:
    """A fixed-size, NUL-padded name field (Mach-O and PE section names)."""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")
