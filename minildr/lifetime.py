"""A loaded library stays mapped while anything handed out from it is alive.

Calling into unmapped code crashes the process, and Python gives no warning
before it drops the last reference to a library object. So both loaders
(the system one in system.py, minildr's own in native/) follow one rule:
`close()` unloads now if nothing from the library is still referenced, and
otherwise when the last function or pointer handed out is dropped. Garbage
collection never pulls code from under a caller, and closing stays explicit.

"Handed out" includes what a function returns, when that is a pointer:
`const char *name(void)` may return a string in the library's own read-only
data, and reading it after the library was unmapped would crash the host.
So a function returning a pointer is handed out wrapped (`results_keep_mapped`):
each non-NULL pointer it returns is tracked by a weak reference, and the
library stays mapped while any of them is alive. That costs a little per
call (a weak reference, a set insertion, and the wrapper's own Python call);
a function returning a number, or nothing, is handed out exactly as cffi
made it, and a call costs what a raw cffi call costs. Copies of a pointer
that leave Python (stored by C code, or `int(pointer)`) are not tracked.

What cannot be made safe in-process, and what close() does about it:

- a thread the plugin started that still runs its code: unmapping that code
  would crash the process the moment the thread is next scheduled. On Linux
  the loader notes when the load began (`load_started`: the boot-time clock,
  a vDSO read, no system call), and close() looks for threads that Python
  did not start and that the kernel says started since (/proc/self/task:
  each thread's start time, field 22 of its stat file, proc(5)): such a
  thread may be the plugin's, and then the library is left mapped (a
  warning says so) rather than unmapped under it. In the usual case every
  thread is Python's, which one fstat shows (`native_threads`), and nothing
  is listed. A Python thread still starting or already ending, which the
  kernel lists and threading's list does not name, counts as Python's
  (`_python_thread_ids`). The kernel counts start times in clock ticks (10 ms on most
  systems): a foreign thread that started in the same tick as the load is
  counted as possibly the plugin's. The check cannot tell whose such a
  thread is (another C library may have started it): it errs on the side of
  leaving memory mapped, never of a crash. (Start times, not a list of the
  thread ids alive before the load: no listing at each open, and a thread
  id the kernel reused for a new thread is not mistaken for the old one.)
  One case needs no look at all: a library that handed nothing out (no
  lookup: `handed_out`) and whose load started no foreign thread
  (`note_loaded`: one not alive as the load began, `threads_before_load`,
  that started since) has run only its initialisers, in the loading thread, so
  no thread can be running its code. A Jupyter kernel needs this: libzmq
  starts C threads of its own at any time (pyzmq's garbage collector makes
  a context, two threads, at the first large zero-copy send, as a figure
  is), and a plugin opened and closed meanwhile was left mapped. Not seen:
  an initialiser that gives another library a callback its threads call.
- an `on_exit()` handler the plugin registered with the C library runs at
  process exit, after close(); glibc keeps that list private, so nothing
  can detect it. (`atexit()` handlers are run by dlclose, and minildr's
  native loader runs them at close too.) A plugin that does this must be
  opened with isolate=True, or never closed.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import time
import warnings
import weakref
from typing import Any, Callable, FrozenSet, Optional, Set

from .console import printable
from .interrupts import finish, under_lock
from .logger import LOG

log = LOG                   # the "minildr" logger, once a host attached it (logger.py)

_TASKS = "/proc/self/task"
_DUMMY = getattr(threading, "_DummyThread", ())     # threading's entry for a foreign thread


# An open descriptor of /proc/self/task, with the (device, inode) it had: a
# descriptor closed and reused by other code is noticed and opened again.
_task_folder: "tuple[int, int, int] | None" = None
_task_lock = threading.Lock()


def _forget_task_folder() -> None:
    """After fork: the descriptor names the parent's threads; the child opens its own."""
    global _task_folder, _task_lock
    _task_lock = threading.Lock()          # another thread may have held it at the fork
    if _task_folder is not None:
        try:
            os.close(_task_folder[0])
        except OSError:
            pass
    _task_folder = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_task_folder)


