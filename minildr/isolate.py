"""Isolation: run a plugin in a worker process, so that its crash is not the host's.

A plugin loaded into the host shares everything with it: a segfault, an
abort() or an exit() in plugin code ends the host too, and a hang hangs it.
`open(path, isolate=True)` loads the plugin into a separate *worker* process
(`python -m minildr.worker`) instead, and forwards lookups and calls to it:

    host                                         worker (one per plugin)
    ----                                         ------
    open(): every check, trust          ──────▶  the same checks on the same bytes
            (the sealed memfd is passed            (the memfd, verified by digest)
             to the worker: no re-read)            dlopen: constructors run here
    greet()  ── ["call", seq, h, args] ──▶       calls the real function
             ◀── ["ok", seq, result] ──
    a crash: the socket closes     ◀──────       SIGSEGV, abort, exit(3)...
             PluginCrashed (signal or exit code, last stderr lines)

The protocol runs over its own socket pair, never over the plugin's stdout or
stderr: those are pipes that the host forwards to its own sys.stdout and
sys.stderr while a request waits for its reply, so a notebook shows them
under the cell that made the call (what a plugin's own thread prints between
calls appears at the next call or at close()). Each message is a frame: the
magic b"MLDR", a 32-bit length, then JSON. JSON, not pickle: the worker runs
untrusted code, and unpickling what it sends would let that code run in the
host too. Anything that is not a valid frame ends the worker
(`PluginProtocolError`).

Only plain values cross: integers, floating-point numbers, _Bool, char, and
`const char *` strings (copied). A pointer is an address in one process's
memory and means nothing in the other, so a function taking or returning any
other pointer is refused at lookup, with a clear SymbolTypeError. Contract
methods are called by name on the worker's own contract proxy, and their
Python results (str, bytes, numbers, tuples, lists, records) are copied back
and checked against the host's contract (remote.py). Errors cross as values:
the class name, the message and, for a PluginCallError, the plugin's name,
the method, the status and the plugin's own message, each checked.

`isolate=True` bounds each call by DEFAULT_TIMEOUT seconds, `isolate=2.5` by
2.5 s: a call still running then is a hang, `PluginTimeout`, and its worker
is killed. No orphans: the worker dies with its socket (close(), or the host
exiting) and, while busy in plugin code, through a *lifeline* pipe that only
the host holds open: when the host is gone, even by SIGKILL, the read end
sees end-of-file and the worker exits.
"""
from __future__ import annotations

import base64
import codecs
import collections
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any, Deque, Iterable, List, Optional, Tuple, Union

from . import ctype as ctypes_
from .contract import Contract
from .errors import (PluginCallError, PluginClosed, PluginCrashed, PluginError,
                     PluginProtocolError, PluginTimeout, SymbolTypeError)
from .image import PluginImage
from .loader import Plugin, Symbol
from .manifest import Export, Manifest

log = logging.getLogger("minildr")

DEFAULT_TIMEOUT = 10.0     # seconds a call may take before the worker is stopped
START_TIMEOUT = 60.0       # seconds for the worker's Python to start (a busy machine)
STDERR_LINES = 20          # how many of the worker's last stderr lines a crash reports
MAGIC = b"MLDR"
HEADER = struct.Struct("<4sI")
MAX_FRAME = 64 << 20
# Waking a sleeping process costs tens of microseconds, often more than the
# rest of a round trip. Setting SPIN_SECONDS makes both sides poll their
# socket that long before they sleep (yielding the CPU between polls): on an
# idle machine with CPUs to spare a quick call then costs a few microseconds.
# Off by default: on a busy machine the spinning side takes the CPU the other
# side needs, and calls get slower (benchmarks/bench_isolate.py measures both).
# A worker keeps the value it was started with.
SPIN_SECONDS = 0.0

