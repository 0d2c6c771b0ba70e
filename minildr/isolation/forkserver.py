"""The host's side of the fork server (zygote.py): start it once, ask it for each worker.

`start_worker` asks this host's fork server for a worker: the server forks
a child that becomes the keeper `python -I -S -c BOOT ...` would have
been (zygote.py), without paying for a fresh interpreter and its imports
(~120-145 ms of CPU a start). It returns a `ForkedWorker`, which answers as
process.WorkerPopen does (pid, pidfd, returncode, wait, send_signal, kill),
or None where the fork server is not used; the caller then starts the
worker directly (process.py), as it always did:

- not on Linux (tree.KEEPS_TREE), or MINILDR_NO_FORK_SERVER=1 in the host's
  environment (both paths give the same results: tests/isolation/test_forkserver.py);
- the requested environment sets a variable a process reads as it starts
  (STARTUP_VARIABLES: the dynamic loader's LD_*, glibc's tunables, Python's
  locale coercion, the time zone, and MINILDR_*, which minildr's own modules
  may read as they are imported): a forked child would not see it as a
  fresh one does;
- a descriptor the worker needs is numbered below 3, or there are too many,
  or env= is larger than MAX_ENV;
- the fork server cannot be started, or died twice in a row (it is then not
  tried again in this process; the direct start reports any real failure).

One server per host process (a fork of the host starts its own); a lock
makes its requests one at a time, each answered before the next is sent.
A reply carries its request's number: one left unread (an interrupt after
the send) is skipped by the next request. The server is the host's child;
it ends by itself once the host is gone (its socket at end-of-file) and the
last of its keepers has ended; at a normal exit the host lets it go and
reaps it (up to 2 s), as it reaps a directly started worker.
"""
from __future__ import annotations

import atexit
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import Dict, List, Mapping, Optional

from ..interrupts import finish, under_lock
from . import tree

STARTUP_VARIABLES = ("LD_", "GLIBC_TUNABLES", "MALLOC_", "LC_", "LANG", "LANGUAGE", "TZ",
                     "GCONV_PATH", "LOCPATH", "NLSPATH", "MINILDR_")
MAX_FDS = 200
MAX_ENV = 64 << 10          # bytes of env= sent in one request (a datagram: kept well small)
REPLY_TIMEOUT = 60.0        # seconds for the server's reply (its first start on a busy machine)
DISABLE = "MINILDR_NO_FORK_SERVER"
# The return code of a keeper whose wait status is lost: its fork server (its parent,
# the only process that could read the status) was killed before the keeper ended.
# Neither an exit code (0-255) nor a signal (negative): never read as a clean exit 0.
STATUS_LOST = 256


