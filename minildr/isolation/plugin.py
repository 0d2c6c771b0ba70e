"""What the host holds of an isolated plugin: the plugin, its functions and variables.

`open(path, isolate=True)` gives an `IsolatedPlugin`: the API of an
in-process `Plugin`, with every lookup and call forwarded to the plugin's
worker process (process.py) over the protocol (protocol.py), values copied
by the rules of marshal.py and contract methods checked by contracts.py.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

from ..contracts.contract import Contract
from ..console import printable
from .. import ctype
from ..errors import PluginClosed, PluginError
from ..image import PluginImage
from ..interrupts import finish, under_lock
from ..manifest import Export, Manifest
from ..plugin import Plugin, Symbol
from ..system import ffi as host_ffi
from .contracts import bind_remote
from .marshal import Marshal, Value, decode_result, encode_argument, frames_for, marshal_for
from .policy import WORKER_LIMITS, Limits, SandboxPolicy
from .process import BY_JSON, DEFAULT_TIMEOUT, WorkerProcess
from .sandbox import require_sandbox
from .protocol import CALL, GET, LOOKUP, SET, ProtocolViolation, read_reply

log = logging.getLogger("minildr")


class RemoteFunction:
    """A function of an isolated plugin: calling it runs it in the worker process."""

    __slots__ = ("name", "ctype", "_worker", "_handle", "_marshal", "_frames", "_ffi",
                 "_during", "__weakref__")

    def __init__(self, worker: WorkerProcess, handle: int, export: Export, marshal: Marshal,
                 ffi: Any) -> None:
        self.name, self.ctype = export.name, export.ctype
        self._worker, self._handle, self._marshal, self._ffi = worker, handle, marshal, ffi
        self._frames = frames_for(marshal)
        self._during = f"{export.name}()"

    def __call__(self, *args: Any) -> Any:
        frames = self._frames
        if len(args) != frames.count:
            raise TypeError(f"{self.name}() takes {frames.count} argument(s) "
                            f"({len(args)} given)")
        if frames.hot:                    # numbers only: one method, one struct each way
            value = self._worker.call_numbers(frames, self._handle, args, self._during)
            return self._by_json(args) if value is BY_JSON else value
        return under_lock(self._worker.lock, self._call, args)

    def _call(self, args: tuple) -> Any:
        """A call through the arena or JSON, under the worker's lock: one request at a time
        uses the worker's arena."""
        frames, ffi, worker = self._frames, self._ffi, self._worker
        arena = worker.arena
        if frames.strings and arena is not None:
            arena.begin()
        seq = worker.next_seq()
        data = frames.pack_call(seq, self._handle, args, ffi, arena)
        if data is None:              # a value no binary frame carries: by JSON
            return self._by_json(args)
        reply = worker.exchange(data, self._during)
        try:
            if type(reply) is bytes:
                return frames.read_reply(reply, seq, ffi, arena)
            return decode_result(self._marshal.result, read_reply(reply, seq, worker.path),
                                 ffi, arena)
        except ProtocolViolation as exc:
            raise worker._violated(exc, self._during) from None

    def _by_json(self, args: tuple) -> Any:
        """The call as a JSON request (an integer beyond 64 bits: cffi in the worker judges it)."""
        arena = self._worker.arena
        if arena is not None:
            arena.begin()
        wire = [encode_argument(kind, arg, self._ffi, arena)
                for kind, arg in zip(self._marshal.params, args)]
        value = self._worker.request([CALL, self._handle, wire], self._during)
        try:
            return decode_result(self._marshal.result, value, self._ffi, arena)
        except ProtocolViolation as exc:
            raise self._worker._violated(exc, self._during) from None

    def __repr__(self) -> str:
        return f"<isolated function {self.name}: {self.ctype}, in worker pid {self._worker.pid}>"


