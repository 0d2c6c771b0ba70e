"""The worker process of an isolated plugin.

The host (isolation/process.py) starts one worker per isolated plugin, as
`python -I -S -c BOOT PACKAGE_PARENT FOLDERS SOCKET_FD LIFELINE_FD LIMITS ...` (see
process.worker_command), with an empty environment unless the host passes
one, in a folder of its own; on Linux usually forked ready-made from the host's
fork server instead, which ran the same boot line once (zygote.py): main() then
runs with the same arguments. On Linux it splits into a keeper and a server
(tree.py), so whatever the plugin forks ends with it. The server sets its
limits (policy.py), then:

1. answers `ready`, then `open`: if sandboxed, it confines itself for good
   (sandbox.py) before anything else; it reads the plugin's bytes from the sealed
   memfd the host passed (or from the message), checks that their SHA-256 is
   the one the host verified, runs the same checks open() runs, and loads
   them with the system loader (constructors run here, not in the host);
2. serves `lookup`, `call`, `get`, `set`, `contract`, `method` one at a time;
3. exits on `close`, on end-of-file on its socket, or, even while plugin code
   is running, as soon as its lifeline pipe reports that the host has gone.
   A worker that ends after close or end-of-file runs its exit functions
   (Python's atexit ones, then exit(3)'s: the plugin's) but skips the
   interpreter's teardown (`end`): about 30 ms of the ~230 ms of CPU a
   worker cost from start to close (benchmarks/bench_worker_start.py).

Its stdout and stderr are pipes the host forwards; the protocol never uses
them. After each request the worker flushes C's stdio buffers, so what the
plugin printed reaches the host before the reply does.
"""
from __future__ import annotations

import atexit
import binascii
import dataclasses
import hashlib
import json
import os
import signal
import sys
import threading
from time import perf_counter
from typing import Any, Dict, List, Optional, Tuple

import _socket

from . import fastloop, marshal, mounts, pids, policy, protocol, sandbox, tree, workfolder
from .. import ctype
from .marshal import Value
from .policy import Limits, SandboxPolicy
from .shm import Arena
from ..contracts.contract import Contract
from ..errors import LoadError, PluginError, SandboxUnavailable, WorkerStartError
from ..image import PluginImage
from ..checks import check_binary, check_contracts, check_manifest, check_versions
from ..linkage import prepare
from ..plugin import Plugin
from ..system import SystemLibrary

# The worker does not run minildr/__init__.py (process.BOOT), so nothing attaches the
# "minildr" logger (logger.py): what the loader modules log here goes nowhere, as it
# went to a NullHandler before, and `logging` is never imported (~6 ms of every start).

_libc_ffi, _libc = fastloop.ffi, fastloop.libc
_COPIED = (Value.STRING, Value.CHAR)      # results copied out of the worker's memory


_LEAVING = threading.Lock()       # held while the worker removes its own folder
_LEFT: List[bool] = []            # [True] once it has


def leave_folder() -> None:
    """Where no keeper removes the worker's folder (tree.KEEPS_TREE), remove it, once.

    Both ways the worker ends come here before they exit: the lifeline thread
    (the host is gone) and the main thread's end() (close, or end-of-file on
    the socket). A killed host breaks the socket and the lifeline at once, so
    either may come first; the lock makes the other wait until the folder is
    gone, so neither exit cuts the other's removal short, and the one that
    came first has removed it, whichever it was. Before, only the lifeline
    thread removed it: when end-of-file woke the main thread first, its
    exit(3) ended the process before or while the lifeline thread removed
    the folder, and the folder stayed.
    """
    if tree.KEEPS_TREE:
        return
    with _LEAVING:
        if not _LEFT:
            workfolder.remove_current()
            _LEFT.append(True)


def watch_lifeline(fd: int) -> None:
    """Exit the moment the host is gone: every write end of the lifeline is then closed.
    Where no keeper removes the worker's folder, this process does (leave_folder)."""
    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        leave_folder()
        os._exit(0)
    threading.Thread(target=watch, name="minildr-lifeline", daemon=True).start()


def read_image(spec: Dict[str, Any]) -> PluginImage:
    """The plugin's (or a bundled library's) bytes as the host verified them, as an image."""
    fd: Optional[int] = spec.get("fd")
    if fd is not None:
        size = os.fstat(fd).st_size
        chunks: List[bytes] = []
        offset = 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
    else:
        data = binascii.a2b_base64(spec["data"])   # base64.b64decode, without its module
    image = PluginImage(path=spec["path"], data=data, sha256=hashlib.sha256(data).hexdigest(),
                        identity=(0, 0, len(data), 0, 0), _fd=fd, _cached=False)
    if image.sha256 != spec["sha256"]:
        raise LoadError(image.path, (
            f"the worker received bytes with sha256 {image.sha256}, not the {spec['sha256']} "
            "the host verified; nothing was loaded"))
    return image