def _task_links() -> int:
    """/proc/self/task's link count, from a descriptor kept open: an fstat costs half a
    stat of the path (no walk through /proc/self); the count is the kernel's of now."""
    global _task_folder
    held = _task_folder
    if held is not None:
        try:
            st = os.fstat(held[0])
            if st.st_ino == held[2] and st.st_dev == held[1]:
                return st.st_nlink
        except OSError:
            pass
    # one descriptor, however many threads ask first
    links = under_lock(_task_lock, _open_task_folder, held)
    return _task_links() if links is None else links


def _open_task_folder(held: "tuple[int, int, int] | None") -> Optional[int]:
    """Under _task_lock: open /proc/self/task unless another thread replaced `held` since
    (then None: ask that one); the link count."""
    global _task_folder
    if _task_folder is not held:
        return None
    fd = os.open(_TASKS, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    st = os.fstat(fd)
    _task_folder = (fd, st.st_dev, st.st_ino)
    return st.st_nlink


def native_threads() -> FrozenSet[int]:
    """The thread ids of this process (Linux); an empty set where the system does not say.

    Usually every thread is one Python started (or knows of): then the
    kernel's count of them, the link count of /proc/self/task (2 plus the
    number of threads: fs/proc/base.c, proc_task_getattr), matches
    threading's list, and the folder need not be listed. Not when a thread
    started elsewhere ever called into Python: its entry (a _DummyThread)
    may outlive it, and the counts could then match by chance.
    """
    if not sys.platform.startswith("linux"):
        return frozenset()
    python = threading.enumerate()
    try:
        if _all_pythons(python):
            return frozenset(t.native_id for t in python)  # type: ignore[misc]
        return frozenset(int(tid) for tid in os.listdir(_TASKS))
    except OSError:
        return frozenset()


def _all_pythons(python: "list[threading.Thread]", links: Optional[int] = None) -> bool:
    """Whether the kernel counts as many threads as `python` lists, none of them foreign
    (`links`: /proc/self/task's link count, if just read).

    A thread object found started by Python (its native id known, no _DummyThread)
    stays so: the last list found so is kept (`_verified`), and the same objects
    again are not asked again, one by one (a host with several threads, as a
    Jupyter kernel has, closes a plugin without a Python call per thread).
    """
    global _verified
    if (_task_links() if links is None else links) - 2 != len(python):
        return False
    if python == _verified:        # (the same objects: Thread has no __eq__ of its own)
        return True
    for t in python:
        if t.native_id is None or isinstance(t, _DUMMY):
            return False
    _verified = python
    return True


# The last list of threads `_all_pythons` found all started by Python (it keeps those
# objects alive until another list is found so: a few Thread objects at most).
_verified: "list[threading.Thread]" = []


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None) if sys.platform.startswith("linux") else None


def _not_told() -> Optional[int]:
    return None


# load_started(): the moment a load begins, for `foreign_threads_since` (None where it
# cannot be told). CLOCK_BOOTTIME in nanoseconds: the clock the kernel gives each thread's
# start time in (task->start_boottime, fs/proc/array.c do_task_stat), read through the
# vDSO, so noting it costs no system call; and bound to its clock as a partial, no Python
# call either (it is noted at every open).
load_started: Callable[[], Optional[int]] = (
    functools.partial(time.clock_gettime_ns, _BOOTTIME) if _BOOTTIME is not None else _not_told)
_TICK_NS = 10**9 // os.sysconf("SC_CLK_TCK") if _BOOTTIME is not None else 1


def _started_tick(tid: int) -> Optional[int]:
    """Thread `tid`'s start time in clock ticks since boot (proc(5): stat, field 22), or
    None if it has gone. Its name (field 2) may hold spaces and parentheses: the fields
    are counted from the last ')'."""
    try:
        with open(f"{_TASKS}/{tid}/stat", "rb") as f:
            line = f.read()
    except OSError:
        return None
    return int(line[line.rindex(b")") + 2:].split()[19])


_LINUX = sys.platform.startswith("linux")


