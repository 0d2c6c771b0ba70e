"""The load path: the bytes checked are the bytes loaded.

`read` reads a plugin file once into memory. Every check `open` makes (is it a
shared library, its manifest, versions, contract hashes, its SHA-256) runs
on those bytes. Then `PluginImage.acquire` gives the loader a path to *those
same bytes*, never to the file on disk:

- Linux: a memfd (an anonymous file in memory) holding the bytes, sealed so
  nobody can change it any more, loaded through /proc/self/fd/N.
- elsewhere: a private copy in a directory only this process can write to.

So swapping the file between the check and the load changes nothing, and
because each image is a new file for the system loader, a rebuilt plugin
always runs its new code (dlopen would otherwise hand back the old library
it already has for that path).

Reading an unchanged file again reuses its image: the cache trusts a file
whose device, inode, size, mtime and ctime (in nanoseconds) are unchanged,
the way Python's import system trusts a .pyc by its source's size and mtime.
ctime alone changing is not proof of a change: another process renaming a
file over it (a build installing) or a hard link changes it too. Then the
file is read and hashed again, and the same digest keeps the image.

What `minildr.build` returns is a `BuiltPath`: the installed path, marked
as built by this process, which remembers the bytes of its latest build at
each path. If by the time it is opened another process (another kernel, a
classmate's build on a shared folder) has renamed its own file over that
name, `read` gives the bytes this process built there last, not the other
one's: so `open(build(...))` always loads what it built. A file written in
place, or rebuilt by this process, is read as usual; so is any path given
as a plain string.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set, Tuple, TypeVar

from . import files
from .console import printable
from .formats import elf
from .errors import FileChanged, NotAPlugin
from .manifest import (BinaryInfo, Manifest, describe_unknown, examine, is_binary,
                       manifest_from_payload)

log = logging.getLogger("minildr")

# Tests switch this off to exercise the private-copy path on Linux too.
USE_MEMFD = sys.platform.startswith("linux") and hasattr(os, "memfd_create")
CACHE_SIZE = 32

Identity = files.Identity
_identity = files.identity


_same_contents_key = files.contents_key     # device, inode, size, mtime: not the ctime

T = TypeVar("T")


@dataclass(eq=False)
class PluginImage:
    """A plugin file's bytes, read once, with their digest and a sealed copy to load."""

    path: str                 # as the caller named it, for messages
    data: bytes = field(repr=False)
    sha256: str
    identity: Identity
    _fd: Optional[int] = field(default=None, repr=False)
    _copy: Optional[str] = field(default=None, repr=False)
    _holders: Set[object] = field(default_factory=set, repr=False)   # who acquired it
    _cached: bool = True
    _resident: bool = False    # the system loader would not unload it: keep its name unique
    _examined: Optional[Tuple[BinaryInfo, Optional[bytes]]] = field(default=None, repr=False)
    _manifest: Optional[Manifest] = field(default=None, repr=False)
    _facts: Dict[str, Any] = field(default_factory=dict, repr=False)
    _still_loaded: Optional[Callable[[], bool]] = field(default=None, repr=False)

    # -- the checks' view: parsed once per image ----------------------
    def examine(self) -> Tuple[BinaryInfo, Optional[bytes]]:
        if self._examined is None:
            self._examined = examine(self.data, self.path)
        return self._examined

    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = manifest_from_payload(*self.examine(), self.path)
        return self._manifest

    def fact(self, name: str, compute: Callable[[], T]) -> T:
        """What `compute` says of these bytes, computed once per image.

        The loaders ask the same questions of every open (its SONAME, is it
        NODELETE, what it needs, is it Go): the bytes never change, so a
        repeated open of an unchanged file answers from here, and a first
        open parses the file once for all of them (`dynamic_section`).
        Two threads may compute a fact at once; both get the same answer.
        """
        try:
            return self._facts[name]
        except KeyError:
            value = self._facts[name] = compute()
            return value

    def elf_file(self) -> "elf.ElfFile":
        """The image read as ELF, once (PluginError if it is not one, or damaged)."""
        return self.fact("elf", lambda: elf.ElfFile(self.data, self.path))

    def dynamic_section(self) -> "elf.DynamicSection":
        """The ELF image's dynamic section, read once (PluginError if damaged)."""
        return self.fact("dynamic", lambda: elf.DynamicSection(self.elf_file()))

    # -- the loader's view ----------------------------------------------
    @property
    def users(self) -> int:
        """How many loaded libraries (or workers being started) currently use this image."""
        return len(self._holders)

    def acquire(self, holder: object) -> str:
        """A path the system loader can open that holds exactly `data`, for `holder`.

        `holder` (the library or worker that uses it) is what `release` names:
        each holder is counted once, so an undoing interrupted part way and
        run again (interrupts.finish) can call `release` again without
        giving back another holder's use.
        """
        with _lock:
            if self._fd is None and self._copy is None:
                if USE_MEMFD:
                    self._fd = _sealed_memfd(self.data, os.path.basename(self.path))
                else:
                    self._copy = _private_copy(self.data, os.path.basename(self.path))
            self._holders.add(holder)
            return f"/proc/self/fd/{self._fd}" if self._fd is not None else self._copy  # type: ignore[return-value]

    def sealed_fd(self) -> Optional[int]:
        """The sealed memfd holding `data` while acquired (None on the private-copy path).

        Isolation hands this descriptor to the worker process, so the worker
        loads the very bytes the host checked.
        """
        return self._fd

    @property
    def cached(self) -> bool:
        """Whether the cache holds this image (its sealed copy then outlives its users)."""
        return self._cached

    def release(self, holder: object, *, resident: bool = False,
                still_loaded: Optional[Callable[[], bool]] = None) -> None:
        """`holder`'s library from this image was unloaded (or stayed resident).

        `still_loaded`, if given, asks the system loader whether it kept the
        library after all; it is asked only when the sealed copy is about to
        be freed (often never: a cached image keeps its copy), which spares
        a repeated open of an unchanged file that question.
        Releasing twice is harmless: run again after an interrupt, it
        finishes what is left (freeing the copy) and gives back nothing twice.
        """
        with _lock:
            self._resident = self._resident or resident
            if holder in self._holders:
                self._still_loaded = still_loaded if self._holders == {holder} else None
                self._holders.discard(holder)
            if not self._holders and not self._cached:
                self._discard()

    def _discard(self) -> None:
        """Free the sealed copy, unless a library loaded from it is still mapped.

        The system loader recognises libraries by path: while one loaded from
        /proc/self/fd/N is resident, fd N must stay ours, or the next plugin
        given that number would be mistaken for it. Each step forgets what it
        frees in the same statement, so an interrupted discard can be run again.
        """
        if self._resident:
            return
        check, self._still_loaded = self._still_loaded, None
        if check is not None:
            self._resident = True          # if interrupted part way, assume it is
            self._resident = check()
            if self._resident:
                log.info("%s: the system loader keeps it loaded (another handle, or it "
                         "cannot be unloaded); its sealed copy stays", printable(self.path))
                return
        if self._fd is not None:
            self._fd = os.close(self._fd)          # None: closed and forgotten at once
        if self._copy is not None:
            self._copy = _remove_copy(self._copy)


