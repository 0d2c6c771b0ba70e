"""Printing that survives a narrow output encoding, and paths shown short.

On Windows, Python writes to a pipe or a file (Git Bash, a CI log, a program
that captures the output) in the ANSI code page, cp1252 in western Europe and
the Americas, unless UTF-8 mode is on. A character outside that code page (the
progress table's ✅, an emoji in a letter the editor shows, a file name in
another script) then raises UnicodeEncodeError halfway through the output, and
the command dies having printed half its answer. The command-line entry points
call `tolerant_output` first, so such a character comes out escaped (\\u2705),
as Python already does on stderr.
"""
from __future__ import annotations

import codecs
import os
import sys
from typing import Any, TextIO


_NEVER_FAIL = {"backslashreplace", "replace", "ignore", "xmlcharrefreplace", "namereplace"}


def tolerant_output(*streams: TextIO) -> None:
    """Escape what the streams' encoding cannot write instead of failing (default: stdout).

    A UTF-8 stream is left as it is: it can write every character, and its
    error handler may be surrogateescape on purpose (file names' raw bytes).
    """
    for stream in streams or (sys.stdout,):
        reconfigure = getattr(stream, "reconfigure", None)   # Jupyter's streams have none
        if reconfigure is None or getattr(stream, "errors", None) in _NEVER_FAIL:
            continue
        if codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name.startswith("utf"):
            continue
        reconfigure(errors="backslashreplace")


def shown_path(path: "os.PathLike[str] | str", start: str = os.curdir,
               pathmod: Any = os.path) -> str:
    """`path` relative to `start` for a message, or whole when it has no relative form.

    On Windows a path on another drive has none (relpath raises ValueError):
    GitHub's Windows runners check the course out on D: and keep temporary
    files on C:.
    """
    try:
        return pathmod.relpath(os.fspath(path), start)
    except ValueError:
        return os.fspath(path)


def printable(text: str, keep: str = "") -> str:
    """`text` with every character that is not printable escaped (\\x1b, \\r, \\u202e...).

    A plugin controls its name, version, exports and what its worker writes to
    stderr. Printed as they are, an ANSI escape could recolour or clear a
    terminal, a carriage return overwrite a line of a log, a right-to-left
    override reverse what a reader sees. So every message, log line and table
    minildr makes from such text goes through here. `keep` lists characters
    left as they are (error messages keep their line breaks).
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def human(seconds: float) -> str:
    """A duration as people read it: '1.2 ms', '240 ns'."""
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def times(ratio: float) -> str:
    """A ratio as people read it: '3.5x', '5,867x'."""
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.2g}x"
