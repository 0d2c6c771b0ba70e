"""Which plain C values cross into an isolated plugin, and how: both directions.

A typed lookup in an isolated plugin gets a function whose arguments and
result are copied between the two processes. Only plain values can be:
integers, floating-point numbers, _Bool, char and `const char *` strings
(copied). A pointer is an address in one process's memory and means nothing
in the other, so a function taking or returning any other pointer is refused
at lookup with a clear SymbolTypeError.

The host side (`encode_argument`, `decode_result`) and the worker side
(`from_wire`, `to_wire`) are written here side by side.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import cffi

from .. import ctype
from ..ctype import INTEGER_TYPES
from ..errors import SymbolTypeError
from ..manifest import Export
from .protocol import ProtocolViolation
from .shm import SHM_MIN, Arena


class Value(str, enum.Enum):
    """How one value is copied; its one-letter value is what the tables hold."""
    INT = "i"         # any integer type, and enums
    FLOAT = "f"       # float, double
    BOOL = "b"        # _Bool
    CHAR = "c"        # char: bytes of length 1
    STRING = "s"      # const char *: a copy, NULL as None
    VOID = "v"        # results only


@dataclass(frozen=True)
class Marshal:
    """How one export's values cross the process boundary."""
    kind: str                    # the export's kind: "function" or "data"
    result: Value                # the function's result, or the variable's value
    params: Tuple[Value, ...] = ()


def _kind_of(ffi: Any, spelling: str, role: str) -> Optional[Value]:
    if spelling == "void":
        return Value.VOID if role == "result" else None
    if spelling == "const char *" or (spelling == "char *" and role != "parameter"):
        return Value.STRING
    try:
        t = ffi.typeof(spelling)
    except Exception:            # cffi raises several types for types it cannot use
        return None
    if t.kind == "enum":
        return Value.INT
    if t.kind != "primitive":
        return None
    if t.cname == "char":
        return Value.CHAR
    if t.cname == "_Bool":
        return Value.BOOL
    if t.cname in ("float", "double"):
        return Value.FLOAT
    return Value.INT if t.cname in INTEGER_TYPES else None


def marshal_for(ffi: Any, path: str, export: Export, types: str) -> Marshal:
    """How `export`'s values are copied between host and worker, or SymbolTypeError."""
    def refuse(what: str) -> SymbolTypeError:
        return SymbolTypeError(path, (
            f"{export.name!r} has type '{export.ctype}': {what} cannot cross into the "
            "isolated worker process. Isolated plugins pass integers, floating-point "
            "numbers, _Bool, char and const char * strings (copied); any other pointer is "
            "an address in the worker's memory, meaningless to the host. Open the plugin "
            "without isolate=True to use it, or export a function taking plain values"))

    if export.kind == "data":
        kind = _kind_of(ffi, export.ctype, "variable")
        if kind is None:
            raise refuse("a variable of this type")
        return Marshal("data", kind)
    result, params, variadic = ctype.signature(export.ctype, types)
    if variadic:
        raise refuse("a variadic argument list (...)")
    result_kind = _kind_of(ffi, result, "result")
    if result_kind is None:
        raise refuse(f"its result type '{result}'")
    kinds = []
    for number, param in enumerate(params, 1):
        kind = _kind_of(ffi, param, "parameter")
        if kind is None:
            raise refuse(f"parameter {number} ('{param}')")
        kinds.append(kind)
    return Marshal("function", result_kind, tuple(kinds))


def _host_string(value: Any, ffi: Any, arena: Optional[Arena]) -> Any:
    """A string argument: None, latin-1 text in the frame, or a region of the arena."""
    if value is None:
        return None
    if isinstance(value, ffi.CData):
        if value == ffi.NULL:
            return None
        value = ffi.string(value)
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"a const char * argument takes bytes (or None for NULL), "
                        f"not {type(value).__name__}; encode a str first")
    if arena is not None and len(value) >= SHM_MIN:
        return {"shm": list(arena.put(value))}
    return bytes(value).decode("latin-1")


