"""The exports header's declarations, remembered while nothing the preprocessor read changed.

A build preprocesses its exports header (build.read_exports: one compiler
run, ~10 ms of a build's ~50 ms CPU) even when the header is the one the
previous build in this process read: a notebook rebuilding a cell whose
function bodies changed, a test building the same example twice. This
module keeps the result (the declarations and types, already parsed) of
each recent preprocessing, and gives it back only if the preprocessor would
now read the same bytes from the same places:

- the key: the compiler (path, family, version line, target flags), its
  command line with the build's own folder written as `<work>` (each build
  stages its files in a new one), the header's name as shown, and the
  environment variables that move header folders or change what the
  preprocessor defines (`ENVIRONMENT`);
- the fingerprint, checked on every use: the bytes (SHA-256) of every file
  the preprocessor read, as its dependency output (-MD) lists them, and the
  entries of every folder it searched for an #include (the folder of each
  file read, each -I folder, the environment's folders), names and kinds,
  so that a header added in front of the one found, or removed, is seen.

What cannot be fingerprinted this way is never remembered: a file read that
uses a name the preprocessor resolves in ways not listed above (#include
with a macro or a path with a folder in it, #include_next, #import,
__has_include) or whose expansion depends on when or where it runs
(__DATE__, __TIME__, __TIMESTAMP__, __FILE__, __BASE_FILE__, __COUNTER__);
a file or folder outside the build's folder that changed (its ctime) less
than files.SETTLED_NS before the preprocessor started, since on a coarse
clock its fingerprint might not be what it read (git's racy-clean rule);
MSVC (no -MD output). A file that is not a regular file, or too large, makes
the fingerprint fail, and the header is preprocessed again.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import files
from .errors import PluginError
from .interrupts import under_lock

CACHE_SIZE = 64
WORK = "<work>"

# GCC's "Environment Variables" that change where headers are found or what is
# defined (CPATH & co., SOURCE_DATE_EPOCH for __DATE__/__TIME__, GCC_EXEC_PREFIX
# and COMPILER_PATH for the programs and folders the driver uses), clang's
# CCC_OVERRIDE_OPTIONS (edits the command line) and SDKROOT (Apple's headers).
ENVIRONMENT = ("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH",
               "SOURCE_DATE_EPOCH", "GCC_EXEC_PREFIX", "COMPILER_PATH",
               "CCC_OVERRIDE_OPTIONS", "SDKROOT")

# What makes a file's preprocessing depend on more than its bytes and the folders
# listed: time, place, or a search the folder listings do not cover.
_UNCACHEABLE = re.compile(
    rb"__DATE__|__TIME__|__TIMESTAMP__|__FILE__|__BASE_FILE__|__COUNTER__|__has_include"
    rb"|^[ \t]*#[ \t]*(?:include_next|import)\b", re.M)
_ANY_INCLUDE = re.compile(rb"^[ \t]*#[ \t]*include\b(.*)$", re.M)
_PLAIN_NAME = re.compile(rb'[ \t]*(?:"[^"/\\\r\n]+"|<[^>/\\\r\n]+>)[ \t]*(?:/[/*].*)?\r?')

_entries: "OrderedDict[Hashable, Tuple[Any, Any]]" = OrderedDict()
_lock = threading.Lock()


def key(compiler: Hashable, cmd: Sequence[str], work: Path, shown: Path,
        environ: Optional[Mapping[str, str]] = None) -> Hashable:
    """What names one preprocessing: compiler, command (build folder as `<work>`), header."""
    environ = os.environ if environ is None else environ
    return (compiler, tuple(_abstract(arg, work) for arg in cmd), str(shown),
            tuple(environ.get(name) for name in ENVIRONMENT))


def lookup(cache_key: Hashable, work: Path) -> Optional[Any]:
    """The result remembered under `cache_key`, if its fingerprint is still this build's."""
    entry = under_lock(_lock, _entries.get, cache_key)
    if entry is None:
        return None
    fingerprint, result = entry
    if _fingerprint_now(fingerprint[0], fingerprint[1], work) != fingerprint:
        return None
    return result


