"""The worker's keeper: every process a plugin starts ends with its worker.

A plugin may fork: a child, a daemon that double-forks and calls setsid().
Killing the worker's process (or its process group) misses those, and a
child that inherited the socket even hides the worker's crash (the host
never sees end-of-file). So on Linux the worker process the host starts is
a *keeper* that runs no plugin code:

    host ── keeper (the pid the host started; a child subreaper)
              └── server (serves requests, loads the plugin; dies with the keeper)
                    └── whatever the plugin forks: orphans come back to the keeper

Where the kernel allows it (pids.py), the keeper's child is process 1 of a
new PID namespace, a small init that forks the server and runs no plugin
code, and the keeper sits in a pids cgroup of its own:

    host ── keeper ── init (pid 1 of the namespace) ── server ── the plugin's processes

When the init ends, the kernel kills every process in its namespace, so
nothing escapes even a keeper killed by SIGKILL; the init passes the
server's wait status to the keeper through a pipe (a namespace's init
cannot re-raise a signal on itself: the kernel protects it).
PR_SET_CHILD_SUBREAPER (prctl(2)) makes every orphan below the keeper its
child instead of init's, so /proc/<keeper>/task/*/children always reaches
the whole tree. The keeper waits for three things: the server ending (it
kills the rest of the tree and ends the same way, so the host sees the
server's signal or exit code), the lifeline reaching end-of-file (the host
is gone) and SIGTERM (the host stops the worker): in each case it kills the
whole tree first, then removes the worker's folder (workfolder.py: also when
the host was killed and cannot). The server has PR_SET_PDEATHSIG: if the
keeper itself is killed, the server goes too.
Elsewhere (macOS) the worker serves in the process the host started, which
is a process-group leader; the host kills the group.

On Linux the keeper normally comes from the host's fork server (zygote.py,
forkserver.py) rather than from a fresh Python: the server imported the
worker's modules once, and forks a child that makes itself the process the
host would have started, then runs the same code (this module's `split`):

    host ─┬─ fork server (python -I -S, one per host; started at the first isolated open)
          │     ├── keeper ── init (pid 1) ── server ── the plugin's processes
          │     └── keeper ── init (pid 1) ── server ── ...
          └── (MINILDR_NO_FORK_SERVER=1, or a variable read at a process's start
               in env=: keeper ── init ── server, started directly, as above)

Each keeper leads a session of its own; the host holds its socket, its
lifeline and a status pipe. The fork server reaps the keepers and writes
each one's wait status to its status pipe (the keeper is not the host's
child, so the host cannot wait for it); the host's pidfd of the keeper
(pidfd_open works for any process) tells it the keeper ended if the server
was killed first, and then that its status is lost. Nothing else changes:
the keeper ends its tree and removes the worker's folder when the server
ends, the lifeline breaks (the host is gone, however it ended) or SIGTERM
comes; the fork server ends once its socket breaks (the host is gone) and
its last keeper has ended.
"""
from __future__ import annotations

import os
import resource
import select
import signal
import struct
import sys
from typing import Iterable, List, Optional

from . import pids, workfolder
from .kernel import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, SI_USER, prctl

KEEPS_TREE = sys.platform.startswith("linux")


