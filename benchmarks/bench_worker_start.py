"""What starting an isolated worker costs: this tree beside another (main), in one run.

Each sample is a fresh host process (`python -c HOST`) that imports minildr
from one of the two trees and does `--cycles` times: open(greet.so,
isolate=True) (or sandbox=True), lookup, one call, close. Per cycle it
records the wall time, the host's CPU time (getrusage(RUSAGE_SELF)) and the
worker's (RUSAGE_CHILDREN: the keeper, the namespace's init and the server,
all reaped below the host). The first cycle of a host is reported apart
(it pays the host's first-use costs); "later" is the median of the others.
A worker forked by the fork server (isolation/forkserver.py) is reaped by
the server, not the host, so its CPU reaches the host only when the server
ends: per-cycle worker CPU is then near 0, and what compares is the last
line per mode, every worker CPU of a host (the server's start and all its
keepers, after forkserver.shutdown) divided by the cycles.
The two trees take turns round by round, the order alternating, so both
see the same machine; the load average is printed before and after.

The other tree is `git archive REF minildr` (default main) unpacked in a
temporary folder: its minildr is imported ahead of this one (sys.path[0])
and its workers run its own code (process.worker_command names the
package's own folder).

    python benchmarks/bench_worker_start.py [--ref main] [--rounds 8] [--cycles 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from timing import built_greet, unpack  # noqa: E402  (benchmarks/timing.py: the folder goes at the end)

HOST = r"""
import json, os, resource, sys, time
tree, plugin, mode, cycles = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, tree)
import minildr
assert minildr.__file__.startswith(tree), minildr.__file__
kw = {"isolate": True} if mode == "isolated" else {"sandbox": True}

def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

rows = []
for _ in range(cycles):
    wall, host, worker = time.perf_counter(), cpu(resource.RUSAGE_SELF), \
        cpu(resource.RUSAGE_CHILDREN)
    p = minildr.open(plugin, **kw)
    assert minildr.ffi.string(p.lookup("greet", "const char *(void)")()).startswith(b"Hello")
    p.close()
    rows.append([time.perf_counter() - wall, cpu(resource.RUSAGE_SELF) - host,
                 cpu(resource.RUSAGE_CHILDREN) - worker])
try:                        # a tree with a fork server: reaped, so its CPU is counted
    from minildr.isolation import forkserver
    forkserver.shutdown()
except ImportError:
    pass
rows.append(cpu(resource.RUSAGE_CHILDREN) / cycles)     # every worker CPU, amortized
print(json.dumps(rows))
"""



def sample(tree: Path, plugin: Path, mode: str, cycles: int) -> List[List[float]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([sys.executable, "-c", HOST, str(tree), str(plugin), mode,
                           str(cycles)], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="the tree to compare with (a git ref)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=5, help="open+call+close per host")
    ap.add_argument("--modes", default="isolated,sandboxed")
    args = ap.parse_args()

    with built_greet() as plugin, tempfile.TemporaryDirectory(prefix="minildr-bench-") as other:
        compare({args.ref: unpack(args.ref, Path(other)), "this": ROOT}, plugin, args)


def compare(trees: Dict[str, Path], plugin: Path, args: argparse.Namespace) -> None:
    """The rounds, then the table (see the module's docstring)."""
    modes = args.modes.split(",")
    for tree in trees.values():                       # warm up: bytecode, the C call loop
        for mode in modes:
            sample(tree, plugin, mode, 1)
    got: Dict[tuple, List[List[float]]] = {(t, m, w): [] for t in trees for m in modes
                                            for w in ("first", "later")}
    amortized: Dict[tuple, List[float]] = {(t, m): [] for t in trees for m in modes}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for mode in modes:
            for name, tree in order:
                rows = sample(tree, plugin, mode, args.cycles)
                amortized[name, mode].append(rows.pop())
                got[name, mode, "first"].append(rows[0])
                got[name, mode, "later"].extend(rows[1:])
    print(f"isolated open+lookup+call+close, {args.rounds} rounds x {args.cycles} cycles, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (medians, ms)")
    print(f"{'':<28}{'wall':>8}{'host CPU':>10}{'worker CPU':>12}")
    for mode in modes:
        for which in ("first", "later"):
            for name in trees:
                rows = got[name, mode, which]
                med = [statistics.median(r[i] for r in rows) * 1000 for i in range(3)]
                print(f"{mode} {which} {name:<14}{med[0]:>8.0f}{med[1]:>10.1f}{med[2]:>12.1f}")
            before, after = (statistics.median(r[2] for r in got[n, mode, which])
                             for n in trees)
            print(f"{mode} {which}: worker CPU this / {args.ref} = {after / before:.2f}")
        per = [statistics.median(amortized[n, mode]) * 1000 for n in trees]
        print(f"{mode}: every worker CPU of a host / cycles (its fork server's start included"
              f"), ms: " + ", ".join(f"{n} {v:.1f}" for n, v in zip(trees, per))
              + f"; this / {args.ref} = {per[1] / per[0]:.2f}")


if __name__ == "__main__":
    main()
