"""The host's handle on one worker process: spawn, request and reply, output, crash, stop.

`WorkerProcess` starts the worker (`worker_command`: python -I, with an
empty environment unless the host passes one, in a temporary folder of its
own) with its own socket pair (the protocol, protocol.py), a *lifeline*
pipe, two output pipes, the sealed plugin and the arena (shm.py), and no
other descriptor. Failing to start it (out of descriptors, say) is
WorkerStartError, with everything made so far closed again. The plugin's stdout and stderr are those pipes, which the host
forwards to its own sys.stdout and sys.stderr while a request waits for its
reply, so a notebook shows them under the cell that made the call (what a
plugin's own thread prints between calls appears at the next call or at
close()).

`isolate=True` bounds each call by DEFAULT_TIMEOUT seconds, `isolate=2.5` by
2.5 s: a call still running then is a hang, `PluginTimeout`, and its worker
is killed. A worker that dies is `PluginCrashed` (signal or exit code, last
stderr lines); bytes that are not a frame are `PluginProtocolError`.
No orphans: the worker dies with its socket (close(), or the host exiting)
and, while busy in plugin code, through the lifeline pipe that only the host
holds open: when the host is gone, even by SIGKILL, the read end sees
end-of-file and the worker exits. On Linux the process started is a keeper
(tree.py) that ends everything the plugin forked, at close, crash, timeout
or the host's death; stopping a worker asks the keeper (SIGTERM), then
kills its process group.

On Linux the keeper is forked by the host's fork server (forkserver.py,
zygote.py: the same process, without a fresh interpreter's ~120-145 ms of
CPU); it is started directly, as `worker_command` says, where the fork
server is not used: MINILDR_NO_FORK_SERVER=1 in the host's environment,
a variable in env= that a process reads as it starts (LD_*, LC_*, LANG,
TZ...: forkserver.STARTUP_VARIABLES), a changed boot line, or a server
that cannot start. Either way the host gets the same worker and the same
reports (tests/isolation/test_forkserver.py).
"""
from __future__ import annotations

import atexit
import base64
import codecs
import collections
import contextlib
import functools
import importlib.util
import json
import logging
import os
import select
import signal
import socket
import subprocess
import struct
import sys
import threading
import time
import weakref
from pathlib import Path
from time import perf_counter
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional

from .. import outofline
from ..console import printable
from ..contracts.contract import Contract
from ..errors import (PluginClosed, PluginCrashed, PluginError, PluginProtocolError,
                      PluginTimeout, WorkerStartError)
from ..image import PluginImage
from ..interrupts import finish, under_lock
# fastloop: imported here, its declarations' module is written for the workers (dependency_folders)
from . import fastcall, fastloop, forkserver, pids, policy, shm, tree, workfolder
from .policy import Limits
from .tree import KEEPS_TREE
from .marshal import VOID_REPLY, CallFrames, check_argument, echo_frame
from .protocol import CLOSE, OPEN, READY, REPLY_MAGIC, FrameReader, ProtocolViolation, frame, read_reply

log = logging.getLogger("minildr")

DEFAULT_TIMEOUT = 10.0     # seconds a call may take before the worker is stopped
START_TIMEOUT = 60.0       # seconds for the worker's Python to start (a busy machine)
STDERR_LINES = 20          # how many of the worker's last stderr lines a crash reports
# Waking a sleeping process costs tens of microseconds, often more than the
# rest of a round trip. Setting SPIN_SECONDS makes both sides poll their
# socket that long before they sleep (yielding the CPU between polls): on an
# idle machine with CPUs to spare a quick call then costs a few microseconds.
# Off by default: on a busy machine the spinning side takes the CPU the other
# side needs, and calls get slower (benchmarks/bench_isolate.py measures both).
# A worker keeps the value it was started with.
SPIN_SECONDS = 0.0
# Most replies come within milliseconds. The host first waits for one in recv
# itself, bounded by the socket's receive timeout (SO_RCVTIMEO, socket(7)),
# one system call instead of poll() and then recv(); only if none has come
# within FIRST_WAIT seconds does it poll the socket and the plugin's output
# pipes until the call's own timeout (a plugin printing more than a pipe holds
# waits at most that long for the host to drain it).
FIRST_WAIT = 0.01
_FIRST_WAIT_TIMEVAL = struct.pack("@ll", 0, int(FIRST_WAIT * 1e6))
BY_JSON = object()     # call_numbers: this call's arguments fit no binary frame


