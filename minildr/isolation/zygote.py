"""The fork server (Linux): one process per host that forks each worker's keeper ready-made.

A worker's start used to be a fresh `python -I -S -c BOOT ...` (process.py):
~120-145 ms of CPU, most of it importing the worker's modules
(closing7.md: trimming imports cannot halve it). The fork server pays that
once per host. The host starts it lazily, at its first isolated open, with
the same clean command line as a worker (python -I -S, the same sys.path,
an empty environment, a new session, folder /); it imports what a worker
imports (process.BOOT_IMPORT), freezes its objects out of the collector
(gc.freeze: a child's collections then do not touch, and copy, the pages it
shares with the server) and waits on its socket (forkserver.py is the
host's side). For each request it forks a child that becomes exactly the
process the host would have started (`become_worker`):

- the descriptors the host passed (SCM_RIGHTS) at the numbers they have in
  the host (the worker's argv and its open request name them), stdin
  /dev/null, stdout and stderr the host's pipes, every other descriptor
  closed (the server's socket and other keepers' status pipes included);
- a session of its own (setsid), the worker's folder as current folder, the
  host's umask, the requested variables followed by what Python itself set
  at its start (LC_CTYPE by PEP 538's locale coercion), in that order, an empty
  signal mask (dispositions are the fresh interpreter's: the server never
  changes one), sys.argv as the fresh worker's;

then runs worker.main with the same arguments (limits, arena, fastcall
path...), so it splits into keeper, init and server (tree.py) and confines
itself (sandbox.py) exactly as before.

Fork safety: the server has one thread when it forks (it never starts one),
holds no lock of the host and never saw the host's memory (it is a fresh
exec, not a fork of the host: no secrets, no half-held lock). The keeper is
the server's child, not the host's, so the server reports how it ended: it
waits on each keeper's pidfd, reads its status without reaping it
(waitid WNOWAIT: the pid stays the keeper's until the status is written, so
the host's pidfd_open(pid) made before the status came cannot name another
process), writes the return code (Popen's: negative for a signal) to the
status pipe the host passed with the request, then reaps. A keeper killed
by SIGKILL is so reported. If the server itself is gone (killed), the status
pipe reaches end-of-file with no word: the host then waits on its pidfd and
says the status is lost (process.py); the next open starts a new server.
When the host is gone (its socket at end-of-file) the server takes no more
requests, reports its keepers' ends as they come (each keeper ends by its own
lifeline) and exits when the last has ended.

What the host changed after the server started and a child inherits (its
credentials, capabilities, no_new_privs, seccomp filters, ignored signals
(SIG_IGN survives exec), resource limits) makes the host replace the server
(forkserver._process_state); the umask comes with each request. Not
followed: a Landlock domain or namespace the host entered since, and the string hash
seed, which every worker of one server shares (a plugin learns its own
anyway). The random module reseeds itself in each child (os.register_at_fork).
Shared too: the address-space layout. ASLR picks it at exec, not at fork, so
every worker of one server has the server's (the load addresses of Python,
libc and the worker's modules; each plugin is mapped afterwards, at an address
of its own): a plugin that learns its worker's addresses knows those of the
host's other workers, though not the host's, a separate exec (the same
trade-off as Android's zygote). Where that matters, MINILDR_NO_FORK_SERVER=1
starts every worker as its own exec.

Wire: one SOCK_SEQPACKET datagram per request, JSON {"seq", "argv", "fds",
"cwd", "env", "umask"} with the descriptors (the status pipe's write end,
stdout's, stderr's, then those named in "fds"), one per reply: {"seq",
"pid"} or {"seq", "error", "errno"}.
"""
from __future__ import annotations

import errno
import gc
import json
import os
import select
import signal
import struct
import sys
from typing import Any, Dict, List, Tuple

import _socket

from . import worker

MAX_REQUEST = 1 << 20        # bytes of one request (the environment's size, mostly)
MAX_FDS = 200                # descriptors in one request (SCM_MAX_FD is 253)


