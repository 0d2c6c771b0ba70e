"""Where `make test`'s time goes: CPU seconds per test and per file (opt-in: `make test-profile`).

Wall-clock times say little on a shared machine (other jobs take turns on
the same cores); CPU time is what a test costs wherever it runs, and on a
quiet machine with N cores the whole run cannot end sooner than its CPU
seconds / N. So with MINILDR_TEST_CPU=FOLDER set, every pytest process (each
xdist worker) appends one JSON line per test to FOLDER/cpu-<pid>.jsonl: the
CPU seconds (user + system) of the process itself and of the children it
waited for (compilers, kernels, isolated workers, Python subprocesses:
RUSAGE_SELF + RUSAGE_CHILDREN) between the test's setup and its teardown,
session fixtures included where they are first set up. Collection and the
session's end are recorded as "<collect>" and "<session end>", so the lines
add up to all of each worker's CPU. A process that escaped its parent
(double-forked, reaped by init) is not counted: run the whole of `make
test` under `time` (or a cpuacct cgroup) to see whether anything is missing.

    python tests/cpu_profile.py FOLDER [--top N] [--tests N]

prints the files by CPU seconds, the slowest tests, the total and the floor
of the wall time on this machine's cores; and, each row carrying the wall
clock at its end, when each xdist worker ran its last test: a worker that
ends long before the last one left a core idle (see SLOW_FIRST in conftest.py).
It also counts the Jupyter kernels the run started, by the file whose test
started them (each test kernel writes a line to FOLDER/kernels.jsonl:
tests/kernel_config.py); a kernel of an inner nbval session counts under its notebook.
And it counts the isolated workers the run started, by the file of the test
that started them (FOLDER/workers.jsonl: tests/worker_site/sitecustomize.py).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

ENV = "MINILDR_TEST_CPU"
WORKER_SITE = Path(__file__).resolve().parent / "worker_site"   # its sitecustomize counts workers


def cpu_seconds(children: bool = True) -> "tuple[float, float]":
    """(user, system) CPU seconds of this process and (unless told) its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    if not children:
        return own.ru_utime, own.ru_stime
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + kids.ru_utime, own.ru_stime + kids.ru_stime