def _sealed_memfd(data: bytes, name: str) -> int:
    import fcntl               # POSIX only, and only here: sealing a Linux memfd
    fd = -1
    try:                       # every line after the memfd is made is inside the try
        fd = os.memfd_create(f"minildr:{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        # No more writes, no growing or shrinking, no removing these seals.
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


_private_dir: Optional[str] = None
_copies = 0


def _remove_copy(path: str) -> None:
    """Delete a private copy; made writable first, as Windows refuses to delete a read-only file.

    A copy the system loader still has mapped cannot be deleted on Windows:
    it stays, and goes with the folder at exit (or the next clean-up of the temp dir).
    """
    try:
        os.chmod(path, 0o600)
        os.unlink(path)
    except OSError:
        pass


def _remove_private_dir(folder: str) -> None:
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        _remove_copy(os.path.join(folder, name))
    shutil.rmtree(folder, ignore_errors=True)


def _private_copy(data: bytes, name: str) -> str:
    """A read-only copy in a directory only this process's user can write to."""
    global _private_dir, _copies
    if _private_dir is None:
        _private_dir = tempfile.mkdtemp(prefix="minildr-")
        os.chmod(_private_dir, 0o700)      # mkdtemp's 0700 is masked by the host's umask
        atexit.register(_remove_private_dir, _private_dir)
    _copies += 1
    path = os.path.join(_private_dir, f"{_copies}-{name}")
    # O_BINARY (Windows only): without it, os.open's descriptor is in text mode
    # and every \n written would become \r\n, corrupting the library.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    os.chmod(path, 0o600)                  # whatever the umask: we must write it
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o500)
    return path


# ---------------------------------------------------------------------------
# Reading, with the identity cache
# ---------------------------------------------------------------------------
_lock = threading.RLock()
_cache: "OrderedDict[str, PluginImage]" = OrderedDict()     # absolute path -> its image
READ_ATTEMPTS = 3           # a file changing under every one of them is refused


# The latest image this process built at each path (absolute), most recent last.
_built_here: "OrderedDict[str, PluginImage]" = OrderedDict()


class BuiltPath(type(Path())):            # PosixPath or WindowsPath, as Path() itself
    """The path `minildr.build` returns: a Path, marked as built by this process.

    `read` of a BuiltPath whose file another process has replaced since
    gives the bytes this process last built there (see the module's docstring).
    """

    def __repr__(self) -> str:                       # as the Path it is
        return f"{type(Path()).__name__}({self.as_posix()!r})"


