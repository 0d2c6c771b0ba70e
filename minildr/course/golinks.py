"""Go's own up-to-date check, offered a link made earlier: the tests' shared Go outputs.

`go build -o FILE` links every time FILE is missing, and a link costs far more
than the rest of a build whose packages Go's build cache already holds (a Go
host or plugin: ~0.5-1 CPU s to link, ~0.1 s when nothing is left to do). When
FILE exists, Go reads the build ID its linker wrote into it: if the action ID
there is the one Go computes for this build (a hash of every input: the
sources of every package, the toolchain, the flags, the C compiler and the
cgo environment), FILE is up to date and Go does not link again
(cmd/go/internal/work/buildid.go, useCache; what `go install` relies on).

`LinkCache` keeps a copy of each successful output in a folder, and before a
build whose output is missing puts that copy where the output goes. Go then
decides, as for any file already there: the same build is not linked again,
anything else (other sources, flags, toolchain) is linked and replaces the
copy. Nothing here judges whether a copy is current; Go does. A copy is
stored under the SHA-256 of its bytes and checked before use, so a damaged
file is never offered; every write is a new file renamed into place, so
processes building at once (pytest-xdist's workers) never see half a file.

Only the tests use it (`MINILDR_GO_LINK_CACHE`, set by tests/conftest.py):
a learner's `Workspace` links what the lesson says it builds. With
`-trimpath` a Go build is the same bytes in any folder, so a test's tmp_path
workspace, the notebooks' and the solutions' share their links.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from .. import files
from ..errors import PluginError

ENV = "MINILDR_GO_LINK_CACHE"
# Go's own rule for its build cache (cmd/go/internal/cache/cache.go: trimInterval,
# trimLimit): once a day at most, remove what was not used for 5 days.
TRIM_EVERY_S = 24 * 3600
TRIM_UNUSED_S = 5 * 24 * 3600


def from_environment() -> Optional["LinkCache"]:
    """The cache MINILDR_GO_LINK_CACHE names, or None (the default: link every build)."""
    folder = os.environ.get(ENV)
    return LinkCache(Path(folder)) if folder else None


def build_key(*parts: object) -> str:
    """Which earlier output to offer Go: a hash of what names this build.

    Only a hint: a wrong guess costs one link, never a wrong file, since Go
    compares the file's build ID with the build's own action ID.
    """
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def folder_digest(folder: Path) -> str:
    """A digest of the files directly in `folder` (a Go package's sources), or "" if none.

    Part of the hint: two builds of one output name from different sources
    (a learner's answers, one after another) each find their own link.
    """
    h = hashlib.sha256()
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        return ""
    for name in names:
        try:
            data, _ = files.read_regular(folder / name, files.MAX_SOURCE_BYTES)
        except PluginError:
            data = b"?"                                # not a source Go reads: Go decides anyway
        h.update(name.encode("utf-8", "surrogateescape") + b"\0%d\0" % len(data) + data)
    return h.hexdigest()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """`data` as a new file at `path`: written beside it under a name of its own, renamed over it."""
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.chmod(staged, mode)
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)


class LinkCache:
    """A folder of Go outputs, one per build key, each named `<key>.<sha256 of its bytes>`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _entries(self, key: str) -> Sequence[Path]:
        return sorted(self.folder.glob(f"{key}.*[0-9a-f]"))

    def offer(self, key: str, target: Path) -> bool:
        """Put the kept output for `key` at `target` if `target` is missing; True if it did.

        An existing target is left alone: Go checks it as it would anyway.
        A kept file whose bytes no longer match its name is removed, not offered.
        """
        if target.exists():
            return False
        for entry in self._entries(key):
            try:
                data, _ = files.read_regular(entry, files.MAX_PLUGIN_BYTES)
                mode = os.stat(entry).st_mode & 0o777
            except (PluginError, OSError):
                continue                                 # removed meanwhile, or not a file
            if hashlib.sha256(data).hexdigest() != entry.name.rpartition(".")[2]:
                entry.unlink(missing_ok=True)
                continue
            try:
                _write_new(target, data, mode)
                os.utime(entry)                          # used: kept by trim() for 5 more days
            except OSError:                              # a full disk: Go links as usual
                return False
            return True
        return False

    def trim(self, now: Optional[float] = None) -> None:
        """Remove the links not used for TRIM_UNUSED_S, at most once per TRIM_EVERY_S."""
        now = time.time() if now is None else now
        marker = self.folder / "trim.txt"
        try:
            if now - marker.stat().st_mtime < TRIM_EVERY_S:
                return
        except OSError:
            pass                                         # never trimmed
        for entry in self.folder.iterdir():
            try:
                if entry.is_file() and entry != marker and \
                        now - entry.stat().st_mtime > TRIM_UNUSED_S:
                    entry.unlink()
            except OSError:
                continue                                 # removed meanwhile
        marker.write_text(f"{int(now)}\n")
        os.utime(marker, (now, now))

    def keep(self, key: str, output: Path) -> None:
        """Keep a copy of a successful build's `output` under `key` (replacing older ones).

        Best effort: a copy that cannot be kept (a full disk, a file too large)
        costs the next build a link, never this build its result.
        """
        try:
            data, _ = files.read_regular(output, files.MAX_PLUGIN_BYTES)
            entry = self.folder / f"{key}.{hashlib.sha256(data).hexdigest()}"
            if not entry.exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                _write_new(entry, data, os.stat(output).st_mode & 0o777)
            for older in self._entries(key):
                if older != entry:
                    older.unlink(missing_ok=True)
            self.trim()
        except (PluginError, OSError):
            pass
