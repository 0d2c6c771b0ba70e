"""What a Jupyter kernel's start costs: the learner's kernel beside the tests' (tests/kernel_profile.py).

Each sample starts one kernel of this environment (the course's "python3"
spec, as nbclient and `make lab` start it), waits until it is ready, runs one
cell and stops it, the two ways the tests stop kernels: a shutdown request
(nbclient: make check, the exercises' answers, nbgrader) or a kill (nbval);
its CPU is the kernel process's, reaped below this one (RUSAGE_CHILDREN).
The learner's kernel gets a fresh IPython folder of its own (nothing of the
user's ~/.ipython), the test kernel the tests' profile (tests/kernel_config.py:
no debugpy, no history database, no collection at exit). The two take turns, the order alternating
round by round, so both see the same machine; the load average is printed
before and after.

    python benchmarks/bench_kernel_start.py [--rounds 10] [--cell "import minildr"]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("learner", "test")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_kernel(ipython_dir: Path, cell: str, kill: bool) -> float:
    """CPU seconds of one kernel: start, one cell, stop (killed or asked)."""
    env = {**os.environ, "IPYTHONDIR": str(ipython_dir)}
    before = children_cpu()
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT),
                              stderr=subprocess.DEVNULL)      # its TCP warning, each time
    try:
        reply = kc.execute_interactive(cell, timeout=120, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=kill)
    return children_cpu() - before


def profiles(folder: Path) -> Dict[str, Path]:
    """An empty IPython folder (the learner's, fresh) and one holding the tests' profile."""
    test = folder / "test" / "profile_default"
    test.mkdir(parents=True)
    shutil.copyfile(ROOT / "tests" / "kernel_config.py", test / "ipython_kernel_config.py")
    (folder / "learner").mkdir()
    return {"learner": folder / "learner", "test": folder / "test"}


def main(argv: "List[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cell", default="x = 1", help="the one cell each kernel runs")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    samples: Dict[tuple, List[float]] = {(k, s): [] for k in KINDS for s in ("asked", "killed")}
    with tempfile.TemporaryDirectory(prefix="minildr-bench-kernel-") as tmp:
        dirs = profiles(Path(tmp))
        for n in range(args.rounds):
            for kind in (KINDS if n % 2 == 0 else KINDS[::-1]):
                for stop in ("asked", "killed"):
                    samples[kind, stop].append(one_kernel(dirs[kind], args.cell, stop == "killed"))
    print(f"load average after:  {os.getloadavg()[0]:.1f}")
    for stop in ("asked", "killed"):
        learner = statistics.median(samples["learner", stop])
        test = statistics.median(samples["test", stop])
        print(f"kernel CPU, stopped {stop:6s} (median of {args.rounds}): learner's {learner:.3f} s, "
              f"test kernel {test:.3f} s = {test / learner:.2f}x (saves {learner - test:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