class CpuProfile:
    """A pytest plugin (registered by conftest.py when MINILDR_TEST_CPU is set)."""

    def __init__(self, folder: Path, children: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out = open(folder / f"cpu-{os.getpid()}.jsonl", "a", encoding="utf-8")
        self.children = children
        self.mark = (0.0, 0.0)          # everything before the first test: start-up, collection

    def record(self, nodeid: str) -> None:
        now = cpu_seconds(self.children)
        user, system = now[0] - self.mark[0], now[1] - self.mark[1]
        self.mark = now
        self.out.write(json.dumps({"test": nodeid, "user": round(user, 4),
                                   "system": round(system, 4),
                                   "at": round(time.time(), 2)}) + "\n")
        self.out.flush()

    def pytest_collection_finish(self, session) -> None:
        self.record("<collect>")

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        if self.children:               # the controller hears of the workers' tests too: not its CPU
            self.record(nodeid)         # after teardown: module/session fixtures it ended count here

    def pytest_sessionfinish(self, session) -> None:
        # The isolated workers forked by the fork server are its children: its CPU and
        # theirs reach this process when it is reaped (forkserver.shutdown).
        forkserver = sys.modules.get("minildr.isolation.forkserver")
        if forkserver is not None and self.children:
            forkserver.shutdown()
        self.record("<session end>" if self.children else "<xdist controller>")
        self.out.close()


def configure(config) -> None:
    """Register the plugin if MINILDR_TEST_CPU names a folder."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    # xdist's controller runs no test; its children are the workers, which
    # measure themselves: counting them again there would count them twice.
    controller = not hasattr(config, "workerinput") and bool(config.getoption("numprocesses", None))
    config.pluginmanager.register(CpuProfile(Path(folder), children=not controller),
                                  "minildr-cpu-profile")
    count_workers(Path(folder))


def count_workers(folder: Path) -> None:
    """Log every isolated worker started by this process and the Pythons it starts."""
    os.environ.setdefault("MINILDR_TEST_WORKER_LOG", str(folder.resolve() / "workers.jsonl"))
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(WORKER_SITE) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(WORKER_SITE)] + [p for p in paths if p])
    if str(WORKER_SITE) not in sys.path:
        sys.path.append(str(WORKER_SITE))
    import sitecustomize            # tests/worker_site's (none other in this venv); installs once
    sitecustomize.install()


def load(folder: Path) -> "list[dict]":
    rows = []
    for path in sorted(folder.glob("cpu-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            rows.extend({**json.loads(line), "process": path.stem}
                        for line in f if line.strip())
    return rows


def timeline(rows: "list[dict]") -> "list[str]":
    """When each worker's last test ended, in seconds after the first row of the run."""
    ends: "dict[str, float]" = {}
    for row in rows:
        if "at" in row and row["test"] not in ("<session end>", "<xdist controller>"):
            ends[row["process"]] = max(ends.get(row["process"], 0.0), row["at"])
    starts = [row["at"] for row in rows if "at" in row]
    if len(ends) < 2 or not starts:
        return []
    first = min(starts)
    last = max(ends.values())
    return [f"each worker's last test ended at (s after the run's first row): "
            + ", ".join(f"{end - first:.0f}" for end in sorted(ends.values()))
            + f"; idle before the end: {sum(last - end for end in ends.values()):.0f} worker-s"]


def file_of(nodeid: str) -> str:
    return nodeid.split("::")[0]


def report(rows: "list[dict]", top: int, tests: int, cores: int) -> str:
    per_file: "dict[str, list[float]]" = defaultdict(lambda: [0.0, 0.0, 0])
    for row in rows:
        entry = per_file[file_of(row["test"])]
        entry[0] += row["user"]
        entry[1] += row["system"]
        entry[2] += 1
    user = sum(r["user"] for r in rows)
    system = sum(r["system"] for r in rows)
    total = user + system
    lines = [f"{'CPU s':>8} {'user':>8} {'sys':>7} {'tests':>6}  file"]
    ranked = sorted(per_file.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for name, (u, s, n) in ranked[:top]:
        lines.append(f"{u + s:8.1f} {u:8.1f} {s:7.1f} {n:6d}  {name}")
    rest = ranked[top:]
    if rest:
        lines.append(f"{sum(u + s for _, (u, s, _n) in rest):8.1f} {'':8} {'':7} "
                     f"{sum(n for _, (_u, _s, n) in rest):6d}  ({len(rest)} other files)")
    lines.append(f"{total:8.1f} {user:8.1f} {system:7.1f} {len(rows):6d}  total "
                 f"(floor of the wall time on {cores} cores: {total / cores:.0f} s)")
    lines += timeline(rows)
    if tests:
        lines.append("")
        lines.append(f"the {tests} slowest tests (CPU s):")
        for row in sorted(rows, key=lambda r: -(r["user"] + r["system"]))[:tests]:
            lines.append(f"{row['user'] + row['system']:8.1f}  {row['test']}")
    return "\n".join(lines)


def started(folder: Path, log: str, what: str, untested: str) -> "list[str]":
    """How many of `what` the run started (one line each in folder/log), in all and by
    the file of the test that started them (`untested` names those no test started)."""
    path = folder / log
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        tests = [json.loads(line)["test"] for line in f if line.strip()]
    by_file: "dict[str, int]" = defaultdict(int)
    for test in tests:
        by_file[file_of(test) or untested] += 1
    ranked = sorted(by_file.items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"{what} started: {len(tests)} ("
            + ", ".join(f"{name} {count}" for name, count in ranked) + ")"]


def kernels(folder: Path) -> "list[str]":
    """How many kernels the run started, in all and by the file of the test that started them."""
    return started(folder, "kernels.jsonl", "Jupyter kernels",
                   "(no test: a process the tests started)")


def workers(folder: Path) -> "list[str]":
    """How many isolated workers the run started, in all and by the file of the test."""
    return started(folder, "workers.jsonl", "isolated workers", "(no test)")


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=25, help="how many files to list")
    parser.add_argument("--tests", type=int, default=15, help="how many single tests to list")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    rows = load(args.folder)
    if not rows:
        print(f"no measurements in {args.folder} (run pytest with {ENV}={args.folder})",
              file=sys.stderr)
        return 1
    print(report(rows, args.top, args.tests, args.cores))
    print("\n".join(kernels(args.folder)))
    print("\n".join(workers(args.folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