_NONE: FrozenSet[int] = frozenset()


def _foreign_threads() -> FrozenSet[int]:
    """The ids of this process's threads that Python's threading did not start (nor knows of).

    One fstat (the kernel's count of threads) in the usual cases: the calling
    thread alone (no other thread exists to run anything), or as many threads
    as Python's threading lists, none of them foreign (`_all_pythons`).
    """
    if not _LINUX:
        return _NONE
    try:
        links = _task_links()
        if links == 3 or _all_pythons(threading.enumerate(), links):
            return _NONE
    except OSError:
        return _NONE
    return native_threads() - _python_thread_ids()


# How long close() waits, at most, for a thread Python is starting to learn its id: the
# thread does it first thing, so only a thread that cannot run at all takes this long.
STARTING_WAIT = 10.0


def _python_thread_ids() -> Set[int]:
    """The kernel's ids of the threads Python started that may be in /proc/self/task now.

    Besides threading's list, two moments in a Python thread's life where the
    kernel lists it and threading's list does not name it:

    - starting (threading._limbo): the thread exists, but its native id is
      set by the thread itself, first thing, once it runs; on a loaded
      machine that may be long after it was made. Its id is waited for
      (Thread._started, set just after it; STARTING_WAIT at most).
    - ending: the thread left threading's list (Thread._delete) but still
      runs Python's teardown of it. Its Thread object (in threading._dangling
      while anything refers to it, its own last frame at least) still holds
      its native id, and its id is counted while the thread is alive below
      Python (its tstate lock held, or its handle not done): no other thread
      can have that id before it has ended.

    Before, both looked foreign, and a close() that came at such a moment,
    after a thread started since the load, left the library mapped with a
    warning whenever the thread did not settle within 50 ms (a busy machine).
    """
    deadline = time.monotonic() + STARTING_WAIT
    for thread in list(threading._limbo.values()):                 # type: ignore[attr-defined]
        while (thread.native_id is None and thread in threading._limbo.values()  # type: ignore[attr-defined]
               and not thread._started.wait(0.01)                  # type: ignore[attr-defined]
               and time.monotonic() < deadline):
            pass
    ids = {t.native_id for t in threading.enumerate() if t.native_id is not None}
    for thread in list(threading._dangling):                        # type: ignore[attr-defined]
        if thread.native_id is not None and thread.native_id not in ids \
                and _alive_below_python(thread):
            ids.add(thread.native_id)
    return ids


def _alive_below_python(thread: threading.Thread) -> bool:
    """Whether `thread` has started and not yet ended where Python's C code sees it (3.10-3.12:
    its tstate lock is held; 3.13: its handle is not done), whatever threading's list says."""
    lock = getattr(thread, "_tstate_lock", None)
    if lock is not None:
        return lock.locked()
    handle = getattr(thread, "_handle", None)
    if handle is not None and hasattr(handle, "is_done"):
        return not handle.is_done()
    return False


def threads_before_load() -> FrozenSet[int]:
    """The foreign threads alive as a load begins (none, with one fstat, in the usual
    case), for `KeepsMappedWhileReferenced.note_loaded`."""
    return _foreign_threads()


