"""What one minildr.build costs in CPU: this tree beside another (main), in one run.

Each sample is a fresh Python process that imports minildr from one of the
two trees and makes `--builds` builds of one kind, recording per build the
CPU of the process itself (getrusage(RUSAGE_SELF): staging, parsing the
declarations, checking the exports, writing the file) and of the compiler
processes it ran (RUSAGE_CHILDREN: driver, cc1, as, collect2, ld):

- greet again: examples/greet built again and again (the same exports header:
  what a notebook rebuilding a plugin, or a test building an example twice, does);
- new header: tests/core/race_child.py's build, a new exports header each time
  (`int who(void);` and a new `extern int round_N;`);
- new cell: the same through %%minildr's build_cell (it preprocesses the cell
  once more, to write the exports header).

The first build of each process is left out (first-use costs: imports,
`cc --version`). The trees take turns round by round, the order
alternating, so both see the same machine; the load average is printed.
The other tree is `git archive REF minildr` (default main) in a temporary
folder, imported ahead of this one (sys.path[0]).

    python benchmarks/bench_build.py [--ref main] [--rounds 4] [--builds 20]
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
from timing import unpack  # noqa: E402  (benchmarks/timing.py)

KINDS = ("greet again", "new header", "new cell")

SAMPLE = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
tree, examples, kind, builds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sys.path.insert(0, tree)
import minildr
from minildr.course.magic import build_cell
assert minildr.__file__.startswith(tree), minildr.__file__

def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

def one(i, out):
    if kind == "greet again":
        minildr.build([examples / "greet/greet.c"], name="greet",
                      exports=examples / "greet/greet.h", out_dir=out)
    elif kind == "new header":
        src = out / "src"
        src.mkdir(exist_ok=True)
        (src / "who.c").write_text(f"int who(void) {{ return 1; }}\nint round_{i};\n")
        (src / "who.h").write_text(f"int who(void);\nextern int round_{i};\n")
        minildr.build([src / "who.c"], name="who", exports=src / "who.h", out_dir=out)
    else:
        build_cell(f"int who(void) {{ return 1; }}\nint round_{i};\n", name="who",
                   out_dir=out / "cells")

rows = []
with tempfile.TemporaryDirectory(prefix="minildr-bench-") as out:
    for i in range(builds + 1):
        wall, me, them = time.perf_counter(), cpu(resource.RUSAGE_SELF), \
            cpu(resource.RUSAGE_CHILDREN)
        one(i, Path(out))
        rows.append([time.perf_counter() - wall, cpu(resource.RUSAGE_SELF) - me,
                     cpu(resource.RUSAGE_CHILDREN) - them])
print(json.dumps(rows[1:]))
"""



def sample(tree: Path, kind: str, builds: int) -> List[List[float]]:
    done = subprocess.run([sys.executable, "-c", SAMPLE, str(tree), str(ROOT / "examples"),
                           kind, str(builds)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="the tree to compare with (a git ref)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--builds", type=int, default=20, help="builds per process")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="minildr-bench-") as other:
        compare({args.ref: unpack(args.ref, Path(other)), "this": ROOT}, args)


def compare(trees: Dict[str, Path], args: argparse.Namespace) -> None:
    """The rounds, then the table (see the module's docstring)."""
    got: Dict[tuple, List[List[float]]] = {(t, k): [] for t in trees for k in KINDS}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for kind in KINDS:
            for name, tree in order:
                got[name, kind].extend(sample(tree, kind, args.builds))
    print(f"minildr.build, {args.rounds} rounds x {args.builds} builds per process, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (medians per build, ms)")
    print(f"{'':<26}{'wall':>8}{'own CPU':>9}{'compiler CPU':>14}{'CPU':>8}")
    for kind in KINDS:
        totals = {}
        for name in trees:
            rows = got[name, kind]
            med = [statistics.median(r[i] for r in rows) * 1000 for i in range(3)]
            totals[name] = statistics.median((r[1] + r[2]) for r in rows) * 1000
            print(f"{kind + ' ' + name:<26}{med[0]:>8.1f}{med[1]:>9.1f}{med[2]:>14.1f}"
                  f"{totals[name]:>8.1f}")
        print(f"{kind}: CPU this / {args.ref} = {totals['this'] / totals[args.ref]:.2f}")


if __name__ == "__main__":
    main()