def descendants(pid: int) -> List[int]:
    """Every live process below `pid`, read from /proc/<pid>/task/*/children."""
    found: List[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def kill_group(pid: int) -> None:
    """The host's last resort: SIGKILL to the process group `pid` leads (a worker: its
    keeper, or elsewhere the worker itself, leads a session of its own), if there still is
    one. The caller knows `pid` is still its worker's (not reaped, or not ended)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass                            # the group is gone already


def end_tree() -> None:
    """Kill every process below this one and reap them, until none is left."""
    while True:
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)           # one ended; orphans of the killed come to us
        except ChildProcessError:
            return


def split(lifeline: int, server_only: Iterable[int],
          processes: Optional[int]) -> pids.Containment:
    """Become the keeper, and return only in the server process (see the module).

    `lifeline`: the pipe whose end-of-file says the host is gone;
    `server_only`: descriptors the keeper closes (the socket), so that only
    the server holds them; `processes`: the pids cgroup's limit.
    Returns, in the server, what holds its processes (pids.Containment).
    """
    server_only = list(server_only)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    keeper = os.getpid()
    cgroup = pids.join_pids_cgroup(processes)
    why_not = pids.enter_pid_namespace()
    status_r, status_w = os.pipe()              # the init -> keeper: the server's wait status
    keeper_fd = os.pidfd_open(keeper)
    child = os.fork()
    if child == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([keeper_fd], [], [], 0)[0]:   # the keeper died before prctl took effect
            os._exit(1)
        os.close(status_r)
        if not why_not:     # returns in the server only (keeper_fd closed there)
            run_init(status_w, server_only, cgroup, keeper_fd)
        else:
            os.close(keeper_fd)
        os.close(status_w)
        reasons = [why_not and f"no PID namespace: {why_not}",
                   not cgroup and ("no pids cgroup: " + (
                       "processes=None" if processes is None else
                       "no writable cgroup tree with the pids controller here"))]
        return pids.Containment(not why_not, cgroup, "; ".join(r for r in reasons if r))
    os.close(keeper_fd)
    os.close(status_w)
    for fd in server_only:
        os.close(fd)
    keep(child, lifeline, status_r, cgroup)
    raise AssertionError("unreachable")          # keep() ends the process


def run_init(status_w: int, server_only: List[int], cgroup: str, keeper_fd: int) -> None:
    """Process 1 of the worker's PID namespace: fork the server, reap orphans, and
    when the server ends, tell the keeper how and end (the kernel then kills the rest).

    If the keeper is killed (its parent-death signal, SIGTERM from here on; it was
    SIGKILL until the init waited for it), the init ends the namespace itself and
    removes the keeper's cgroup, which nobody else would until the next worker
    starts (pids.sweep) when the host was killed too. A SIGTERM that a process of
    the namespace sent (the plugin: kill(1, SIGTERM), kill(getppid(), SIGTERM)) is
    not that signal, and is ignored (from_outside). `keeper_fd`, the keeper's
    pidfd, tells orphaned whether the keeper is still there.
    """
    server = os.fork()
    if server == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.close(keeper_fd)
        return
    for fd in server_only:
        os.close(fd)
    # Both signals are waited for (sigwaitinfo), never handled: their siginfo says
    # who sent a SIGTERM, and no SIGCHLD is lost while blocked.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGCHLD])
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    while True:
        reap(server, status_w)              # (a child may have ended before the block)
        info = signal.sigwaitinfo([signal.SIGTERM, signal.SIGCHLD])
        if info.si_signo == signal.SIGTERM and from_outside(info):
            orphaned(cgroup, keeper_fd)


def reap(server: int, status_w: int) -> None:
    """Reap every child that has ended; when the server has, tell the keeper how, and end."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            os._exit(0)
        if pid == 0:
            return
        if pid == server:
            os.write(status_w, struct.pack("i", status))
            os._exit(0)


def from_outside(info: "signal.struct_siginfo") -> bool:
    """Whether a signal to the namespace's init came from outside its PID namespace.

    The parent-death signal is sent by the dying parent itself
    (kernel/exit.c, forget_original_parent: group_send_sig_info(pdeath_signal,
    SEND_SIG_NOINFO, ...)), and for SEND_SIG_NOINFO the kernel writes si_code
    SI_USER and si_pid as the sender's pid *in the receiver's PID namespace*
    (kernel/signal.c, __send_signal_locked): the keeper lives in the parent
    namespace, so that pid is 0, as for any kill() from outside (the host's
    user may stop its worker so). A kill() from inside carries the sender's
    pid there, never 0; sigqueue() may forge si_pid, but not with si_code
    SI_USER (rt_sigqueueinfo(2): EPERM for si_code >= 0 to another process).
    """
    return info.si_code == SI_USER and info.si_pid == 0


def orphaned(cgroup: str, keeper_fd: int) -> None:
    """The init, its keeper gone (or SIGTERM from outside): leave the cgroup, kill every
    process of the namespace (kill(-1) from its init reaches them all), reap them,
    remove the cgroup and the worker's folder, end.

    The cgroup is removed here only if the keeper has ended (its pidfd is
    readable, as it is once the kernel sent this init its parent-death
    signal): a keeper still there is in the cgroup, so rmdir would fail for as
    long as the retries last, and the keeper removes it itself once this init
    has ended (keep).
    """
    pids.leave_cgroup(cgroup)
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass                                      # nothing left to kill
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    if select.select([keeper_fd], [], [], 0)[0]:
        pids.remove_worker_cgroup_folder(cgroup)
    workfolder.remove_current()                   # the host is gone too, most likely
    os._exit(0)


def keep(child: int, lifeline: int, status_r: int, cgroup: str) -> None:
    """The keeper's life: wait, then end the tree and exit as the server did."""
    def end() -> None:
        end_tree()
        pids.leave_and_remove(cgroup)
        workfolder.remove_current()     # the worker's folder: its host may be gone

    def stop(signum: int, frame: object) -> None:
        end()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    poller = select.poll()
    pidfd = os.pidfd_open(child)
    poller.register(pidfd, select.POLLIN)
    poller.register(lifeline, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == pidfd:
                _, status = os.waitpid(child, 0)
                told = os.read(status_r, 4)          # the init's word on the server, if any
                if len(told) == 4:
                    status, = struct.unpack("i", told)
                end()
                exit_as(status)
            elif not os.read(lifeline, 1):          # the host is gone
                end()
                os._exit(0)


def exit_as(status: int) -> None:
    """End this process the way the wait status says the server ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # the server's crash, not ours
        signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
        os.kill(os.getpid(), number)
        os._exit(128 + number)          # a signal that does not end a process by default
    os._exit(os.waitstatus_to_exitcode(status))
