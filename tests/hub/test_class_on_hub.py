"""A class of three on a real JupyterHub: log in, pull the course, run it, leave nothing behind.

Not collected by `make test` (it needs root, JupyterHub and npm's proxy);
`make hub-test` builds the hub's environment and runs it, and so does CI.
Three real OS users (non-root uids, created here and removed afterwards)
log in through the hub's login form, each follows the README's nbgitpuller
link (one repository URL form each: git://…/minildr.git, file://, a plain
path; all with targetpath), and each runs notebook 02 and notebook 05 at
the same time, six kernels at once, every kernel in its student's own
server as its student's uid, importing the shared, read-only install.
Checked: every cell's output equals the saved one (sanitized as nbval does),
no student can write another's files or the shared install, nothing was
written into the shared install, and every process started is gone at the end.
Timings land in build/hub/timings.json.
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from classroom import (CHP, HUB_VENV, ROOT, TARGET, Classroom, Student, changed,
                       compare_outputs, in_parallel, probe, snapshot)

if os.geteuid() != 0:
    pytest.skip("needs root: it creates OS users and runs each server as its user",
                allow_module_level=True)
if not (HUB_VENV / "bin" / "jupyterhub").exists() or not CHP.exists():
    pytest.skip(f"needs the hub environment ({HUB_VENV}) and its proxy: run `make hub-test`",
                allow_module_level=True)

NOTEBOOKS = [sorted((ROOT / "notebooks").glob(f"{n}-*.ipynb"))[0] for n in ("02", "05")]
REPO_FORMS = ("git", "file", "path")     # one per student
REPORT = ROOT / "build" / "hub" / "timings.json"


@pytest.fixture(scope="module")
def classroom():
    room = Classroom(count=3)
    try:
        room.start()
        yield room
    finally:
        room.stop()        # again, in case the test failed before its own check


def test_three_students_on_one_hub(classroom):
    began = time.monotonic()
    students = [Student(classroom, name) for name in classroom.names]
    site = Path(probe_site_packages())
    shared_before = snapshot(HUB_VENV)

    # Another student's password is refused by the form.
    refused = students[0].login(password=classroom.users[students[1].name])
    assert refused.status_code == 403, (refused.status_code, refused.url)

    # 1. Log in (the hub starts each server, as that student) ----------------
    step = time.monotonic()
    for student in students:
        answer = student.login()
        assert answer.status_code == 200, (answer.status_code, answer.url)
    waited = in_parallel({s.name: s.wait_for_server for s in students})
    assert all(v is None for v in waited.values()), (waited, classroom.hub_log())
    classroom.timings["3 logins until every server answers"] = time.monotonic() - step
    for process in classroom.student_processes():     # each is a server, just started
        classroom.timings[f"{process.username()} server start CPU-s"] = sum(process.cpu_times()[:4])

    # 2. The nbgitpuller link, one repository URL form per student ----------
    step = time.monotonic()
    pulled = in_parallel({s.name: (lambda s=s, f=form: s.follow_pull_link(classroom.repo_url(f)))
                          for s, form in zip(students, REPO_FORMS)})
    classroom.timings["3 nbgitpuller links at once"] = time.monotonic() - step
    for student, form in zip(students, REPO_FORMS):
        name, result = student.name, pulled[student.name]
        assert not isinstance(result, Exception), (name, result)
        assert result["phases"][-1] == "finished", f"{name} {form}: {result['output']}"
        assert result["landing"] == 200 and result["notebook 00"] == 200, (name, form, result)
    for student in students:
        home = Path(pwd.getpwnam(student.name).pw_dir)
        clone = home / TARGET
        assert (clone / "notebooks" / NOTEBOOKS[0].name).is_file()
        assert clone.stat().st_uid == pwd.getpwnam(student.name).pw_uid

    # 3. Notebook 02 and 05 at once, in every student's server: six kernels --
    step = time.monotonic()
    jobs = {f"{s.name} {nb.name[:2]}": (lambda s=s, nb=nb: s.run_notebook(
                f"{TARGET}/notebooks/{nb.name}")) for s in students for nb in NOTEBOOKS}
    runs = in_parallel(jobs)
    classroom.timings["02 and 05, 3 students at once (6 kernels)"] = time.monotonic() - step
    classroom.record_children()
    problems = []
    for key, result in runs.items():
        if isinstance(result, Exception):
            problems.append(f"{key}: {result!r}")
            continue
        problems += [f"{key}: {e}" for e in result.errors]
        notebook = ROOT / "notebooks" / Path(result.path).name
        code_cells = [c for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
                      if c["cell_type"] == "code"]
        if len(result.cells) != len(code_cells):
            problems.append(f"{key}: ran {len(result.cells)} of {len(code_cells)} code cells")
        problems += compare_outputs(result, notebook)
        classroom.timings[f"{key} seconds"] = result.seconds
        classroom.timings[f"{key} kernel CPU-s"] = result.kernel_cpu or -1
    assert not problems, "\n\n".join(problems)
    greeted = [o.get("data", {}).get("text/plain", "") for _, outs in
               runs[f"{students[0].name} 02"].cells for o in outs]
    assert any("Hello from the greet plugin" in text for text in greeted), greeted

    # 4. Who runs what, and who can write where ------------------------------
    homes = {s.name: Path(pwd.getpwnam(s.name).pw_dir) for s in students}
    for i, student in enumerate(students):
        other = students[(i + 1) % len(students)].name
        own = homes[student.name] / "probe-own.txt"
        targets = [
            (str(own), "w"),                                            # control: must work
            (str(homes[other] / "probe-other.txt"), "w"),
            (str(homes[other] / TARGET / "notebooks" / NOTEBOOKS[0].name), "a"),
            (str(homes[other] / TARGET / "notebooks" / "build" / "02" / "probe"), "w"),
            (str(site / "minildr" / "__init__.py"), "a"),
            (str(site / "minildr" / "probe.txt"), "w"),
            (str(HUB_VENV / "probe.txt"), "w"),
            (str(classroom.folder / "git" / "minildr.git" / "probe"), "w"),
        ]
        seen = probe(student, targets)
        assert seen["uid"] == pwd.getpwnam(student.name).pw_uid != 0, seen
        assert seen["home"] == str(homes[student.name]), seen
        assert seen["minildr"].startswith(str(site)), (
            "students must import the shared, non-editable install", seen)
        writes = seen["writes"]
        assert writes.pop(str(own)) == "WROTE", seen
        assert set(writes.values()) == {"PermissionError"}, json.dumps(writes, indent=1)

    # Nothing any student ran wrote into the shared install.
    assert changed(shared_before, snapshot(HUB_VENV)) == []

    # `make check` in a student's terminal uses the shared environment (no .venv).
    clone = homes[students[0].name] / TARGET
    outputs = students[0].execute(
        "import subprocess\n"
        f"print(subprocess.run(['make', '-n', 'check'], cwd={str(clone)!r}, "
        "capture_output=True, text=True).stdout)")
    planned = "".join(o.get("text", "") for o in outputs)
    assert planned.strip() == f"{HUB_VENV}/bin/python3 -m minildr.course.selfcheck exercises", \
        planned

    # A course newer than the image: the first cell says so, and what to do.
    pyproject = clone / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "', 'version = "99.', 1))
    first = students[0].run_notebook(f"{TARGET}/notebooks/{NOTEBOOKS[0].name}", cells=1)
    note = "".join(o.get("text", "") for _, outs in first.cells for o in outs)
    assert "Note: this course needs minildr 99." in note, note
    assert "ask your teacher to rebuild the hub's image" in note.lower(), note

    # 5. Everything stops, and nothing is left running -----------------------
    step = time.monotonic()
    leftovers = classroom.stop()
    classroom.timings["stop everything"] = time.monotonic() - step
    assert leftovers == [], leftovers
    for name in classroom.names:
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    classroom.timings["whole test"] = time.monotonic() - began + \
        classroom.timings["hub up (users, git daemon, hub, proxy)"]
    for student in students:
        for what, seconds in student.timings.items():
            classroom.timings[f"{student.name} {what}"] = seconds
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({k: round(v, 1) for k, v in classroom.timings.items()},
                                 indent=1) + "\n")


def probe_site_packages() -> str:
    """The shared install's site-packages, asked of its own Python."""
    return subprocess.run([str(HUB_VENV / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
