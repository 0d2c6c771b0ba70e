"""Reading a file that may be hostile: one helper for every file minildr reads.

A plugin folder, a trust file or a signature beside a plugin is written by
someone else, and a path can name more than a file: a FIFO (reading blocks
until a writer comes, maybe forever), a device (/dev/zero never ends), a
socket, a kernel pseudo-file (/proc/self/environ says it is empty, then
hands out the host's environment), a 2 GiB sparse file, or a file another
program is still writing. `read_regular` turns each of these into a specific
PluginError naming the file, before reading more than its kind's limit:

1. stat the path: refuse what is not a regular file without opening it
   (opening some devices has effects of its own);
2. open it with O_NONBLOCK (a FIFO swapped in since step 1 cannot block
   the open) and O_NOCTTY, then fstat the descriptor actually read: the
   checks hold for the very file read, whatever the path names by now;
3. refuse a file larger than `limit` bytes (FileTooLarge) before reading it;
4. read exactly its size, and refuse it (FileChanged) if it ended early, went
   on past its size, or its identity (size, times, inode) changed meanwhile.

The limits, one per kind of file, are module constants so that a host with
unusual plugins can raise them (minildr.files.MAX_PLUGIN_BYTES = ...).
"""
from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import sys
from typing import Callable, Iterable, List, Optional, Tuple, TypeVar, Union

from .errors import (FileChanged, FileTooLarge, NotARegularFile, PluginNotFound,
                     UnreadableFile)

MAX_PLUGIN_BYTES = 256 * 1024 * 1024     # a plugin (the largest Go plugins are ~100 MB)
MAX_SIGNATURE_BYTES = 16 * 1024          # a .sig file: four short lines
MAX_KEY_BYTES = 64 * 1024                # a .pub or PEM .key file
MAX_TRUST_STORE_BYTES = 16 * 1024 * 1024  # a trust file: ~100 bytes per pinned digest
MAX_SOURCE_BYTES = 16 * 1024 * 1024      # a C header or source minildr reads itself

# How much older than the start of its read a file's mtime and ctime must be for what
# was read to be trusted by a stat alone later (git's racy-clean rule, racy-git.txt):
# image.py's cached plugin images, headercache.py's remembered preprocessing. File
# times come from a clock coarser than time.time_ns: the kernel's tick (1-10 ms) on
# Linux before 6.13 (and since, on file systems without its multigrain timestamps),
# whole seconds on ext4 with 128-byte inodes and on some NFS servers, 2 s on FAT. A
# write made after the read began gets times at most one such step behind it, so it
# cannot leave times this old as they were: 2 s for FAT's step, and a second more for
# a network server whose clock runs a little behind ours (a larger skew is not
# covered). A settled file (one written a few seconds before) loses nothing; one just
# written is read again on each use until then.
SETTLED_NS = 3_000_000_000

T = TypeVar("T")
Identity = Tuple[int, int, int, int, int]   # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG}
_NOT_A_FILE = {errno.ENXIO, errno.ENODEV, errno.EISDIR, getattr(errno, "EOPNOTSUPP", -1)}


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def contents_key(ident: Identity) -> Tuple[int, int, int, int]:
    """What changes when the contents may have: device, inode, size and mtime.

    Not the ctime: another process renaming a new file over this one's name
    (how minildr.build installs) moves the ctime of the inode being read,
    whose bytes stay whole.
    """
    return ident[:4]


