"""One of several processes building and opening the same plugin name in one folder.

    python race_child.py MODE INDEX ROUNDS FOLDER START [PROCESSES]
    python race_child.py MODE fork ROUNDS FOLDER START PROCESSES

With `fork` in place of INDEX, the racers 0..PROCESSES-1 are processes
forked from this one after its imports (fork_racers), each as above.

MODE "build": each round writes this process's own source (returning INDEX)
into a folder of its own, builds it as plugin `who` into FOLDER/out (shared
by every process), opens what build returned and calls it. MODE "cell": the
same through %%minildr's build_cell, into FOLDER/cells. Every process starts
at the wall-clock time START, and with PROCESSES given each round waits until
all PROCESSES processes have reached it (a barrier of files in FOLDER/gate):
the builds of one round start together, so their installs and opens
overlap in every round rather than where the processes' paces happen to
bring them together (a build is ~60 ms of compiler runs; the window between
one process's install and its open is a few ms). Prints one line per
failure: a round whose build or open raised, or that called back another
process's constant.
Exit status 0 only if no round failed.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

import minildr
from minildr.course.magic import build_cell


def one_round(mode: str, index: int, round_: int, folder: Path) -> str:
    source = f"int who(void) {{ return {index}; }}\nint round_{round_}_{index};\n"
    if mode == "cell":
        path = build_cell(source, name="who", out_dir=folder / "cells")
    else:
        mine = folder / f"src-{index}"
        mine.mkdir(exist_ok=True)
        (mine / "who.c").write_text(source)
        (mine / "who.h").write_text(f"int who(void);\nextern int round_{round_}_{index};\n")
        path = minildr.build([mine / "who.c"], name="who", exports=mine / "who.h",
                             out_dir=folder / "out")
    with minildr.open(path) as plugin:
        got = plugin.lookup("who", "int (void)")()
    return "" if got == index else f"round {round_}: built {index}, called back {got}"


def wait_for_the_others(gate: Path, index: int, round_: int, processes: int) -> None:
    """Mark this process as at `round_`; return once all `processes` are (or after 60 s:
    a process that died must not hang the rest, its own failure tells why)."""
    (gate / f"{round_}-{index}").touch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all((gate / f"{round_}-{i}").exists() for i in range(processes)):
            return
        time.sleep(0.001)


def run(mode: str, index: int, rounds: int, folder: Path, start: float, processes: int) -> int:
    """This process's rounds as racer `index`: 1 if any failed (each printed), else 0."""
    gate = folder / "gate"
    gate.mkdir(exist_ok=True)
    time.sleep(max(0.0, start - time.time()))
    failures = 0
    for round_ in range(rounds):
        if processes:
            wait_for_the_others(gate, index, round_, processes)
        try:
            problem = one_round(mode, index, round_, folder)
        except Exception:
            problem = f"round {round_}: " + traceback.format_exc(limit=3).replace("\n", " | ")
        if problem:
            failures += 1
            print(problem, flush=True)
    return 1 if failures else 0


def fork_racers(mode: str, rounds: int, folder: Path, start: float, processes: int) -> int:
    """Racers 0..processes-1, each a process of its own forked from this one once it has
    imported minildr (one Python start and one import for them all, ~0.3 CPU s each
    saved); each has its own pid, caches and staged names, as separately started
    processes do. 0 only if every racer ended with 0."""
    pids = []
    for index in range(processes):
        pid = os.fork()
        if pid == 0:                                     # the racer: never returns
            status = 2
            try:
                status = run(mode, index, rounds, folder, start, processes)
            except BaseException:                        # printed: the test shows it
                print(f"racer {index}: " + traceback.format_exc().replace("\n", " | "))
            finally:
                sys.stdout.flush()
                os._exit(status)
        pids.append(pid)
    failed = 0
    for index, pid in enumerate(pids):
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if status:
            failed = 1
            if status != 1:                              # 1: its failed rounds are printed
                print(f"racer {index}: ended with status {status}", flush=True)
    return failed


def main() -> int:
    mode, which, rounds, folder, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        Path(sys.argv[4]), float(sys.argv[5])
    processes = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    if which == "fork":
        return fork_racers(mode, rounds, folder, start, processes)
    return run(mode, int(which), rounds, folder, start, processes)


if __name__ == "__main__":
    sys.exit(main())
