"""What one student costs a JupyterHub: memory with 1 and 6 notebooks open, CPU-seconds per notebook.

The figures the README's "Run it for a class" sizes a hub with. It starts the
same hub as `make hub-test` (tests/hub/classroom.py: a real OS user, the
hub's login form, nbgitpuller, the shared non-editable environment of
`make hub-env`), logs one student in, and runs the notebooks through the
student's own server, as JupyterLab's Run All does:

- 02..07 one after another, each kernel left running (JupyterLab keeps a
  notebook's kernel until it is shut down): the student's memory with 1
  notebook open, then with 6;
- 00, 01 and 08 with their kernels shut down afterwards.

Memory is sampled every 0.2 s over every process of the student's uid
(server, kernels, compilers, Go, isolated workers): RSS, and PSS, which
shares the pages of common libraries fairly between processes. CPU-seconds
are the kernel's own plus its reaped children's (getrusage in the kernel),
the cost of one Run All. Needs root and `make hub-env`; about 4 minutes.

    python benchmarks/bench_hub.py [--out benchmarks/results/hub_sizing.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "hub"))
from classroom import TARGET, Classroom, Student  # noqa: E402  (tests/hub is not a package)

MB = 1024 * 1024
OPEN_ONE_BY_ONE = ["02", "03", "04", "05", "06", "07"]
ALONE = ["00", "01", "08"]


class Sampler(threading.Thread):
    """The summed RSS/PSS of one uid's processes, every 0.2 s; peaks since the last reset."""

    def __init__(self, classroom: Classroom) -> None:
        super().__init__(daemon=True)
        self.classroom = classroom
        self.peak = {"rss": 0, "pss": 0}
        self.now = {"rss": 0, "pss": 0}
        self.stopped = threading.Event()

    def sample(self) -> dict:
        total = {"rss": 0, "pss": 0}
        for process in self.classroom.student_processes():
            try:
                info = process.memory_full_info()
            except psutil.Error:
                continue
            total["rss"] += info.rss
            total["pss"] += info.pss
        return total

    def run(self) -> None:
        while not self.stopped.is_set():
            self.now = self.sample()
            for key in self.peak:
                self.peak[key] = max(self.peak[key], self.now[key])
            time.sleep(0.2)

    def reset(self) -> None:
        self.peak = dict(self.now)


def notebook_path(number: str) -> str:
    name = sorted((ROOT / "notebooks").glob(f"{number}-*.ipynb"))[0].name
    return f"{TARGET}/notebooks/{name}"


def hub_memory(classroom: Classroom) -> float:
    """The hub and its proxy (root's processes, not the students')."""
    processes = [classroom.hub] + [p for p in classroom.hub.children(recursive=True)
                                   if p.uids().real == 0]
    return sum(p.memory_full_info().pss for p in processes) / MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hub_sizing.json")
    args = parser.parse_args()

    room = Classroom(count=1)
    results: dict = {"notebooks": {}}
    try:
        room.start()
        student = Student(room, room.names[0])
        student.login()
        student.wait_for_server()
        pulled = student.follow_pull_link(room.repo_url("git"))
        assert pulled["phases"][-1] == "finished", pulled
        sampler = Sampler(room)
        sampler.start()
        time.sleep(3)
        results["hub and proxy PSS MB"] = round(hub_memory(room), 1)
        results["server alone"] = {k: round(v / MB, 1) for k, v in sampler.sample().items()}

        for count, number in enumerate(OPEN_ONE_BY_ONE, start=1):
            sampler.reset()
            run = student.run_notebook(notebook_path(number), keep_kernel=True)
            time.sleep(1)
            results["notebooks"][number] = {
                "seconds": round(run.seconds, 1), "CPU-s": round(run.kernel_cpu or -1, 1),
                "errors": run.errors, "peak MB (rss, pss)": (
                    round(sampler.peak["rss"] / MB), round(sampler.peak["pss"] / MB))}
            results[f"after {number}: {count} open"] = {
                k: round(v / MB, 1) for k, v in sampler.sample().items()}
            print(number, results["notebooks"][number], results[f"after {number}: {count} open"],
                  flush=True)
        for session in student.api("GET", "api/sessions").json():
            student.api("DELETE", f"api/sessions/{session['id']}")
        time.sleep(2)
        results["after shutting all kernels"] = {k: round(v / MB, 1)
                                                 for k, v in sampler.sample().items()}
        for number in ALONE:
            sampler.reset()
            run = student.run_notebook(notebook_path(number))
            results["notebooks"][number] = {
                "seconds": round(run.seconds, 1), "CPU-s": round(run.kernel_cpu or -1, 1),
                "errors": run.errors, "peak MB (rss, pss)": (
                    round(sampler.peak["rss"] / MB), round(sampler.peak["pss"] / MB))}
            print(number, results["notebooks"][number], flush=True)
        sampler.stopped.set()
        home = Path(f"{room.folder}/home/{student.name}")
        results["home MB"] = round(sum(p.stat().st_size for p in home.rglob("*")
                                       if p.is_file() and not p.is_symlink()) / MB, 1)
    finally:
        leftovers = room.stop()
    results["left running"] = leftovers
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