# The workers not yet released, for _at_exit.
_OPEN: "weakref.WeakSet[WorkerProcess]" = weakref.WeakSet()


def _at_exit() -> None:
    """At the host's exit, release every worker still open before the fork server is let go.

    forkserver's own exit function waits (2 s at most) for its server, which
    ends once the keepers it started have, and a keeper ends once its worker is
    released (its lifeline closed). weakref.finalize runs the workers'
    finalizers from an exit function of its own, registered when the process
    made its first finalize object: often before forkserver was imported (a
    build's TemporaryDirectory makes one), so it ran after forkserver's, which
    waited its whole 2 s at every such exit (a notebook's kernel, a script).
    This function is registered after forkserver's import (this module imports
    it), so it runs before; a worker it releases is not released again.
    """
    for worker in list(_OPEN):
        worker._finalizer()


atexit.register(_at_exit)


class WorkerProcess:
    """A worker process and the host's ends of its socket, lifeline and output pipes."""

    def __init__(self, image: PluginImage, timeout: float, env: Mapping[str, str],
                 limits: Limits, bundled: Optional[Dict[str, PluginImage]] = None) -> None:
        self.path = image.path
        self.bundled = dict(bundled or {})   # DT_NEEDED name -> its checked image
        self.timeout = timeout
        self.limits = limits
        self.spin = SPIN_SECONDS            # as it was when this worker started
        self.lock = threading.RLock()       # one request at a time (and its arena)
        self._seq = 0
        self._reader = FrameReader(binary=REPLY_MAGIC)
        self._inbox = memoryview(bytearray(1 << 16))     # what recv_into fills, every time
        self._failure: Optional[PluginError] = None
        self._stderr_tail: Deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._partial_line = ""
        self._spawn(image, env)

    # -- starting ------------------------------------------------------------
    def _spawn(self, image: PluginImage, env: Mapping[str, str]) -> None:
        """Start the worker: its own socket, lifeline, output pipes, folder and nothing else.

        Everything made is recorded in `Held` in the statement that makes it,
        and Held's finalizer is registered before the first thing is made: an
        interrupt or a failure at any line leaves nothing (the failure is
        WorkerStartError when out of descriptors, processes or memory).
        """
        held = self._held = Held()
        self._finalizer = weakref.finalize(self, held.release)    # GC, the host's exit
        _OPEN.add(self)                                           # (the host's exit: _at_exit)
        try:
            held.sockets.extend(socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM))
            host_sock, worker_sock = held.sockets
            held.fds.extend(os.pipe())          # the lifeline: the worker reads, we hold
            held.fds.extend(os.pipe())          # the worker's stdout
            held.fds.extend(os.pipe())          # the worker's stderr
            life_r, life_w, out_r, out_w, err_r, err_w = held.fds
            for thing in [image, *self.bundled.values()]:
                held.images.append(thing)
                thing.acquire(held)
            memfd = image.sealed_fd()
            # Numbers taken now: the worker inherits these very descriptors.
            self._bundled_spec = {name: {"path": b.path, "sha256": b.sha256, "fd": b.sealed_fd()}
                                  for name, b in self.bundled.items()
                                  if b.sealed_fd() is not None}
            copies = [entry["fd"] for entry in self._bundled_spec.values()]
            held.folder = workfolder.fresh_name()   # known before it exists (workfolder.py)
            held.folder_made = workfolder.make(held.folder)
            held.arena = shm.Arena() if shm.available() else None
            arena = held.arena
            if arena is not None:
                arena.make()
            keep = [worker_sock.fileno(), life_r] + ([memfd] if memfd is not None else []) \
                + ([arena.fd] if arena is not None else []) + copies
            command = worker_command(worker_sock.fileno(), life_r, self.limits,
                                     arena.fd if arena is not None else -1)
            if KEEPS_TREE and command[4] == BOOT_STANDARD and forkserver.wanted(env, keep):
                held.status.extend(os.pipe())
                pid = forkserver.start_worker(command, {fd: fd for fd in keep}, out_w, err_w,
                                              held.folder, env, held.status[1], BOOT_ZYGOTE)
                with contextlib.suppress(OSError):
                    os.close(held.status.pop())     # the server holds its own copy
                if pid is not None:
                    held.process = forkserver.ForkedWorker(pid, held.status[0], command)
            if held.process is None:
                held.process = WorkerPopen(
                    command, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                    pass_fds=keep, close_fds=True, cwd=held.folder, env=dict(env),
                    start_new_session=True)     # the terminal's Ctrl-C goes to the host only
            held.process.pidfd = _pidfd(held.process.pid)
            held.started()
            self.process = held.process
            self.pid = self.process.pid
            self.folder = held.folder
            self.arena = arena
            self._sock = host_sock
            self._send, self._recv_into = host_sock.sendall, host_sock.recv_into
            host_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _FIRST_WAIT_TIMEVAL)
            decoder = codecs.getincrementaldecoder("utf-8")
            # The class's functions, not bound methods: a table of self's own bound
            # methods held by self is a cycle, and a worker dropped without close()
            # would live on until a garbage collection.
            self._outputs = {out_r: (WorkerProcess._stdout, decoder("replace")),
                             err_r: (WorkerProcess._stderr, decoder("replace"))}
            self._poller = select.poll()
            self._poller.register(host_sock.fileno(), select.POLLIN)
            # The worker's end, watched with its reply: where a process the plugin started
            # holds the socket open, its end-of-file never comes (see _wait).
            self._ended_fd = held.process.pidfd
            if self._ended_fd is not None:
                self._poller.register(self._ended_fd, select.POLLIN)
            self._open_outputs = held.outputs
            self._output_poller = select.poll()
            for fd in self._outputs:
                os.set_blocking(fd, False)
                self._poller.register(fd, select.POLLIN)
                self._output_poller.register(fd, select.POLLIN)
            self._memfd = memfd
        except BaseException as exc:
            finish(held.release)
            if isinstance(exc, OSError):
                raise WorkerStartError(self.path, (
                    f"its worker process could not be started: {exc.strerror or exc} "
                    f"(errno {exc.errno}). Nothing was loaded and nothing is left open; "
                    "close other plugins or files, or raise the limit (ulimit -n, ulimit -u), "
                    "then open it again")) from None
            raise

    def start(self, image: PluginImage, contracts: Iterable[Contract]) -> dict:
        """Wait for the worker's Python, then have it check and load the image."""
        ready = self.request([READY], "starting the worker",
                             timeout=max(START_TIMEOUT, self.timeout))
        pid, containment = ready if isinstance(ready, list) and len(ready) == 2 else (0, None)
        self.containment = pids.Containment.from_wire(containment)
        if type(pid) is not int or pid <= 0 or self.containment is None:
            raise self._violated(ProtocolViolation(f"the ready reply {str(ready)[:80]!r} is not "
                                                   "[process id, containment]"),
                                 "starting the worker")
        self.pid = pid              # the process that loads the plugin (below its keeper)
        spec = {"path": image.path, "sha256": image.sha256, "fd": self._memfd,
                "spin": self.spin,
                "contracts": [[c.name, c.version, c.text, c.filename] for c in contracts]}
        if self._memfd is None:
            spec["data"] = base64.b64encode(image.data).decode("ascii")
        # $ORIGIN is the plugin's folder as this process sees it, and the
        # libraries found there are loaded from the copies checked here.
        spec["origin"] = os.path.dirname(os.path.abspath(image.path))
        spec["bundled"] = self._bundled_spec
        return self.request([OPEN, spec], "loading the plugin (its initialisers run then)")

    # -- one request, one reply ----------------------------------------------------
    def request(self, message: List[Any], during: str, timeout: Optional[float] = None) -> Any:
        """Send a JSON request and return the worker's answer; every failure is a PluginError."""
        return under_lock(self.lock, self._request, message, during, timeout)

    def _request(self, message: List[Any], during: str, timeout: Optional[float]) -> Any:
        seq = self.next_seq()
        message.insert(1, seq)
        reply = self.exchange(frame(message), during, timeout)
        try:
            return read_reply(reply, seq, self.path)
        except ProtocolViolation as exc:
            raise self._violated(exc, during) from None

    def next_seq(self) -> int:
        """The next request's id (call it with the lock held)."""
        self._seq += 1
        return self._seq

    def exchange(self, data: bytes, during: str, timeout: Optional[float] = None) -> Any:
        """Send one frame, return the reply as FrameReader gives it (JSON value or binary
        payload); every failure is a PluginError. The caller holds the lock."""
        if self._failure is not None:
            raise self._failure
        try:
            self._sock.sendall(data)
            return self._receive(timeout or self.timeout, during)
        except KeyboardInterrupt:
            self._interrupted(during)
            raise
        except OSError:                      # the socket broke: the worker is gone
            raise self._crashed(during) from None
        except ProtocolViolation as exc:
            raise self._violated(exc, during) from None

    def call_numbers(self, frames: CallFrames, handle: int, args: tuple, during: str) -> Any:
        """One call of a function taking and giving numbers (frames.hot): its result, or
        BY_JSON if an argument fits no binary frame (an integer beyond 64 bits).

        The hot path of an isolated plugin, in one method (_call_numbers, under
        the worker's lock through interrupts.under_lock): count the call,
        pack its request with the struct precompiled for its signature, send it,
        receive the reply into the kept inbox within FIRST_WAIT, check all of its
        header with one unpack, forward what the plugin printed, return the
        value. Anything else (no reply yet, a frame in pieces, an error reply, a
        spinning worker) continues on the general path, with the same outcome.
        """
        return under_lock(self.lock, self._call_numbers, frames, handle, args, during)

    def _call_numbers(self, frames: CallFrames, handle: int, args: tuple, during: str) -> Any:
        if self._failure is not None:
            raise self._failure
        self._seq = seq = self._seq + 1
        try:
            data = frames.pack_request(seq, handle, frames.count, frames.kinds,
                                       *map(check_argument, frames.params, args))
        except struct.error:            # an integer beyond 64 bits: cffi decides, in the worker
            return BY_JSON
        if self.spin or self._reader.buffer or self.timeout <= FIRST_WAIT:
            return self._read_call_reply(frames, self.exchange(data, during), seq, during)
        inbox = self._inbox
        try:
            self._send(data)
            try:
                size = self._recv_into(inbox)    # returns within FIRST_WAIT (SO_RCVTIMEO)
            except BlockingIOError:
                size = -1
            if size == frames.reply_size:
                got = frames.unpack_reply(inbox)
                if got[0] == frames.reply_prefix and got[1] == seq and got[2] == frames.fixed:
                    if self._open_outputs:   # what the plugin printed, before its result
                        for fd, _ in self._output_poller.poll(0):
                            self._forward(fd)
                    if len(got) == 3:
                        return None
                    return bool(got[3]) if frames.is_bool else got[3]
            message = self._after_first_wait(size, during)
            if message is None:
                message = self._wait(time.monotonic() + self.timeout - FIRST_WAIT,
                                     self.timeout, during)
        except KeyboardInterrupt:
            self._interrupted(during)
            raise
        except OSError:                      # the socket broke: the worker is gone
            raise self._crashed(during) from None
        except ProtocolViolation as exc:
            raise self._violated(exc, during) from None
        return self._read_call_reply(frames, message, seq, during)

    def _read_call_reply(self, frames: CallFrames, message: Any, seq: int, during: str) -> Any:
        """A call's result from its reply, binary or JSON (an error reply raises its error)."""
        try:
            if type(message) is bytes:
                return frames.read_reply(message, seq, None, None)
            return frames.read_json_reply(read_reply(message, seq, self.path))
        except ProtocolViolation as exc:
            raise self._violated(exc, during) from None

    def _receive(self, timeout: float, during: str) -> Any:
        """The next message: poll the socket and the output pipes (forwarding what the
        plugin printed) until a whole frame is in, or the timeout."""
        reader = self._reader
        if self.spin:
            message = self._receive_spinning(during)
            if message is not None:
                return message
        if reader.buffer:                    # a frame that came with the last one
            message = reader.next()
            if message is not None:
                return message
        deadline = time.monotonic() + timeout
        if timeout > FIRST_WAIT:
            try:
                size = self._sock.recv_into(self._inbox)   # returns within FIRST_WAIT
            except BlockingIOError:
                size = -1
            message = self._after_first_wait(size, during)
            if message is not None:
                return message
        return self._wait(deadline, timeout, during)

    def _after_first_wait(self, size: int, during: str) -> Any:
        """The message the first recv completed (`size` bytes in the inbox, -1 if none came
        within FIRST_WAIT), after forwarding what the plugin printed; None if none yet."""
        if size == 0:
            raise self._crashed(during)
        if size < 0:
            return None
        message = self._reader.take(self._inbox[:size])
        if self._open_outputs:               # what the plugin printed, before its reply
            for fd, _ in self._output_poller.poll(0):
                self._forward(fd)
        return message

    def _wait(self, deadline: float, timeout: float, during: str) -> Any:
        """Poll the socket and the output pipes (forwarding what the plugin printed) until
        a whole message is in, or the deadline; and the worker's pidfd.

        A worker that ends closes its end of the socket, and the host reads
        end-of-file: a crash. But a daemon its plugin started inherited that end
        and keeps it open; where no PID namespace ends the daemon with its
        keeper (isolation/pids.py), a keeper killed from inside then left the
        host waiting for the call's whole timeout, to report a hang. Its pidfd
        says at once that it ended: what it sent before is in the socket already,
        nothing can come after, so with the socket empty the worker crashed.
        """
        reader, inbox, recv_into = self._reader, self._inbox, self._sock.recv_into
        sock_fd, ended_fd = self._sock.fileno(), self._ended_fd
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timed_out(during, timeout)
            events = self._poller.poll(remaining * 1000)
            if not events:
                raise self._timed_out(during, timeout)
            readable = ended = False
            for fd, _ in events:             # what the plugin printed, before its reply
                if fd == sock_fd:
                    readable = True
                elif fd == ended_fd:
                    ended = True
                else:
                    self._forward(fd)
            if ended and not readable:       # (the socket looked at again, after the end)
                readable = forkserver.wait_readable(sock_fd, 0)
                if not readable:
                    raise self._crashed(during)
            if readable:
                size = recv_into(inbox)
                if not size:
                    raise self._crashed(during)
                message = reader.take(inbox[:size])
                if message is not None:
                    return message

    def _receive_spinning(self, during: str) -> Any:
        """The reply, if it comes within SPIN_SECONDS (see there); else None."""
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

    def bare_round_trip(self) -> Callable[[], None]:
        """A function that makes one bare round trip to the worker: an empty call's request
        frame there, its 13-byte void reply back, through the worker's own loop with
        nothing called (protocol.ECHO_HANDLE; in C where the C call loop is loaded).

        What the operating system charges for waking this worker and back, for
        benchmarks to compare calls with, call by call. The host's side is as lean
        as Python allows: send, recv_into a kept buffer. Hold `lock` while using it.
        """
        send, recv_into = self._sock.sendall, self._sock.recv_into
        message, size = echo_frame(), VOID_REPLY.size
        inbox = memoryview(bytearray(size))

        def once() -> None:
            send(message)
            got = 0
            while got < size:
                try:
                    n = recv_into(inbox[got:])
                except BlockingIOError:          # FIRST_WAIT passed: wait on
                    continue
                if not n:
                    raise self._crashed("a bare round trip")
                got += n
        return once

    # -- output ------------------------------------------------------------------------
    def _stdout(self, text: str) -> None:
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
            write(self, text)
        if not data:                 # each step can be taken again (an interrupted close)
            for poller in (self._poller, self._output_poller):
                with contextlib.suppress(KeyError):
                    poller.unregister(fd)
            with contextlib.suppress(OSError):      # closed and forgotten in one statement
                self._open_outputs.discard(os.close(fd) or fd)
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
        log.warning("isolated %s: %s", printable(self.path), error.reason)
        return error

    def _interrupted(self, during: str) -> PluginError:
        return self._fail(PluginCrashed(self.path, (
            f"interrupted during {during}; its worker process (pid {self.pid}) was "
            "stopped. Open the plugin again to use it")))

    def _crashed(self, during: str) -> PluginError:
        code = _wait(self.process, max(5.0, self.timeout))   # it is ending: its status
        self.drain(wait=1.0)
        if self._partial_line:
            self._stderr_tail.append(self._partial_line)
            self._partial_line = ""
        name = _signal_name(-code) if code < 0 else None
        how = _status(code) + self._limit_hit(name)
        if code == forkserver.STATUS_LOST:
            code = None
        elif code == 0 and not isinstance(self.process, forkserver.ForkedWorker) \
                and _children_reaped_unseen():
            how, code = ("ended (how cannot be known: this process ignores SIGCHLD, so the "
                         "kernel discards its children's exit status)"), None
        tail = [line for line in self._stderr_tail if line.strip()]
        said = ("; the last lines it wrote to stderr:\n    " + "\n    ".join(tail)) if tail else \
            "; it wrote nothing to stderr"
        error = PluginCrashed(self.path, (
            f"its worker process (pid {self.pid}) {how} during {during}{said}\n"
            "The host is unharmed; open the plugin again to retry"),
            signal=name, exit_code=None if code is None or code < 0 else code, stderr=tail,
            pid=self.pid)
        return self._fail(error)

    def _limit_hit(self, signal_name: Optional[str]) -> str:
        """Which of its limits the worker hit, where its signal says so ('' otherwise)."""
        if signal_name == "SIGXCPU" and self.limits.cpu_seconds is not None:
            return (f" (it used up its CPU time limit, cpu_seconds={self.limits.cpu_seconds}:"
                    " the kernel sends SIGXCPU)")
        if signal_name == "SIGXFSZ" and self.limits.file_size is not None:
            return f" (it wrote past its file size limit, file_size={self.limits.file_size})"
        return ""

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
        """Ask the worker to unload the plugin and exit; stop it if it does not.

        Unloading runs the plugin's destructors and the worker's exit runs its
        atexit handlers: each is given the plugin's timeout, as any call is, so
        a busy machine slowing them down does not turn a clean exit (or the
        crash of a destructor) into a worker stopped by the host.
        """
        under_lock(self.lock, self._close)

    def _close(self) -> None:
        if self._failure is None and self.process.returncode is None:
            try:
                self.request([CLOSE], "closing", timeout=self.timeout)
            except PluginError:
                pass                       # it crashed or hung while closing: stopped
        if self._failure is None:
            self._failure = PluginClosed(self.path, "is closed; open the plugin again "
                                                    "to use it")
            self._stop(grace=self.timeout)
            if self.process.returncode:     # a destructor at exit crashed, or status lost
                log.warning("isolated %s: its worker (pid %d) %s after close",
                            printable(self.path), self.pid,
                            _status(self.process.returncode))
        else:
            self._stop(grace=2.0)

    def _stop(self, grace: float) -> None:
        if grace and self.process.returncode is None:
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if self.process.returncode is None:
            _kill(self.process)             # kill it (and its tree) and reap it
            self.process.wait()
        self.drain(wait=0.5)                # whatever it wrote before it ended
        finish(self._held.release)          # close the socket, the lifeline, the pipes
        self._finalizer.detach()


