"""The wire protocol between the host and an isolated plugin's worker.

Host and worker talk over their own socket pair, never over the plugin's
stdout or stderr. Each message is a frame: a 4-byte magic, a 32-bit
length, then the payload. Most frames (magic b"MLDR") carry JSON. A call
to a typed function, the hot path, goes in a binary frame instead
(b"MLDc" to the worker, b"MLDr" back: a struct header and the values,
written in marshal.py), unless a value does not fit one (an integer beyond
64 bits): then it goes by JSON like everything else. JSON, not pickle: the worker runs untrusted code, and
unpickling what it sends would let that code run in the host too. Anything
that is not a valid frame is a `ProtocolViolation`, which ends the worker.

Requests are `[op, seq, ...]`; replies `["ok", seq, value]` or
`["error", seq, class name, message(, details)]`. Both sides import this
one module, so they cannot drift apart.
"""
from __future__ import annotations

import json
import struct
from typing import Any, Optional

from .. import errors
from ..errors import PluginCallError, PluginError

MAGIC = b"MLDR"
CALL_MAGIC, REPLY_MAGIC = b"MLDc", b"MLDr"      # binary frames of a call (marshal.py)
HEADER = struct.Struct("<4sI")
MAX_FRAME = 64 << 20

# The requests, host -> worker. LOOKUP carries the export's name and the type asked
# for (None: untyped), and for a type the host has compared with the manifest's, a
# third part: [the pointer type, the marshal] (isolation/plugin.py, worker.lookup_compared).
READY, OPEN, LOOKUP, CALL, GET, SET, CONTRACT, METHOD, CLOSE = (
    "ready", "open", "lookup", "call", "get", "set", "contract", "method", "close")
# A binary call frame with no arguments to handle ECHO_HANDLE (never a function's) is
# answered with a void reply, nothing called: one bare round trip through the worker's
# own loop, with an empty call's message sizes, for benchmarks to compare calls with.
ECHO_HANDLE = 0xFFFF


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


def frame(message: Any) -> bytes:
    payload = _encode_json(message).encode("ascii")
    return HEADER.pack(MAGIC, len(payload)) + payload


class ProtocolViolation(ValueError):
    """Bytes on the protocol socket that are not a frame."""


class FrameReader:
    """Cuts the byte stream from the socket into messages, refusing anything else.

    `binary`: the magic of the binary frames this side receives (the worker
    CALL_MAGIC, the host REPLY_MAGIC); their payload comes back as bytes,
    a JSON frame's as the value it carries.
    """

    def __init__(self, binary: bytes = b"") -> None:
        self.buffer = bytearray()
        self.binary = binary

    def feed(self, data: Any) -> None:
        self.buffer += data

    def take(self, data: Any) -> Optional[Any]:
        """feed(data), then next(); without copying the bytes twice when `data` is
        exactly one binary frame (what a call or its reply nearly always is)."""
        if not self.buffer and len(data) >= HEADER.size:
            magic, length = HEADER.unpack_from(data)
            if magic == self.binary and magic and HEADER.size + length == len(data):
                return bytes(data[HEADER.size:])
        self.buffer += data
        return self.next()

    def next(self) -> Optional[Any]:
        """The next complete message, None if more bytes are needed."""
        buf = self.buffer
        if len(buf) < HEADER.size:
            if buf and not (MAGIC.startswith(bytes(buf[:4]))
                            or self.binary.startswith(bytes(buf[:4]))):
                raise self._violation("does not start with the frame magic")
            return None
        magic, length = HEADER.unpack_from(buf)
        if magic != MAGIC and (magic != self.binary or not magic):
            raise self._violation("does not start with the frame magic")
        if length > MAX_FRAME:
            raise self._violation(f"announces a {length}-byte frame")
        end = HEADER.size + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER.size:end])
        del buf[:end]
        if magic != MAGIC:
            return payload                  # a binary frame: marshal.py reads it
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):   # [[[[... nested too deep
            self.buffer = bytearray(payload)
            raise self._violation("carries a payload that is not JSON") from None

    def _violation(self, what: str) -> ProtocolViolation:
        return ProtocolViolation(f"the data {bytes(self.buffer[:32])!r} {what}")


