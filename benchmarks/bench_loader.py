"""Loader benchmark: minildr.open against raw ffi.dlopen, and a typed call against a raw call.

Both sides run in this one process, interleaved, on the same plugin file, so
the ratios compare like with like on whatever machine runs it. Each figure is
the best of several rounds (the least disturbed by the rest of the machine).

    python benchmarks/bench_loader.py            # prints a table of ratios

Goals (issue: the loader core): open <= 1.5x raw dlopen, call <= 1.1x raw call.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minildr  # noqa: E402
from timing import best_of, build_greet  # noqa: E402  (benchmarks/timing.py)
from minildr import image as images  # noqa: E402
from minildr.progress import progress  # noqa: E402




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--opens", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()

    path = build_greet()

    raw_ffi = cffi.FFI()
    raw_ffi.cdef("const char *greet(void);")

    def raw_open():
        lib = raw_ffi.dlopen(str(path))
        raw_ffi.dlclose(lib)

    def minildr_open():
        minildr.open(path).close()

    def minildr_first_open():
        images.clear_cache()           # forget the verified image: read, hash, check, seal
        minildr.open(path).close()

    # Opens first, with nothing else holding the library: every open maps it
    # and runs its initialisers, every close unmaps it. Interleave the sides
    # round by round so drift affects both alike.
    t_raw = t_open = t_first = float("inf")
    for _ in progress(range(args.rounds), desc="opens", unit="round"):
        t_raw = min(t_raw, best_of(raw_open, args.opens, 1))
        t_open = min(t_open, best_of(minildr_open, args.opens, 1))
        t_first = min(t_first, best_of(minildr_first_open, args.opens // 4, 1))

    raw_lib = raw_ffi.dlopen(str(path))
    raw_call = raw_lib.greet
    plugin = minildr.open(path)
    typed_call = plugin.lookup("greet", "const char *(void)")
    t_rawcall = t_typed = float("inf")
    for _ in progress(range(args.rounds), desc="calls", unit="round"):
        t_rawcall = min(t_rawcall, best_of(raw_call, args.calls, 1))
        t_typed = min(t_typed, best_of(typed_call, args.calls, 1))

    rows = []
    rows.append(("raw ffi.dlopen + dlclose", t_raw, 1.0, ""))
    rows.append(("minildr.open + close (unchanged file)", t_open, t_open / t_raw, "<= 1.5"))
    rows.append(("minildr.open + close (first open: read, hash, check, seal)",
                 t_first, t_first / t_raw, "-"))
    rows.append(("raw cffi call greet()", t_rawcall, 1.0, ""))
    rows.append(("typed-symbol call greet()", t_typed, t_typed / t_rawcall, "<= 1.1"))

    print(f"plugin: {path.name}, {path.stat().st_size} bytes; best of {args.rounds} rounds")
    print(f"{'measurement':<62} {'time':>10} {'ratio':>7}  goal")
    for name, seconds, ratio, goal in rows:
        unit = f"{seconds * 1e6:8.2f} us" if seconds > 1e-6 else f"{seconds * 1e9:8.1f} ns"
        print(f"{name:<62} {unit:>10} {ratio:6.2f}x  {goal}")
    plugin.close()


if __name__ == "__main__":
    main()
