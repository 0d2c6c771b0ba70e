"""Isolation: run a plugin in a worker process, so that its crash is not the host's.

A plugin loaded into the host shares everything with it: a segfault, an
abort() or an exit() in plugin code ends the host too, and a hang hangs it.
`open(path, isolate=True)` loads the plugin into a separate worker process
instead and forwards lookups and calls to it:

    host                                         worker (one per plugin)
    ----                                         ------
    open(): every check, trust          ──────▶  the same checks on the same bytes
            (the sealed memfd is passed            (the memfd, verified by digest)
             to the worker: no re-read)            dlopen: constructors run here
    greet()  ── ["call", seq, h, args] ──▶       calls the real function
             ◀── ["ok", seq, result] ──
    a crash: the socket closes     ◀──────       SIGSEGV, abort, exit(3)...
             PluginCrashed (signal or exit code, last stderr lines)

This is protection from a plugin's *bugs*. The worker starts with an empty
environment (open(env=...) passes variables), in a folder of its own, with
no descriptors but its channel, output pipes, the sealed plugin and the
arena, within limits on memory and threads, and (where the kernel allows)
in PID and mount namespaces of its own, so it sees only its own processes;
but it runs as the host's user and can reach what that user's files can. `sandbox=True` adds protection from
*malice*: the worker confines itself with Landlock, seccomp and rlimits
before the plugin is mapped (sandbox.py).

One module per idea, in the order a call meets them:

    plugin.py      what the host holds: IsolatedPlugin, RemoteFunction, RemoteVariable
    contracts.py   contract proxies whose calls run in the worker, results checked
    marshal.py     which plain C values cross, in both directions
    shm.py         the arena: long strings cross through shared memory
    protocol.py    frames, requests, replies, errors as values (host and worker share it)
    process.py     WorkerProcess: spawn, request/reply, output, crash, timeout, stop
    forkserver.py  the host's fork server: one per host, asked for each worker (Linux)
    zygote.py      ... the server itself: imports once, forks each keeper ready-made
    policy.py      Limits (every worker) and SandboxPolicy (what a sandbox grants)
    sandbox.py     the confinement: rlimits, no_new_privs, Landlock, seccomp; probe()
    kernel.py      the Linux calls os does not offer (prctl, Landlock, capset)
    tree.py        the keeper: nothing a plugin forks outlives its worker
    workfolder.py  a worker's own folder: gone whatever ends the host, nothing else removed
    pids.py        what bounds a worker's processes: a PID namespace, a pids cgroup
    mounts.py      a worker's own /proc: a mount namespace, proc of its PID namespace
    worker.py      the child: `python -I -c ...` (process.worker_command)
    fastcall.py    the worker's call loop in C for numbers-only calls (fastcall.c), built
    fastloop.py    ... and loaded and served by the worker
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plugin import IsolatedPlugin, open_isolated

__all__ = ["IsolatedPlugin", "open_isolated"]


def __getattr__(name: str) -> Any:
    """The host's side, imported on first use (PEP 562).

    The worker (process.BOOT: `from minildr.isolation.worker import main`)
    runs this package's __init__ too, and needs none of the host's objects:
    plugin.py brings the process, the contract proxies and the rest of the
    host's side with it. (A host has them already: minildr/__init__.py
    imports loader.py, which imports plugin.py.)
    """
    if name in __all__:
        value = getattr(importlib.import_module(".plugin", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
