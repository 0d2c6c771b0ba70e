"""make test-profile's measuring plugin (tests/cpu_profile.py): rows that add up, sums per file."""
from __future__ import annotations

import json
import subprocess
import sys

import cpu_profile


def test_each_row_is_the_cpu_spent_since_the_last_one(tmp_path):
    profile = cpu_profile.CpuProfile(tmp_path, children=True)
    start = cpu_profile.cpu_seconds()
    profile.record("<collect>")
    sum(i * i for i in range(300_000))                          # this process's CPU
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(2_000_000))"], check=True)
    profile.record("tests/a.py::t")
    end = cpu_profile.cpu_seconds()
    profile.out.close()
    rows = cpu_profile.load(tmp_path)
    assert [r["test"] for r in rows] == ["<collect>", "tests/a.py::t"]
    assert rows[1]["user"] > 0.05                                 # the child's CPU is in it
    total = sum(r["user"] + r["system"] for r in rows)
    assert abs(total - sum(end)) < 0.01          # from the start of the process, nothing lost
    assert sum(start) <= rows[0]["user"] + rows[0]["system"] + 0.01


def test_the_report_sums_per_file_and_gives_the_floor(tmp_path):
    rows = [{"test": "tests/a.py::one", "user": 3.0, "system": 1.0},
            {"test": "tests/a.py::two", "user": 1.0, "system": 0.0},
            {"test": "notebooks/n.ipynb::Cell 3", "user": 2.0, "system": 0.0},
            {"test": "<collect>", "user": 3.0, "system": 0.0}]
    (tmp_path / "cpu-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = cpu_profile.report(cpu_profile.load(tmp_path), top=2, tests=1, cores=2)
    lines = text.splitlines()
    assert lines[1].split()[0] == "5.0" and lines[1].endswith("tests/a.py")
    assert lines[2].endswith("<collect>")
    assert "(1 other files)" in lines[3]
    assert "10.0" in lines[4] and "floor of the wall time on 2 cores: 5 s" in lines[4]
    assert text.splitlines()[-1].split() == ["4.0", "tests/a.py::one"]


def test_the_timeline_says_when_each_worker_ended():
    rows = [{"test": "<collect>", "user": 1, "system": 0, "at": 100.0, "process": "cpu-1"},
            {"test": "a.py::t", "user": 1, "system": 0, "at": 130.0, "process": "cpu-1"},
            {"test": "<session end>", "user": 0, "system": 0, "at": 190.0, "process": "cpu-1"},
            {"test": "<collect>", "user": 1, "system": 0, "at": 101.0, "process": "cpu-2"},
            {"test": "b.py::t", "user": 1, "system": 0, "at": 190.0, "process": "cpu-2"}]
    assert cpu_profile.timeline(rows) == [
        "each worker's last test ended at (s after the run's first row): 30, 90; "
        "idle before the end: 60 worker-s"]
    assert cpu_profile.timeline(rows[:3]) == []                   # one process: no timeline


def test_the_kernels_are_counted_by_the_file_that_started_them(tmp_path):
    """Each test kernel's line (tests/kernel_config.py), summed per file."""
    lines = [{"kernel": 1, "at": 1.0, "test": "tests/a.py::one (setup)"},
             {"kernel": 2, "at": 2.0, "test": "tests/a.py::two (call)"},
             {"kernel": 3, "at": 3.0, "test": "notebooks/n.ipynb::Cell 0 (setup)"},
             {"kernel": 4, "at": 4.0, "test": ""}]
    assert cpu_profile.kernels(tmp_path) == []                   # not measured: nothing said
    (tmp_path / "kernels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert cpu_profile.kernels(tmp_path) == [
        "Jupyter kernels started: 4 (tests/a.py 2, (no test: a process the tests started) 1, "
        "notebooks/n.ipynb 1)"]
