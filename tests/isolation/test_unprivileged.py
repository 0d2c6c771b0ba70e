"""The paths root never takes, run for real: an unprivileged user's worker, and cgroup v2.

As root, a worker's keeper unshares a PID namespace directly; an ordinary
user's keeper needs an unprivileged user namespace to own it (pids.py), and
its server mounts its own /proc inside that user namespace (mounts.py). The
test suite runs as root here, so these tests switch to the user `nobody`
(setpriv) with a Python it can read: a venv of the system's Python of the
same version, whose one .pth file adds this venv's site-packages.

cgroup v2: pids.py looks for a cgroup v2 hierarchy whose subtree has the pids
controller. The second test mounts a cgroup2 hierarchy in a mount namespace
of its own and asks for the pids controller; where the kernel has bound it to
a cgroup v1 hierarchy it refuses, and the test shows exactly that refusal and
runs pids.py's v2 path against the mount as far as it goes.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import minildr  # noqa: F401  (the package the nobody host imports is this one)

import hostile
from helpers import ROOT
from platforms import requires_linux

pytestmark = requires_linux("user namespaces, mount namespaces and cgroups are Linux's")

NOBODY = 65534

AS_NOBODY = r"""
import json, os, sys
import minildr
from minildr.isolation import fastcall, sandbox
path = sys.argv[1]
out = {"euid": os.geteuid(), "c_loop": fastcall.status().path != "",
       "sandbox_missing": sandbox.probe().missing}
kinds = {"isolate": {"isolate": True}}
if not out["sandbox_missing"]:
    kinds["sandbox"] = {"sandbox": True}
for name, how in kinds.items():
    with minildr.open(path, **how) as plugin:
        c = plugin.containment
        worker = plugin.worker_pid
        out[name] = {
            "pid_namespace": c.pid_namespace, "private_proc": c.private_proc,
            "cgroup": c.cgroup, "reason": c.reason,
            "own_user_namespace": os.readlink(f"/proc/{worker}/ns/user")
                                  != os.readlink("/proc/self/ns/user"),
            "worker_uid": os.stat(f"/proc/{worker}").st_uid,
            "list_proc": plugin.lookup("list_processes", "int (int)")(os.getpid()),
            "signal_host": plugin.lookup("signal_process", "int (int)")(os.getpid()),
            "alive": plugin.lookup("alive", "int (void)")()}
print(json.dumps(out), flush=True)
"""


def same_python_elsewhere() -> str:
    """A Python of this one's version that is not under a folder nobody can enter."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/bin", "/usr/local/bin", "/bin"):
        candidate = Path(folder) / version
        if candidate.exists():
            return str(candidate)
    return ""