def encode_argument(kind: Value, value: Any, ffi: Any, arena: Optional[Arena] = None) -> Any:
    """A host argument as JSON, checked the way cffi would check it in-process.

    A long string goes into `arena` (shm.py), the frame carrying its region.
    """
    if kind is Value.INT:
        if isinstance(value, int):
            return int(value)
        raise TypeError(f"an integer argument takes an int, not {type(value).__name__}")
    if kind is Value.FLOAT:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"a floating-point argument takes a float, not {type(value).__name__}")
    if kind is Value.BOOL:
        if isinstance(value, int):
            return int(value)
        raise TypeError(f"a _Bool argument takes a bool, not {type(value).__name__}")
    if kind is Value.CHAR:
        if isinstance(value, bytes) and len(value) == 1:
            return value.decode("latin-1")
        raise TypeError(f"a char argument takes bytes of length 1, not {value!r}")
    return _host_string(value, ffi, arena)


def decode_result(kind: Value, value: Any, ffi: Any, arena: Optional[Arena] = None) -> Any:
    """A worker's result as the host gets it; a value of the wrong kind is a violation."""
    if kind is Value.VOID:
        ok = value is None
    elif kind in (Value.INT, Value.BOOL):
        ok = type(value) is int or (kind is Value.BOOL and type(value) is bool)
        if ok and kind is Value.BOOL:
            value = bool(value)
    elif kind is Value.FLOAT:
        ok = type(value) in (float, int)
        value = float(value) if ok else value
    elif kind is Value.CHAR:
        ok = type(value) is str and len(value) == 1
        value = value.encode("latin-1") if ok else value
    else:
        if value is None:
            return ffi.NULL
        if isinstance(value, dict) and arena is not None:     # a long string, in the arena
            return _copied_from(arena, value, ffi)
        ok = type(value) is str
        # A copy owned by the host: minildr.ffi.string() reads it as it would
        # read the plugin's char * in-process.
        value = ffi.new("char[]", value.encode("latin-1")) if ok else value
    if not ok:
        raise ProtocolViolation(f"the worker returned {value!r} for a result of kind {kind.value!r}")
    return value


def _copied_from(arena: Arena, wire: Any, ffi: Any) -> Any:
    """The host's own char[] copy of an arena region (one copy, checked bounds)."""
    offset, length = arena.region(wire)
    copy = ffi.new("char[]", length + 1)
    ffi.memmove(copy, memoryview(arena.map)[offset:offset + length], length)
    return copy


# -- the worker's side ---------------------------------------------------------
_ffi = cffi.FFI()       # for NULL and ffi.string on the worker's own cdata


def from_wire(kind: Value, value: Any, arena: Optional[Arena] = None) -> Any:
    """An argument (or a value to store) as the worker's cffi function takes it.

    A string in the arena is passed as a pointer into the worker's mapping.
    """
    if kind is Value.STRING:
        if isinstance(value, dict):
            if arena is None:
                raise ProtocolViolation("an arena region, but this worker has no arena")
            offset, length = arena.region(value)
            return _ffi.from_buffer(memoryview(arena.map)[offset:offset + length + 1])
        return _ffi.NULL if value is None else value.encode("latin-1")
    if kind is Value.CHAR:
        return value.encode("latin-1")
    return value


def copy_result(kind: Value, value: Any) -> Any:
    """The worker's own copy of a string or char result (bytes, None for NULL)."""
    if kind is Value.STRING:
        return None if value == _ffi.NULL else _ffi.string(value)
    return value


def to_wire(kind: Value, value: Any, arena: Optional[Arena] = None) -> Any:
    """A result (or a variable's value) in the worker, as JSON for the host.

    A long string goes into the arena, if the worker may grow it that far.
    """
    if kind is Value.STRING:
        text = value if value is None or isinstance(value, bytes) else copy_result(kind, value)
        if text is None:
            return None
        if arena is not None and len(text) >= SHM_MIN:
            try:
                return {"shm": list(arena.put(text))}
            except OSError:                  # past its file size limit: by JSON, then
                pass
        return text.decode("latin-1")
    if kind is Value.CHAR:
        return value.decode("latin-1")
    return value
