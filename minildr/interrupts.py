"""Undoing that an interrupt cannot cut short.

Ctrl-C raises KeyboardInterrupt at whatever line Python is running. If that
line is in the middle of undoing a load (closing descriptors, ending a
worker, unmapping a library), the rest of the undoing never runs and
something stays open, mapped or running. `finish` runs an undoing step again
from the start if it was cut short, then lets the interrupt go on: so the
step must be written to be run twice (each resource forgotten in the same
statement that releases it, never released twice).
"""
from __future__ import annotations

from typing import Callable


def finish(undo: Callable[[], object]) -> None:
    """Run `undo` to its end even if an interrupt (or any exception) cuts it short once."""
    try:
        undo()
    except BaseException:
        undo()          # a second interrupt here is the user insisting: let it through
        raise
