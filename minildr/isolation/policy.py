"""What a worker process may use: the limits every isolated worker gets, a sandbox's grants.

Two plain values, shared by the host (which checks them and sends them) and
the worker (which applies them to itself before the plugin's bytes are
mapped):

    Limits          resource limits (setrlimit) every isolated worker gets by
                    default: a runaway plugin runs out of address space or
                    threads in its own process, not the machine's
    SandboxPolicy   Limits, tighter by default, plus the only folders a
                    sandboxed plugin may read or write (sandbox.py enforces it)

`open(path, sandbox=SandboxPolicy(read=[folder], memory=1 << 30))` grants one
folder and a 1 GiB address space; `sandbox=True` is `SandboxPolicy()`.
"""
from __future__ import annotations

import enum
import os
import resource
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

GiB = 1 << 30
MiB = 1 << 20


class Limit(enum.Enum):
    """Each limit: its rlimit, and what it bounds in words (for errors and the report)."""
    MEMORY = (resource.RLIMIT_AS, "address space (bytes)")
    CPU_SECONDS = (resource.RLIMIT_CPU, "CPU time (seconds)")
    FILE_SIZE = (resource.RLIMIT_FSIZE, "size of a file it writes (bytes)")
    OPEN_FILES = (resource.RLIMIT_NOFILE, "open descriptors")
    PROCESSES = (resource.RLIMIT_NPROC, "processes and threads beyond those its user runs")

    @property
    def rlimit(self) -> int:
        return self.value[0]

    @property
    def words(self) -> str:
        return self.value[1]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker; None leaves that limit as the host has it.

    The defaults bound what a bug can take (a leak, a runaway thread loop)
    without getting in the way of a plugin that works: 4 GiB of address
    space (the worker's Python takes about 0.1 GiB of it), 256 threads.
    `processes` is RLIMIT_NPROC (which the kernel does not apply to root,
    and which counts all of the user's processes) and, where the worker can
    make one, the pids.max of its own pids cgroup (pids.py), which binds
    root too and counts the worker's tasks only.
    """
    memory: Optional[int] = 4 * GiB
    cpu_seconds: Optional[int] = None
    file_size: Optional[int] = None
    open_files: Optional[int] = None
    processes: Optional[int] = 256

    def __post_init__(self) -> None:
        for f in fields(Limits):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise ValueError(f"{type(self).__name__}({f.name}=...) takes a whole number "
                                 f">= 0 or None, not {value!r}")

    def limits(self) -> Dict[Limit, int]:
        """The limits that are set, by Limit."""
        values = {limit: getattr(self, limit.name.lower()) for limit in Limit}
        return {limit: value for limit, value in values.items() if value is not None}


@dataclass(frozen=True)
class SandboxPolicy(Limits):
    """What a sandboxed plugin may do: read (or write) only these folders, within limits.

    read: folders (or files) the plugin may read, beneath them too; write:
    folders it may also create, change and delete files in. Everything else
    on the file system is refused, except what loading needs, read-only:
    the system's library folders, the loader's cache, and the worker's own
    Python (its standard library and minildr).
    The limits are tighter than a plain isolated worker's: 2 GiB of address
    space, 10 minutes of CPU time over the worker's life, files it writes
    up to 64 MiB, 256 descriptors, 64 threads.
    """
    read: Tuple[str, ...] = field(default=())
    write: Tuple[str, ...] = field(default=())
    memory: Optional[int] = 2 * GiB
    cpu_seconds: Optional[int] = 600
    file_size: Optional[int] = 64 * MiB
    open_files: Optional[int] = 256
    processes: Optional[int] = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("read", "write"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                value = (value,)
            folders = tuple(os.path.abspath(os.fspath(p)) for p in value)
            for folder in folders:
                if not os.path.exists(folder):
                    raise ValueError(f"SandboxPolicy({name}=...): {folder} does not exist; "
                                     "grant a folder or file that does")
            object.__setattr__(self, name, folders)


WORKER_LIMITS = Limits()


def to_wire(limits: Limits) -> Dict[str, Any]:
    """The limits (and grants) as JSON for the worker; 'sandbox' says whether to confine."""
    wire: Dict[str, Any] = {f.name: getattr(limits, f.name) for f in fields(Limits)}
    wire["sandbox"] = isinstance(limits, SandboxPolicy)
    if isinstance(limits, SandboxPolicy):
        wire["read"], wire["write"] = list(limits.read), list(limits.write)
    return wire


def from_wire(wire: Dict[str, Any]) -> Limits:
    """What to_wire sent, as the worker applies it."""
    values = {f.name: wire[f.name] for f in fields(Limits)}
    if wire.get("sandbox"):
        return SandboxPolicy(read=tuple(wire["read"]), write=tuple(wire["write"]), **values)
    return Limits(**values)
