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
the way Python's import system trusts a .pyc by its source's size and mtime,
but only once the file has settled: git's "racy clean" rule (git's
Documentation/technical/racy-git.txt). A file's times come from a clock
coarser than ours (see SETTLED_NS), so a same-size rewrite made within one
of its steps of the file's last change leaves all five as they were. An
image is trusted by its stat alone only if the file's mtime and ctime were
at least SETTLED_NS older than the wall clock taken before its read began
(`PluginImage.trusted`); until then every open reads and hashes the file
again, and the same digest keeps the image (and the read that finds the file
settled marks it trusted from then on). ctime alone changing is not proof of
a change either: another process renaming a file over it (a build
installing) or a hard link changes it too; it is read and hashed again the
same way. Each open gets the cached image under the name it gave
(`PluginImage.named`), so its messages name the file as that call did.

A large file (DIGEST_IN_THREAD) is hashed by a thread of its own while the
open parses it and copies it into its sealed memfd: for 20 MB each takes
tens of milliseconds, and hashlib and os.write release the GIL (`Digest`).

What `minildr.build` returns is a `BuiltPath`: the installed path, marked
as built by this process, which remembers the bytes of its latest build at
each path. If by the time it is opened another process (another kernel, a
classmate's build on a shared folder) has renamed its own file over that
name, `read` gives the bytes this process built there last, not the other
one's: so `open(build(...))` always loads what it built. A file rebuilt by
this process is read as usual; so is any path given as a plain string. The
built file edited in place (a tampering demo) is read again only where that
is provably the same inode object, by its generation number: inode numbers
are reused at once (ext4), so a number alone cannot tell our edited file
from another process's newer build written to a file that got our old
number (`_read_built`).
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from stat import S_ISREG
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Set, Tuple, TypeVar

from . import files
from .atomic import Written
from .console import printable
from .formats import elf
from .formats.survey import Survey, survey
from .errors import FileChanged, NotAPlugin, PluginError
from .interrupts import under_lock
from .logger import LOG
from .manifest import (BinaryInfo, Manifest, describe_unknown, elf_info, examine, examine_elf,
                       is_binary, manifest_from_payload)

log = LOG                   # the "minildr" logger, once a host attached it (logger.py)

# Tests switch this off to exercise the private-copy path on Linux too.
USE_MEMFD = sys.platform.startswith("linux") and hasattr(os, "memfd_create")
CACHE_SIZE = 32

Identity = files.Identity
_identity = files.identity


_same_contents_key = files.contents_key     # device, inode, size, mtime: not the ctime

SETTLED_NS = files.SETTLED_NS     # git's racy-clean rule: files.py says why
_wall_clock_ns = time.time_ns       # (a name of its own: tests move the clock on)

T = TypeVar("T")


@dataclass(eq=False)
class _Sealed:
    """What every open of the same bytes shares: the sealed copy, its users, the parsed facts."""

    fd: Optional[int] = None
    copy: Optional[str] = None
    # The path the loaders open (/proc/self/fd/N, or the copy), and as bytes for dlopen:
    # worked out once per copy, not at every open of it.
    load_path: Optional[str] = None
    load_name: Optional[bytes] = None
    holders: Set[object] = field(default_factory=set)   # who acquired it (acquire)
    cached: bool = True
    resident: bool = False     # the system loader would not unload it: keep its name unique
    still_loaded: Optional[Callable[[], bool]] = None
    examined: Optional[Tuple[BinaryInfo, Optional[bytes]]] = None
    manifest: Optional[Manifest] = None
    facts: Dict[str, Any] = field(default_factory=dict)


class PluginImage:
    """A plugin file's bytes, read once, with their digest and a sealed copy to load.

    `path` is the file as the caller of this open named it, for messages; the
    rest (the bytes, the sealed copy, what was parsed) is shared by every
    image of the same cached file (`named`): a plugin first read by its
    absolute path and then opened by a relative one is named the way each
    call named it.

    `identity` is the file's when it was read; `trusted` is the same identity
    if the file had settled by then (its times SETTLED_NS older than the
    read's start), else None: what a stat alone is compared with (`unchanged`).
    """

    __slots__ = ("path", "data", "_sha256", "identity", "trusted", "_shared")

    def __init__(self, path: str, data: bytes, sha256: "str | Digest", identity: Identity, *,
                 trusted: Optional[Identity] = None,
                 _fd: Optional[int] = None, _cached: bool = True,
                 _shared: Optional[_Sealed] = None) -> None:
        self.path = path
        self.data = data
        self._sha256 = sha256
        self.identity = identity
        self.trusted = trusted
        self._shared = _Sealed(fd=_fd, cached=_cached) if _shared is None else _shared

    @property
    def sha256(self) -> str:
        """The SHA-256 of `data`, in hex (of a large file: waits for its hashing thread)."""
        digest = self._sha256
        if digest.__class__ is not str:
            digest = self._sha256 = digest.result()      # type: ignore[union-attr]
        return digest                                    # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"PluginImage(path={self.path!r}, sha256={self.sha256!r})"

    def named(self, path: str) -> "PluginImage":
        """This image as a caller who named the file `path` sees it (the same shared state)."""
        if path == self.path:
            return self
        return PluginImage(path, self.data, self._sha256, self.identity, _shared=self._shared)

    def same_bytes(self, other: "PluginImage") -> bool:
        """Whether `other` is this image, perhaps under another name (`named`)."""
        return other._shared is self._shared

    # -- the checks' view: parsed once per image ----------------------
    def examine(self) -> Tuple[BinaryInfo, Optional[bytes]]:
        shared = self._shared
        if shared.examined is None:
            found = self.survey()
            shared.examined = ((elf_info(found.e_type, found.e_machine), found.manifest)
                               if found is not None else
                               examine_elf(self.elf_file()) if self.data[:4] == elf.ELFMAG
                               else examine(self.data, self.path))
        return shared.examined

    def survey(self) -> Optional[Survey]:
        """An ELF file's answers to every first-open question, read in one pass
        (formats/survey.py); None for any other file, or one it declines: then
        each question is asked of `elf_file`/`dynamic_section`, which say what is wrong."""
        facts = self._shared.facts
        if "survey" not in facts:
            facts["survey"] = survey(self.data) if self.data[:4] == elf.ELFMAG else None
        return facts["survey"]

    def manifest(self) -> Manifest:
        shared = self._shared
        if shared.manifest is None:
            shared.manifest = manifest_from_payload(*self.examine(), self.path)
        return shared.manifest

    def fact(self, name: str, compute: Callable[[], T]) -> T:
        """What `compute` says of these bytes, computed once per image.

        The loaders ask the same questions of every open (its SONAME, is it
        NODELETE, what it needs, is it Go): the bytes never change, so a
        repeated open of an unchanged file answers from here, and a first
        open parses the file once for all of them (`dynamic_section`).
        Two threads may compute a fact at once; both get the same answer.
        A refusal names the file as this call named it, whoever parsed first.
        """
        facts = self._shared.facts
        try:
            return facts[name]
        except KeyError:
            pass
        try:
            value = facts[name] = compute()
        except PluginError as exc:
            if exc.path is None or exc.path == self.path:
                raise
            raise renamed(exc, self.path) from None
        return value

    def known(self, name: str) -> Any:
        """A fact already computed or recorded for these bytes, else None."""
        return self._shared.facts.get(name)

    def record(self, name: str, value: Any) -> None:
        """Remember `value` as the fact `name` of these bytes (what a step learnt of them)."""
        self._shared.facts[name] = value

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
        return len(self._shared.holders)

    def acquire(self, holder: object) -> str:
        """A path the system loader can open that holds exactly `data`, for `holder`.

        `holder` (the library or worker that uses it) is what `release` names:
        each holder is counted once, so an undoing interrupted part way and
        run again (interrupts.finish) can call `release` again without
        giving back another holder's use.
        """
        shared = self._shared
        # A cached image's sealed copy, made already: no lock. The holder is counted
        # first; an eviction (_evict) marks the image uncached first and looks at its
        # holders after, so one of the two sees the other: either the copy stays for
        # this holder, or this holder sees the image uncached and takes the lock.
        shared.holders.add(holder)
        path = shared.load_path
        if shared.cached and path is not None:
            return path
        return under_lock(_lock, self._acquire, holder)

    def _acquire(self, holder: object) -> str:
        shared = self._shared
        if shared.fd is None and shared.copy is None:
            if USE_MEMFD:
                shared.fd = _sealed_memfd(self.data, os.path.basename(self.path))
            else:
                shared.copy = _private_copy(self.data, os.path.basename(self.path))
        shared.holders.add(holder)
        if shared.load_path is None:      # (the bytes first: the lock-free path reads the str)
            path = f"/proc/self/fd/{shared.fd}" if shared.fd is not None else shared.copy
            shared.load_name = os.fsencode(path)                    # type: ignore[arg-type]
            shared.load_path = path
        return shared.load_path

    @property
    def load_name(self) -> bytes:
        """`acquire`'s path as bytes, as dlopen takes it (made once per sealed copy)."""
        return self._shared.load_name                   # type: ignore[return-value]

    def sealed_fd(self) -> Optional[int]:
        """The sealed memfd holding `data` while acquired (None on the private-copy path).

        Isolation hands this descriptor to the worker process, so the worker
        loads the very bytes the host checked.
        """
        return self._shared.fd

    @property
    def cached(self) -> bool:
        """Whether the cache holds this image (its sealed copy then outlives its users)."""
        return self._shared.cached

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
        shared = self._shared
        if shared.cached and not resident:
            # The copy stays (the cache holds it): no lock. The holder is forgotten
            # first and the image looked at after, the other way round from an
            # eviction (_evict), so one of them frees the copy if it must go.
            if holder in shared.holders:
                shared.still_loaded = still_loaded if len(shared.holders) == 1 else None
                shared.holders.discard(holder)
            if shared.cached:
                return
        under_lock(_lock, self._release, holder, resident, still_loaded)

    def _release(self, holder: object, resident: bool,
                 still_loaded: Optional[Callable[[], bool]]) -> None:
        shared = self._shared
        shared.resident = shared.resident or resident
        if holder in shared.holders:
            shared.still_loaded = still_loaded if shared.holders == {holder} else None
            shared.holders.discard(holder)
        if not shared.holders and not shared.cached:
            self._discard()

    def _discard(self) -> None:
        """Free the sealed copy, unless a library loaded from it is still mapped.

        The system loader recognises libraries by path: while one loaded from
        /proc/self/fd/N is resident, fd N must stay ours, or the next plugin
        given that number would be mistaken for it. Each step forgets what it
        frees in the same statement, so an interrupted discard can be run again.
        """
        shared = self._shared
        if shared.resident:
            return
        check, shared.still_loaded = shared.still_loaded, None
        if check is not None:
            shared.resident = True          # if interrupted part way, assume it is
            shared.resident = check()
            if shared.resident:
                log.info("%s: the system loader keeps it loaded (another handle, or it "
                         "cannot be unloaded); its sealed copy stays", printable(self.path))
                return
        shared.load_path = shared.load_name = None   # (forgotten before what they name goes)
        if shared.fd is not None:
            shared.fd = os.close(shared.fd)          # None: closed and forgotten at once
        if shared.copy is not None:
            shared.copy = _remove_copy(shared.copy)


def renamed(exc: PluginError, path: str) -> PluginError:
    """The same refusal, naming the file as `path` (a cached parse was first made by another name)."""
    error = type(exc).__new__(type(exc))
    error.__dict__.update(exc.__dict__)
    PluginError.__init__(error, path, exc.reason)
    return error


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


class _Built(NamedTuple):
    """What this process built at one path: the image, and the generation of its inode."""

    image: PluginImage
    generation: Optional[int]          # files.generation; None where the file system has none


# What this process built last at each path (absolute), most recent last.
_built_here: "OrderedDict[str, _Built]" = OrderedDict()


class BuiltPath(type(Path())):            # PosixPath or WindowsPath, as Path() itself
    """The path `minildr.build` returns: a Path, marked as built by this process.

    `read` of a BuiltPath whose file another process has replaced since
    gives the bytes this process last built there (see the module's docstring).
    """

    def __repr__(self) -> str:                       # as the Path it is
        return f"{type(Path()).__name__}({self.as_posix()!r})"


def built_path(path: "os.PathLike[str] | str", data: bytes, written: "Written") -> BuiltPath:
    """The BuiltPath for `data`, just installed at `path` (`written`: that file, before the rename).

    The image is cached too, so an open by the path's name (a string) finds
    it without reading the file again while that file is unchanged, once it
    has settled (until then, as any just-written file, it is read and hashed
    again on each open, and the same digest keeps this image).
    """
    image = PluginImage(path=os.fspath(path), data=data,
                        sha256=hashlib.sha256(data).hexdigest(), identity=_identity(written.stat))
    under_lock(_lock, _remember_built, os.path.abspath(path), _Built(image, written.generation))
    return BuiltPath(path)


def _remember_built(key: str, built: _Built) -> None:
    """Cache the image built (or edited in place) at `key` and remember it as ours (under _lock)."""
    _remember(key, built.image)
    _built_here[key] = built
    _built_here.move_to_end(key)
    while len(_built_here) > CACHE_SIZE:
        _built_here.popitem(last=False)


def _read_built(path: "os.PathLike[str] | str", now: Identity) -> Optional[PluginImage]:
    """The bytes this process built at `path` (a BuiltPath), or its file as edited in place.

    Still our file (device, inode, size, mtime) and settled (PluginImage.trusted:
    its times older than SETTLED_NS when last read, so a same-size edit would have
    moved them): our bytes, without reading the name again (between a stat and a
    read another process may rename its build over ours). Written more recently,
    it is read again, pinned to our inode object, until a read finds it settled.
    Another file in its place: our bytes too. The same device and inode number
    with other contents is our file edited in place only if it is
    provably the same inode object: inode numbers are reused (ext4 gives a
    freed one to the next file it creates), so another process's newer build,
    written to a file that got our old number and renamed over the name,
    looks just like it (issue 16: "built 3, called back 2"). The inode's
    generation number tells them apart (files.generation), checked on the
    descriptor that is read: then the edited bytes are read and remembered as
    ours. Where the file system keeps no generation (tmpfs, overlayfs, NFS;
    not Linux) the same inode number is taken for our file edited in place,
    as a learner who tampers with a built plugin expects: tmpfs hands out
    inode numbers from a counter that only grows, so the reuse above cannot
    happen there; on the others the race stays possible, and the log says so.
    None if `path` is no BuiltPath, or this process built nothing there.
    """
    if not isinstance(path, BuiltPath):
        return None
    key = os.path.abspath(path)
    built = under_lock(_lock, _built_here.get, key)
    if built is None:
        return None
    mine = built.image
    if _same_contents_key(mine.identity) == _same_contents_key(now) and mine.trusted:
        return mine         # still the file we wrote, settled: no read, no window for a rename
    path = os.fspath(path)
    if mine.identity[:2] == now[:2]:
        # Our inode, and either changed since or written too recently for its times to
        # show a same-size edit (SETTLED_NS): read it, pinned to our inode object.
        edited = _read_file(path, checked=True,
                            inode=(*mine.identity[:2], built.generation))  # type: ignore[arg-type]
        if edited is not None and edited.sha256 == mine.sha256 and \
                _same_contents_key(edited.identity) == _same_contents_key(mine.identity):
            mine.trusted = edited.trusted       # the bytes we wrote; trusted once settled
            return mine
        if edited is not None:                      # our inode, changed in place since
            if built.generation is None:
                log.info("open %s: the file this process built there was changed in place; "
                         "loading it as it is now (this file system keeps no generation "
                         "numbers, so another process's build that reused its inode number "
                         "would look the same)", printable(path))
            under_lock(_lock, _remember_built, key, _Built(edited, built.generation))
            return edited
    log.info("open %s: another process replaced the file since this one built "
             "it; loading the bytes built here (sha256 %s)", printable(path), mine.sha256)
    return mine


def read(path: "os.PathLike[str] | str") -> PluginImage:
    """The image of the file at `path`: from the cache if the file is unchanged.

    Unchanged means the same device, inode, size, mtime and ctime of a file
    that had settled when it was read (`PluginImage.trusted`). Otherwise
    (only the ctime moved: a rename or link elsewhere touched the inode; or
    the file changed too recently for its times to tell) the file is read
    and hashed again, and the same digest keeps the cached image. A
    BuiltPath gives the bytes this process built there (`_read_built`).
    """
    now = _identity(files.stat_regular(os.fspath(path)))
    built = _read_built(path, now) if isinstance(path, BuiltPath) else None
    path = os.fspath(path)
    if built is not None:
        return built.named(path)
    key = _cache_key(path)
    cached = under_lock(_lock, _cached_unchanged, key, now)
    if cached is not None:
        return cached.named(path)
    image = _read_file(path, checked=True)
    assert image is not None                          # no inode= given: never None
    return under_lock(_lock, _remember_read, key, image).named(path)


def _cached_unchanged(key: str, now: Identity) -> Optional[PluginImage]:
    """The cached image of `key` if its file is unchanged since, and had settled (under _lock)."""
    cached = _cache.get(key)
    if cached is not None and cached.trusted == now:
        _cache.move_to_end(key)
        return cached
    return None


def _remember_read(key: str, image: PluginImage) -> PluginImage:
    """The image to use for the file just read (under _lock): the cached one if its bytes
    are the same (only the ctime moved, or it was read again as not settled), with this
    read's identity and verdict on it (trusted once a read finds it settled), else
    `image`, cached as the file's current version."""
    cached = _cache.get(key)
    if cached is not None and cached.sha256 == image.sha256 and \
            _same_contents_key(cached.identity) == _same_contents_key(image.identity):
        cached.identity = image.identity          # the same bytes
        cached.trusted = image.trusted            # (one store: `unchanged` reads it unlocked)
        _cache.move_to_end(key)
        return cached
    _remember(key, image)
    return image


def unchanged(path: "os.PathLike[str] | str") -> Optional[PluginImage]:
    """The cached image of `path` if its file is unchanged since it was read, else None.

    A repeated open's whole look at the file: one stat, its device, inode,
    size, mtime and ctime (in nanoseconds) compared with the cached image's
    `trusted` identity (None until a read found the file settled: then no
    stat matches), no lock (each dictionary operation is one step for other
    threads). Every other case (not cached, changed, only the ctime moved,
    not settled when read, a BuiltPath, a file that is gone) is `read`'s,
    which reads, refuses or explains.
    """
    if path.__class__ is not str:
        if isinstance(path, BuiltPath):
            return None                 # this process's own build there: `_read_built`
        path = os.fspath(path)
        if path.__class__ is not str:
            return None
    key = _absolute_keys.get(path) or _cache_key(path)      # type: ignore[arg-type]
    cached = _cache.get(key)
    if cached is None:
        return None
    try:
        st = os.stat(path)
        _cache.move_to_end(key)     # (KeyError: another thread evicted it meanwhile)
    except (OSError, ValueError, KeyError):
        return None
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != cached.trusted \
            or not S_ISREG(st.st_mode):
        return None
    return cached if cached.path == path else cached.named(path)      # type: ignore[arg-type]


_absolute_keys: Dict[str, str] = {}      # an absolute path as given -> its normal form


def _cache_key(path: str) -> str:
    """The cache's key for `path`: its absolute, normal form. For a path given absolute that
    is a function of the string alone, so it is remembered (a relative one depends on the
    current folder: worked out each time)."""
    key = _absolute_keys.get(path)
    if key is None:
        key = os.path.abspath(path)
        if os.path.isabs(path):
            if len(_absolute_keys) >= 4 * CACHE_SIZE:
                _absolute_keys.clear()
            _absolute_keys[path] = key
    return key


def _remember(key: str, image: PluginImage) -> None:
    """Cache `image` as the current version of the file `key` (its absolute path)."""
    if key in _cache and _cache[key] is not image:
        _evict(key)                                     # an older version of this file
    _cache[key] = image
    image._shared.cached = True
    _cache.move_to_end(key)
    while len(_cache) > CACHE_SIZE:
        _evict(next(iter(_cache)))


DIGEST_IN_THREAD = 1 << 20    # files at least this large are hashed by a thread of their own


class Digest:
    """The SHA-256 of bytes too large to hash in passing, computed by a thread of its own.

    A first open of a large plugin spends most of its time hashing it and
    copying it into its sealed memfd (image.acquire); hashlib and os.write
    both release the GIL, so the two run at once on two cores, while the
    checks parse the same bytes. Both work on the one immutable `bytes`
    read from the file: what is hashed is what is sealed and loaded.
    Whoever needs the digest (a trust check, the Plugin's `sha256`) waits.
    """

    def __init__(self, data: bytes) -> None:
        self._value: Optional[str] = None
        self._data: Optional[bytes] = data
        self._thread = threading.Thread(target=self._hash, daemon=True, name="minildr-sha256")
        self._thread.start()

    def _hash(self) -> None:
        data = self._data
        if data is not None:
            self._value = hashlib.sha256(data).hexdigest()
            self._data = None

    def result(self) -> str:
        self._thread.join()
        if self._value is None:              # the thread failed (no memory?): here, then,
            self._hash()                     # where its error reaches the caller
        return self._value                   # type: ignore[return-value]


def digest_of(data: bytes) -> "str | Digest":
    """The SHA-256 of `data` now, or (a large file) a `Digest` being computed."""
    if len(data) >= DIGEST_IN_THREAD:
        return Digest(data)
    return hashlib.sha256(data).hexdigest()


def _read_file(path: str, checked: bool = False,
               inode: Optional[files.InodeObject] = None) -> Optional[PluginImage]:
    """Read the file whole, bounded and without blocking (files.read_regular); again if
    it changed meanwhile (a writer still at work). With `inode`: only if the file
    read is that inode object (files.read_same_file), else None.

    A change is a new size or mtime of the file read: a rename over its
    name by another process (how minildr.build installs) leaves the file
    being read whole and only moves its ctime, so it is not one.
    The wall clock is taken before each read begins: the image is trusted by
    its identity if the file had settled by then (`_trusted`).
    """
    last: Optional[FileChanged] = None
    for attempt in range(READ_ATTEMPTS):
        started = _wall_clock_ns()
        try:
            if inode is None:
                data, identity = files.read_regular(path, files.MAX_PLUGIN_BYTES,
                                                    checked=checked and not attempt,
                                                    head=lambda head: _known_format(head, path))
            else:
                got = files.read_same_file(path, files.MAX_PLUGIN_BYTES, inode,
                                           head=lambda head: _known_format(head, path))
                if got is None:
                    return None
                data, identity = got
        except FileChanged as exc:
            last = exc
            time.sleep(0.05 * (attempt + 1))
            continue
        return PluginImage(path=path, data=data, sha256=digest_of(data), identity=identity,
                           trusted=_trusted(identity, started))
    raise FileChanged(path, f"{last.reason} (each of the {READ_ATTEMPTS} times it was read)")


def _trusted(identity: Identity, started_ns: int) -> Optional[Identity]:
    """`identity` if the file's mtime and ctime were SETTLED_NS older than `started_ns` (when
    its read began), else None: a write since would have moved them (racy-git.txt)."""
    return identity if max(identity[3], identity[4]) <= started_ns - SETTLED_NS else None


def _known_format(head: bytes, path: str) -> None:
    """Refuse, from its first bytes, a file that is no binary format minildr reads.

    A 2 GiB log file named like a plugin is then refused after 4 KiB, not
    after reading it all.
    """
    if len(head) >= 4 and not is_binary(head):
        raise NotAPlugin(path, f"not a shared library: {describe_unknown(head)}")


def _evict(key) -> None:
    """Under _lock: the cache forgets `key`'s image; its copy goes once nobody holds it.

    Uncached first, holders looked at after: the opposite order to the
    lock-free `acquire` and `release`, so each sees the other's change."""
    image = _cache.pop(key)
    image._shared.cached = False
    if not image._shared.holders:
        image._discard()


def clear_cache() -> None:
    """Forget every cached image (images still in use stay alive until closed)."""
    under_lock(_lock, _evict_all)


def _evict_all() -> None:
    for key in list(_cache):
        _evict(key)
