"""Where a course notebook, or one of its cells, can run: the platform notes in its metadata.

Some of the course shows what only Linux has (ELF files, /proc, the native
loader) or what only POSIX systems have (isolate=True). Such a notebook, or
cell, says so in its metadata, with the reason:

    notebook  "minildr": {"linux_only": "<why>"}  or  {"posix_only": "<why>"}
    cell      "tags": ["linux-only"] (or "posix-only"), "minildr": {"why": "<why>"}

`make check` (selfcheck) leaves out what cannot run on this machine and says
why; `make test` applies the same rule to nbval (tests/platforms.py).
"""
from __future__ import annotations

from typing import Mapping

from ..host import HOST

LINUX_ONLY = "linux-only"
POSIX_ONLY = "posix-only"


def notebook_skip_reason(notebook_meta: Mapping, os_name: str = HOST.os) -> str:
    """Why the whole notebook cannot run on `os_name` ('' if it can)."""
    ours = notebook_meta.get("minildr", {})
    if os_name != "linux" and ours.get("linux_only"):
        return f"notebook is Linux only: {ours['linux_only']}"
    if os_name == "windows" and ours.get("posix_only"):
        return f"notebook is POSIX only: {ours['posix_only']}"
    return ""


def cell_skip_reason(cell_meta: Mapping, os_name: str = HOST.os) -> str:
    """Why this cell cannot run on `os_name` ('' if it can)."""
    tags = cell_meta.get("tags", [])
    why = cell_meta.get("minildr", {}).get("why", "see the cell")
    if os_name != "linux" and LINUX_ONLY in tags:
        return f"{LINUX_ONLY} cell: {why}"
    if os_name == "windows" and POSIX_ONLY in tags:
        return f"{POSIX_ONLY} cell: {why}"
    return ""
