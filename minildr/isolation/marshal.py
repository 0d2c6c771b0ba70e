"""Which plain C values cross into an isolated plugin, and how: both directions.

A typed lookup in an isolated plugin gets a function whose arguments and
result are copied between the two processes. Only plain values can be:
integers, floating-point numbers, _Bool, char and `const char *` strings
(copied). A pointer is an address in one process's memory and means nothing
in the other, so a function taking or returning any other pointer is refused
at lookup with a clear SymbolTypeError.

Values cross in one of two ways, both written here with the host's side
and the worker's side next to each other: by JSON (`encode_argument`,
`decode_result` in the host; `from_wire`, `to_wire` in the worker), for
variables and the rare call a binary frame cannot carry; and, for calls,
in binary frames (`CallFrames`: `pack_call` / `read_call`, then
`pack_reply` / `read_reply`).
"""
from __future__ import annotations

import enum
import functools
import struct
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import _cffi_backend

from .. import ctype
from ..ctype import INTEGER_TYPES
from ..errors import SymbolTypeError
from ..manifest import Export
from .protocol import CALL_MAGIC, ECHO_HANDLE, HEADER, REPLY_MAGIC, ProtocolViolation
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

    def to_wire(self) -> List[str]:
        """As the host sends it with a compared lookup (isolation/worker.py)."""
        return [self.kind, self.result.value, "".join(p.value for p in self.params)]

    @classmethod
    def from_wire(cls, wire: Any) -> "Marshal":
        """A Marshal from `to_wire`'s list; ProtocolViolation for anything else."""
        try:
            kind, result, params = wire
            if kind in ("function", "data") and type(params) is str:
                return cls(kind, Value(result), tuple(Value(p) for p in params))
        except (TypeError, ValueError):
            pass
        raise ProtocolViolation(f"{str(wire)[:80]!r} is not a marshal")

    def fits(self, pointer_type: Any) -> bool:
        """Whether this is how values of the export behind `pointer_type` (a cffi type: a
        pointer to a function or variable) can cross: each value of the kind its C
        type has (a STRING a pointer to char; cffi keeps no `const`, which the host's
        marshal_for judged)."""
        if self.kind == "data":
            return pointer_type.kind == "pointer" and _fits(self.result, pointer_type.item)
        return (pointer_type.kind == "function" and not pointer_type.ellipsis
                and len(pointer_type.args) == len(self.params)
                and all(map(_fits, (self.result, *self.params),
                            (pointer_type.result, *pointer_type.args))))


def _fits(kind: Value, t: Any) -> bool:
    """Whether a value of the cffi type `t` crosses as `kind` (the rules of _kind_of)."""
    if kind is Value.VOID:
        return t.kind == "void"
    if kind is Value.STRING:
        return t.kind == "pointer" and t.item.kind == "primitive" and t.item.cname == "char"
    if kind is Value.INT:
        return t.kind == "enum" or (t.kind == "primitive" and t.cname in INTEGER_TYPES)
    wanted = {Value.CHAR: ("char",), Value.BOOL: ("_Bool",), Value.FLOAT: ("float", "double")}
    return t.kind == "primitive" and t.cname in wanted[kind]


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


def _host_bytes(value: Any, ffi: Any) -> Optional[bytes]:
    """A string argument's bytes (None for NULL), checked as cffi checks a char *."""
    if value is None:
        return None
    if isinstance(value, ffi.CData):
        if value == ffi.NULL:
            return None
        return ffi.string(value)
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"a const char * argument takes bytes (or None for NULL), "
                        f"not {type(value).__name__}; encode a str first")
    return bytes(value)


def check_argument(kind: Value, value: Any) -> Any:
    """A number or char argument, checked the way cffi would check it in-process."""
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
    if isinstance(value, bytes) and len(value) == 1:         # Value.CHAR
        return value
    raise TypeError(f"a char argument takes bytes of length 1, not {value!r}")


