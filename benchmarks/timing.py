"""The one timing rule every benchmark here uses.

Best of several rounds: the fastest round is the one the rest of the machine
disturbed least, so it is the fairest figure for comparing two ways of doing
the same thing measured side by side in one run.
"""
from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import minildr       # (each benchmark puts the repository first on sys.path before this)


def best_of(fn: Callable[[], object], number: int, rounds: int) -> float:
    """Seconds per call of fn(), the best of `rounds` rounds of `number` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


@contextlib.contextmanager
def built_greet() -> Iterator[Path]:
    """The greet example, built into a temporary folder that goes when the `with` ends.

    The benchmarks open it; the folder (source copies, the plugin) is removed
    however the benchmark ends, so no run leaves a minildr-bench-* folder behind.
    """
    greet = Path(__file__).resolve().parents[1] / "examples" / "greet"
    with tempfile.TemporaryDirectory(prefix="minildr-bench-") as out:
        yield minildr.build([greet / "greet.c"], name="greet", exports=greet / "greet.h",
                            out_dir=out)


def unpack(ref: str, into: Path) -> Path:
    """`git archive ref minildr` of this repository unpacked in `into`: the folder to put
    first on sys.path to import that tree's minildr (a benchmark's side-by-side "other")."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "minildr"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
