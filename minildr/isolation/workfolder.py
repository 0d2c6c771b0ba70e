"""A worker's own folder: made for it, gone with it, and nothing but it ever removed.

Each isolated worker runs in a temporary folder of its own, its current
folder (process.py), which its plugin may fill. Whatever ends the host, the
folder goes:

- the host makes it, its name recorded before it exists (`fresh_name`, then
  `make`: an interrupt as mkdir returns still leaves it known), and removes
  it at close, at a failed start, at its garbage collection or exit (`remove`);
- the worker's keeper (tree.py) removes it as it ends, however it ends, once
  every process of the plugin is gone (`remove_current`): so also when the
  host was killed (SIGKILL, os._exit) while the worker lived (after a close
  the host then finds it gone, one failed open); and the init of the worker's
  PID namespace does the same when the keeper was killed too; where no keeper
  runs (macOS), the worker itself, as it ends, whether its lifeline or its
  socket told it first (worker.leave_folder).

Only a folder whose host, keeper and init were all killed at once (or, with
no PID namespace, host and keeper) has no one left to remove it.

A plugin is hostile: it may put files, symbolic links and folders in its
folder, or rename the folder and put a symbolic link or another folder
under its name. Removing follows no symbolic link: the folder is opened
with O_NOFOLLOW and emptied through that descriptor, as shutil.rmtree does
(shutil.rmtree.avoids_symlink_attacks), but without recursion (_empty) and
without entering another file system mounted inside; and only if it is the
same inode (device and inode number) as the one made, or for the keeper the
one it runs in. What is not (a folder put under its name) is left alone. The
name itself goes last (rmdir), and only if it still names that folder. The
keeper and the init run no plugin code and live in the host's mount
namespace (the server's private /proc is in a namespace of its own:
mounts.py), so what a plugin mounts there is never under the folder they remove.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Callable, List, Optional, Tuple, TypeVar

from ..files import close_all

PREFIX = "minildr-worker-"
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Identity = Tuple[int, int]          # (st_dev, st_ino) of the folder made
T = TypeVar("T")


def fresh_name() -> str:
    """The path of a new worker folder in the temporary folder (tempfile.gettempdir():
    $TMPDIR, else /tmp): PREFIX and 128 random bits, so no other folder has it."""
    return os.path.join(tempfile.gettempdir(), PREFIX + os.urandom(16).hex())


def make(path: str) -> Identity:
    """Make the folder `path` (mode 0700) and return its identity."""
    os.mkdir(path, 0o700)
    made = os.lstat(path)
    return made.st_dev, made.st_ino


def remove(path: str, made: Optional[Identity]) -> None:
    """Remove the folder made at `path` (identity `made`) and everything in it, if it
    is still that folder; `made` None (interrupted as it was made): only if empty."""
    if made is None:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return
    _through(path, None, _remove_if, path, made)


def remove_current() -> None:
    """Remove this process's current folder, if it is a worker's (named PREFIX...), and
    everything in it: the keeper's, and the init's, last step (see the module)."""
    try:
        path = os.getcwd()          # where the folder is now, if the plugin renamed it
    except OSError:                 # removed already
        return
    if os.path.basename(path).startswith(PREFIX):
        _through(".", None, _remove_here, path)


def _through(path: str, folder: Optional[int], step: Callable[..., T], *args: object
             ) -> Optional[T]:
    """`step(fd, *args)` on the folder `path` (in the folder open as `folder`, if given)
    opened as fd, following no symbolic link; None if it cannot be opened (gone, or a
    symbolic link now). The descriptor is held from the statement that opens it and
    closed inside the try, as files._through_descriptor does: an interrupt at any line
    closes it."""
    fds: List[int] = []
    try:
        try:
            fds.append(os.open(path, _OPEN_FOLDER, dir_fd=folder))
        except OSError:
            return None
        result = step(fds[0], *args)
        os.close(fds.pop())
        return result
    except BaseException:
        close_all(fds)
        raise


def _remove_here(fd: int, path: str) -> None:
    here = os.fstat(fd)
    _remove_if(fd, path, (here.st_dev, here.st_ino))


def _remove_if(fd: int, path: str, made: Identity) -> None:
    """Empty the folder open as `fd` if it is `made`, then remove its name `path` if that
    still names it."""
    here = os.fstat(fd)
    if (here.st_dev, here.st_ino) != made:
        return                      # another folder under its name: not ours to remove
    _empty(fd, here.st_dev)
    with contextlib.suppress(OSError):
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == made:
            os.rmdir(path)


def _empty(top: int, device: int) -> None:
    """Remove everything in the folder open as `top` (on `device`), following no symbolic
    link and entering no other file system (a mount point is left as it is).

    Holds two descriptors at most, whatever the depth: each pass removes the
    files of `top` and of its folders, moves the folders found inside those up
    into `top` (renameat), and removes what it emptied; a pass that removes
    nothing ends it (what cannot be removed stays). shutil.rmtree recurses
    instead, one descriptor and one Python frame per level: a plugin's
    thousands of nested folders made it fail (EMFILE, RecursionError).
    """
    progress = True
    while progress:
        progress = False
        with os.scandir(top) as entries:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for name, is_folder in found:
            if is_folder:
                progress = _lift(top, name, device) or progress
            with contextlib.suppress(OSError):
                (os.rmdir if is_folder else os.unlink)(name, dir_fd=top)
                progress = True


def _lift(top: int, name: str, device: int) -> bool:
    """Remove the files in `top`'s folder `name`, and move its folders up into `top`;
    whether anything was (a symbolic link now: nothing)."""
    return bool(_through(name, top, _lift_from, top, device))


def _lift_from(fd: int, top: int, device: int) -> bool:
    if os.fstat(fd).st_dev != device:                 # another file system mounted here
        return False
    done = False
    with os.scandir(fd) as entries:
        found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for inner, is_folder in found:
        with contextlib.suppress(OSError):
            if is_folder:
                os.rename(inner, PREFIX + os.urandom(16).hex(), src_dir_fd=fd, dst_dir_fd=top)
            else:
                os.unlink(inner, dir_fd=fd)
            done = True
    return done