def built_path(path: "os.PathLike[str] | str", data: bytes,
               written: os.stat_result) -> BuiltPath:
    """The BuiltPath for `data`, just installed at `path` (`written`: its stat before the rename).

    The image is cached too, so an open by the path's name (a string) finds
    it without reading the file again while that file is unchanged.
    """
    image = PluginImage(path=os.fspath(path), data=data,
                        sha256=hashlib.sha256(data).hexdigest(), identity=_identity(written))
    key = os.path.abspath(path)
    with _lock:
        _remember(key, image)
        _built_here[key] = image
        _built_here.move_to_end(key)
        while len(_built_here) > CACHE_SIZE:
            _built_here.popitem(last=False)
    return BuiltPath(path)


def _replaced_by_another_process(path: "os.PathLike[str] | str",
                                 now: Identity) -> Optional[PluginImage]:
    """The bytes this process built at `path`, if `path` is a BuiltPath and they still apply.

    Still our file (device, inode, size, mtime): our bytes, without reading the
    name again (between a stat and a read another process may rename its build
    over ours). Another file in its place: our bytes too. Our inode changed in
    place: None, so that it is read again.
    """
    if not isinstance(path, BuiltPath):
        return None
    with _lock:
        built = _built_here.get(os.path.abspath(path))
    if built is None:
        return None
    if _same_contents_key(built.identity) == _same_contents_key(now):
        return built        # still the file we wrote: no read, so no window for a rename
    if built.identity[:2] == now[:2]:
        return None         # our inode, changed in place since: read it again
    return built            # another file renamed over ours: the bytes built here


def read(path: "os.PathLike[str] | str") -> PluginImage:
    """The image of the file at `path`: from the cache if the file is unchanged.

    Unchanged means the same device, inode, size and mtime; if only the
    ctime differs (a rename or link elsewhere touched the inode), the file is
    hashed again, and the same digest keeps the cached image.
    """
    now = _identity(files.stat_regular(os.fspath(path)))
    built = _replaced_by_another_process(path, now)      # needs the BuiltPath itself
    path = os.fspath(path)
    if built is not None:
        if _same_contents_key(built.identity) != _same_contents_key(now):
            log.info("open %s: another process replaced the file since this one built "
                     "it; loading the bytes built here (sha256 %s)", printable(path),
                     built.sha256)
        return built
    key = os.path.abspath(path)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.identity == now:
            _cache.move_to_end(key)
            return cached
    image = _read_file(path)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached.sha256 == image.sha256 and \
                _same_contents_key(cached.identity) == _same_contents_key(image.identity):
            cached.identity = image.identity          # only the ctime moved: same bytes
            _cache.move_to_end(key)
            return cached
        _remember(key, image)
    return image


def _remember(key: str, image: PluginImage) -> None:
    """Cache `image` as the current version of the file `key` (its absolute path)."""
    if key in _cache and _cache[key] is not image:
        _evict(key)                                     # an older version of this file
    _cache[key] = image
    image._cached = True
    _cache.move_to_end(key)
    while len(_cache) > CACHE_SIZE:
        _evict(next(iter(_cache)))


def _read_file(path: str) -> PluginImage:
    """Read the file whole, bounded and without blocking (files.read_regular); again if
    it changed meanwhile (a writer still at work).

    A change is a new size or mtime of the file read: a rename over its
    name by another process (how minildr.build installs) leaves the file
    being read whole and only moves its ctime, so it is not one.
    """
    last: Optional[FileChanged] = None
    for attempt in range(READ_ATTEMPTS):
        try:
            data, identity = files.read_regular(path, files.MAX_PLUGIN_BYTES,
                                                head=lambda head: _known_format(head, path))
        except FileChanged as exc:
            last = exc
            time.sleep(0.05 * (attempt + 1))
            continue
        return PluginImage(path=path, data=data, sha256=hashlib.sha256(data).hexdigest(),
                           identity=identity)
    raise FileChanged(path, f"{last.reason} (each of the {READ_ATTEMPTS} times it was read)")


def _known_format(head: bytes, path: str) -> None:
    """Refuse, from its first bytes, a file that is no binary format minildr reads.

    A 2 GiB log file named like a plugin is then refused after 4 KiB, not
    after reading it all.
    """
    if len(head) >= 4 and not is_binary(head):
        raise NotAPlugin(path, f"not a shared library: {describe_unknown(head)}")


def _evict(key) -> None:
    image = _cache.pop(key)
    image._cached = False
    if not image._holders:
        image._discard()


def clear_cache() -> None:
    """Forget every cached image (images still in use stay alive until closed)."""
    with _lock:
        for key in list(_cache):
            _evict(key)
