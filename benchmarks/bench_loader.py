"""Loader benchmark: what minildr.open costs against what it must cost, and a typed call.

Both sides run in this one process, interleaved round by round, on the same
plugin files, so the ratios compare like with like on whatever machine runs
it. Opens are timed call by call, the sides taking turns, and each figure
is a median; typed calls are the best of several rounds.

    python benchmarks/bench_loader.py            # prints a table, with the file sizes

A first open reads the file, hashes it (SHA-256, which trust and the cache
need) and loads it; its floor is exactly that, done by hand: read + SHA-256
+ a raw dlopen + dlclose of the file. Each first open is of bytes never
opened before (see `measure_opens`). Measured for a small plugin (the greet
example, ~15 kB) and a large one (~20 MB, most of it a constant table), where
hashing dominates. A repeated open of an unchanged file reuses the checked
image (image.py's cache) and is compared with a raw dlopen + dlclose: what a
Python host writes for one, cffi's ffi.dlopen + ffi.dlclose. That builds a
library object per dlopen (a class of its own), which costs about a third
of the whole on a small plugin: the table also gives the two C calls alone
(dlopen and dlclose through cffi's binding of them), and the repeated open
against those, without a goal.

Goals (issue 16): first open <= 1.3x its floor for both sizes; repeated open
of an unchanged file <= 1.2x raw dlopen + dlclose; a typed call of a function
returning a number <= 1.1x the raw cffi call. A function returning a pointer
pays for keeping the plugin mapped while its result lives (lifetime.py): its
ratio is printed, without a goal.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minildr  # noqa: E402
from timing import best_of, built_greet  # noqa: E402  (benchmarks/timing.py)
from minildr import image as images, libdl  # noqa: E402
from minildr.progress import progress  # noqa: E402

BIG_BYTES = 20 * 1024 * 1024


def build_big(out: Path) -> Path:
    """A ~20 MB plugin: one exported function and a 20 MB constant table it reads."""
    (out / "big.c").write_text(
        f"static const unsigned char table[{BIG_BYTES}] = {{1}};\n"
        "int entry(int i) { return table[i]; }\n")
    (out / "big.h").write_text("int entry(int i);\n")
    return minildr.build([out / "big.c"], name="big", exports=out / "big.h", out_dir=out)


def stamp(path: Path, counter: int) -> None:
    """Make the file's last 8 bytes `counter`: new bytes, a new mtime, so a new file to minildr.

    The plugin files get 8 bytes appended once (after the section headers,
    where no loader reads); each first open and each floor then reads a
    file whose bytes (and so digest) no earlier open has seen, so neither
    the image cache (by identity) nor anything keyed by digest can serve it.
    """
    with open(path, "r+b") as f:
        f.seek(-8, 2)
        f.write(counter.to_bytes(8, "little"))


def measure_opens(path: Path, rounds: int, first_opens: int, opens: int) -> dict:
    """Per-call times of the floor, first open, raw dlopen and repeated open of one plugin.

    Each call is timed alone and the four sides take turns call by call, so a
    disturbance by the rest of the machine falls on all of them alike; the
    figures are medians. Before each first open and each floor (untimed): the
    file gets new bytes (`stamp`) and the image cache is emptied, so the
    first open reads, hashes, checks and seals a file it has never seen; its
    sealed copy is freed when the cache forgets it, outside the timing (as a
    cached image outlives its close). The repeated open is of the file just
    opened, unchanged.
    """
    raw = cffi.FFI()
    name = str(path)
    with open(path, "ab") as f:
        f.write(bytes(8))
    counter = iter(range(1, 1 << 62))
    clock = time.perf_counter_ns

    def raw_open() -> None:
        raw.dlclose(raw.dlopen(name))

    calls, flags, encoded = libdl.lib, os.RTLD_NOW | os.RTLD_LOCAL, os.fsencode(name)

    def c_calls() -> None:           # the same system loader work, no library object
        calls.dlclose(calls.dlopen(encoded, flags))

    def floor() -> None:
        with open(name, "rb") as f:
            hashlib.sha256(f.read()).digest()
        raw_open()

    def open_close() -> None:
        minildr.open(name).close()

    def fresh() -> None:
        stamp(path, next(counter))
        images.clear_cache()

    times: dict = {side: [] for side in ("floor", "first", "raw", "repeated", "c calls")}
    sides = (("floor", fresh, floor), ("first", fresh, open_close),
             ("raw", None, raw_open), ("repeated", None, open_close), ("c calls", None, c_calls))
    for _ in progress(range(rounds), desc=path.name, unit="round"):
        for i in range(opens):
            for side, setup, fn in sides:
                if side in ("floor", "first") and i >= first_opens:
                    continue
                if setup is not None:
                    setup()
                start = clock()
                fn()
                times[side].append(clock() - start)
    return {side: statistics.median(t) / 1e9 for side, t in times.items()}


def measure_calls(small: Path, big: Path, rounds: int, calls: int) -> list:
    """A typed call against the raw cffi call of the same function, for both kinds of result.

    greet() returns a pointer (each result keeps the plugin mapped: a weak
    reference per call, lifetime.py); entry(int) returns a number (the cffi
    function itself is handed out).
    """
    cases = (("greet()", small, "greet", "const char *(void)", ()),
             ("entry(7)", big, "entry", "int (int)", (7,)))
    rows = []
    for shown, path, name, ctype, call_args in cases:
        raw_ffi = cffi.FFI()
        raw_ffi.cdef(ctype.replace("(", f"{name}(", 1) + ";")
        raw_call = getattr(raw_ffi.dlopen(str(path)), name)
        with minildr.open(path) as plugin:
            typed_call = plugin.lookup(name, ctype)
            t_raw = t_typed = float("inf")
            for _ in progress(range(rounds), desc=name, unit="round"):
                t_raw = min(t_raw, best_of(functools.partial(raw_call, *call_args), calls, 1))
                t_typed = min(t_typed, best_of(functools.partial(typed_call, *call_args),
                                               calls, 1))
            del typed_call
        rows += [(f"raw cffi call {shown} ({ctype})", t_raw, 1.0, ""),
                 (f"typed-symbol call {shown}", t_typed, t_typed / t_raw,
                  "<= 1.1 x raw" if "*" not in ctype.split("(")[0] else "")]
    return rows


def show(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds * 1e6:8.2f} us" if seconds > 1e-6 else f"{seconds * 1e9:8.1f} ns"


def table(small: Path, big: Path, args: argparse.Namespace) -> list:
    rows = []
    for path, first_opens in ((small, args.opens), (big, args.big_opens)):
        t = measure_opens(path, args.rounds, first_opens, args.opens)
        size = f"{path.name}, {path.stat().st_size:,} bytes"
        rows += [(f"{size}: floor (read + SHA-256 + raw dlopen + dlclose)", t["floor"], 1.0, ""),
                 (f"{size}: minildr.open + close, first open", t["first"],
                  t["first"] / t["floor"], "<= 1.3 x floor"),
                 (f"{size}: raw dlopen + dlclose (cffi's ffi.dlopen, ffi.dlclose)", t["raw"],
                  1.0, ""),
                 (f"{size}: minildr.open + close, unchanged file", t["repeated"],
                  t["repeated"] / t["raw"], "<= 1.2 x raw"),
                 (f"{size}: dlopen + dlclose, the C calls alone (no library object)",
                  t["c calls"], t["c calls"] / t["raw"], "(x raw)"),
                 (f"{size}: minildr.open + close, unchanged file, against the C calls",
                  t["repeated"], t["repeated"] / t["c calls"], "(x the C calls)")]
    return rows + measure_calls(small, big, args.rounds, args.calls)


def load_average() -> str:
    """The machine's load average: the other work the ratios were measured beside."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--opens", type=int, default=400, help="opens per round, small plugin")
    ap.add_argument("--big-opens", type=int, default=10,
                    help="first opens per round, 20 MB plugin")
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()

    load_before = load_average()
    with built_greet() as small, \
            tempfile.TemporaryDirectory(prefix="minildr-bench-big-") as folder:
        rows = table(small, build_big(Path(folder)), args)
    print(f"opens: medians of per-call times over {args.rounds} rounds, sides taking turns call "
          f"by call; calls: best of {args.rounds} rounds")
    print("first opens and floors: each of a copy with its own last 8 bytes (never opened before, "
          "so no cache of any kind can serve it)")
    print("load average (1, 5, 15 min) before: " + load_before + ", after: " + load_average())
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}} {'time':>11} {'ratio':>7}  goal")
    for name, seconds, ratio, goal in rows:
        print(f"{name:<{width}} {show(seconds):>11} {ratio:6.2f}x  {goal}")


if __name__ == "__main__":
    main()