def stat_regular(path: str) -> os.stat_result:
    """The stat of `path` if it is a regular file; otherwise a specific PluginError."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _open_error(path, exc) from None
    _check_regular(path, st)
    return st


def read_regular(path: "os.PathLike[str] | str", limit: int, *,
                 head: Optional[Callable[[bytes], None]] = None,
                 checked: bool = False) -> Tuple[bytes, Identity]:
    """The bytes of the regular file at `path` (at most `limit` of them) and its identity.

    `head`, if given, is called with the file's first 4 KiB before more than
    HEAD_FIRST bytes are read: a reader that recognises its format by the
    first bytes refuses a 2 GiB foreign file without reading all of it.
    `checked`: the caller has just seen with `stat_regular` that the path is
    a regular file (step 1 is not repeated; the descriptor is still checked).
    """
    path = os.fspath(path)
    if not checked:
        stat_regular(path)
    return _through_descriptor(path, _read_descriptor, limit, head)


def _through_descriptor(path: str, read: Callable[..., T], *args: object) -> T:
    """`read(path, fd, *args)` on a descriptor of `path` opened to read, closed after.

    The descriptor is held from the statement that opens it and closed inside
    the try: an interrupt at any line closes it (a `finally`'s own line could
    be cut short).
    """
    fds: List[int] = []
    try:
        fds.append(_open_to_read(path))
        result = read(path, fds[0], *args)
        os.close(fds.pop())
        return result
    except BaseException:
        close_all(fds)
        raise


Ranges = Callable[[Callable[[int, int], bytes], int], Optional[Iterable[Tuple[int, int]]]]
SPARSE_FROM = 256 * 1024      # smaller files are read whole: one read costs less than choosing


def read_ranges(path: str, limit: int, ranges: Ranges) -> Tuple[Union[bytes, mmap.mmap], Identity]:
    """`read_regular`, but of a large file only the byte ranges `ranges` names.

    `ranges(pread, size)` may read bits of the file (pread(offset, count)) to
    choose, and returns (offset, count) pairs, or None for the whole file.
    The result is then an anonymous, private mapping of the file's size
    (zero-filled by the kernel, a page at a time, only where touched) with
    those ranges read into it: libcrypto's loader reads 1.3 of its 4.7 MB,
    and the 2.6 MB of machine code it never looks at (the code is mapped
    from the file, not read) cost nothing. It is memory, not a mapping of
    the file: it holds no reference to the file and is freed with its last
    user, however long a traceback keeps it. The same checks as
    read_regular (a regular file, within `limit`, unchanged while read).
    """
    st = stat_regular(path)
    if st.st_size < SPARSE_FROM:
        return read_regular(path, limit, checked=True)
    return _through_descriptor(path, _read_chosen, limit, ranges)


def _read_chosen(path: str, fd: int, limit: int, ranges: Ranges) -> Tuple[mmap.mmap, Identity]:
    try:
        before = os.fstat(fd)
        _check_regular(path, before)
        size = before.st_size
        if size > limit:
            raise FileTooLarge(path, f"is {size:,} bytes, more than the {limit:,} minildr "
                                     "reads for such a file; is it the right file?")
        chosen = ranges(lambda offset, count: os.pread(fd, max(0, min(count, size - offset)),
                                                       offset) if 0 <= offset < size else b"",
                        size)
        data = mmap.mmap(-1, size)
        view = memoryview(data)
        for start, end in _merged(chosen if chosen is not None else [(0, size)], size):
            if os.preadv(fd, [view[start:end]], start) != end - start:
                raise FileChanged(path, "ended early while it was being read; try again once "
                                        "the program writing it has finished")
        view.release()
        after = os.fstat(fd)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({exc.strerror})") from None
    if contents_key(identity(before)) != contents_key(identity(after)):
        raise FileChanged(path, "changed while it was being read; try again once the program "
                                "writing it (a build?) has finished")
    return data, identity(after)


def _merged(ranges: Iterable[Tuple[int, int]], size: int) -> List[Tuple[int, int]]:
    """(offset, count) pairs as sorted, disjoint (start, end) spans inside the file."""
    spans: List[Tuple[int, int]] = []
    for start, end in sorted((max(0, a), min(size, a + n)) for a, n in ranges if n > 0):
        if end <= start:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def close_all(fds: List[int]) -> None:
    """Close each descriptor, each taken off the list in the statement that closes it."""
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


# An inode object, told apart from a later file given the same number:
# st_dev, st_ino and the inode's generation number (`generation`).
InodeObject = Tuple[int, int, int]

# Linux <linux/fs.h>: _IOR('v', 1, long): read, the size of a C long, type 'v', number 1.
FS_IOC_GETVERSION = 0x80007601 | (struct.calcsize("l") << 16)


def generation(fd: int) -> Optional[int]:
    """The generation number of the inode open as `fd`, or None where the file system has none.

    A file system hands a freed inode number to the next file it creates
    (ext4 does so at once), so device and inode number name a file only
    while it exists. ext4, XFS, btrfs and f2fs give each inode a generation
    number when it is allocated (random on ext4 and XFS), reported by the
    FS_IOC_GETVERSION ioctl (ioctl_iflags(2)): the same number with another
    generation is another file. tmpfs, overlayfs, NFS and every system but
    Linux report none (None).
    """
    if not sys.platform.startswith("linux"):
        return None
    import fcntl               # POSIX only, and only here: the ioctl on Linux
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, FS_IOC_GETVERSION, buf, True)
    except OSError:
        return None            # ENOTTY, EOPNOTSUPP, EINVAL: this file system keeps none
    return int.from_bytes(buf[:4], sys.byteorder)       # the kernel writes an int


def read_same_file(path: "os.PathLike[str] | str", limit: int, inode: InodeObject, *,
                   head: Optional[Callable[[bytes], None]] = None
                   ) -> Optional[Tuple[bytes, Identity]]:
    """`read_regular` of the file at `path` if it is the inode object `inode`, else None.

    The check is made on the descriptor read, so a rename over the name
    between the caller's stat and this read is seen (None), not read.
    """
    return _through_descriptor(os.fspath(path), _read_if_same, limit, inode, head)


def _read_if_same(path: str, fd: int, limit: int, inode: InodeObject,
                  head: Optional[Callable[[bytes], None]]) -> Optional[Tuple[bytes, Identity]]:
    st = os.fstat(fd)
    _check_regular(path, st)                 # no ioctl on whatever else the name may be now
    if (st.st_dev, st.st_ino) != inode[:2] or generation(fd) != inode[2]:
        return None
    return _read_descriptor(path, fd, limit, head)


def _open_to_read(path: str) -> int:
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise _open_error(path, exc) from None


def _read_descriptor(path: str, fd: int, limit: int,
                     head: Optional[Callable[[bytes], None]]) -> Tuple[bytes, Identity]:
    """Steps 2-4 of the module's docstring on the open descriptor `fd`."""
    try:
        before = os.fstat(fd)
        _check_regular(path, before)         # the descriptor read, not the name
        # O_NONBLOCK stays: it changes nothing for a regular file, and the
        # descriptor is closed by the caller, never handed out.
        if before.st_size > limit:
            raise FileTooLarge(path, (
                f"is {before.st_size:,} bytes, more than the {limit:,} minildr reads for "
                "such a file; is it the right file?"))
        data = _read_exactly(path, fd, before.st_size, head)
        after = os.fstat(fd)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({exc.strerror})") from None
    except MemoryError:
        raise FileTooLarge(path, "is too large to read into memory") from None
    if contents_key(identity(before)) != contents_key(identity(after)):
        raise FileChanged(path, "changed while it was being read; try again once the program "
                                "writing it (a build?) has finished")
    return data, identity(after)


