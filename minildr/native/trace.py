"""Beside every step, the trace: what the load did, as data a notebook can print or plot.

Every step reports to a `Trace`, in the order a load runs: each DT_NEEDED
library brought in and each symbol resolved (step 2), the span reserved
with its base and each segment mapped (step 3), each relocation applied
with its type, symbol and the word it replaced, and RELRO (step 4), each
initialiser run (step 5); on close, each finaliser and the unmap.
`Trace.events` keeps them in order; a callback given to `load(trace=...)`
sees each one as it happens. Relocations and symbols are many (21,000 and
3,205 in libcrypto), so unless the trace is asked for in detail
(`load(path, trace=True)`, or a callback) they are summarised: one event per
relocation type, and one per place symbols were found, each with its `count`. The mapped layout is a list
of `Segment` rows (offsets from the load base, protections), ready for a
bar chart of the address space.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, List, NamedTuple, Optional


class Event(NamedTuple):
    """One thing a load or a close did. (A row, not a class with behaviour: a load records
    a few dozen, made in one call each.)"""
    step: str           # "needed", "resolve", "reserve", "map", "tls", "relocate", "relro",
    #                     "unwind", "init", "fini", "unmap", "tls": in the order a load and a
    #                     close run them
    message: str
    data: Dict[str, Any]

    def __str__(self) -> str:
        return f"{self.step:<9} {self.message}"


class Segment(NamedTuple):
    kind: str           # "file" (mapped from the file), "bss" (zero pages) or "gap" (PROT_NONE)
    start: int          # offset from the load base, page-aligned
    end: int
    prot: str           # "r-x", "rw-", "r--", "---"
    address: int        # base + start, where it really is

    def as_dict(self) -> Dict[str, Any]:
        return self._asdict()                   # its fields, in order


def prot_text(prot: int) -> str:
    return PROT_TEXT[prot & 7]


PROT_TEXT = ["".join(c if prot & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))
             for prot in range(8)]                     # "r-x" for PROT_READ | PROT_EXEC


class Trace:
    """The events of one load. `detailed`: one event per relocation, not a count per type."""

    def __init__(self, callback: "Optional[Callable[[Event], None]] | bool" = None) -> None:
        self.events: List[Event] = []
        self.detailed = bool(callback)
        self.callback = callback if callable(callback) else None

    def event(self, step: str, message: str, **data: Any) -> None:
        e = Event(step, message, data)
        self.events.append(e)
        if self.callback is not None:
            self.callback(e)

    def segment(self, kind: str, base: int, start: int, end: int, prot: int, ph: Any) -> Segment:
        row = Segment(kind, start, end, prot_text(prot), base + start)
        self.event("map", f"{kind:<4} {row.prot} base+{start:#07x}..{end:#07x} "
                          f"(file offset {ph.p_offset:#x}, {ph.p_filesz} of {ph.p_memsz} bytes)",
                   **row.as_dict())
        return row

    def counts(self, step: str = "relocate") -> Counter:
        """How many events of a step, by type: relocations applied per relocation type."""
        counts: Counter = Counter()
        for e in self.events:
            if e.step == step:
                counts[e.data.get("type", "")] += e.data.get("count", 1)
        return counts


def with_gaps(layout: List[Segment], base: int, span: int) -> List[Segment]:
    """The layout with the reserved, inaccessible (PROT_NONE) holes between segments."""
    rows, at = [], 0
    for row in sorted(layout, key=lambda r: r.start):
        if row.start > at:
            rows.append(Segment("gap", at, row.start, "---", base + at))
        rows.append(row)
        at = max(at, row.end)
    if span > at:
        rows.append(Segment("gap", at, span, "---", base + at))
    return rows
