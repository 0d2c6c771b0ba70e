"""Native loader benchmark: load time of the greet plugin through each loader, in one run.

    python benchmarks/bench_native.py           # prints a table; goal: native <= 20 ms

Each side opens the same plugin file and closes it again, interleaved round
by round; each figure is the best of several rounds. Measured separately:
minildr.open (checks on a cached image, then load), the raw loads without
minildr's checks (ffi.dlopen; minildr.native.load from the file), and the
native loader's steps one by one.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minildr  # noqa: E402
from timing import best_of, build_greet  # noqa: E402  (benchmarks/timing.py)
import minildr.native  # noqa: E402
from minildr.native import initfini, mapping, relocate, resolve  # noqa: E402
from minildr.native.parse import parse  # noqa: E402
from minildr.native.trace import Trace  # noqa: E402




def steps(path: Path, number: int) -> dict:
    """Seconds per step of a native load (the same steps NativeLibrary runs)."""
    data = path.read_bytes()
    totals = dict.fromkeys(["parse", "needed+bind", "map", "relocate+relro", "init", "fini+unmap"], 0.0)
    fd = os.open(path, os.O_RDONLY)
    for _ in range(number):
        trace = Trace()
        t0 = time.perf_counter()
        plan = parse(data, str(path))
        t1 = time.perf_counter()
        handles = resolve.open_needed(plan, trace)
        bound = resolve.bind_symbols(plan, handles, trace)
        t2 = time.perf_counter()
        base = mapping.reserve(plan, trace)
        mapping.map_segments(plan, base, fd, trace)
        t3 = time.perf_counter()
        relocate.relocate(plan, base, bound, trace)
        relocate.protect_relro(plan, base, trace)
        t4 = time.perf_counter()
        initfini.run(plan, base, initfini.functions(plan, base, plan.init), "init", trace)
        t5 = time.perf_counter()
        initfini.run(plan, base, initfini.functions(plan, base, plan.fini), "fini", trace)
        mapping.unmap(base, plan.span)
        resolve.close_needed(handles)
        t6 = time.perf_counter()
        for key, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            totals[key] += seconds
    os.close(fd)
    return {key: seconds / number for key, seconds in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--opens", type=int, default=300)
    args = ap.parse_args()

    path = build_greet()
    raw_ffi = cffi.FFI()

    def open_system():
        minildr.open(path).close()

    def open_native():
        minildr.open(path, loader="native").close()

    def raw_dlopen():
        raw_ffi.dlclose(raw_ffi.dlopen(str(path)))

    def raw_native():
        minildr.native.load(path).close()

    t = dict.fromkeys(["system", "native", "dlopen", "raw_native"], float("inf"))
    for _ in range(args.rounds):
        t["system"] = min(t["system"], best_of(open_system, args.opens, 1))
        t["native"] = min(t["native"], best_of(open_native, args.opens, 1))
        t["dlopen"] = min(t["dlopen"], best_of(raw_dlopen, args.opens, 1))
        t["raw_native"] = min(t["raw_native"], best_of(raw_native, args.opens, 1))

    print(f"plugin: {path.name}, {path.stat().st_size} bytes; best of {args.rounds} rounds "
          f"of {args.opens} opens")
    rows = [("minildr.open(loader='system') + close", t["system"], t["system"] / t["system"], ""),
            ("minildr.open(loader='native') + close", t["native"], t["native"] / t["system"],
             "<= 20 ms"),
            ("raw ffi.dlopen + dlclose (no checks)", t["dlopen"], t["dlopen"] / t["system"], ""),
            ("minildr.native.load + close (no checks)", t["raw_native"],
             t["raw_native"] / t["system"], "")]
    print(f"{'measurement':<45} {'time':>10} {'vs system':>10}  goal")
    for name, seconds, ratio, goal in rows:
        print(f"{name:<45} {seconds * 1e3:7.3f} ms {ratio:9.1f}x  {goal}")
    print("\nnative load, step by step (mean of", args.opens, "loads):")
    for step, seconds in steps(path, args.opens).items():
        print(f"  {step:<16} {seconds * 1e6:8.1f} us")
    verdict = "meets" if t["native"] <= 0.020 else "MISSES"
    print(f"\nnative open {t['native'] * 1e3:.2f} ms {verdict} the 20 ms goal; "
          f"ratio native/system = {t['native'] / t['system']:.1f}")


if __name__ == "__main__":
    main()