def foreign_threads_since(started: int, settle: float = 0.05) -> FrozenSet[int]:
    """Threads alive now that Python's threading did not start and that started at `started`
    (a `load_started` time) or later, or in the same clock tick (the kernel counts no finer).

    A Python thread that has ended below Python (its tstate gone, so
    `_python_thread_ids` no longer names it) may still be in the C library's
    last steps of a thread's exit, in the kernel's list. Such threads are
    gone within moments, so a suspect is confirmed only if it is still there
    `settle` seconds later; a plugin's thread that runs its code is still there.
    """
    foreign = _foreign_threads()
    if not foreign:
        return foreign
    tick = started // _TICK_NS
    suspects = set()
    for tid in foreign:
        started_tick = _started_tick(tid)           # None: gone since
        if started_tick is not None and started_tick >= tick:
            suspects.add(tid)
    deadline = time.monotonic() + settle
    while suspects and time.monotonic() < deadline:
        time.sleep(settle / 10)
        suspects &= _foreign_threads()
    return frozenset(suspects)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _outside_the_package() -> int:
    """The warnings stack level of the first caller outside minildr (1: the caller of this)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


class LeftMapped(RuntimeWarning):
    """close() left a library mapped, because code of it may still be running."""


# Libraries closed while something they handed out is alive, held here until it
# is dropped and they unload (see close).
_AWAITING_UNLOAD: Set["KeepsMappedWhileReferenced"] = set()


def awaiting_unload() -> int:
    """How many closed libraries are still mapped because something they handed out is alive.

    Each unloads when the last such object is dropped: by its reference count,
    at once, unless the object sits in a reference cycle of the caller's (an
    exception kept with its traceback, which holds the frames that hold the
    object); then only a garbage collection frees it, in whatever thread runs
    that collection. A host (or a test suite) that knows it made such cycles
    can ask this and collect them itself, where it chooses.
    """
    return len(_AWAITING_UNLOAD)


class KeepsMappedWhileReferenced:
    """Mixin: `keep_mapped_while`, `close`; subclasses give `unloaded`, `_unload`, `_name`.

    Thread-safe: the count of what was handed out and the decision to unload
    are taken under one lock, so an unload happens exactly once, and never
    while something handed out is alive. `loaded_at` (set by the loader
    before the library's initialisers ran) enables the running-thread check.
    """

    _closing: bool = False
    unload_reruns: bool = False  # _unload, interrupted part way, may be run again to finish
    loaded_at: Optional[int] = None      # lifetime.load_started() before the load
    # A lookup found an address in it (a function, a variable, a vtable): from then on
    # its code may run in any thread. Set by Plugin._find; never unset.
    handed_out: bool = False
    # Whether a foreign thread started during the load (its initialisers may have
    # started it): until note_loaded says otherwise, assumed.
    spawned_at_load: bool = True
    # The lock the unload decisions are taken under: each subclass's __init__ makes it
    # (before anything can be handed out), and lets its Plugin share it (plugin.py).
    lifetime_lock: threading.RLock

    @property
    def _results(self) -> Set["weakref.ref[Any]"]:
        # Weak references to the pointers that wrapped functions returned and
        # that are still alive. set.add/discard are atomic: no lock per call.
        live = self.__dict__.get("_live_results")
        return live if live is not None else self.__dict__.setdefault("_live_results", set())

    @property
    def unloaded(self) -> bool:
        raise NotImplementedError

    @property
    def _name(self) -> str:
        raise NotImplementedError

    def _unload(self) -> None:
        raise NotImplementedError

    @property
    def _holders(self) -> set:
        held = self.__dict__.get("_lifetime_holders")
        return held if held is not None else self.__dict__.setdefault("_lifetime_holders", set())

    def keep_mapped_while(self, obj: object) -> None:
        """Do not unmap the library while `obj` (a function or data pointer) is alive."""
        under_lock(self.lifetime_lock, self._hold_while, obj)

    def _hold_while(self, obj: object) -> None:
        # The release first, then the count: an interrupt between the two
        # leaves a release with nothing to release (the object never reached
        # the caller), never a count no release will take back (mapped for good).
        # The release runs through finish (see _release_token).
        token = object()
        weakref.finalize(obj, finish, self._release_one, token).atexit = False
        self._holders.add(token)

    def results_keep_mapped(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function` (returning a pointer), wrapped: each pointer it returns keeps the library
        mapped while that pointer is alive. `.cdata` is the unwrapped cffi function (to
        pass to C code)."""
        results, track = self._results, weakref.ref

        def dropped(ref: "weakref.ref[Any]") -> None:
            results.discard(ref)
            if not results and self._closing:
                under_lock(self.lifetime_lock, self._unload_if_unreferenced)

        # Through finish, as a holder's release is (_release_token); made once, not per call.
        on_drop = functools.partial(finish, dropped)

        def call(*args: Any) -> Any:
            result = function(*args)
            if result:                     # NULL points nowhere: nothing to keep
                # The wrapper is alive during the call and keeps the library
                # mapped; the result is tracked before the wrapper can go.
                results.add(track(result, on_drop))
            return result

        call.cdata = function              # type: ignore[attr-defined]
        return call

    def _release_one(self, token: object) -> None:
        under_lock(self.lifetime_lock, self._release_token, token)

    def _release_token(self, token: object) -> None:
        """Take a holder off; the last one gone from a closing library unloads it.

        It runs in a finalizer, whose interrupt Python only reports (unraisable):
        one landing between the two steps, or before the first, left a closing
        library mapped for good with no holder left to unload it. So the finalizer
        calls interrupts.finish, which has no line before its handler and runs the
        release again if it was cut short: taking a token off twice is harmless,
        and both loaders' unload may be run again to finish (unload_reruns is True
        for both). tests/core/test_interrupts.py (drop-last*) interrupts each line.
        """
        self._holders.discard(token)
        self._unload_if_unreferenced()

    def _unload_if_unreferenced(self) -> None:
        """Under the guard: unload if closing and nothing handed out is alive."""
        if self._closing and not self._holders and not self._results and not self.unloaded:
            self._unload_unless_running()

    def close(self) -> None:
        """Unload now, or once no function or pointer from the library is held."""
        under_lock(self.lifetime_lock, self.close_holding_lock)

    def close_holding_lock(self) -> None:
        """`close`, by a caller that holds `lifetime_lock` already (the Plugin sharing it)."""
        # Closing but not unloaded is an interrupted close: called again, it
        # finishes the job where the loader's unload can be run again
        # (unload_reruns); elsewhere it must not run twice (finalisers, munmap).
        if self.unloaded or self._closing and not self.unload_reruns:
            return
        self._closing = True
        state = self.__dict__          # (the sets exist only once something was handed out)
        if state.get("_lifetime_holders") or state.get("_live_results"):
            held = len(self._holders) + len(self._results)
            # Until then nothing else may hold this object: the plugin has let
            # go of it, and the weak references to its results would go with it
            # as garbage (callbacks and all), leaving the library mapped for good.
            _AWAITING_UNLOAD.add(self)
            log.info("close %s: still mapped while %d function(s) or pointer(s) from it "
                     "are referenced; it unloads when they are dropped",
                     printable(self._name), held)
            return
        self._unload_unless_running()

    def _unmaps(self) -> bool:
        """Whether unloading really unmaps the code (a loader that never does says False)."""
        return True

    def note_loaded(self, before: FrozenSet[int]) -> None:
        """The loader's word that the library's initialisers have run: whether a foreign
        thread not among `before` (`threads_before_load`) started since the load began.

        One fstat when every thread is Python's. The kernel's start times are
        clock ticks: a thread another library started just before the load, in
        its tick, is told apart by being in `before`.
        """
        self.spawned_at_load = (self.loaded_at is not None and bool(_foreign_threads())
                                and bool(foreign_threads_since(self.loaded_at, settle=0)
                                         - before))

    def _unload_unless_running(self) -> None:
        _AWAITING_UNLOAD.discard(self)
        if (self.loaded_at is not None and (self.handed_out or self.spawned_at_load)
                and _foreign_threads() and self._unmaps()):              # (one fstat)
            self._unload_unless_started_since(self.loaded_at)
        else:
            self._unload()

    def _unload_unless_started_since(self, loaded_at: int) -> None:
        """Unload, unless a thread not started by Python appeared since the load (it may be
        running the library's code)."""
        running = foreign_threads_since(loaded_at)
        if running:
            message = (f"close {printable(self._name)}: left mapped, not unloaded: "
                       f"{len(running)} thread(s) not started by Python appeared since it was "
                       "loaded (thread ids " + ", ".join(map(str, sorted(running))) + ") and "
                       "may be running its code; unmapping it under them would crash the "
                       "process. Stop the plugin's threads before closing it, or open it with "
                       "isolate=True")
            log.warning("%s", message)
            warnings.warn(message, LeftMapped, stacklevel=_outside_the_package())
            return
        self._unload()