# ---------------------------------------------------------------------------
# Values of contract methods
# ---------------------------------------------------------------------------
# Contract methods: the worker's proxy converts C values to Python ones (str,
# bytes, int, float, bool, None, tuples, lists, records as named tuples); these
# cross as JSON, the non-JSON ones tagged. The host does not rebuild them
# blindly: isolation/contracts.py checks each against the shape its own contract gives the
# method, and builds records with proxy.record_class, the in-process class.
def encode_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).decode("latin-1")}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"record": type(value).__name__, "fields": list(value._fields),
                "values": [encode_value(v) for v in value]}
    if isinstance(value, tuple):
        return {"tuple": [encode_value(v) for v in value]}
    if isinstance(value, list):
        return [encode_value(v) for v in value]
    raise TypeError(f"a {type(value).__name__} cannot cross to or from an isolated plugin: "
                    "numbers, strings, bytes, None, tuples, lists and records can")


def decode_value(value: Any) -> Any:
    """An argument as the worker's proxy takes it (the host checked it: remote.Shape)."""
    if isinstance(value, dict) and set(value) == {"bytes"} and isinstance(value["bytes"], str):
        return value["bytes"].encode("latin-1")
    if isinstance(value, (dict, list)):
        raise ProtocolViolation(f"the value {str(value)[:80]!r} is not one the protocol sends")
    return value


# ---------------------------------------------------------------------------
# Errors as replies
# ---------------------------------------------------------------------------
# Errors the worker may report and the host re-raises as the same class.
def _error_classes() -> dict:
    classes = {name: getattr(errors, name) for name in errors.__all__}
    classes.update({c.__name__: c for c in (TypeError, ValueError, OverflowError,
                                            NotImplementedError, IndexError, AttributeError)})
    return classes


MAX_ERROR_TEXT = 1 << 16        # characters of an error message from the worker
# A PluginCallError's details (errors.PluginCallError), each with its JSON type.
CALL_ERROR_FIELDS = {"plugin": str, "method": str, "status": int, "plugin_message": str}


def error_reply(seq: int, exc: BaseException) -> list:
    """An exception as a reply: ["error", seq, class name, message(, details)]."""
    text = exc.reason if isinstance(exc, PluginError) else str(exc)
    reply = ["error", seq, type(exc).__name__, text]
    if isinstance(exc, PluginCallError):
        reply.append({key: getattr(exc, key) for key in CALL_ERROR_FIELDS})
    return reply


def _raise_error(reply: list, path: str) -> None:
    """Raise the error an error reply reports, after checking every part of it."""
    name, text = reply[2], reply[3]
    if not isinstance(name, str) or not isinstance(text, str) or len(text) > MAX_ERROR_TEXT:
        raise ProtocolViolation(f"malformed error reply {str(reply)[:80]!r}")
    cls = _error_classes().get(name)
    if cls is None:
        raise RuntimeError(f"{name[:80]} in the isolated plugin's worker: {text}")
    if issubclass(cls, PluginCallError):
        details = reply[4] if len(reply) == 5 else None
        if not (isinstance(details, dict) and set(details) == set(CALL_ERROR_FIELDS)
                and all(type(details[k]) is t for k, t in CALL_ERROR_FIELDS.items())
                and len(details["plugin_message"]) <= MAX_ERROR_TEXT):
            raise ProtocolViolation(f"the {name} reply {str(reply)[:120]!r} lacks its "
                                    "plugin, method, status and plugin_message")
        raise cls(path, text, **details)
    if len(reply) != 4:
        raise ProtocolViolation(f"malformed error reply {str(reply)[:80]!r}")
    if issubclass(cls, PluginError):
        raise cls(path, text)
    raise cls(text)


def read_reply(reply: Any, seq: int, path: str) -> Any:
    """The value a reply carries, or the error it reports raised again in the host.

    The worker's PluginErrors arrive as the same class with the same message
    (so isolated and in-process plugins fail alike), a PluginCallError with
    its details; Python's argument errors as themselves; anything else as
    RuntimeError. A reply that is not one is a ProtocolViolation.
    """
    if not isinstance(reply, list) or len(reply) < 3 or reply[1] != seq:
        raise ProtocolViolation(f"the reply {str(reply)[:80]!r} does not answer request {seq}")
    if reply[0] == "ok" and len(reply) == 3:
        return reply[2]
    if reply[0] == "error" and len(reply) in (4, 5):
        _raise_error(reply, path)
    raise ProtocolViolation(f"malformed reply {str(reply)[:80]!r}")
