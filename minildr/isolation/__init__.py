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

One module per idea, in the order a call meets them:

    plugin.py      what the host holds: IsolatedPlugin, RemoteFunction, RemoteVariable
    contracts.py   contract proxies whose calls run in the worker, results checked
    marshal.py     which plain C values cross, in both directions
    protocol.py    frames, requests, replies, errors as values (host and worker share it)
    process.py     WorkerProcess: spawn, request/reply, output, crash, timeout, stop
    worker.py      the child: `python -m minildr.isolation.worker`
"""
from .plugin import IsolatedPlugin, open_isolated

__all__ = ["IsolatedPlugin", "open_isolated"]