def as_nobody(*command: str, env: dict, cwd: Path, timeout: float = 300
              ) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", *command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def nobody():
    """(python, env, folder): a Python the user nobody can run with this venv's packages,
    an environment and a folder of nobody's own (its HOME too: the C loop builds there)."""
    if os.geteuid() != 0:
        pytest.skip("not root: the whole suite already runs unprivileged, on these paths")
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv (util-linux) to run a test as the user nobody")
    base_python = same_python_elsewhere()
    if not base_python:
        pytest.skip(f"no python{sys.version_info.major}.{sys.version_info.minor} outside "
                    "this venv's own folders for the user nobody to run")
    folder = Path(tempfile.mkdtemp(prefix="minildr-nobody-"))
    try:
        folder.chmod(0o755)
        venv = folder / "venv"
        subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True,
                       capture_output=True)
        ours = site.getsitepackages()[0]
        theirs = next(venv.glob("lib/python*/site-packages"))
        (theirs / "minildr-test-packages.pth").write_text(
            f"import site; site.addsitedir({ours!r})\n")
        home = folder / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o005 | (0o001 if path.is_dir() else 0))
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        python = str(venv / "bin" / "python")
        check = as_nobody(python, "-c", "import os, cffi, minildr; print(os.geteuid())",
                          env=env, cwd=home)
        if check.returncode != 0:
            pytest.skip(f"the user nobody cannot import minildr here: {check.stderr[-500:]}")
        assert check.stdout.strip() == str(NOBODY)
        yield python, env, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_an_unprivileged_users_worker_gets_its_namespaces_for_real(nobody):
    """As nobody: the keeper unshares a user and a PID namespace (no root needed), the
    server mounts a /proc of its own inside them; the plugin lists only its own processes
    and cannot name the host; the same sandboxed (Landlock and seccomp unprivileged)."""
    python, env, folder = nobody
    (folder / "plugins").mkdir(exist_ok=True)
    hostile_so, _ = hostile.build(folder / "plugins")
    for path in [folder / "plugins", *(folder / "plugins").rglob("*")]:
        path.chmod(path.stat().st_mode | 0o005 | (0o001 if path.is_dir() else 0))
    result = as_nobody(python, "-c", AS_NOBODY, str(hostile_so), env=env, cwd=folder / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    print(json.dumps(seen))                              # what ran, for the report (-s)
    assert seen["euid"] == NOBODY and seen["c_loop"]        # built in nobody's own cache
    kinds = ["isolate"] + ([] if seen["sandbox_missing"] else ["sandbox"])
    for kind in kinds:
        worker = seen[kind]
        assert worker["pid_namespace"] and worker["private_proc"], worker
        assert worker["own_user_namespace"] and worker["worker_uid"] == NOBODY, worker
        assert worker["cgroup"] == "" and "no pids cgroup" in worker["reason"], worker
        assert worker["signal_host"] == 3 and worker["alive"] == 42, worker   # ESRCH
    assert seen["isolate"]["list_proc"] == -2               # its init and its server: no host
    if "sandbox" in seen:
        assert seen["sandbox"]["list_proc"] == 13           # EACCES: Landlock grants no /proc


CGROUP2 = r"""
import errno, json, os, sys
from minildr.isolation import kernel, pids
mountpoint = sys.argv[1]
out = {}
kernel.unshare(kernel.CLONE_NEWNS)                   # a mount namespace of this process only
kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
try:
    kernel.mount("none", mountpoint, "cgroup2", 0)
    out["mounted"] = True
except OSError as exc:
    out["mounted"] = errno.errorcode.get(exc.errno, str(exc.errno))
if out["mounted"] is True:
    with open(os.path.join(mountpoint, "cgroup.controllers")) as f:
        out["controllers"] = f.read().split()
    with open("/proc/cgroups") as f:            # subsys_name hierarchy num_cgroups enabled
        rows = [line.split() for line in f if not line.startswith("#")]
    out["pids_v1_hierarchy"] = next((int(r[1]) for r in rows if r[0] == "pids"), None)
    if "pids" not in out["controllers"]:
        try:                                     # ask for it anyway: the kernel's answer
            pids._write(os.path.join(mountpoint, "cgroup.subtree_control"), "+pids")
            out["enable_pids"] = "ok"
        except OSError as exc:
            out["enable_pids"] = errno.errorcode.get(exc.errno, str(exc.errno))
    # pids.py's own v2 path, against this mount only (no v1 hierarchy to fall back on)
    pids.PIDS_V1 = os.path.join(mountpoint, "no-v1-here")
    pids.UNIFIED = (mountpoint,)
    out["own_v2_path"] = pids._own_cgroup("")
    parent = pids.pids_parent()
    out["pids_parent"] = parent
    if parent is not None:                       # a kernel whose v2 has pids: all the way
        child = os.fork()
        if child == 0:
            folder = pids.join_pids_cgroup(7)
            ok = bool(folder) and open(os.path.join(folder, "pids.max")).read().strip() == "7"
            pids.leave_and_remove(folder)
            os._exit(0 if ok and not os.path.exists(folder) else 1)
        out["joined_and_removed"] = os.waitpid(child, 0)[1] == 0
    else:
        out["join"] = pids.join_pids_cgroup(7)
print(json.dumps(out))
"""


def test_cgroup_v2_runs_as_far_as_this_kernel_allows(tmp_path):
    """Mount cgroup2 in a mount namespace of its own and use it: with the pids controller
    in v2, a worker's cgroup is made, limited, left and removed; where the kernel bound pids
    to a v1 hierarchy, asking v2 for it is refused with ENOENT and pids.py finds no parent."""
    if os.geteuid() != 0:
        pytest.skip("mounting cgroup2 needs root (CAP_SYS_ADMIN in the initial namespace)")
    mountpoint = tmp_path / "cgroup2"
    mountpoint.mkdir()
    result = subprocess.run([sys.executable, "-c", CGROUP2, str(mountpoint)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout)
    print(json.dumps(seen))                              # what ran, for the report (-s)
    assert seen["mounted"] is True, seen                 # the kernel has cgroup2
    assert seen["own_v2_path"] is not None, seen         # the "0::" line of /proc/self/cgroup
    if "pids" in seen["controllers"]:
        assert seen["pids_parent"] and seen["joined_and_removed"], seen
    else:
        assert seen["pids_v1_hierarchy"], seen          # bound to a v1 hierarchy...
        assert seen["enable_pids"] == "ENOENT", seen    # ...so v2 cannot have it
        assert seen["pids_parent"] is None and seen["join"] == "", seen
    assert not os.path.ismount(mountpoint)               # nothing leaked into our namespace