def remember(cache_key: Hashable, result: Any, deps_file: Path, searched: Iterable[Path],
             work: Path, started_ns: int) -> None:
    """Keep `result` with the fingerprint of what the preprocessor read, if it can be had."""
    deps = dependencies(deps_file)
    if deps is None:
        return
    folders = [*dict.fromkeys([*(Path(d).parent for d in deps), *searched])]
    paths = [_abstract(str(d), work) for d in deps]
    dirs = [_abstract(str(d), work) for d in folders]
    if not _settled(deps + [str(f) for f in folders], work, started_ns):
        return
    fingerprint = _fingerprint_now(paths, dirs, work, check_text=True)
    if fingerprint is None:
        return
    under_lock(_lock, _store, cache_key, (fingerprint, result))


def clear() -> None:
    """Forget every remembered preprocessing."""
    under_lock(_lock, _entries.clear)


def dependencies(deps_file: Path) -> Optional[List[str]]:
    """The files a make-style dependency file (-MD -MF) lists, None if it cannot be read
    unambiguously (a name with a space, '$', '#' or a backslash is escaped in it)."""
    try:
        text = deps_file.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    _, sep, rest = text.partition(": ")
    if not sep or re.search(r"[$#]|\\[^\n]", rest):
        return None
    return [word for word in rest.replace("\\\n", " ").split() if word]


def _store(cache_key: Hashable, entry: Tuple[Any, Any]) -> None:
    """Under _lock: the entry kept as the newest, the oldest dropped past CACHE_SIZE."""
    _entries[cache_key] = entry
    _entries.move_to_end(cache_key)
    while len(_entries) > CACHE_SIZE:
        _entries.popitem(last=False)


def _abstract(text: str, work: Path) -> str:
    """`text` with this build's folder written as `<work>`."""
    return text.replace(str(work), WORK)


def _concrete(text: str, work: Path) -> str:
    return text.replace(WORK, str(work))


def _settled(paths: Sequence[str], work: Path, started_ns: int) -> bool:
    """Nothing outside the build folder changed since the preprocessor started, so what is
    read now is what it read: each ctime (which only the kernel sets) older than the start
    by files.SETTLED_NS, the step of the coarsest clock file times come from (a change
    made during the run can carry a time up to one step before it)."""
    limit = started_ns - files.SETTLED_NS
    for path in paths:
        if path.startswith(str(work) + os.sep):
            continue                       # the build's own files: written before, not since
        try:
            if os.stat(path).st_ctime_ns >= limit:
                return False
        except OSError:
            return False
    return True


def _fingerprint_now(paths: Sequence[str], dirs: Sequence[str], work: Path,
                     check_text: bool = False) -> Optional[Tuple[Any, ...]]:
    """(paths, dirs, digest of each file, entries of each folder) as they are now; None if
    a file cannot be read as a regular file or (`check_text`) is not to be remembered."""
    digests = []
    for path in paths:
        try:
            data, _ = files.read_regular(_concrete(path, work), files.MAX_SOURCE_BYTES)
        except (PluginError, OSError):
            return None
        if check_text and not _plain(data):
            return None
        digests.append(hashlib.sha256(data).digest())
    return (tuple(paths), tuple(dirs), tuple(digests),
            tuple(_entries_of(_concrete(d, work)) for d in dirs))


def _plain(data: bytes) -> bool:
    """The file's preprocessing depends only on its bytes and the folders searched."""
    if _UNCACHEABLE.search(data):
        return False
    return all(_PLAIN_NAME.fullmatch(rest) for rest in _ANY_INCLUDE.findall(data))


def _entries_of(folder: str) -> Optional[Tuple[Tuple[str, bool, bool], ...]]:
    """Each entry of `folder`: name, and whether it is (or leads to) a file or a folder."""
    try:
        with os.scandir(folder) as listing:
            return tuple(sorted((e.name, e.is_file(), e.is_dir()) for e in listing))
    except OSError:
        return None


def now_ns() -> int:
    """The clock `remember`'s `started_ns` is read from."""
    return time.time_ns()
