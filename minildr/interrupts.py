"""Undoing that an interrupt cannot cut short.

Ctrl-C raises KeyboardInterrupt at whatever line Python is running. If that
line is in the middle of undoing a load (closing descriptors, ending a
worker, unmapping a library), the rest of the undoing never runs and
something stays open, mapped or running. `finish` runs an undoing step again
from the start if it was cut short, then lets the interrupt go on: so the
step must be written to be run twice (each resource forgotten in the same
statement that releases it, never released twice). A lock is given back the
same way: `under_lock` holds it around one step, and no interrupt outside
that step can come between its acquire and its release.
"""
from __future__ import annotations

from typing import Callable, ContextManager, TypeVar

T = TypeVar("T")


def finish(undo: Callable[..., object], *args: object) -> None:
    """Run `undo(*args)` to its end even if an interrupt (or any exception) cuts it short once.

    The `try` shares its line with the call, as under_lock's `with` does: a `try:`
    line of its own has a line event before the protected body, outside the handler,
    and an interrupt there skipped the undo altogether (tests/core/test_interrupts.py,
    test_finish_runs_its_undo_whatever_line_an_interrupt_lands_on). So `finish` may
    itself be the callback a finalizer runs (lifetime.py): no line of minildr runs
    before the handler is in place.
    """
    try: undo(*args)  # noqa: E701  one line on purpose: see the docstring
    except BaseException:
        undo(*args)     # a second interrupt here is the user insisting: let it through
        raise


def under_lock(lock: ContextManager[object], step: Callable[..., T], *args: object) -> T:
    """`step(*args)` with `lock` held; its release cannot be skipped by an interrupt.

    A `with lock:` block whose body spans lines can leave the lock held: when
    the body ends (falls off its end or returns), CPython 3.11 reports a line
    event for the `with` line *before* it calls `__exit__`, outside the block's
    exception handler, so a KeyboardInterrupt raised there (a trace function
    like tests/core/interrupt_child.py's, or any line-event hook) skips the
    release. try/finally with the acquire outside has two such points: the
    `try:` line after the acquire, and the `finally` body's own line on the
    normal path, both outside the handler. A `with` written on ONE line has
    none: the body's call and the `__exit__` call share the line, so no line
    event comes between the acquire and the release except inside `step`,
    whose exceptions the `with` handles. tests/core/test_interrupts.py
    (test_a_lock_taken_with_under_lock_is_never_left_held) shows all three.
    """
    with lock: return step(*args)  # noqa: E701  one line on purpose: see the docstring
