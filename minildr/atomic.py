"""Writing a file whole or not at all, so that a reader never sees half of it.

Two kernels of one learner (a duplicated notebook), or a class on one hub,
may build the same plugin name in the same folder at the same moment. A
file written in place can be read while it is half-written, or truncated
under a compiler that is reading it. `write_atomically` writes a new file
under a unique temporary name in the same folder (so no two writers, in any
process or thread, share it), then renames it over the old name in one
step (os.replace: rename(2), atomic within a file system): a reader opens
either the old file or the new one, complete. The old file's inode lives on
for whoever still has it open or mapped.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import NamedTuple, Optional, Union

from . import files


class Written(NamedTuple):
    """The file `write_atomically` wrote: its stat before the rename, and its inode's
    generation number (None where the file system has none: files.generation)."""

    stat: os.stat_result
    generation: Optional[int]


def write_atomically(path: "os.PathLike[str] | str", data: Union[bytes, str], *,
                     mode: int = 0o644) -> Written:
    """Replace `path` with `data` in one step; returns the file written (`Written`).

    The stat is taken before the rename, on the new file itself: its device,
    inode, size and mtime are those of the file now at `path` (unless another
    writer has replaced it since), whatever the rename does to its ctime. Its
    generation tells it from a later file given the same inode number.
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    # Made inside the try, each held from the statement that makes it: an interrupt
    # at the `try:` line or at the `with` line (before the file object owns the
    # descriptor) left the descriptor open and the staged file behind.
    fd, staged, f = -1, "", None
    try:
        fd, staged = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            written = Written(os.fstat(f.fileno()), files.generation(f.fileno()))
        os.chmod(staged, mode)              # mkstemp makes it 0600
        os.replace(staged, target)
    except BaseException:
        if f is None and fd != -1:          # no file object owns it yet
            os.close(fd)
        try:
            if staged:
                os.unlink(staged)
        except OSError:
            pass
        raise
    return written
