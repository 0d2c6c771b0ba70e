"""Step 5, init and fini: the library's own start-up and shut-down code.

C constructors (`__attribute__((constructor))`), C++ static initialisers
and the C runtime's frame setup are listed in DT_INIT_ARRAY (and, in older
files, DT_INIT). They run once the library is relocated and its RELRO part
is read-only: this is the first moment any of its code runs (apart from
IFUNC resolvers, step 4). On close, DT_FINI_ARRAY runs in reverse, then DT_FINI,
before anything is unmapped; the C runtime's entry in it calls
`__cxa_finalize`, which runs the handlers the library gave `atexit`.

glibc calls initialisers with (argc, argv, envp); so does this loader, with
the program's arguments and environment laid out as the initial process
stack, as glibc's are (initstack.py: Go's runtime reads past them).
"""
from __future__ import annotations

import struct
from typing import List, Tuple

from .initstack import initial_stack
from .libc import BYTES, INITIALISER, ffi
from .parse import Plan
from .validate import check_code
from .trace import Trace


def functions(plan: Plan, base: int, entries: List[Tuple[str, int]]) -> List[Tuple[str, int]]:
    """Read the relocated arrays; check every function is code of this library."""
    memory = ffi.buffer(ffi.cast(BYTES, base), plan.span)
    result = []
    for tag, where in entries:
        address = where + base if tag in ("DT_INIT", "DT_FINI") else struct.unpack_from(
            "<Q", memory, where)[0]
        if address in (0, 2**64 - 1):          # empty slots, which some linkers leave
            continue
        check_code(plan.elf, plan.loads, address - base, f"an initialiser or finaliser ({tag})")
        result.append((tag, address))
    return result


def run(plan: Plan, base: int, calls: List[Tuple[str, int]], step: str, trace: Trace,
        started: List[int]) -> None:
    """Call each function of `calls` in order, each taken off the list in the statement
    that calls it: interrupted (its trace event may raise too), `calls` holds exactly
    those not called yet, so running this again finishes the job and calls none twice.
    `started` gets each one's address just before its call (after its trace event):
    an interrupted load knows whether any of them ran."""
    if not calls:
        return
    stack = initial_stack()       # (finalisers take no arguments; glibc's get none either)
    while calls:
        tag, address = calls[0]
        trace.event(step, f"{tag} function at base+{address - base:#x}", tag=tag,
                    offset=address - base)
        started.append(address)
        ffi.cast(INITIALISER, calls.pop(0)[1])(stack.argc, stack.argv, stack.envp)