# Requests (host -> worker), each [op, seq, ...]; replies are
# ["ok", seq, value] or ["error", seq, error class name, message].
READY, OPEN, LOOKUP, CALL, GET, SET, CONTRACT, METHOD, CLOSE = (
    "ready", "open", "lookup", "call", "get", "set", "contract", "method", "close")


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
    """Cuts the byte stream from the socket into messages, refusing anything else."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> Optional[Any]:
        """The next complete message, None if more bytes are needed."""
        buf = self.buffer
        if len(buf) < HEADER.size:
            if buf and not MAGIC.startswith(bytes(buf[:4])):
                raise self._violation("does not start with the frame magic")
            return None
        magic, length = HEADER.unpack_from(buf)
        if magic != MAGIC:
            raise self._violation("does not start with the frame magic")
        if length > MAX_FRAME:
            raise self._violation(f"announces a {length}-byte frame")
        end = HEADER.size + length
        if len(buf) < end:
            return None
        payload = bytes(buf[HEADER.size:end])
        del buf[:end]
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):   # [[[[... nested too deep
            self.buffer = bytearray(payload)
            raise self._violation("carries a payload that is not JSON") from None

    def _violation(self, what: str) -> ProtocolViolation:
        return ProtocolViolation(f"the data {bytes(self.buffer[:32])!r} {what}")


# ---------------------------------------------------------------------------
# What may cross: a C type -> how its values are copied
# ---------------------------------------------------------------------------
# One letter per value kind: i integer (and enum), f float/double, b _Bool,
# c char, s const char * string (NULL as None), v void (results only).
_INTEGERS = {"signed char", "unsigned char", "short", "unsigned short", "int", "unsigned int",
             "long", "unsigned long", "long long", "unsigned long long", "size_t", "ssize_t",
             "ptrdiff_t", "intptr_t", "uintptr_t", "intmax_t", "uintmax_t"}
_INTEGERS |= {f"{u}int{n}_t" for u in ("", "u") for n in (8, 16, 32, 64)}
_INTEGERS |= {f"{u}int_{k}{n}_t" for u in ("", "u") for k in ("least", "fast")
              for n in (8, 16, 32, 64)}


@dataclass(frozen=True)
class Marshal:
    """How one export's values cross the process boundary."""
    kind: str                    # "function" or "data"
    result: str                  # the function's result kind, or the variable's
    params: Tuple[str, ...] = ()


def _kind_of(ffi: Any, spelling: str, role: str) -> Optional[str]:
    if spelling == "void":
        return "v" if role == "result" else None
    if spelling == "const char *" or (spelling == "char *" and role != "parameter"):
        return "s"
    try:
        t = ffi.typeof(spelling)
    except Exception:            # cffi raises several types for types it cannot use
        return None
    if t.kind == "enum":
        return "i"
    if t.kind != "primitive":
        return None
    if t.cname == "char":
        return "c"
    if t.cname == "_Bool":
        return "b"
    if t.cname in ("float", "double"):
        return "f"
    return "i" if t.cname in _INTEGERS else None


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
    result, params, variadic = ctypes_.signature(export.ctype, types)
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


def _host_string(value: Any, ffi: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, ffi.CData):
        return None if value == ffi.NULL else ffi.string(value).decode("latin-1")
    raise TypeError(f"a const char * argument takes bytes (or None for NULL), "
                    f"not {type(value).__name__}; encode a str first")


def encode_argument(kind: str, value: Any, ffi: Any) -> Any:
    """A host argument as JSON, checked the way cffi would check it in-process."""
    if kind == "i":
        if isinstance(value, int):
            return int(value)
        raise TypeError(f"an integer argument takes an int, not {type(value).__name__}")
    if kind == "f":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"a floating-point argument takes a float, not {type(value).__name__}")
    if kind == "b":
        if isinstance(value, int):
            return int(value)
        raise TypeError(f"a _Bool argument takes a bool, not {type(value).__name__}")
    if kind == "c":
        if isinstance(value, bytes) and len(value) == 1:
            return value.decode("latin-1")
        raise TypeError(f"a char argument takes bytes of length 1, not {value!r}")
    return _host_string(value, ffi)


def decode_result(kind: str, value: Any, ffi: Any) -> Any:
    """A worker's result as the host gets it; a value of the wrong kind is a violation."""
    if kind == "v":
        ok = value is None
    elif kind in ("i", "b"):
        ok = type(value) is int or (kind == "b" and type(value) is bool)
        if ok and kind == "b":
            value = bool(value)
    elif kind == "f":
        ok = type(value) in (float, int)
        value = float(value) if ok else value
    elif kind == "c":
        ok = type(value) is str and len(value) == 1
        value = value.encode("latin-1") if ok else value
    else:
        if value is None:
            return ffi.NULL
        ok = type(value) is str
        # A copy owned by the host: minildr.ffi.string() reads it as it would
        # read the plugin's char * in-process.
        value = ffi.new("char[]", value.encode("latin-1")) if ok else value
    if not ok:
        raise ProtocolViolation(f"the worker returned {value!r} for a result of kind {kind!r}")
    return value