class RemoteVariable:
    """A variable of an isolated plugin: `var[0]` reads it, `var[0] = v` writes it.

    Indexing with 0 is what the in-process lookup's pointer (`int *`) offers.
    """

    def __init__(self, worker: WorkerProcess, handle: int, export: Export, marshal: Marshal,
                 ffi: Any) -> None:
        self.name, self.ctype = export.name, export.ctype
        self._worker, self._handle, self._marshal, self._ffi = worker, handle, marshal, ffi

    def _check(self, index: int) -> None:
        if index != 0:
            raise IndexError(f"{self.name} is one {self.ctype}: only [0] is meaningful")

    def __getitem__(self, index: int) -> Any:
        self._check(index)
        value = self._worker.request([GET, self._handle], f"reading {self.name}")
        try:
            return decode_result(self._marshal.result, value, self._ffi)
        except ProtocolViolation as exc:
            raise self._worker._violated(exc, f"reading {self.name}") from None

    def __setitem__(self, index: int, value: Any) -> None:
        self._check(index)
        if self._marshal.result is Value.STRING:
            raise TypeError(f"{self.name} is a string in the worker's memory; an isolated "
                            "plugin's string variables can be read, not assigned")
        wire = encode_argument(self._marshal.result, value, self._ffi)
        self._worker.request([SET, self._handle, wire], f"writing {self.name}")

    def __repr__(self) -> str:
        return f"<isolated variable {self.name}: {self.ctype}, in worker pid {self._worker.pid}>"


class IsolatedPlugin(Plugin):
    """A plugin loaded in a worker process, with the API of an in-process Plugin.

    `lookup` gives the same Symbol, for a typed lookup a RemoteFunction or
    RemoteVariable instead of a cffi pointer, and for a contract a
    remote.RemoteContract with the in-process proxy's API. `timeout`
    (seconds) bounds every call; `worker_pid` is the worker's process id;
    `containment` says what holds the processes its plugin may start
    (a PID namespace, a pids cgroup, or why not: isolation/pids.py).
    `loader` is "isolated"; `trace` is None (the load happened in the worker).
    """

    def __init__(self, image: PluginImage, manifest: Manifest, worker: WorkerProcess) -> None:
        super().__init__(image, manifest, None, loader="isolated")   # no library in this process
        self._worker: Optional[WorkerProcess] = worker
        self.worker_pid = worker.pid
        self.containment = worker.containment   # PID namespace, pids cgroup (pids.py)

    @property
    def timeout(self) -> float:
        return self._worker.timeout if self._worker else 0.0

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        if self._worker:
            self._worker.timeout = _check_timeout(seconds)

    @property
    def closed(self) -> bool:
        return self._worker is None or not self._worker.alive

    def _lookup(self, name: str, wanted: Union[str, Contract, None]) -> Any:
        worker = self._worker
        if worker is None:
            raise PluginClosed(self.path, f"is closed, so {name!r} cannot be looked up; "
                                          "open the plugin again to use it")
        if isinstance(wanted, Contract):
            return bind_remote(self, worker, name, wanted)
        during = f"looking up {name}"
        compared = self._compared(name, wanted) if isinstance(wanted, str) else None
        request = [LOOKUP, name, wanted]
        if compared is not None:
            request.append([compared[0], compared[1].to_wire()])
        reply = worker.request(request, during)
        export = self.manifest.exports.get(name)
        if type(reply) is not int or reply < 0 or export is None:   # an address or a handle
            raise worker._violated(ProtocolViolation(
                f"the lookup reply {str(reply)[:80]!r} is not a number for an export "
                "the manifest lists"), during)
        if wanted is None:
            return Symbol(name, export.ctype, export.kind, reply)
        marshal = compared[1] if compared is not None else \
            marshal_for(self._cffi(), self.path, export, self.manifest.types)
        cls = RemoteFunction if marshal.kind == "function" else RemoteVariable
        return cls(worker, reply, export, marshal, host_ffi)

    def _compared(self, name: str, wanted: str) -> Optional[Tuple[str, Marshal]]:
        """The pointer type and the marshal of export `name`, if `wanted` is its type and
        its values can cross; None otherwise, if the manifest declares types of its own,
        or if the type is longer than cffi's backend reads (ctype.PLAIN_TYPE_TEXT).

        With them the worker skips reading C text (worker.lookup_compared:
        pycparser is its largest import). Whenever this says None, the worker
        gets the lookup as before and answers it in full, with the same
        checks in the same order, so every refusal (not exported, not
        defined, another type, a type that cannot cross) is its, as it was.
        """
        export = self.manifest.exports.get(name)
        if export is None or self.manifest.types or len(export.ctype) > ctype.PLAIN_TYPE_TEXT:
            return None
        try:
            if ctype.canonical(wanted) != export.ctype:
                return None
            return (ctype.pointer_to(export.ctype),
                    marshal_for(self._cffi(), self.path, export, self.manifest.types))
        except (ctype.CTypeError, PluginError):
            return None

    def close(self) -> None:
        """Unload the plugin and end its worker process. Closing twice is fine; an
        interrupted close is finished by the next (the worker is forgotten once stopped)."""
        worker = self._worker
        if worker is not None:
            finish(worker.close)
            self._worker = None
            log.info("close %s (worker pid %d)", printable(self.path), worker.pid)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"worker pid {self.worker_pid}"
        return printable(f"<Plugin {self.name} {self.version} from {self.path} "
                         f"(isolated, {state})>")