class Server:
    """The plugin, loaded in this process, and the handles the host refers to."""

    def __init__(self, limits: Limits, failure: Optional[PluginError],
                 arena: Optional[Arena] = None, loop: Optional[fastloop.Loop] = None) -> None:
        self.limits = limits
        self.loop = loop                      # the C call loop (fastloop.py), if loaded
        self.arena = arena                    # shared with the host for long strings (shm.py)
        self.failure = failure                # the worker could not limit or confine itself
        self.plugin: Optional[Plugin] = None
        self.handles: List[Any] = []          # (object, Marshal or method names)
        self.functions: Dict[int, Any] = {}   # handle -> (function, CallFrames)
        self.spin = 0.0                       # the host's process.SPIN_SECONDS
        self.pid = os.getpid()                # as the host sees it (pids.host_pid)
        self.containment = pids.Containment(False, "", "")

    def handle(self, op: str, args: List[Any]) -> Any:
        if op == protocol.CALL:
            function, how = self.handles[args[0]]
            return self.call(function, how, args[1])
        if op == protocol.READY:
            if self.failure is not None:
                raise self.failure
            return [self.pid, self.containment.to_wire()]
        if op == protocol.OPEN:
            return self.open(args[0])
        if op == protocol.LOOKUP:
            if len(args) == 3:
                return self.lookup_compared(args[0], args[1], args[2])
            return self.lookup(args[0], args[1])
        if op == protocol.GET:
            pointer, how = self.handles[args[0]]
            return marshal.to_wire(how.result, pointer[0])
        if op == protocol.SET:
            pointer, how = self.handles[args[0]]
            pointer[0] = marshal.from_wire(how.result, args[1])
            return None
        if op == protocol.CONTRACT:
            return self.contract(args[0], Contract(*args[1]))
        if op == protocol.METHOD:
            return self.method(args[0], args[1], args[2])
        if op == protocol.CLOSE:
            self.close()
            return None
        raise ValueError(f"unknown request {op!r}")

    def open(self, spec: Dict[str, Any]) -> Dict[str, Any]:
        self.spin = float(spec.get("spin", 0.0))
        image = read_image(spec)
        check_binary(image)
        manifest = check_manifest(image)
        check_versions(image, manifest)
        check_contracts(image, manifest, [Contract(*c) for c in spec["contracts"]])
        bundled = {name: read_image(entry) for name, entry in spec.get("bundled", {}).items()}
        # As in the host (loader.load_library): what it needs is loaded and
        # every symbol resolved before dlopen, with $ORIGIN the plugin's folder.
        with prepare(image, origin=spec.get("origin"), copies=bundled):
            library = SystemLibrary(image)
        self.plugin = Plugin(image, manifest, library)
        return {"pid": self.pid}

    def lookup(self, name: str, ctype: Optional[str]) -> int:
        assert self.plugin is not None
        found = self.plugin.lookup(name, ctype)
        if ctype is None:
            return found.address
        export = self.plugin.manifest.exports[name]
        how = marshal.marshal_for(self.plugin._cffi(), self.plugin.path, export,
                                  self.plugin.manifest.types)
        codes = None
        if how.kind == "function":
            codes = fastloop.type_codes(self.plugin._cffi(), export.ctype,
                                        self.plugin.manifest.types)
        return self.typed_handle(found, how, codes)

    def lookup_compared(self, name: str, ctype_text: str, compared: Any) -> int:
        """A typed lookup the host has compared already: [pointer type, marshal].

        The host (isolation/plugin.py) compared the type it was asked for
        with the export's, in the manifest of these very bytes, and sends the
        pointer type (spelled by ctype.pointer_to) and how values cross
        (marshal_for), both made from the manifest's spelling: so the worker
        reads them with cffi's backend alone and never imports pycparser
        (~14 ms of CPU at each start) for a plugin of plain C types. What it
        sends must still fit: the marshal the cffi type, or the request is refused.
        A type the backend cannot read is looked up in full (`lookup`), as before.
        """
        assert self.plugin is not None
        if not (isinstance(compared, list) and len(compared) == 2
                and isinstance(compared[0], str)):
            raise protocol.ProtocolViolation(f"{str(compared)[:80]!r} is not a compared type")
        try:
            pointer_type = ctype.plain_type(compared[0])
        except ctype.CTypeError:
            return self.lookup(name, ctype_text)
        how = marshal.Marshal.from_wire(compared[1])
        if not how.fits(pointer_type):
            raise protocol.ProtocolViolation(f"the marshal {compared[1]!r} does not fit the "
                                             f"type {compared[0]!r}")
        found = self.plugin.lookup_compared(name, pointer_type)
        codes = fastloop.codes_of(pointer_type) if how.kind == "function" else None
        return self.typed_handle(found, how, codes)

    def typed_handle(self, found: Any, how: marshal.Marshal,
                     codes: Optional[Tuple[str, str]]) -> int:
        """A handle for a typed export (`found`: a cffi pointer, or a function wrapped to
        keep its library mapped) and how its values cross; numbers-only functions
        (fastcall codes) are served by the C loop."""
        handle = self.new_handle((found, how))
        if how.kind == "function":        # for call frames: the function and its codec
            self.functions[handle] = (found, marshal.frames_for(how))
            if self.loop is not None and codes is not None and handle < protocol.ECHO_HANDLE \
                    and isinstance(found, _libc_ffi.CData):
                self.loop.register(handle, found, codes)    # numbers only: served in C
        return handle

    def contract(self, name: str, contract: Contract) -> List[Any]:
        """Bind the vtable `name` (every check of proxy.bind runs here); [handle, methods,
        available] for the host, which builds its own object from its own contract."""
        assert self.plugin is not None
        proxy = self.plugin.lookup(name, contract)
        methods = list(proxy.methods)
        handle = self.new_handle((proxy, methods))
        return [handle, methods, [m for m in methods if proxy.has(m)]]

    def new_handle(self, entry: Tuple[Any, Any]) -> int:
        """The next handle, for `entry`; never ECHO_HANDLE (an echo, not a call)."""
        if len(self.handles) == protocol.ECHO_HANDLE:
            self.handles.append((None, None))
        self.handles.append(entry)
        return len(self.handles) - 1

    def method(self, handle: int, index: int, args: List[Any]) -> Any:
        """One contract method, by its index in the list `contract` returned, called
        through the proxy's `call`, the forwardable form."""
        proxy, methods = self.handles[handle]
        if type(index) is not int or not 0 <= index < len(methods):
            raise AttributeError(f"no method number {index!r}")
        values = [protocol.decode_value(a) for a in args]
        return protocol.encode_value(proxy.call(methods[index], *values))

    def call_frame(self, payload: bytes) -> bytes:
        """A binary call frame (marshal.CallFrames) and its reply frame: the hot path."""
        seq, handle = marshal.read_call_head(payload)
        if handle == protocol.ECHO_HANDLE and payload == marshal.echo_payload(seq):
            return marshal.VOID_REPLY.pack(protocol.REPLY_MAGIC, 5, seq, b"v")
        try:
            function, frames = self.functions[handle]
            arena = self.arena
            if frames.strings and arena is not None:
                arena.begin()
            args = frames.read_call(payload, arena)
            result = function(*args)
            if frames.copied:                 # while the arguments live: it may point into one
                result = marshal.copy_result(frames.result, result)
            args = None                       # no pointer into the arena is left: it may grow
            reply = frames.pack_reply(seq, result, arena)
            if reply is None:                 # an integer beyond 64 bits
                reply = protocol.frame(["ok", seq, result])
        except KeyError:
            reply = reply_error(seq, ValueError(f"handle {handle} is not a function"))
        except Exception as exc:        # every failure goes back to the host as a value
            reply = reply_error(seq, exc)
        _libc.fflush(_libc_ffi.NULL)    # what the plugin printed goes before the reply
        return reply

    def call(self, function: Any, how: marshal.Marshal, wire: List[Any]) -> Any:
        params, arena = how.params, self.arena
        if arena is not None:
            arena.begin()
        if Value.STRING in params or Value.CHAR in params:
            wire = [marshal.from_wire(k, v, arena) for k, v in zip(params, wire)]
        result = function(*wire)
        if how.result not in _COPIED:
            return result
        copied = marshal.copy_result(how.result, result)
        wire = result = None        # no pointer into the arena is left: it may grow for the result
        return marshal.to_wire(how.result, copied, arena)

    def close(self) -> None:
        """Drop what the host was handed, so the library really unloads (destructors run)."""
        if self.loop is not None:
            self.loop.clear()                 # before the library goes
        self.handles.clear()
        self.functions.clear()
        if self.plugin is not None:
            self.plugin.close()