def _now() -> float:
    return time.monotonic()


def _children_reaped_unseen() -> bool:
    """Whether this process ignores SIGCHLD: then the kernel reaps its children as they
    exit and their status is lost (wait(2)); subprocess reports such a child as exit 0."""
    return hasattr(signal, "SIGCHLD") and signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN


def _signal_name(number: int) -> str:
    return signal.Signals(number).name if number in signal.valid_signals() else str(number)


def _status(code: int) -> str:
    """A worker's exit status in words: 'was killed by SIGSEGV (...)', 'exited with code 3',
    or that it is unknown (forkserver.STATUS_LOST)."""
    if code == forkserver.STATUS_LOST:
        return ("ended, how cannot be known (the fork server that started it ended first, "
                "and only that server could read its exit status; the next isolated open "
                "starts a new one, and MINILDR_NO_FORK_SERVER=1 starts each worker as the "
                "host's own child, whose status the host reads itself)")
    if code < 0:
        return f"was killed by {_signal_name(-code)} ({signal.strsignal(-code)})"
    return f"exited with code {code}"


def _wait(process: "WorkerPopen | forkserver.ForkedWorker", timeout: float) -> int:
    """The worker's exit status (negative: killed by that signal), killing it if need be."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    _kill(process)
    return process.wait()


def _kill(process: "WorkerPopen | forkserver.ForkedWorker") -> None:
    """End the worker and everything its plugin started.

    Where the worker keeps its tree (tree.py), SIGTERM asks its keeper to
    kill the whole tree first; if it has not ended within a second (a plugin
    stopped it), and elsewhere, SIGKILL goes to the worker's process group.
    """
    if KEEPS_TREE:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(1.0)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill_group()
    process.kill()


class WorkerPopen(subprocess.Popen):
    """Popen whose wait(timeout) sleeps until the worker ends instead of polling.

    Popen.wait(timeout) looks at the child again and again, sleeping up to
    50 ms in between, so every close saw its worker's end up to 50 ms late. A
    pidfd (pidfd_open(2), Linux 5.3) becomes readable the moment its process
    ends: wait sleeps on it in poll(), then reaps. `pidfd` is opened right
    after the start (None where the kernel refuses: Popen's own wait then) and
    closed by Held.release once the worker is reaped.
    """
    pidfd: Optional[int] = None

    def kill_group(self) -> None:
        """SIGKILL to its process group (the host's child: its pid is its own until reaped)."""
        tree.kill_group(self.pid)

    def wait(self, timeout: Optional[float] = None) -> int:
        if timeout is not None and self.returncode is None and self.pidfd is not None:
            if not forkserver.wait_readable(self.pidfd, timeout):
                timeout = 0.0                    # not ended: one look, then TimeoutExpired
        return super().wait(timeout)


def _pidfd(pid: int) -> Optional[int]:
    """A pidfd for the worker just started (still unreaped: the pid is its own), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):       # not Linux, a kernel before 5.3, no descriptor left
        return None


class Held:
    """What the host holds for one worker: its process, its ends of the socket and pipes,
    the images being handed over, its folder and the arena.

    Each is recorded in the statement that makes it and forgotten in the
    statement that releases it, so `release` can be run again after an
    interrupt (interrupts.finish, a second close()) and finishes what is left.
    """

    def __init__(self) -> None:
        self.process: "Optional[WorkerPopen | forkserver.ForkedWorker]" = None
        self.status: List[int] = []              # from the fork server: read end (, write end)
        self.sockets: List[socket.socket] = []   # host's, then the worker's end
        self.fds: List[int] = []                 # lifeline, stdout, stderr: read and write ends
        self.outputs: set = set()                # the host's ends of stdout and stderr
        self.images: List[PluginImage] = []      # held only while the worker starts
        self.folder: Optional[str] = None
        self.folder_made: Optional[workfolder.Identity] = None  # its device and inode
        self.arena: Optional[shm.Arena] = None

    def started(self) -> None:
        """The worker runs: close its ends of the pipes and the socket, keep the host's,
        and give back the images (it holds its own descriptors of their copies). Each
        descriptor moves or closes in one statement (fds is lifeline, stdout, stderr,
        each read end then write end)."""
        with contextlib.suppress(OSError):
            os.close(self.fds.pop())                  # stderr's write end: the worker's
        self.outputs.add(self.fds.pop())              # stderr's read end
        with contextlib.suppress(OSError):
            os.close(self.fds.pop())                  # stdout's write end
        self.outputs.add(self.fds.pop())              # stdout's read end
        with contextlib.suppress(OSError):
            os.close(self.fds.pop(0))                 # the lifeline's read end; its write
        self.sockets.pop().close()                    # end stays in fds, as our socket end
        self.give_back_images()

    def give_back_images(self) -> None:
        for thing in self.images:
            thing.release(self)                       # a second release is harmless
        self.images = []

    def release(self) -> None:
        """Closing the socket and the lifeline tells the worker to exit; then make sure.

        Runs from close(), from a failed start, when the last reference to the
        worker goes, or at the host's exit (weakref.finalize's atexit), so no
        worker outlives its host. Its folder goes with it.
        """
        while self.sockets:
            self.sockets.pop().close()
        while self.fds:
            with contextlib.suppress(OSError):
                os.close(self.fds.pop())
        self.give_back_images()
        process = self.process
        while len(self.status) > 1:                    # (an interrupt during the request)
            with contextlib.suppress(OSError):
                os.close(self.status.pop())
        if process is None and self.status:
            # A keeper the fork server may have started before an interrupt: its
            # lifeline is closed now, and its end comes on the status pipe.
            forkserver.wait_readable(self.status[0], 5.0)
        if process is not None and process.returncode is None:
            try:
                process.wait(0.5)
            except subprocess.TimeoutExpired:
                _kill(process)
                process.wait()
        while self.outputs:
            with contextlib.suppress(OSError):
                os.close(self.outputs.pop())
        if self.folder is not None:                    # (the keeper may have removed it)
            workfolder.remove(self.folder, self.folder_made)
            self.folder = None
        if self.arena is not None:
            self.arena.close()
            self.arena = None
        while self.status:
            with contextlib.suppress(OSError):
                os.close(self.status.pop())
        if process is not None:
            if process.pidfd is not None:              # closed and forgotten in one statement
                process.pidfd = os.close(process.pidfd)
            pids.remove_worker_cgroup(process.pid)     # if its keeper could not (it was killed)
            self.process = None


# SIGCHLD back to its default first: a host that ignores it passes SIG_IGN on through
# exec (POSIX keeps ignored signals ignored), and the worker's keeper would then find
# its own children reaped by the kernel and their status lost.
# The package minildr is registered without running its __init__ (module_from_spec,
# no exec_module): __init__ imports the host's whole API (build, open, trust, the
# contract proxies...), which a worker never uses and would pay for at every start.
# Its submodules import as usual from the package's folder
# (tests/package/test_imports.py checks what a worker imports). The worker's
# Python runs without `site` (-S), so the folders of the libraries it imports
# (dependency_folders) are added after the standard library's, where site puts them.
BOOT_IMPORT = ("import sys, os, signal, importlib.util; "
               "signal.signal(signal.SIGCHLD, signal.SIG_DFL); "
               "sys.path.insert(0, sys.argv[1]); sys.path += sys.argv[2].split(os.pathsep); "
               "sys.modules['minildr'] = importlib.util.module_from_spec("
               "importlib.util.find_spec('minildr')); "
               "from minildr.isolation.worker import main")
BOOT = BOOT_IMPORT + "; main(sys.argv[3:])"
# The fork server (zygote.py) boots the same way, then serves. It serves only workers
# started with the standard boot line (a test may change BOOT: such a worker starts directly).
BOOT_STANDARD = BOOT
BOOT_ZYGOTE = BOOT_IMPORT + "; from minildr.isolation.zygote import serve; serve(sys.argv[3:])"
# What a worker imports from outside the standard library: cffi (its C backend and,
# for declarations of structs, its parser pycparser).
WORKER_DEPENDENCIES = ("_cffi_backend", "cffi", "pycparser")


@functools.lru_cache(maxsize=None)
def dependency_folders() -> str:
    """The folders the host imports WORKER_DEPENDENCIES from, and the folder of the
    out-of-line cffi modules (outofline.py), joined by os.pathsep.

    Found without importing them (importlib's find_spec): the host may not
    have needed pycparser yet. The worker's own declarations (fastloop.ffi)
    were made into their module when this process imported fastloop, so
    the worker finds them there whatever its environment says its cache is.
    """
    folders: List[str] = []
    for name in WORKER_DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        folder = str(origin.parents[1] if spec.submodule_search_locations else origin.parent)
        if folder not in folders:
            folders.append(folder)
    cache = outofline.cache_folder()
    if cache is not None:
        folders.append(str(cache))
    return os.pathsep.join(folders)


def worker_command(sock_fd: int, lifeline_fd: int, limits: Limits, arena_fd: int = -1
                   ) -> List[str]:
    """The worker's command line: -I, and minildr imported from this very package.

    -I (isolated mode) ignores PYTHON* variables and the user's site folder,
    and puts neither the current folder nor a script's folder on sys.path;
    the folders added are the parent of the minildr the host runs and those
    the host imports cffi and pycparser from. So a stray minildr/ (or cffi/)
    in the host's current folder is never imported. -S skips `site`: its
    reading of every .pth file in site-packages (an editable install's import
    hook among them) cost ~15 ms of CPU at every start, for nothing a worker uses.
    """
    package_parent = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-I", "-S", "-c", BOOT, package_parent, dependency_folders(),
            str(sock_fd), str(lifeline_fd), json.dumps(policy.to_wire(limits)), str(arena_fd),
            fastcall.status().path]



