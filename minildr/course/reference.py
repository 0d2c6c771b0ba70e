"""What some exercise checks compare a learner's answer with, kept out of the notebooks.

A check cell is shown to the learner, in full, right under the task. A check
that computed its reference in the cell would print the answer's code next
to the question; so the few references that are themselves an answer live
here. Each is written as plainly as the task asks for, and tested on its own
(tests/course/test_exercises_reference.py).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

MAPS = Path("/proc/self/maps")
# "  4242:	binding file ./x.so [0] to /lib/libc.so.6 [0]: normal symbol `puts' [GLIBC_2.2.5]"
_BINDING = re.compile(r"binding file (?P<file>\S+) \[\d+\] to (?P<to>\S+) \[\d+\]: "
                      r"\w+ symbol `(?P<symbol>[^']+)'(?: \[(?P<version>[^\]]+)\])?")


def mapping_at(address: int) -> Optional[Tuple[str, str]]:
    """(permissions, name) of this process's mapping that holds `address`; None if none."""
    for line in MAPS.read_text().splitlines():
        span, permissions, *rest = line.split(None, 5)
        low, high = (int(part, 16) for part in span.split("-"))
        if low <= address < high:
            return permissions, rest[3].strip() if len(rest) > 3 else ""
    return None


def ld_debug_bindings(stderr: str, library: str) -> Dict[str, Optional[str]]:
    """From LD_DEBUG=bindings output: {symbol: version} for the bindings `library` made.

    `library` is the file's name (the end of the path the loader prints);
    a binding of the library to itself (a lookup of its own export) is left out.
    """
    found: Dict[str, Optional[str]] = {}
    for match in _BINDING.finditer(stderr):
        if Path(match["file"]).name == library and Path(match["to"]).name != library:
            found[match["symbol"]] = match["version"]
    return found


def native_bindings(trace: Any) -> Dict[str, Optional[str]]:
    """From a native load's trace: {symbol: version} for each name found in another library.

    Weak names that resolved nowhere (their `source` says so) are left out:
    the system loader makes no binding for them either.
    """
    return {e.data["symbol"]: e.data["version"] for e in trace.events
            if e.step == "resolve" and not e.data["source"].startswith("nowhere")}
