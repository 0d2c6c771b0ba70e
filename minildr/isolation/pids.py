"""What bounds the processes of one worker: a PID namespace and a pids cgroup (Linux).

The keeper (tree.py) ends everything a plugin forks by walking its tree.
Two kernel mechanisms make that hold even against a plugin that fights it:

- **A PID namespace** (pid_namespaces(7)). The keeper calls unshare(CLONE_NEWPID)
  (with CLONE_NEWUSER when it is not root: an unprivileged user namespace
  owns the new PID namespace) before it forks; its child is process 1 of
  the new namespace, a small init that runs no plugin code and forks the
  server. When that init ends, for whatever reason, the kernel kills
  every process left in the namespace: a daemon that double-forked and
  called setsid() cannot escape, and a plugin cannot even name its keeper
  or the host (kill() and ptrace() see only the namespace's processes:
  ESRCH). Where unshare is refused (no user namespaces, a seccomp'd
  container), the keeper works as before, as the child subreaper, and
  says why in `Containment.reason`.
- **A pids cgroup** (Documentation/admin-guide/cgroup-v1/pids.rst, or
  cgroup v2's pids controller): RLIMIT_NPROC does not bind root, and counts
  a user's processes, not a worker's. Where this process may create a
  cgroup with the pids controller, the keeper moves itself into one of its
  own with pids.max = Limits.processes before it forks: a fork bomb then
  gets EAGAIN at that many tasks (threads included), whoever runs it; the
  keeper removes the cgroup when it ends; if the keeper is killed, the
  namespace's init does (tree.orphaned), and failing both, the host
  (process._stop_process) or the next worker to start (sweep).

The host learns what applied from the worker's ready reply.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Optional

from .kernel import CLONE_NEWPID, CLONE_NEWUSER, unshare

PIDS_V1 = "/sys/fs/cgroup/pids"            # cgroup v1's pids hierarchy
PREFIX = "minildr-worker-"                 # a worker's cgroup: PREFIX + its keeper's pid
UNIFIED = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")   # where cgroup v2 may be mounted


@dataclass(frozen=True)
class Containment:
    """How one worker's processes are held: what applied, and why not where it did not."""
    pid_namespace: bool
    cgroup: str                 # the pids cgroup's folder, "" if none
    reason: str                 # why no PID namespace, cgroup or private /proc ("" if all)
    private_proc: bool = False  # its /proc shows only its PID namespace (mounts.py)

    def to_wire(self) -> list:
        return [self.pid_namespace, self.cgroup, self.reason, self.private_proc]

    @classmethod
    def from_wire(cls, wire: object) -> Optional["Containment"]:
        if (isinstance(wire, list) and len(wire) == 4 and type(wire[0]) is bool
                and all(isinstance(w, str) for w in wire[1:3]) and type(wire[3]) is bool):
            return cls(*wire)
        return None


# ---------------------------------------------------------------------------
# The PID namespace
# ---------------------------------------------------------------------------
def enter_pid_namespace() -> str:
    """unshare a new PID namespace for the next child; '' on success, else why not.

    Called in the keeper while it has one thread (CLONE_NEWUSER needs that).
    """
    root = os.geteuid() == 0
    flags = CLONE_NEWPID if root else CLONE_NEWPID | CLONE_NEWUSER
    uid, gid = os.geteuid(), os.getegid()
    try:
        unshare(flags)
    except OSError as exc:
        how = "unshare(CLONE_NEWPID" + ("" if root else "|CLONE_NEWUSER") + ")"
        return f"{how} was refused ({errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror})"
    if not root:
        try:                                     # the same ids inside as outside
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as exc:
            return f"the user namespace's id maps could not be written ({exc.strerror})"
    return ""


_host_pid = (0, 0)          # (os.getpid(), the pid the host sees) once read


def host_pid() -> int:
    """This process's pid as the host sees it, inside a namespace too: read from the
    host's /proc the first time (before mounts.private_proc replaces it), then kept."""
    global _host_pid
    if _host_pid[0] != os.getpid():             # not read yet, or read by a parent
        try:
            _host_pid = (os.getpid(), int(os.readlink("/proc/self")))
        except (OSError, ValueError):
            _host_pid = (os.getpid(), os.getpid())
    return _host_pid[1]


