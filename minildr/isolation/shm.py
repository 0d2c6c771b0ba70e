"""Large strings cross between host and worker through shared memory, not the socket.

A `const char *` argument or result of SHM_MIN bytes or more does not travel
in the JSON frame (about 130 MB/s, escaped) but through an *arena*: one
memfd per worker, made by the host at start and mapped by both processes.
The frame carries only `{"shm": [offset, length]}`:

    host: call(big)   copies big into the arena at 0 (and a NUL after it)
    worker            hands the plugin a pointer into its own mapping: no copy
    worker: result    strlen, one copy into the arena after the arguments
    host              checks offset and length against the arena, copies once

Requests to one worker are serialized (process.WorkerProcess's lock), so one
arena per worker is enough: the arguments of the request in flight start at
offset 0. The host grows the arena for arguments; the worker may grow it for
a result (ftruncate: within its file size limit, else the result goes by
JSON). What the worker says is checked: an offset or length outside the
arena is a ProtocolViolation, and the host copies the bytes out before it
uses them, so a worker changing them afterwards changes nothing.
Linux only (os.memfd_create); elsewhere every string goes by JSON.
"""
from __future__ import annotations

import mmap
import os
from typing import Any, Optional, Tuple

from .protocol import ProtocolViolation

SHM_MIN = 16 << 10             # strings this long or longer go through the arena
MAX_ARENA = 1 << 32            # a worker may not make the host map more than 4 GiB
ALIGN = 64


def available() -> bool:
    return hasattr(os, "memfd_create")


def _round_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class Arena:
    """One side's mapping of the shared memfd; remapped when the other side grew it."""

    def __init__(self, fd: int = -1) -> None:
        self.fd = fd
        self.map: Optional[mmap.mmap] = None
        self.size = 0
        self.used = 0                      # bytes of the request in flight

    @classmethod
    def create(cls) -> "Arena":
        arena = cls()
        arena.make()
        return arena

    def make(self) -> None:
        """The host's side: make the memfd, held by this arena from the statement that
        makes it (an interrupt cannot lose it between; close() closes it)."""
        self.fd = os.memfd_create("minildr-arena", os.MFD_CLOEXEC)

    def begin(self) -> None:
        """A new request: its regions start at 0 again."""
        self.used = 0

    def refresh(self) -> None:
        """Map the whole memfd, if the other side grew it since."""
        size = os.fstat(self.fd).st_size
        if size > MAX_ARENA:
            raise ProtocolViolation(f"the arena was grown to {size} bytes")
        if size != self.size:
            if self.map is not None:
                try:
                    self.map.close()
                except BufferError:        # a pointer into it is alive: unmapped when it goes
                    pass
            self.map = mmap.mmap(self.fd, size) if size else None
            self.size = size

    def reserve(self, length: int) -> int:
        """Room for `length` bytes and a NUL after those in use; its offset. Grows the memfd."""
        offset = self.used
        end = offset + length + 1
        if end > self.size:
            self.refresh()
        if end > self.size:
            os.ftruncate(self.fd, max(_round_up(end), 2 * self.size))   # OSError if over a limit
            self.refresh()
        self.used = _round_up(end)
        return offset

    def put(self, data: bytes) -> Tuple[int, int]:
        """Copy `data` (and a NUL) into the arena: (offset, length) for the frame."""
        offset = self.reserve(len(data))
        assert self.map is not None
        self.map[offset:offset + len(data)] = data
        self.map[offset + len(data)] = 0
        return offset, len(data)

    def region(self, wire: Any) -> Tuple[int, int]:
        """The (offset, length) of a {"shm": [offset, length]} value, checked against the arena."""
        if not (isinstance(wire, dict) and set(wire) == {"shm"} and isinstance(wire["shm"], list)
                and len(wire["shm"]) == 2 and all(type(v) is int for v in wire["shm"])):
            raise ProtocolViolation(f"{str(wire)[:80]!r} is not an arena region")
        return self.check(*wire["shm"])

    def check(self, offset: int, length: int) -> Tuple[int, int]:
        """(offset, length), if that region lies inside the arena; else ProtocolViolation."""
        if offset < 0 or length < 0 or offset + length + 1 > self.size:
            self.refresh()
            if offset < 0 or length < 0 or offset + length + 1 > self.size:
                raise ProtocolViolation(f"the arena region {offset}+{length} lies outside "
                                        f"the {self.size}-byte arena")
        self.used = max(self.used, _round_up(offset + length + 1))
        return offset, length

    def copy_out(self, wire: Any) -> bytes:
        """The bytes of a region, copied (so later changes by the other side do not count)."""
        offset, length = self.region(wire)
        assert self.map is not None
        return self.map[offset:offset + length]

    def close(self) -> None:
        """Unmap and close; each forgotten in the statement that frees it (run again after
        an interrupt, it finishes what is left and frees nothing twice)."""
        if self.map is not None:
            try:
                self.map = self.map.close()        # None: unmapped and forgotten at once
            except BufferError:            # a pointer into it is still alive: leave it mapped
                self.map = None
        if self.fd >= 0:
            self.fd = os.close(self.fd) or -1      # closed and forgotten at once
