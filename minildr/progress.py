"""Progress bars for long work: a bar in a terminal, a widget in a notebook.

Building a folder of plugins or running a benchmark takes long enough that a
learner deserves to see it moving. tqdm draws the bar (its `auto` flavour
picks a notebook widget inside Jupyter and text in a terminal); where
neither is there to see it (a CI log, a pipe) the bar stays quiet.
"""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget can be shown)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def visible() -> bool:
    """Whether someone is watching: a notebook, or a terminal on stderr."""
    return in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def progress(items: Iterable[T], *, desc: str, total: Optional[int] = None,
             unit: str = "it", show: Optional[bool] = None) -> Iterator[T]:
    """Iterate over `items` with a progress bar (show=None: only if someone watches)."""
    if show is None:
        show = visible()
    if not show:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a course dependency
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)              # type: ignore[arg-type]
    # The bar is told the count, not given the items: a notebook's bar stays on the
    # page (leave=True), and a bar holding the items would keep them alive with it,
    # in a cycle of its widgets (a benchmark's looked-up functions, and so a closed
    # plugin mapped, until a garbage collection).
    with tqdm(desc=desc, total=total, unit=unit, leave=True, dynamic_ncols=True) as bar:
        for item in items:
            yield item
            bar.update(1)
