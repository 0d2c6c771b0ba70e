"""A loaded library stays mapped while anything handed out from it is alive.

Calling into unmapped code crashes the process, and Python gives no warning
before it drops the last reference to a library object. So both loaders
(the system one in system.py, minildr's own in native/) follow one rule:
`close()` unloads now if nothing from the library is still referenced, and
otherwise when the last function or pointer handed out is dropped. Garbage
collection never pulls code from under a caller, and closing stays explicit.
"""
from __future__ import annotations

import logging
import weakref

log = logging.getLogger("minildr")


class KeepsMappedWhileReferenced:
    """Mixin: `keep_mapped_while`, `close`; subclasses give `unloaded`, `_unload`, `_name`."""

    _live: int = 0              # functions or pointers handed out and still referenced
    _closing: bool = False

    @property
    def unloaded(self) -> bool:
        raise NotImplementedError

    @property
    def _name(self) -> str:
        raise NotImplementedError

    def _unload(self) -> None:
        raise NotImplementedError

    def keep_mapped_while(self, obj: object) -> None:
        """Do not unmap the library while `obj` (a function or data pointer) is alive."""
        self._live += 1
        weakref.finalize(obj, self._release_one).atexit = False

    def _release_one(self) -> None:
        self._live -= 1
        if self._closing and self._live == 0:
            self._unload()

    def close(self) -> None:
        """Unload now, or once no function or pointer from the library is held."""
        if self.unloaded or self._closing:
            return
        self._closing = True
        if self._live:
            log.info("close %s: still mapped while %d function(s) or pointer(s) from it are "
                     "referenced; it unloads when they are dropped", self._name, self._live)
            return
        self._unload()