def _limits_for(sandbox: Union[bool, SandboxPolicy]) -> Limits:
    if sandbox is True:
        return SandboxPolicy()
    if sandbox is False or sandbox is None:
        return WORKER_LIMITS
    if isinstance(sandbox, SandboxPolicy):
        return sandbox
    raise TypeError(f"sandbox= takes True, False or a minildr.SandboxPolicy, not {sandbox!r}")


def _check_env(env: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """The worker's whole environment: what the host passes, nothing inherited."""
    if env is None:
        return {}
    if not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
               for k, v in env.items()):
        raise ValueError("env= takes a mapping of variable names to string values (names "
                         "without '=', no NUL characters)")
    return dict(env)


def _check_timeout(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"isolate= takes True or a timeout in seconds (> 0), not {seconds!r}")
    return float(seconds)


def open_isolated(image: PluginImage, manifest: Manifest, contracts: Iterable[Contract],
                  isolate: Union[bool, float], env: Optional[Mapping[str, str]] = None,
                  sandbox: Union[bool, SandboxPolicy] = False,
                  bundled: Optional[Dict[str, PluginImage]] = None) -> IsolatedPlugin:
    """Start a worker for a checked image and have it load exactly those bytes.

    The worker starts with `env` as its whole environment (none by default),
    in a fresh folder of its own, with WORKER_LIMITS; `sandbox` (True or a
    SandboxPolicy) confines it further before the plugin is mapped (sandbox.py).
    `bundled`: the libraries that ship with the plugin, checked by the host
    (linkage.bundled_copies); the worker loads them from these copies.
    """
    timeout = DEFAULT_TIMEOUT if isolate is True or not isolate else _check_timeout(isolate)
    if sys.platform == "win32":                   # pragma: no cover - Windows only
        raise NotImplementedError("isolate=True needs a POSIX system (Linux, macOS): the "
                                  "worker is given its socket and the plugin by descriptor")
    limits = _limits_for(sandbox)
    if isinstance(limits, SandboxPolicy):
        require_sandbox(image.path, limits)       # SandboxUnavailable: says what is missing
    worker: Optional[WorkerProcess] = None
    try:                          # (an interrupt at any line must not lose the worker)
        worker = WorkerProcess(image, timeout, _check_env(env), limits, bundled)
        worker.start(image, list(contracts))
        return IsolatedPlugin(image, manifest, worker)
    except BaseException:
        if worker is not None:
            finish(worker.close)
        raise