# Contract methods: the worker's proxy converts C values to Python ones (str,
# bytes, int, float, bool, None, tuples, lists, records as named tuples); these
# cross as JSON, the non-JSON ones tagged. The host does not rebuild them
# blindly: remote.py checks each against the shape its own contract gives the
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
# The host's side of one worker
# ---------------------------------------------------------------------------
# Errors the worker may report and the host re-raises as the same class.
def _error_classes() -> dict:
    from . import errors
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


class Worker:
    """A worker process and the host's ends of its socket, lifeline and output pipes."""

    def __init__(self, image: PluginImage, timeout: float) -> None:
        self.path = image.path
        self.timeout = timeout
        self.spin = SPIN_SECONDS            # as it was when this worker started
        self._lock = threading.RLock()
        self._seq = 0
        self._reader = FrameReader()
        self._failure: Optional[PluginError] = None
        self._stderr_tail: Deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._partial_line = ""
        self._spawn(image)

    # -- starting ------------------------------------------------------------
    def _spawn(self, image: PluginImage) -> None:
        host_sock, worker_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        life_r, life_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        image.acquire()
        memfd = image.sealed_fd()
        ours = (host_sock, life_w, out_r, err_r)
        try:
            keep = [worker_sock.fileno(), life_r] + ([memfd] if memfd is not None else [])
            env = dict(os.environ)
            package_parent = str(Path(__file__).resolve().parents[1])
            env["PYTHONPATH"] = os.pathsep.join(
                [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
            self.process = subprocess.Popen(
                [sys.executable, "-m", "minildr.worker", str(worker_sock.fileno()), str(life_r)],
                stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, pass_fds=keep,
                start_new_session=True,     # the terminal's Ctrl-C goes to the host only
                env=env)
        except BaseException:
            host_sock.close()
            for fd in ours[1:]:
                os.close(fd)
            raise
        finally:
            image.release()           # the worker holds its own descriptor of the memfd
            worker_sock.close()
            for fd in (life_r, out_w, err_w):
                os.close(fd)
        self.pid = self.process.pid
        self._sock = host_sock
        self._life_w = life_w
        self._outputs = {out_r: (self._stdout, codecs.getincrementaldecoder("utf-8")("replace")),
                         err_r: (self._stderr, codecs.getincrementaldecoder("utf-8")("replace"))}
        self._poller = select.poll()
        self._poller.register(host_sock.fileno(), select.POLLIN)
        self._open_outputs = set(self._outputs)
        self._output_poller = select.poll()
        for fd in self._outputs:
            os.set_blocking(fd, False)
            self._poller.register(fd, select.POLLIN)
            self._output_poller.register(fd, select.POLLIN)
        self._memfd = memfd
        # At exit, or when nothing refers to this worker any more: stop it.
        self._finalizer = weakref.finalize(self, _stop_process, self.process, host_sock, life_w,
                                           self._open_outputs)

    def start(self, image: PluginImage, contracts: Iterable[Contract]) -> dict:
        """Wait for the worker's Python, then have it check and load the image."""
        self.request([READY], "starting the worker", timeout=max(START_TIMEOUT, self.timeout))
        spec = {"path": image.path, "sha256": image.sha256, "fd": self._memfd,
                "spin": self.spin,
                "contracts": [[c.name, c.version, c.text, c.filename] for c in contracts]}
        if self._memfd is None:
            spec["data"] = base64.b64encode(image.data).decode("ascii")
        return self.request([OPEN, spec], "loading the plugin (its initialisers run then)")

    # -- one request, one reply ----------------------------------------------------
    def request(self, message: List[Any], during: str, timeout: Optional[float] = None) -> Any:
        """Send a request and return the worker's answer; every failure is a PluginError."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            self._seq += 1
            seq = self._seq
            message.insert(1, seq)
            try:
                self._sock.sendall(frame(message))
                reply = self._receive(timeout or self.timeout, during)
            except KeyboardInterrupt:
                self._fail(PluginCrashed(self.path, (
                    f"interrupted during {during}; its worker process (pid {self.pid}) was "
                    "stopped. Open the plugin again to use it")))
                raise
            except OSError:                      # the socket broke: the worker is gone
                raise self._crashed(during) from None
            except ProtocolViolation as exc:
                raise self._violated(exc, during) from None
            try:
                return read_reply(reply, seq, self.path)
            except ProtocolViolation as exc:
                raise self._violated(exc, during) from None

    def _receive(self, timeout: float, during: str) -> Any:
        message = self._receive_spinning(during)
        if message is not None:
            return message
        deadline = _now() + timeout
        sock_fd = self._sock.fileno()
        while True:
            message = self._reader.next()
            if message is not None:
                return message
            remaining = deadline - _now()
            if remaining <= 0:
                raise self._timed_out(during, timeout)
            events = self._poller.poll(remaining * 1000)
            if not events:
                raise self._timed_out(during, timeout)
            readable = False
            for fd, _ in events:
                if fd == sock_fd:
                    readable = True
                else:
                    self._forward(fd)
            if readable:
                data = self._sock.recv(1 << 16)
                if not data:
                    raise self._crashed(during)
                self._reader.feed(data)

    def _receive_spinning(self, during: str) -> Any:
        """The reply, if it comes within SPIN_SECONDS (see there); else None."""
        if not self.spin:
            return None
        recv, reader, yield_cpu = self._sock.recv, self._reader, os.sched_yield
        end = perf_counter() + self.spin
        while True:
            try:
                data = recv(1 << 16, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if perf_counter() < end:
                    yield_cpu()          # let the worker run here if it is waiting for a CPU
                    continue
                return None
            if not data:
                raise self._crashed(during)
            reader.feed(data)
            message = reader.next()
            if message is not None:
                # What the plugin printed was written before the reply was sent.
                for fd, _ in self._output_poller.poll(0):
                    self._forward(fd)
                return message

    # -- output ------------------------------------------------------------------------
    @staticmethod
    def _stdout(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def _stderr(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()
        lines = (self._partial_line + text).split("\n")
        self._partial_line = lines.pop()[-4096:]     # a line that never ends: its end
        self._stderr_tail.extend(line[-4096:] for line in lines[-STDERR_LINES:])

    def _forward(self, fd: int) -> bool:
        """Copy what the worker wrote to fd into the host's stream; False at end of file."""
        write, decoder = self._outputs[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        text = decoder.decode(data, final=not data)
        if text:
            write(text)
        if not data:
            self._poller.unregister(fd)
            self._output_poller.unregister(fd)
            self._open_outputs.discard(fd)
            _close_fd(fd)
        return bool(data)

    def drain(self, wait: float = 0.0) -> None:
        """Forward everything the worker has written (until end of file, within `wait` s)."""
        deadline = _now() + wait
        while self._open_outputs:
            ready = self._output_poller.poll(max(0.0, deadline - _now()) * 1000)
            if not ready:
                return
            for fd, _ in ready:
                self._forward(fd)

    # -- failures -------------------------------------------------------------------------
    def _fail(self, error: PluginError) -> PluginError:
        """The worker is unusable: stop it, remember why, and hand back the error."""
        self._stop(grace=0.0)
        self._failure = error
        log.warning("isolated %s: %s", self.path, error.reason)
        return error

    def _crashed(self, during: str) -> PluginError:
        code = _wait(self.process, 5.0)
        self.drain(wait=1.0)
        if self._partial_line:
            self._stderr_tail.append(self._partial_line)
            self._partial_line = ""
        name = _signal_name(-code) if code < 0 else None
        how = _status(code)
        tail = [line for line in self._stderr_tail if line.strip()]
        said = ("; the last lines it wrote to stderr:\n    " + "\n    ".join(tail)) if tail else \
            "; it wrote nothing to stderr"
        error = PluginCrashed(self.path, (
            f"its worker process (pid {self.pid}) {how} during {during}{said}\n"
            "The host is unharmed; open the plugin again to retry"))
        error.signal = name                                   # type: ignore[attr-defined]
        error.exit_code = None if code < 0 else code         # type: ignore[attr-defined]
        error.stderr = tail                                   # type: ignore[attr-defined]
        error.pid = self.pid                                  # type: ignore[attr-defined]
        return self._fail(error)

    def _timed_out(self, during: str, timeout: float) -> PluginError:
        return self._fail(PluginTimeout(self.path, (
            f"no answer within {timeout:g} s during {during}; its worker process "
            f"(pid {self.pid}) was stopped. Open the plugin again to retry, with a longer "
            "timeout (isolate=SECONDS) if it is merely slow")))

    def _violated(self, exc: ProtocolViolation, during: str) -> PluginError:
        return self._fail(PluginProtocolError(self.path, (
            f"its worker sent something that is not a protocol message during {during}: "
            f"{exc}. Its plugin wrote over the channel the host reads replies from; the "
            f"worker (pid {self.pid}) was stopped. Open the plugin again to retry")))

    # -- stopping -------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._failure is None and self.process.returncode is None

    def close(self) -> None:
        """Ask the worker to unload the plugin and exit; stop it if it does not."""
        with self._lock:
            if self._failure is None and self.process.returncode is None:
                try:
                    self.request([CLOSE], "closing", timeout=min(self.timeout, 5.0))
                except PluginError:
                    pass                       # it crashed or hung while closing: stopped
            if self._failure is None:
                self._failure = PluginClosed(self.path, "is closed; open the plugin again "
                                                        "to use it")
                self._stop(grace=2.0)
                if self.process.returncode:            # say, a destructor at exit crashed
                    log.warning("isolated %s: its worker (pid %d) %s after close",
                                self.path, self.pid, _status(self.process.returncode))
            else:
                self._stop(grace=2.0)

    def _stop(self, grace: float) -> None:
        if grace and self.process.returncode is None:
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.process.returncode is None:
            _wait(self.process, 0.0)        # kill it and reap it
        self.drain(wait=0.5)                # whatever it wrote before it ended
        self._finalizer()                   # close the socket, the lifeline, the pipes


def _now() -> float:
    return time.monotonic()


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.valid_signals() else str(number)


def _status(code: int) -> str:
    """A worker's exit status in words: 'was killed by SIGSEGV (...)' or 'exited with code 3'."""
    if code < 0:
        return f"was killed by {_signal_name(-code)} ({signal.strsignal(-code)})"
    return f"exited with code {code}"


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _wait(process: subprocess.Popen, timeout: float, kill: bool = True) -> int:
    """The worker's exit status (negative: killed by that signal), killing it if need be."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        if not kill:
            return 0
    process.kill()
    return process.wait()


def _stop_process(process: subprocess.Popen, sock: socket.socket, life_w: int,
                  outputs: set) -> None:
    """Closing the socket and the lifeline tells the worker to exit; then make sure.

    Runs once per worker: from close(), when the last reference to the worker
    goes, or at the host's exit (weakref.finalize's atexit), so no worker
    outlives its host.
    """
    sock.close()
    _close_fd(life_w)
    if process.returncode is None:
        try:
            process.wait(0.5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for fd in list(outputs):
        outputs.discard(fd)
        _close_fd(fd)


# ---------------------------------------------------------------------------
# What the host holds: the plugin, its functions and variables
# ---------------------------------------------------------------------------
class RemoteFunction:
    """A function of an isolated plugin: calling it runs it in the worker process."""

    __slots__ = ("name", "ctype", "_worker", "_handle", "_marshal", "_ffi", "_during",
                 "__weakref__")

    def __init__(self, worker: Worker, handle: int, export: Export, marshal: Marshal,
                 ffi: Any) -> None:
        self.name, self.ctype = export.name, export.ctype
        self._worker, self._handle, self._marshal, self._ffi = worker, handle, marshal, ffi
        self._during = f"{export.name}()"

    def __call__(self, *args: Any) -> Any:
        params = self._marshal.params
        if len(args) != len(params):
            raise TypeError(f"{self.name}() takes {len(params)} argument(s) "
                            f"({len(args)} given)")
        ffi = self._ffi
        wire = [encode_argument(kind, arg, ffi) for kind, arg in zip(params, args)]
        value = self._worker.request([CALL, self._handle, wire], self._during)
        try:
            return decode_result(self._marshal.result, value, ffi)
        except ProtocolViolation as exc:
            raise self._worker._violated(exc, self._during) from None

    def __repr__(self) -> str:
        return f"<isolated function {self.name}: {self.ctype}, in worker pid {self._worker.pid}>"


class RemoteVariable:
    """A variable of an isolated plugin: `var[0]` reads it, `var[0] = v` writes it.

    Indexing with 0 is what the in-process lookup's pointer (`int *`) offers.
    """

    def __init__(self, worker: Worker, handle: int, export: Export, marshal: Marshal,
                 ffi: Any) -> None:
        self.name, self.ctype = export.name, export.ctype
        self._worker, self._handle, self._marshal, self._ffi = worker, handle, marshal, ffi

    def _check(self, index: int) -> None:
        if index != 0:
            raise IndexError(f"{self.name} is one {self.ctype}: only [0] is meaningful")

    def __getitem__(self, index: int) -> Any:
        self._check(index)
        value = self._worker.request([GET, self._handle], f"reading {self.name}")
        try:
            return decode_result(self._marshal.result, value, self._ffi)
        except ProtocolViolation as exc:
            raise self._worker._violated(exc, f"reading {self.name}") from None

    def __setitem__(self, index: int, value: Any) -> None:
        self._check(index)
        if self._marshal.result == "s":
            raise TypeError(f"{self.name} is a string in the worker's memory; an isolated "
                            "plugin's string variables can be read, not assigned")
        wire = encode_argument(self._marshal.result, value, self._ffi)
        self._worker.request([SET, self._handle, wire], f"writing {self.name}")

    def __repr__(self) -> str:
        return f"<isolated variable {self.name}: {self.ctype}, in worker pid {self._worker.pid}>"


class IsolatedPlugin(Plugin):
    """A plugin loaded in a worker process, with the API of an in-process Plugin.

    `lookup` gives the same Symbol, for a typed lookup a RemoteFunction or
    RemoteVariable instead of a cffi pointer, and for a contract a
    remote.RemoteContract with the in-process proxy's API. `timeout`
    (seconds) bounds every call; `worker_pid` is the worker's process id.
    `loader` is "isolated"; `trace` is None (the load happened in the worker).
    """

    def __init__(self, image: PluginImage, manifest: Manifest, worker: Worker) -> None:
        super().__init__(image, manifest, None, loader="isolated")   # no library in this process
        self._worker: Optional[Worker] = worker
        self.worker_pid = worker.pid

    @property
    def timeout(self) -> float:
        return self._worker.timeout if self._worker else 0.0

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        if self._worker:
            self._worker.timeout = _check_timeout(seconds)

    @property
    def closed(self) -> bool:
        return self._worker is None or not self._worker.alive

    def _lookup(self, name: str, wanted: Union[str, Contract, None]) -> Any:
        worker = self._worker
        if worker is None:
            raise PluginClosed(self.path, f"is closed, so {name!r} cannot be looked up; "
                                          "open the plugin again to use it")
        if isinstance(wanted, Contract):
            from .remote import bind_remote
            return bind_remote(self, worker, name, wanted)
        during = f"looking up {name}"
        reply = worker.request([LOOKUP, name, wanted], during)
        export = self.manifest.exports.get(name)
        if type(reply) is not int or reply < 0 or export is None:   # an address or a handle
            raise worker._violated(ProtocolViolation(
                f"the lookup reply {str(reply)[:80]!r} is not a number for an export "
                "the manifest lists"), during)
        if wanted is None:
            return Symbol(name, export.ctype, export.kind, reply)
        marshal = marshal_for(self._cffi(), self.path, export, self.manifest.types)
        cls = RemoteFunction if marshal.kind == "function" else RemoteVariable
        return cls(worker, reply, export, marshal, _host_ffi())

    def close(self) -> None:
        """Unload the plugin and end its worker process. Closing twice is fine."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
            log.info("close %s (worker pid %d)", self.path, worker.pid)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"worker pid {self.worker_pid}"
        return f"<Plugin {self.name} {self.version} from {self.path} (isolated, {state})>"


def _host_ffi() -> Any:
    from .system import ffi
    return ffi


def _check_timeout(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"isolate= takes True or a timeout in seconds (> 0), not {seconds!r}")
    return float(seconds)


def open_isolated(image: PluginImage, manifest: Manifest, contracts: Iterable[Contract],
                  isolate: Union[bool, float]) -> IsolatedPlugin:
    """Start a worker for a checked image and have it load exactly those bytes."""
    timeout = DEFAULT_TIMEOUT if isolate is True else _check_timeout(isolate)
    if sys.platform == "win32":                   # pragma: no cover - Windows only
        raise NotImplementedError("isolate=True needs a POSIX system (Linux, macOS): the "
                                  "worker is given its socket and the plugin by descriptor")
    worker = Worker(image, timeout)
    try:
        worker.start(image, list(contracts))
    except BaseException:
        worker.close()
        raise
    return IsolatedPlugin(image, manifest, worker)
