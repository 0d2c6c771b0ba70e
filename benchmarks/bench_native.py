"""Native loader benchmark: a library's first load in a fresh process, native against dlopen.

    python benchmarks/bench_native.py               # the table; goals: small <= 3x, big <= 6x
    python benchmarks/bench_native.py --rounds 5

For each library (the greet plugin, built here, and libz, SQLite and
libcrypto from this machine's library folder: a row whose library is absent
is skipped, and says so), every round starts two fresh Python processes
side by side: one times `minildr.native.load(path)`, the other the system
loader's `dlopen(path)` through cffi, each the first load of that library
in its process (interpreter start-up and imports are outside the timed
call on both sides; the import's median is printed below the table).
Both processes are started the same way, from the same folder, and load
the same file (its size and relocation count are printed with it). The
system side's process has imported cffi only, so none of these libraries
is loaded there yet (a dlopen of a library already loaded would only count
a reference); the native side's may already hold libz and libcrypto
(Python's zlib and hashlib modules link them), which changes nothing for
it: it maps its own copy either way. A row's figure is the median over the
rounds (the best round is printed beside it: on a busy machine it is the
one least disturbed, timing.py's rule); the ratio is native / system
within the same run, of medians and of bests. Each side also reports the
CPU time of the thread that loaded (time.thread_time: page faults and
system calls included, time spent waiting for a core not), the fairer
figure when other work shares the machine. The native side runs with
the default trace (relocations counted per type, not recorded one by one);
the step-by-step times of one native load follow the table.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from timing import built_greet  # noqa: E402  (benchmarks/timing.py)

LIB_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64"]
LIBRARIES: List[Tuple[str, Optional[str], float]] = [      # (row, soname or None: greet, goal)
    ("greet (plugin)", None, 3.0), ("libz", "libz.so.1", 3.0),
    ("SQLite", "libsqlite3.so.0", 6.0), ("libcrypto", "libcrypto.so.3", 6.0)]

SYSTEM = """
import sys, time, cffi
ffi = cffi.FFI()
c, t = time.thread_time(), time.perf_counter()
lib = ffi.dlopen(sys.argv[1])
t, c = time.perf_counter() - t, time.thread_time() - c
print(t, c)
"""
NATIVE = """
import sys, time
i = time.perf_counter(); import minildr.native; i = time.perf_counter() - i
c, t = time.thread_time(), time.perf_counter()
lib = minildr.native.load(sys.argv[1])
t, c = time.perf_counter() - t, time.thread_time() - c
print(i, t, c)
"""
STEPS = """
import gc, json, os, sys, time
gc.disable()                        # as NativeLibrary does for a load
from minildr.native import initfini, mapping, relocate, resolve
from minildr.native.library import read
from minildr.native.parse import parse
from minildr.native.trace import Trace
path = sys.argv[1]; fd = os.open(path, os.O_RDONLY)
trace, t = Trace(), [time.thread_time()]
data, _ = read(path); t.append(time.thread_time())
plan = parse(data, path); t.append(time.thread_time())
handles = []; resolve.open_needed(plan, trace, handles); bound = resolve.bind_symbols(plan, handles, trace)
t.append(time.thread_time())
base = mapping.reserve(plan, trace); mapping.map_segments(plan, base, fd, trace); t.append(time.thread_time())
relocate.relocate(plan, base, bound, trace); relocate.protect_relro(plan, base, trace)
t.append(time.thread_time())
initfini.run(plan, base, initfini.functions(plan, base, plan.init), "init", trace, [])
t.append(time.thread_time())
print(json.dumps({"steps": dict(zip(["read", "parse", "needed+bind", "map", "relocate+relro", "init"],
                                    [b - a for a, b in zip(t, t[1:])])),
                  "relocations": sum(trace.counts().values()), "symbols": len(bound)}))
"""


def find(soname: str) -> Optional[Path]:
    for folder in LIB_DIRS:
        if (Path(folder) / soname).is_file():
            return (Path(folder) / soname).resolve()
    return None


def first_load(script: str, path: Path) -> List[float]:
    """Seconds of one first load (after the import, for the native side), in a fresh process."""
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    return [float(word) for word in out.stdout.strip().splitlines()[-1].split()]


def measure(path: Path, rounds: int) -> Dict[str, float]:
    """Medians (and bests) of the wall-clock time and of the loading thread's CPU time."""
    times: Dict[str, List[float]] = {k: [] for k in ("native", "system", "native_cpu",
                                                     "system_cpu", "import")}
    for _ in range(rounds):                     # interleaved: both sides see the same machine
        wall, cpu = first_load(SYSTEM, path)
        times["system"].append(wall)
        times["system_cpu"].append(cpu)
        seconds_import, wall, cpu = first_load(NATIVE, path)
        times["native"].append(wall)
        times["native_cpu"].append(cpu)
        times["import"].append(seconds_import)
    result = {k: statistics.median(v) for k, v in times.items()}
    result.update({f"{k}_best": min(v) for k, v in times.items()})
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    with contextlib.ExitStack() as folders:     # the greet build's folder goes at the end
        report(args, folders)


def report(args: argparse.Namespace, folders: contextlib.ExitStack) -> None:
    rows, skipped = [], []
    for row, soname, goal in LIBRARIES:
        path = folders.enter_context(built_greet()) if soname is None else find(soname)
        if path is None:
            skipped.append(f"{row}: {soname} is not installed here (looked in {', '.join(LIB_DIRS)})")
            continue
        rows.append((row, path, goal, measure(path, args.rounds)))
    print(f"first load in a fresh process, median (best) of {args.rounds} rounds each side;")
    print("wall clock, then the loading thread's CPU time (what a busy machine disturbs least)")
    print(f"{'library':<16} {'':<5} {'native ms':>17} {'dlopen ms':>15} {'ratio':>14}  goal")
    for row, path, goal, t in rows:
        for label, key in (("wall", ""), ("cpu", "_cpu")):
            native, system = t["native" + key], t["system" + key]
            best = t[f"native{key}_best"] / t[f"system{key}_best"]
            verdict = "meets" if native / system <= goal else "MISSES"
            print(f"{row if not key else '':<16} {label:<5} {native * 1e3:8.2f} "
                  f"({t[f'native{key}_best'] * 1e3:6.2f}) {system * 1e3:6.2f} "
                  f"({t[f'system{key}_best'] * 1e3:5.2f}) {native / system:6.1f}x ({best:5.1f}x)"
                  f"  <= {goal:.0f}x: {verdict}")
    for line in skipped:
        print(f"skipped {line}")
    imports = statistics.median(t["import"] for *_, t in rows)
    print(f"(import minildr.native, once per process and outside the timed load: "
          f"{imports * 1e3:.0f} ms)")
    print("\nnative load of each, step by step (one fresh process, CPU time of each step):")
    for row, path, _, _ in rows:
        out = subprocess.run([sys.executable, "-c", STEPS, str(path)], capture_output=True,
                             text=True, cwd=ROOT, check=True)
        report = json.loads(out.stdout.strip().splitlines()[-1])
        steps = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in report["steps"].items())
        print(f"  {row:<16} {path.stat().st_size:>9,} bytes, {report['relocations']:>6,} "
              f"relocations, {report['symbols']:>5,} symbols bound; ms: {steps}")


if __name__ == "__main__":
    main()