def reply_error(seq: int, exc: BaseException) -> bytes:
    return protocol.frame(protocol.error_reply(seq, exc))


def receive(recv_into: Any, inbox: memoryview, spin: float) -> int:
    """The next bytes from the host into `inbox`: polled for `spin` seconds, then waited for."""
    if spin:
        end = perf_counter() + spin
        while perf_counter() < end:
            try:
                return recv_into(inbox, 0, _socket.MSG_DONTWAIT)
            except BlockingIOError:
                os.sched_yield()
    return recv_into(inbox)


def respond(server: Server, op: str, seq: int, args: List[Any]) -> bytes:
    """The reply frame to one request: its result, or the error it raised, as a value."""
    try:
        result = server.handle(op, args)
    except Exception as exc:            # every failure goes back to the host as a value
        _libc.fflush(_libc_ffi.NULL)
        return reply_error(seq, exc)
    _libc.fflush(_libc_ffi.NULL)        # what the plugin printed goes before the reply
    return protocol.frame(["ok", seq, result])


def serve(sock: _socket.socket, server: Server) -> None:
    reader = protocol.FrameReader(binary=protocol.CALL_MAGIC)
    recv_into, send = sock.recv_into, sock.sendall
    inbox = memoryview(bytearray(1 << 16))      # filled by every recv_into, never reallocated
    loop = server.loop if not server.spin else None
    while True:
        message = reader.next()
        if message is None:
            if loop is not None and not reader.buffer:
                # The C loop answers numbers-only calls itself; it returns with the
                # first bytes it leaves to Python (at the start of inbox).
                size = loop.serve(sock.fileno(), inbox)
            else:
                size = receive(recv_into, inbox, server.spin)
            if not size:
                return                        # the host closed its end: it is gone
            message = reader.take(inbox[:size])
            if message is None:
                continue
        if type(message) is bytes:            # a call, in a binary frame: the hot path
            send(server.call_frame(message))
            continue
        op, seq, args = message[0], message[1], message[2:]
        send(respond(server, op, seq, args))
        if op == protocol.CLOSE:
            return