def encode_argument(kind: Value, value: Any, ffi: Any, arena: Optional[Arena] = None) -> Any:
    """A host argument as JSON (variables, and calls a binary frame cannot carry).

    A long string goes into `arena` (shm.py), the frame carrying its region.
    """
    if kind is Value.STRING:
        data = _host_bytes(value, ffi)
        if data is None:
            return None
        if arena is not None and len(data) >= SHM_MIN:
            return {"shm": list(arena.put(data))}
        return data.decode("latin-1")
    value = check_argument(kind, value)
    return value.decode("latin-1") if kind is Value.CHAR else value


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
            return ffi.cast("char *", 0)          # NULL, typed as in-process
        if isinstance(value, dict) and arena is not None:     # a long string, in the arena
            return _copied_from(arena, *arena.region(value), ffi)
        ok = type(value) is str
        value = owned_string(ffi, value.encode("latin-1")) if ok else value
    if not ok:
        raise ProtocolViolation(f"the worker returned {value!r} for a result of kind {kind.value!r}")
    return value


def owned_string(ffi: Any, data: Any, length: Optional[int] = None) -> Any:
    """A string result as the host gets it: a `char *`, as the in-process call returns.

    The bytes are the host's own copy (a char[] of cffi's); the `char *`
    handed out keeps that copy alive for as long as it lives (ffi.gc's
    destructor holds it), so `ffi.string()`, `ffi.typeof()` and indexing
    behave as for the plugin's own pointer in-process. `data`: the bytes, or
    with `length` a buffer to copy that many bytes from.
    """
    if length is None:
        copy = ffi.new("char[]", bytes(data))
    else:
        copy = ffi.new("char[]", length + 1)
        ffi.memmove(copy, data, length)
    return ffi.gc(ffi.cast("char *", copy), lambda _pointer, _kept=copy: None)


def _copied_from(arena: Arena, offset: int, length: int, ffi: Any) -> Any:
    """The host's own copy of an arena region (one copy, checked bounds), as a char *."""
    offset, length = arena.check(offset, length)
    return owned_string(ffi, memoryview(arena.map)[offset:offset + length], length)


# -- the worker's side ---------------------------------------------------------
_ffi = _cffi_backend.FFI()   # for NULL and ffi.string on the worker's own cdata (no parser)


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


# ---------------------------------------------------------------------------
# Binary frames of a call: both directions
# ---------------------------------------------------------------------------
# A call to a typed function is the hot path: one binary frame each way, no
# JSON, no dict, the function named by its index in the worker's table.
#
#   request   HEADER "<4sI"  CALL_MAGIC, length of what follows
#             "<IHB"         call id, function handle, number of arguments
#             N bytes        each argument's wire kind, then the values in order
#   reply     HEADER "<4sI"  REPLY_MAGIC, length of what follows
#             "<Ic"          call id, the result's wire kind, then its value
#
# A wire kind is one byte; for numbers it is their struct format:
#   q  int64 (integers and _Bool)    d  double    c  char (one byte)
#   n  NULL (no value)               v  void (no value)
#   s  a string in the frame: "<I" length, then the bytes
#   a  a string in the arena (shm.py): "<QQ" offset, length
# An integer beyond 64 bits does not fit: that call (or reply) goes by JSON.
# Errors always go by JSON (protocol.error_reply).
CALL_HEAD = struct.Struct("<IHB")
CALL_HEAD_FRAME = struct.Struct("<4sIIHB")
REPLY_HEAD = struct.Struct("<Ic")
NUMBER = {Value.INT: "q", Value.BOOL: "q", Value.FLOAT: "d", Value.CHAR: "c"}
_LENGTH, _REGION = struct.Struct("<I"), struct.Struct("<QQ")
# A reply frame, header included, by the result's wire kind ("s": its bytes follow).
_REPLY = {b"q": struct.Struct("<4sIIcq"), b"d": struct.Struct("<4sIIcd"),
          b"c": struct.Struct("<4sIIcc"), b"a": struct.Struct("<4sIIcQQ"),
          b"v": struct.Struct("<4sIIc"), b"n": struct.Struct("<4sIIc"),
          b"s": struct.Struct("<4sIIc")}
# The same without the header: what FrameReader hands the host.
_REPLY_BODY = {kind: struct.Struct("<" + layout.format[4:]) for kind, layout in _REPLY.items()}