class ForkedWorker:
    """A keeper forked by the fork server: the host's view of it, as WorkerPopen's.

    The status pipe's read end (`status_fd`, owned by process.Held) gives the
    return code when the keeper ends (Popen's convention: negative for a
    signal); end-of-file without it means the server died: once the keeper's
    pidfd says it ended too, its return code is STATUS_LOST (and `status_lost`
    is set), which no caller can take for an exit 0.
    """

    def __init__(self, pid: int, status_fd: int, args: List[str]) -> None:
        self.pid = pid
        self.args = args
        self.status_fd = status_fd
        self.pidfd: Optional[int] = None
        self.returncode: Optional[int] = None
        self.status_lost = False

    def poll(self) -> Optional[int]:
        try:
            return self.wait(0.0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if not _readable(self.status_fd, timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        data = os.read(self.status_fd, 4)
        if len(data) == 4:
            self.returncode, = struct.unpack("i", data)
            return self.returncode
        # The fork server is gone: wait for the keeper itself, its status unknown.
        if self.pidfd is not None and not _readable(self.pidfd, timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        self.status_lost = True
        self.returncode = STATUS_LOST
        return STATUS_LOST

    def send_signal(self, number: int) -> None:
        if self.poll() is not None or self.pidfd is None:   # ended: its pid may be another's
            return
        try:
            signal.pidfd_send_signal(self.pidfd, number)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def kill_group(self) -> None:
        """SIGKILL to its process group, while it has not ended (not the host's child:
        once ended, the fork server reaps it, and its pid may be another's)."""
        if self.pidfd is not None and self.poll() is None:
            tree.kill_group(self.pid)


def wait_readable(fd: int, timeout: Optional[float]) -> bool:
    """Whether fd is readable (data or end-of-file) within timeout seconds (None: ever)."""
    return _readable(fd, timeout)


def _readable(fd: int, timeout: Optional[float]) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000))


def wanted(env: Mapping[str, str], targets: List[int]) -> bool:
    """Whether this worker may come from the fork server (see the module)."""
    return (_server.broken is None and os.environ.get(DISABLE, "") in ("", "0")
            and not any(name.startswith(STARTUP_VARIABLES) for name in env)
            and min(targets, default=3) >= 3 and len(targets) < MAX_FDS
            and sum(len(k) + len(v) for k, v in env.items()) < MAX_ENV)


class Server:
    """This host's fork server: its process, the host's end of its socket, the next
    request's number. Each thing is recorded in the statement that makes it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner = 0                        # the host process it serves (a fork starts anew)
        self.command: List[str] = []
        self.sockets: List[socket.socket] = []
        self.process: Optional[subprocess.Popen] = None
        self.seq = 0
        self.failures = 0
        self.broken: Optional[str] = None     # why it is not used any more in this process
        self.retired: List[subprocess.Popen] = []   # servers let go, not yet reaped
        self.inherited: tuple = ()            # what it inherited from this host (_process_state)

    def start(self, command: List[str], boot: str) -> None:
        """Start the server: `command` is a worker's first 7 words (Python, its options,
        the worker's boot line, its sys.path folders), `boot` the server's boot line."""
        self.owner = os.getpid()
        self.command = command
        self.sockets.extend(socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        mine, theirs = self.sockets
        self.process = subprocess.Popen(
            [*command[:4], boot, *command[5:7], str(theirs.fileno())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=[theirs.fileno()], close_fds=True, cwd="/", env={},
            start_new_session=True)
        self.sockets.pop().close()
        mine.settimeout(REPLY_TIMEOUT)

    def forget(self) -> None:
        """Let the server go: it ends once its keepers have (never waited for here)."""
        while self.sockets:
            self.sockets.pop().close()
        if self.process is not None:
            self.retired.append(self.process)    # reaped when it ends (retire)
            self.process = None
        self.retired = [p for p in self.retired if p.poll() is None]


_server = Server()


def _after_fork_in_child() -> None:
    """A fork of the host starts its own server (owner), with a lock no thread holds."""
    _server.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
# At the host's exit (after its workers are released: process._at_exit, registered later,
# atexit runs last first) the server is let go and reaped, as a directly started worker is:
# nothing the host started outlives it, and its CPU time counts as the host's children's.
atexit.register(lambda: shutdown(2.0))


def shutdown(timeout: float = 10.0) -> None:
    """Let this host's fork server go and wait (up to `timeout` s) until it has ended,
    which it does once the keepers it started have: for a host that wants it reaped now
    (a benchmark counting its CPU time, a test). The next isolated open starts another."""
    under_lock(_server.lock, finish, _server.forget)
    for process in list(_server.retired):
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    _server.retired = [p for p in _server.retired if p.returncode is None]


def server_pid() -> Optional[int]:
    """The pid of this host's fork server, if one runs (for tests and diagnostics)."""
    process = _server.process
    return process.pid if process is not None and _server.owner == os.getpid() else None


def start_worker(command: List[str], fds: Dict[int, int], stdout: int, stderr: int,
                 cwd: str, env: Mapping[str, str], status_w: int, boot: str) -> Optional[int]:
    """Ask the fork server to start `command` (a worker_command): the pid of the keeper
    it forked, or None if it could not (the caller starts the worker directly).

    `fds` maps the number the worker expects to the host's descriptor (the same
    number), `status_w` is the write end of the pipe the server reports the end on,
    `boot` the server's boot line (process.BOOT_ZYGOTE).
    """
    return under_lock(_server.lock, _start_worker, command, fds, stdout, stderr, cwd, env,
                      status_w, boot)


def _start_worker(command: List[str], fds: Dict[int, int], stdout: int, stderr: int,
                  cwd: str, env: Mapping[str, str], status_w: int, boot: str) -> Optional[int]:
    for _ in range(2):
        umask, inherited = _process_state()
        if _server.owner != os.getpid() or _server.command != command[:7] \
                or _server.process is None or _server.inherited != inherited:
            _restart(command[:7], boot)
            _server.inherited = inherited
            if _server.broken is not None:
                return None
        try:
            return _ask(command, fds, stdout, stderr, cwd, env, status_w, umask)
        except (OSError, ValueError) as exc:        # it died, or answered nonsense
            _server.failures += 1
            finish(_server.forget)
            if _server.failures >= 2:
                _server.broken = f"the fork server failed twice ({exc})"
                return None
    return None


def _restart(command: List[str], boot: str) -> None:
    if _server.owner != os.getpid():
        _server.process = None                 # the parent's: its socket is closed below
    finish(_server.forget)
    try:
        _server.start(command, boot)
    except BaseException as exc:
        finish(_server.forget)
        if not isinstance(exc, OSError):
            raise
        _server.broken = f"the fork server could not start ({exc})"


def _ask(command: List[str], fds: Dict[int, int], stdout: int, stderr: int, cwd: str,
         env: Mapping[str, str], status_w: int, umask: int) -> Optional[int]:
    """Send one request and wait for its reply (skipping any earlier one left unread)."""
    _server.seq += 1
    seq = _server.seq
    request = {"seq": seq, "argv": command[5:], "fds": list(fds), "cwd": cwd,
               "env": dict(env), "umask": umask}
    passed = [status_w, stdout, stderr, *fds.values()]
    sock = _server.sockets[0]
    sock.sendmsg([json.dumps(request).encode()],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(passed)}i", *passed))])
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise OSError(0, "the fork server ended")
        reply = json.loads(data)
        if reply.get("seq") == seq:
            break
    _server.failures = 0
    if "pid" in reply:
        sys.audit("minildr.forkserver.worker", command)   # PEP 578: as Popen's event tells
        return int(reply["pid"])
    if reply.get("errno"):                     # fork failed here: the direct start says it
        return None
    raise ValueError(reply.get("error", "no pid in the reply"))


# What a process passes on to a child that a fork server started earlier would not have
# passed: credentials, capabilities, no_new_privs, seccomp filters, ignored signals
# (proc(5), status).
INHERITED = ("Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:",
             "NoNewPrivs:", "Seccomp:", "Seccomp_filters:", "SigIgn:")


def _process_state() -> tuple:
    """This process's umask, and what its child inherits that the fork server had to have
    inherited too: the lines INHERITED of /proc/self/status and the resource limits. A
    server started before the host changed them (dropped privileges, confined itself,
    lowered a limit) is replaced by one that inherits the change."""
    umask, lines = 0o022, []
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                elif line.startswith(INHERITED):
                    lines.append(line)
    except OSError:
        pass
    limits = [resource.getrlimit(getattr(resource, name)) for name in sorted(dir(resource))
              if name.startswith("RLIMIT_")]
    return umask, (tuple(lines), tuple(limits))
