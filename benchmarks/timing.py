"""The one timing rule every benchmark here uses.

Best of several rounds: the fastest round is the one the rest of the machine
disturbed least, so it is the fairest figure for comparing two ways of doing
the same thing measured side by side in one run.
"""
from __future__ import annotations

import time
from typing import Callable


def best_of(fn: Callable[[], object], number: int, rounds: int) -> float:
    """Seconds per call of fn(), the best of `rounds` rounds of `number` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def build_greet():
    """The greet example, built into a fresh temporary folder: the plugin the loader benchmarks open."""
    import tempfile
    from pathlib import Path

    import minildr
    greet = Path(__file__).resolve().parents[1] / "examples" / "greet"
    out = Path(tempfile.mkdtemp(prefix="minildr-bench-"))
    return minildr.build([greet / "greet.c"], name="greet", exports=greet / "greet.h", out_dir=out)