class CallFrames:
    """The binary frames of one function's calls (both sides build it from its Marshal).

    Everything that does not change from call to call is worked out here,
    once: a function taking numbers only has one precompiled struct for its
    whole request frame (one taking strings builds its format per call),
    a result of a fixed kind one for its whole reply.
    """

    def __init__(self, how: Marshal) -> None:
        self.params, self.result = how.params, how.result
        self.count = len(how.params)
        self.numbers = all(k in NUMBER for k in how.params)
        self.strings = not self.numbers or how.result is Value.STRING   # uses the arena
        self.copied = how.result in (Value.STRING, Value.CHAR)          # worker: copy it out
        if self.numbers:
            kinds = "".join(NUMBER[k] for k in how.params)
            self.kinds = kinds.encode()
            self.values = struct.Struct(f"<{self.count}s{kinds}")       # after CALL_HEAD
            self.request = struct.Struct(f"<4sIIHB{self.count}s{kinds}")
            self.length = self.request.size - HEADER.size
        if how.result is Value.STRING:
            self.fixed = b""                     # n, s or a: chosen per reply
        else:
            self.fixed = b"v" if how.result is Value.VOID else NUMBER[how.result].encode()
            self.reply, self.reply_body = _REPLY[self.fixed], _REPLY_BODY[self.fixed]
        # Numbers in, a number (or nothing) out: the host's hot path (process.call_numbers)
        # checks a whole reply with one unpack: its header, call id and kind, then the value.
        self.hot = self.numbers and bool(self.fixed)
        if self.hot:          # bound once: pack(seq, handle, count, kinds, *values)
            self.pack_request = functools.partial(self.request.pack, CALL_MAGIC, self.length)
            self.reply_prefix = HEADER.pack(REPLY_MAGIC, self.reply.size - HEADER.size)
            self.unpack_reply = struct.Struct("<8sIc" + self.reply.format[6:]).unpack_from
            self.reply_size = self.reply.size
            self.is_bool = how.result is Value.BOOL

    # -- host -> worker: the call ---------------------------------------------
    def pack_call(self, seq: int, handle: int, args: tuple, ffi: Any,
                  arena: Optional[Arena]) -> Optional[bytes]:
        """The request frame (TypeError for an argument cffi would refuse); None: use JSON."""
        try:
            if self.numbers:
                return self.request.pack(CALL_MAGIC, self.length, seq, handle, self.count,
                                         self.kinds, *map(check_argument, self.params, args))
            return self._pack_strings(seq, handle, args, ffi, arena)
        except struct.error:            # an integer beyond 64 bits: cffi decides, in the worker
            return None

    def _pack_strings(self, seq: int, handle: int, args: tuple, ffi: Any,
                      arena: Optional[Arena]) -> bytes:
        kinds, formats, values = [], [], []
        for kind, arg in zip(self.params, args):
            if kind is not Value.STRING:
                kinds.append(NUMBER[kind])
                formats.append(NUMBER[kind])
                values.append(check_argument(kind, arg))
                continue
            data = _host_bytes(arg, ffi)
            if data is None:
                kinds.append("n")
            elif arena is not None and len(data) >= SHM_MIN:
                kinds.append("a")
                formats.append("QQ")
                values += arena.put(data)
            else:
                kinds.append("s")
                formats.append(f"I{len(data)}s")
                values += (len(data), data)
        layout = struct.Struct(f"<4sIIHB{self.count}s" + "".join(formats))
        return layout.pack(CALL_MAGIC, layout.size - HEADER.size, seq, handle, self.count,
                           "".join(kinds).encode(), *values)

    def read_call(self, payload: bytes, arena: Optional[Arena]) -> Any:
        """The worker's side: the arguments as its cffi function takes them."""
        if self.numbers:
            if len(payload) != CALL_HEAD.size + self.values.size:
                raise ProtocolViolation(f"a {len(payload)}-byte call frame for {self.kinds!r}")
            kinds, *args = self.values.unpack_from(payload, CALL_HEAD.size)
            if kinds != self.kinds:
                raise ProtocolViolation(f"a call frame with kinds {kinds!r} for {self.kinds!r}")
            return args
        offset = CALL_HEAD.size + self.count
        args = []
        for kind, wire in zip(self.params, payload[CALL_HEAD.size:offset]):
            letter = chr(wire)
            if kind is not Value.STRING:
                if letter != NUMBER[kind]:
                    raise ProtocolViolation(f"a call frame with kind {letter!r} for {kind.name}")
                value, = struct.unpack_from("<" + letter, payload, offset)
                offset += struct.calcsize(letter)
            elif letter == "n":
                value = _ffi.NULL
            elif letter == "s":
                length, = _LENGTH.unpack_from(payload, offset)
                offset += _LENGTH.size
                value = payload[offset:offset + length]
                offset += length
            elif letter == "a" and arena is not None:
                start, length = arena.check(*_REGION.unpack_from(payload, offset))
                offset += _REGION.size
                value = _ffi.from_buffer(memoryview(arena.map)[start:start + length + 1])
            else:
                raise ProtocolViolation(f"a call frame with kind {letter!r} for a string")
            args.append(value)
        if offset != len(payload):
            raise ProtocolViolation("a call frame longer than its arguments")
        return args

    # -- worker -> host: the result -------------------------------------------
    def pack_reply(self, seq: int, value: Any, arena: Optional[Arena]) -> Optional[bytes]:
        """The worker's reply frame (a string result already copied: bytes or None);
        None: use JSON."""
        if self.fixed:
            try:
                if self.fixed == b"v":
                    return self.reply.pack(REPLY_MAGIC, 5, seq, b"v")
                return self.reply.pack(REPLY_MAGIC, self.reply.size - HEADER.size, seq,
                                       self.fixed, value)
            except struct.error:                 # an integer beyond 64 bits
                return None
        if value is None:
            return _REPLY[b"n"].pack(REPLY_MAGIC, 5, seq, b"n")
        if arena is not None and len(value) >= SHM_MIN:
            try:
                return _REPLY[b"a"].pack(REPLY_MAGIC, 21, seq, b"a", *arena.put(value))
            except OSError:                      # past its file size limit: in the frame
                pass
        return _REPLY[b"s"].pack(REPLY_MAGIC, 5 + len(value), seq, b"s") + value

    def read_reply(self, payload: bytes, seq: int, ffi: Any, arena: Optional[Arena]) -> Any:
        """The host's side: the result as an in-process call gives it; anything else,
        a ProtocolViolation (the worker runs untrusted code)."""
        kind = payload[4:5]
        if self.fixed:
            if kind != self.fixed or len(payload) != self.reply_body.size:
                raise self._not_the_answer(payload, seq)
            their_seq, _, *value = self.reply_body.unpack(payload)
            if their_seq != seq:
                raise self._not_the_answer(payload, seq)
            if not value:
                return None
            return bool(value[0]) if self.result is Value.BOOL else value[0]
        if len(payload) < REPLY_HEAD.size or REPLY_HEAD.unpack_from(payload)[0] != seq:
            raise self._not_the_answer(payload, seq)
        if kind == b"s":
            return owned_string(ffi, payload[REPLY_HEAD.size:])
        if kind == b"n" and len(payload) == REPLY_HEAD.size:
            return ffi.cast("char *", 0)          # NULL, typed as in-process
        if kind == b"a" and len(payload) == _REPLY_BODY[b"a"].size:
            if arena is None:
                raise ProtocolViolation("an arena region, but this worker has no arena")
            return _copied_from(arena, *_REGION.unpack_from(payload, REPLY_HEAD.size), ffi)
        raise self._not_the_answer(payload, seq)

    def read_json_reply(self, value: Any) -> Any:
        """The host's side of a reply that came by JSON (an unsigned result beyond 2^63)."""
        return decode_result(self.result, value, None)

    def _not_the_answer(self, payload: bytes, seq: int) -> ProtocolViolation:
        return ProtocolViolation(f"the reply {payload[:24]!r} does not answer call {seq} "
                                 f"with a {self.result.name} result")


@functools.lru_cache(maxsize=None)
def frames_for(how: Marshal) -> CallFrames:
    """The CallFrames of a Marshal, built once (a Marshal is a small frozen value)."""
    return CallFrames(how)


VOID_REPLY = _REPLY[b"v"]


def echo_frame(seq: int = 0) -> bytes:
    """The call frame of a bare round trip (protocol.ECHO_HANDLE): no arguments."""
    return CALL_HEAD_FRAME.pack(CALL_MAGIC, CALL_HEAD.size, seq, ECHO_HANDLE, 0)


def echo_payload(seq: int) -> bytes:
    return echo_frame(seq)[HEADER.size:]


def read_call_head(payload: bytes) -> Tuple[int, int]:
    """(call id, handle) of a binary call frame."""
    if len(payload) < CALL_HEAD.size:
        raise ProtocolViolation(f"a call frame of {len(payload)} bytes")
    seq, handle, _ = CALL_HEAD.unpack_from(payload)
    return seq, handle