def read_text(path: "os.PathLike[str] | str", limit: int) -> str:
    """`read_regular`, decoded as UTF-8 (a byte order mark, as Notepad writes, is dropped)."""
    data, _ = read_regular(path, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(path, f"is not UTF-8 text ({exc})") from None


HEAD_FIRST = 64 * 1024      # larger files show `head` their first 4 KiB before the rest is read


def _read_exactly(path: str, fd: int, size: int,
                  head: Optional[Callable[[bytes], None]]) -> bytes:
    """The file's `size` bytes, read in one call where the kernel allows (one buffer, no
    joining: a 20 MB plugin is not copied again); `head` sees the first 4 KiB first,
    read apart only for a file larger than HEAD_FIRST (a smaller one costs less to
    read whole than a second read costs)."""
    if head is not None and size > HEAD_FIRST:
        head(os.pread(fd, 4096, 0))
        head = None
    data = os.read(fd, size) if size else b""
    if head is not None and data:
        head(data[:4096])
    if len(data) < size:                   # a short read: go on, in chunks
        chunks, got = [data], len(data)
        while got < size:
            chunk = os.read(fd, min(size - got, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
    got = len(data)
    extra = os.read(fd, 1)
    if got < size:
        raise FileChanged(path, f"ended after {got:,} of its {size:,} bytes: it is being "
                                "written or truncated; try again once that has finished")
    if extra:
        if size == 0:
            raise NotARegularFile(path, (
                "says it is empty but has content: a kernel pseudo-file (/proc, /sys), not "
                "a file minildr reads"))
        raise FileChanged(path, f"grew past its {size:,} bytes while being read; try again "
                                "once the program writing it has finished")
    return data


def _check_regular(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise NotARegularFile(path, "is a directory, not a file "
                                    "(to load every plugin in a folder, use minildr.discover)")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "not a file")
        raise NotARegularFile(path, f"is not a regular file: it is {kind}; minildr reads only "
                                    "regular files")


def _open_error(path: str, exc: OSError) -> Exception:
    if exc.errno == errno.ENOENT and os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return PluginNotFound(path, f"is a symbolic link to {target!r}, which does not exist")
    if exc.errno == errno.ENOENT:
        return PluginNotFound(path, "no such file; check the path (relative paths are "
                                    "resolved against the current directory: see "
                                    "minildr.plugin_path)")
    if exc.errno in _MISSING:
        return PluginNotFound(path, f"cannot be found ({exc.strerror})")
    if exc.errno in _NOT_A_FILE:
        return NotARegularFile(path, f"is not a regular file ({exc.strerror})")
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return UnreadableFile(path, f"cannot be opened: {exc.strerror}; the host has too many "
                                    "files open (close plugins, or raise ulimit -n)")
    return UnreadableFile(path, f"cannot be read ({exc.strerror})")