def serve(argv: List[str]) -> None:
    """The fork server's life: argv is [socket fd]."""
    sock = _socket.socket(fileno=int(argv[0]))
    base_env = dict(os.environ)       # what Python set as it started (PEP 538's LC_CTYPE)
    expect = sys.argv[1:3]            # the package's parent and the dependency folders
    keepers: Dict[int, Tuple[int, int]] = {}       # pidfd -> (pid, status pipe's write end)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    listening = True
    gc.freeze()
    while listening or keepers:
        for fd, _ in poller.poll():
            if fd != sock.fileno():
                report(fd, keepers.pop(fd))
                poller.unregister(fd)
                continue
            got = receive(sock)
            if got is None:                  # the host is gone: serve the keepers' ends only
                poller.unregister(fd)
                listening = False
                continue
            request, fds = got
            reply: Dict[str, Any] = {"seq": request.get("seq")}
            try:
                if request.get("argv", [])[:2] != expect:
                    raise OSError(0, "the fork server runs another minildr")
                if len(fds) != 3 + len(request.get("fds", ())):   # (truncated: MSG_CTRUNC)
                    raise OSError(errno.EINVAL, "descriptors missing from the request")
                pid = os.fork()
                if pid == 0:
                    sock.detach()            # its number may be one the worker's gets
                    become_worker(request, fds, base_env)
                pidfd = os.pidfd_open(pid)
                keepers[pidfd] = (pid, fds.pop(0))
                poller.register(pidfd, select.POLLIN)
                reply["pid"] = pid
            except OSError as exc:
                reply.update(error=exc.strerror or str(exc), errno=exc.errno)
            for number in fds:
                os.close(number)
            try:
                sock.send(json.dumps(reply).encode())
            except OSError:
                pass                         # the host is gone: its keepers still end


def receive(sock: "_socket.socket") -> Any:
    """One request and its descriptors, or None when the host has gone."""
    try:
        data, ancillary, _, _ = sock.recvmsg(MAX_REQUEST, _socket.CMSG_SPACE(MAX_FDS * 4))
    except OSError:
        return None
    fds: List[int] = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.extend(struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4]))
    if not data:
        for number in fds:
            os.close(number)
        return None
    return json.loads(data), fds


def report(pidfd: int, keeper: Tuple[int, int]) -> None:
    """A keeper ended: write its return code to its status pipe, then reap it."""
    pid, status_w = keeper
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    try:
        os.write(status_w, struct.pack("i", code))
    except OSError:
        pass                                 # the host closed it (the worker is forgotten)
    os.waitpid(pid, 0)
    os.close(status_w)
    os.close(pidfd)


def become_worker(request: Dict[str, Any], fds: List[int], base_env: Dict[str, str]) -> None:
    """In the forked child: become the process `python -I -S -c BOOT argv...` would be,
    then run the worker. Never returns."""
    code = 1
    try:
        place_descriptors(fds[1], fds[2], request["fds"], fds[3:])
        os.setsid()
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])      # then what Python added at its start, in
        os.environ.update({k: v for k, v in base_env.items() if k not in request["env"]})
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        sys.argv = ["-c", *request["argv"]]
        worker.main(request["argv"][2:])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        sys.excepthook(*sys.exc_info())      # the C hook: as a fresh Python prints it
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


def place_descriptors(out_w: int, err_w: int, targets: List[int], passed: List[int]) -> None:
    """stdin /dev/null, stdout and stderr the pipes, each passed descriptor at its target
    number (inheritable, as pass_fds leaves them), and nothing else open."""
    top = max([2, *targets, *passed, out_w, err_w]) + 1
    moved = [os.dup2(fd, top + i) for i, fd in enumerate([out_w, err_w, *passed])]
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(moved[0], 1)
    os.dup2(moved[1], 2)
    for source, target in zip(moved[2:], targets):
        os.dup2(source, target)
    keep = sorted({0, 1, 2, *targets})
    start = 0
    for number in keep:
        if number > start:
            os.closerange(start, number)
        start = number + 1
    os.closerange(start, 1 << 20)
