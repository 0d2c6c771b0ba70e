"""The `minildr` logger, for the modules an isolated worker shares with its host.

A host logs every open, lookup and close to the standard `logging` module's
"minildr" logger (DESIGN.md). An isolated worker (isolation/worker.py) runs the
same loader modules (checks, image, linkage, plugin, system, lifetime), but
nothing it would log reaches anyone: it never runs the package's __init__,
and it used to give the logger a NullHandler only. Importing `logging` (with
its threading, traceback and string modules) cost every worker ~6 ms of CPU
at each start for nothing. So those modules log through `LOG`, which passes
each call to the "minildr" logger once minildr/__init__.py has attached it
(every host imports that __init__ before any of its modules), and drops it
where none was attached (a worker): what a host logs, and where, is unchanged.

`LOG.info` is the logger's own bound method, so a record names the caller's
module, function and line, as `logging.getLogger("minildr").info` would.
"""
from __future__ import annotations

INFO = 20         # logging.INFO


class _Dropped:
    """What a process without the logging module logs to: nothing, and says so."""

    def isEnabledFor(self, level: int) -> bool:
        return False

    def _drop(self, *args: object, **kwargs: object) -> None:
        pass

    debug = info = warning = error = exception = critical = log = _drop


class Log:
    """The "minildr" logger once attached (`attach`), else every call dropped."""

    def __init__(self) -> None:
        self.logger: object = _Dropped()

    def attach(self, logger: object) -> None:
        self.logger = logger

    def __getattr__(self, name: str) -> object:
        return getattr(self.logger, name)


LOG = Log()
