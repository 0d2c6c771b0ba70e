"""A worker's own /proc: a mount namespace in which /proc shows only its PID namespace.

A PID namespace (pids.py) hides the host's processes from kill() and
ptrace(), but not from /proc: /proc is a file system mounted once for the
whole machine, and it shows the processes of the PID namespace that mounted
it (proc(5), "Overview"; pid_namespaces(7), "/proc and PID namespaces"). So
an isolated plugin could still list every process of the machine and read
/proc/<host>/environ, the environment the host started with.

The server, in its PID namespace, therefore unshares a mount namespace
(mount_namespaces(7)), makes every mount in it private (MS_REC|MS_PRIVATE:
nothing it mounts propagates back to the host's namespace), and mounts a
new proc over /proc: it lists the worker's own processes only (the init
and the server, and what the plugin starts), and /proc/self is the server.
The keeper and the init stay in the host's mount namespace (the keeper
reads the worker's tree from the host's /proc). Root may do this with
CAP_SYS_ADMIN; an unprivileged user can, inside the user namespace that owns
the PID namespace (pids.enter_pid_namespace). Where it is refused, the
worker keeps the host's /proc and says why (pids.Containment.reason).
"""
from __future__ import annotations

import errno

from .kernel import CLONE_NEWNS, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC, mount, \
    unshare


def private_proc() -> str:
    """Mount a /proc of this process's PID namespace in a mount namespace of its own;
    '' on success, else why not. Call it single-threaded, in the PID namespace."""
    step = "unshare(CLONE_NEWNS)"
    try:
        unshare(CLONE_NEWNS)
        step = "making its mounts private"
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        step = "mounting proc on /proc"
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        return f"{step} was refused ({errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror})"
    return ""