# ---------------------------------------------------------------------------
# The pids cgroup
# ---------------------------------------------------------------------------
def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _own_cgroup(controller_line: str) -> Optional[str]:
    """This process's cgroup path from /proc/self/cgroup for a hierarchy line's key."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                number, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == controller_line or \
                        (controller_line != "" and controller_line in controllers.split(",")):
                    return path
    except OSError:
        pass
    return None


def pids_parent() -> Optional[str]:
    """The folder under which this process may make a pids cgroup, or None."""
    own = _own_cgroup("pids")
    if own is not None and os.path.exists(os.path.join(PIDS_V1, "cgroup.procs")):
        folder = os.path.join(PIDS_V1, own.lstrip("/"))
        if os.access(folder, os.W_OK):
            return folder
    own = _own_cgroup("")                           # cgroup v2: the "0::/path" line
    for mount in UNIFIED:
        if own is None:
            break
        folder = os.path.join(mount, own.lstrip("/"))
        try:
            with open(os.path.join(folder, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            continue
        if "pids" in enabled and os.access(folder, os.W_OK):
            return folder
    return None


def join_pids_cgroup(limit: Optional[int]) -> str:
    """Move this process into a new pids cgroup with pids.max = limit; its folder, or ''.

    '' where no pids cgroup can be made here (the reason is then the caller's
    to record: the cgroup tree is not writable, or has no pids controller).
    """
    if limit is None:
        return ""
    parent = pids_parent()
    if parent is None:
        return ""
    sweep(parent)
    folder = os.path.join(parent, f"{PREFIX}{os.getpid()}")
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass                                     # a pid reused after a keeper was killed
    except OSError:
        return ""
    try:
        _write(os.path.join(folder, "pids.max"), str(limit))
        _write(os.path.join(folder, "cgroup.procs"), "0")
    except OSError:
        remove_cgroup(folder)
        return ""
    return folder


def sweep(parent: str) -> None:
    """Remove the empty cgroups of keepers that are gone (killed before they could).

    Only a folder named after a process that no longer exists is touched, and
    rmdir refuses one that still holds a process.
    """
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        keeper = name[len(PREFIX):]
        if name.startswith(PREFIX) and keeper.isdigit() and not os.path.exists(f"/proc/{keeper}"):
            remove_cgroup(os.path.join(parent, name))


def leave_cgroup(folder: str) -> bool:
    """Move this process back into the parent of its cgroup `folder`; True if it did."""
    if not folder:
        return False
    try:
        _write(os.path.join(os.path.dirname(folder), "cgroup.procs"), "0")
    except OSError:
        return False
    return True


def leave_and_remove(folder: str) -> None:
    """The keeper's last act: back into the parent cgroup, then remove its own (now empty)."""
    if leave_cgroup(folder):
        remove_cgroup(folder)


def remove_cgroup(folder: str) -> bool:
    """rmdir a worker's cgroup (it must hold no process); True if it is gone."""
    try:
        os.rmdir(folder)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def remove_worker_cgroup(keeper: int, wait: float = 1.0) -> None:
    """The host's side: remove the cgroup of the worker whose keeper was `keeper`, if its
    keeper left it behind (killed); its last processes may take a moment to go."""
    parent = pids_parent()
    if parent is not None:
        remove_worker_cgroup_folder(os.path.join(parent, f"{PREFIX}{keeper}"), wait)


def remove_worker_cgroup_folder(folder: str, wait: float = 1.0) -> None:
    """rmdir `folder`, retrying for up to `wait` s while its last processes exit."""
    if not folder:
        return
    deadline = time.monotonic() + wait
    while not remove_cgroup(folder) and time.monotonic() < deadline:
        time.sleep(0.01)


def probe_pid_namespace() -> str:
    """'' if a keeper could make a PID namespace here, else why not (tried in a child)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:                                   # pragma: no cover - the child
        os.close(read)
        try:
            why = enter_pid_namespace()
        except BaseException as exc:                 # noqa: BLE001 - reported, not raised
            why = str(exc) or type(exc).__name__
        os.write(write, why.encode()[:1000])
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1024):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(child, 0)
    return b"".join(chunks).decode(errors="replace")