def limit_and_confine(limits: Limits, containment: pids.Containment
                      ) -> Tuple[Optional[PluginError], pids.Containment]:
    """Set the worker's limits, give it its own /proc (in a PID namespace: mounts.py) and,
    if sandboxed, confine it: before any plugin byte is read.

    A failure is answered to the host's first request (ready), so the host
    raises it as itself (WorkerStartError, SandboxUnavailable).
    """
    try:
        sandbox.set_limits(limits)      # (it counts the user's processes in the host's /proc)
    except (OSError, ValueError) as exc:
        return WorkerStartError("", f"its worker could not set its limits ({exc})"), containment
    if containment.pid_namespace:
        why_not = mounts.private_proc()
        reason = "; ".join(r for r in (containment.reason,
                                       why_not and f"no private /proc: {why_not}") if r)
        containment = dataclasses.replace(containment, private_proc=not why_not, reason=reason)
    return confine(limits), containment


def confine(limits: Limits) -> Optional[PluginError]:
    """Confine the worker for good if it is sandboxed (sandbox.confine); the failure, if any."""
    if isinstance(limits, SandboxPolicy):
        try:
            sandbox.confine("", limits)
        except SandboxUnavailable as exc:
            return exc
    return None


def main(argv: List[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the host decides when to stop us
    sock_fd, lifeline_fd, arena_fd = int(argv[0]), int(argv[1]), int(argv[3])
    limits = policy.from_wire(json.loads(argv[2]))
    containment = pids.Containment(False, "", "no keeper on this system")
    if tree.KEEPS_TREE:
        containment = tree.split(lifeline_fd, [fd for fd in (sock_fd, arena_fd) if fd >= 0],
                                 limits.processes)
    loop, _ = fastloop.load(argv[4] if len(argv) > 4 else "")   # before it confines itself
    pid = pids.host_pid()               # while /proc is still the host's
    failure, containment = limit_and_confine(limits, containment)
    server = Server(limits, failure, Arena(arena_fd) if arena_fd >= 0 else None, loop)
    server.pid, server.containment = pid, containment
    watch_lifeline(lifeline_fd)         # the first thread: after confine(), so it is confined too
    sock = _socket.socket(fileno=sock_fd)   # the C module: socket.py's enums cost ~3 ms
    try:
        serve(sock, server)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    end()


def end() -> None:
    """Exit as Python's own exit does, less the interpreter's teardown.

    After close (or the host's end-of-file) a normal exit would first take
    the whole interpreter apart, module by module (about 30 ms of CPU, and on
    a busy machine 100 ms before the host sees the worker gone), and only
    then call the C library's exit(3). Nothing of that matters to a worker
    that is about to vanish: its Python exit functions run here (atexit,
    in the order Python runs them), then exit(3) runs what the plugin
    registered (its atexit handlers, its libraries' finalisers) and flushes
    C's stdio, as before. Where no keeper runs, the worker removes its
    folder between the two (leave_folder): the plugin's C exit handlers then
    run without it, as they never run at all when the lifeline ends the
    worker. An exception out of serve() still ends the worker the ordinary
    way (a traceback on stderr, exit code 1).
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    leave_folder()
    _libc.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
