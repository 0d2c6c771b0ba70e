"""A worker's folder goes whatever ends its host, and nothing but it is ever removed.

Each isolated worker runs in a temporary folder of its own
(minildr/isolation/workfolder.py). Every test here points the temporary
folder (TMPDIR, tempfile.tempdir) at a folder of its own and counts what is
left in it: a host that exits without close(), ends by os._exit, is killed
by SIGKILL while its worker waits or runs, is killed together with its
keeper; an interrupt as the folder is made; and a hostile plugin that
fills its folder with symbolic links and thousands of nested folders, or
puts another folder under its folder's name.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

import minildr
from minildr.isolation import pids, workfolder

from helpers import ORPHAN_GUARD, ROOT, write_plugin
from platforms import requires_linux

SOURCE = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
void hang(void) { for (;;) pause(); }
const char *here(void) { static char path[4096]; return getcwd(path, sizeof path); }
/* Fill the current folder: a file, a symbolic link to `victim` and one inside a
   subfolder, and `depth` nested folders (each made through the last one's descriptor). */
int litter(const char *victim, int depth)
{
    int fd = open("file", O_CREAT | O_WRONLY, 0600), dir;
    if (fd < 0 || write(fd, "x", 1) != 1) return 1;
    close(fd);
    if (symlink(victim, "link") || mkdir("sub", 0700) || symlink(victim, "sub/link")) return 2;
    dir = open(".", O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < depth; i++) {
        int next;
        if (mkdirat(dir, "d", 0700) || (next = openat(dir, "d", O_RDONLY | O_DIRECTORY)) < 0)
            return 3;
        close(dir);
        dir = next;
    }
    close(dir);
    return 0;
}
/* Move the current folder away (to its name + "-moved") and put `other` under its name. */
int swap(const char *other)
{
    char path[4096], moved[4200];
    if (!getcwd(path, sizeof path)) return 1;
    snprintf(moved, sizeof moved, "%s-moved", path);
    if (rename(path, moved)) return 2;
    return rename(other, path) ? 3 : 0;
}
"""
HEADER = ("void hang(void);\nconst char *here(void);\n"
          "int litter(const char *victim, int depth);\nint swap(const char *other);\n")


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("folder"), "folder", SOURCE, HEADER)


@pytest.fixture
def temp(tmp_path, monkeypatch) -> Iterator[Path]:
    """A temporary folder of this test's own, for this process and the hosts it starts."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    for path in folder.iterdir():       # what a failed test left: never thousands of nested
        if path.is_dir() and not path.is_symlink():  # folders for pytest's rmtree (recursive)
            workfolder.remove(str(path), (path.lstat().st_dev, path.lstat().st_ino))


def left(folder: Path, wait: float = 10.0) -> list:
    """What is in `folder` once it has emptied, or after `wait` seconds."""
    deadline = time.monotonic() + wait
    while (names := sorted(p.name for p in folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    return names


def here(plugin) -> Path:
    """The worker's current folder, as its plugin sees it."""
    return Path(os.fsdecode(minildr.ffi.string(plugin.lookup("here", "const char *(void)")())))


def test_a_closed_worker_leaves_no_folder(plugin_path, temp):
    with minildr.open(plugin_path, isolate=True) as plugin:
        folder = here(plugin)
        assert folder.parent == temp and folder.name.startswith(workfolder.PREFIX)
        assert folder.is_dir()
    assert left(temp, wait=0) == []


# ---------------------------------------------------------------------------
# Whatever ends the host
# ---------------------------------------------------------------------------
HOST = r"""
import sys, minildr
plugin = minildr.open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, {how_isolated})
plugin.lookup("litter", "int (const char *, int)")({victim!r}.encode(), 3)
hang = plugin.lookup("hang", "void (void)")
assert type(plugin._worker.process).__name__ == {kind!r}, plugin._worker.process
print(plugin.worker_pid, flush=True)
{then}
"""


@requires_linux("the worker's keeper removes its folder (tree.py)")
@pytest.mark.parametrize("then, how, how_isolated", [
    ("pass", "exit", "isolate=True"),                            # exits without close()
    ("import os; os._exit(0)", "exit", "isolate=True"),          # no atexit, no finalizer
    ("import time; time.sleep(60)", "kill", "isolate=True"),     # SIGKILLed, the worker waiting
    ("hang()", "kill", "isolate=True"),                          # SIGKILLed mid-call
    ("hang()", "kill", "sandbox=True"),                          # ... a sandboxed one
], ids=["exit-without-close", "os._exit", "sigkill-while-idle", "sigkill-during-hang",
        "sandboxed-sigkill-during-hang"])
@pytest.mark.parametrize("kind", ["ForkedWorker", "WorkerPopen"])
def test_no_worker_folder_outlives_its_host(plugin_path, temp, tmp_path, then, how,
                                            how_isolated, kind, monkeypatch):
    """Before the keeper removed it, os._exit and SIGKILL left the (littered) folder.
    Both ways a worker starts (from the fork server, forkserver.ForkedWorker; directly,
    process.WorkerPopen): the guard also sees the fork server end with its host."""
    if kind == "WorkerPopen":
        monkeypatch.setenv("MINILDR_NO_FORK_SERVER", "1")
    else:
        monkeypatch.delenv("MINILDR_NO_FORK_SERVER", raising=False)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    host = HOST.format(path=str(plugin_path), victim=str(victim), then=then,
                       how_isolated=how_isolated, kind=kind)
    result = subprocess.run([sys.executable, "-c", ORPHAN_GUARD, host, how], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    if not outcome["first"] and how_isolated == "sandbox=True":
        pytest.skip("no sandbox here (the host's open raised SandboxUnavailable)")
    assert int(outcome["first"]) > 0 and outcome["state"] == "none left", outcome
    assert left(temp) == []
    assert (victim / "keep").read_text() == "mine"


HOST_KILLED_WITH_ITS_KEEPER = r"""
import json, sys, time
import minildr
plugin = minildr.open(sys.argv[1], isolate=True)
print(json.dumps([plugin._worker.process.pid, plugin.containment.pid_namespace]), flush=True)
time.sleep(600)                                   # until the test kills it
"""


def zombie_or_gone(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie not yet reaped, or gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


@requires_linux("PID namespaces")
def test_the_namespaces_init_removes_the_folder_when_host_and_keeper_are_killed(
        plugin_path, temp):
    """SIGKILL to the keeper, then to the host: the init of the worker's PID namespace,
    woken by its keeper's death, removes the folder (tree.orphaned)."""
    host = subprocess.Popen([sys.executable, "-c", HOST_KILLED_WITH_ITS_KEEPER, str(plugin_path)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        keeper, namespaced = json.loads(host.stdout.readline())
        if not namespaced:
            pytest.skip("no PID namespace here: no init outlives the keeper")
        assert len(list(temp.iterdir())) == 1
        os.kill(keeper, signal.SIGKILL)
        # The keeper dead (a zombie: the host never reaps it), its init has had its
        # parent-death signal before the host goes and the server with it.
        deadline = time.monotonic() + 10
        while not zombie_or_gone(keeper) and time.monotonic() < deadline:
            time.sleep(0.02)
        host.kill()
        host.wait()
        assert left(temp) == []
    finally:
        host.kill()
        host.wait()


def test_an_interrupt_as_the_folder_is_made_leaves_nothing(plugin_path, temp, monkeypatch):
    """KeyboardInterrupt right after mkdir returns (Python handles signals there): the
    folder's name was known before it existed, so the failed start removes it. With
    tempfile.mkdtemp assigned to Held.folder it was lost."""
    make_folder = os.mkdir

    def interrupted(path, *args, **kwargs):
        make_folder(path, *args, **kwargs)
        if os.path.basename(path).startswith(workfolder.PREFIX):
            raise KeyboardInterrupt
    monkeypatch.setattr(os, "mkdir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        minildr.open(plugin_path, isolate=True)
    monkeypatch.setattr(os, "mkdir", make_folder)
    assert left(temp, wait=0) == []
    minildr.open(plugin_path, isolate=True).close()           # and it works again
    assert left(temp, wait=0) == []


# ---------------------------------------------------------------------------
# A hostile plugin: only its own folder is removed
# ---------------------------------------------------------------------------
def test_a_littered_folder_goes_and_nothing_it_links_to(plugin_path, temp, tmp_path):
    """Symbolic links are removed, never followed; 1,500 nested folders go too (shutil.rmtree
    recursed once per level: RecursionError out of close(), and the folder stayed)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    plugin = minildr.open(plugin_path, isolate=True)
    assert plugin.lookup("litter", "int (const char *, int)")(str(victim).encode(), 1500) == 0
    plugin.close()
    assert left(temp, wait=0) == []
    assert (victim / "keep").read_text() == "mine"


def test_a_folder_put_under_its_name_is_not_removed(plugin_path, temp, tmp_path):
    """The plugin moves its folder away and moves another folder under its name: the host
    removes its folder by inode, not by name, so the other folder stays whole (shutil.rmtree
    of the name deleted it); the moved folder goes with the keeper."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep").write_text("mine")
    plugin = minildr.open(plugin_path, isolate=True)
    folder = here(plugin)
    assert plugin.lookup("swap", "int (const char *)")(str(other).encode()) == 0
    plugin.close()
    assert (folder / "keep").read_text() == "mine"          # `other`, where the plugin put it
    assert left(temp, wait=0) == [folder.name]


def test_removing_never_follows_a_symbolic_link_in_place_of_the_folder(tmp_path):
    """workfolder.remove on a name that is now a symbolic link to a folder: nothing goes."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("mine")
    made = tmp_path / (workfolder.PREFIX + "x")
    identity = workfolder.make(str(made))
    made.rmdir()
    made.symlink_to(victim)
    workfolder.remove(str(made), identity)
    assert (victim / "keep").read_text() == "mine" and made.is_symlink()
    victim_identity = (victim.stat().st_dev, victim.stat().st_ino)
    workfolder.remove(str(made), victim_identity)              # even with the target's inode
    assert (victim / "keep").read_text() == "mine"


def test_a_name_whose_making_was_interrupted_is_removed_only_if_empty(tmp_path):
    made = tmp_path / (workfolder.PREFIX + "y")
    made.mkdir()
    (made / "f").write_text("")
    workfolder.remove(str(made), None)
    assert (made / "f").exists()
    (made / "f").unlink()
    workfolder.remove(str(made), None)
    assert not made.exists()



MOUNTED = r"""
import os, subprocess, sys
from minildr.isolation import workfolder
outside, folder = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", outside], check=True)
with open(os.path.join(outside, "keep"), "w") as f:
    f.write("mine")
made = workfolder.make(folder)
os.mkdir(os.path.join(folder, "mnt"))
subprocess.run(["mount", "--bind", outside, os.path.join(folder, "mnt")], check=True)
workfolder.remove(folder, made)
print(sorted(os.listdir(outside)))
"""


def test_removing_enters_no_other_file_system(tmp_path):
    """A file system mounted inside a worker's folder (a tmpfs, in a private mount namespace
    here) is not emptied: removing stays on the folder's own file system."""
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace here (needs root or user namespaces)")
    (tmp_path / "outside").mkdir()
    done = subprocess.run(["unshare", "-m", sys.executable, "-c", MOUNTED, str(tmp_path / "outside"),
                           str(tmp_path / (workfolder.PREFIX + "m"))],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    if "mount" in done.stderr and done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['keep']"]


WITHOUT_KEEPER = r"""
import sys, minildr
from minildr.isolation import process
# Its workers serve without a keeper, as on macOS (tree.KEEPS_TREE is read at their start).
process.BOOT = process.BOOT.replace(
    "; main(", "; import minildr.isolation.tree as t; t.KEEPS_TREE = False; main(")
plugin = minildr.open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, isolate=True)
assert plugin.containment.reason == "no keeper on this system", plugin.containment
hang = plugin.lookup("hang", "void (void)")
print(plugin.worker_pid, flush=True)
hang()
"""


@requires_linux("the host's children outlive it below the guard (a subreaper)")
def test_a_worker_without_a_keeper_removes_its_folder_when_its_host_is_killed(plugin_path,
                                                                              temp):
    """Where no keeper runs (macOS: tree.KEEPS_TREE), the worker's lifeline thread removes
    its folder as it exits; before, a killed host left it."""
    host = WITHOUT_KEEPER.format(path=str(plugin_path))
    result = subprocess.run([sys.executable, "-c", ORPHAN_GUARD, host, "kill"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert int(outcome["first"]) > 0 and outcome["state"] == "none left", outcome
    assert left(temp) == []


WITHOUT_KEEPER_END_OF_FILE = r"""
import os, socket, sys, minildr
from minildr.isolation import process
process.BOOT = process.BOOT.replace(
    "; main(", "; import minildr.isolation.tree as t; t.KEEPS_TREE = False; main(")
plugin = minildr.open(sys.argv[1], isolate=True)
assert plugin.containment.reason == "no keeper on this system", plugin.containment
worker = plugin._worker
worker._sock.shutdown(socket.SHUT_WR)       # end-of-file on its socket; the lifeline stays
print(worker.process.wait(30), flush=True)  # it ended on its own, by its main thread
os._exit(0)                                 # no finalizer: the host removes nothing
"""


@requires_linux("the worker's keeper is turned off in the worker only")
def test_a_worker_without_a_keeper_that_reads_end_of_file_first_removes_its_folder(
        plugin_path, temp):
    """A killed host ends the socket and the lifeline at once; here the socket's end-of-file
    comes alone, so the main thread's exit (end) runs while the lifeline still holds: it
    left the folder behind (only the lifeline thread removed it), the cause of this test's
    neighbour failing at times on a loaded machine."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_KEEPER_END_OF_FILE, str(plugin_path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]
    assert left(temp, wait=0) == []


LIFELINE_REMOVING_AS_MAIN_ENDS = r"""
import atexit, os, sys, threading, time
from minildr.isolation import tree, worker, workfolder
tree.KEEPS_TREE = False
os.chdir(sys.argv[1])
removing, ending = threading.Event(), threading.Event()
remove_current, in_flight = workfolder.remove_current, []

def remove_once_main_ends():
    if in_flight:           # two removals at once: each may end the process halfway
        sys.stderr.write("a second removal began while the first ran\n")
        os._exit(3)
    in_flight.append(True)
    removing.set()
    ending.wait()           # the main thread has run its exit functions: it is about to exit
    time.sleep(0.5)         # (its exit(3), unless it waits for this removal, comes first)
    remove_current()
    in_flight.pop()

workfolder.remove_current = remove_once_main_ends
atexit.register(ending.set)
lifeline, host = os.pipe()
worker.watch_lifeline(lifeline)
os.close(host)              # the host is gone: the lifeline thread starts removing
removing.wait()
worker.end()                # and the socket's end-of-file ends the main thread meanwhile
"""


def test_the_lifeline_threads_removal_is_not_cut_short_by_the_main_threads_exit(tmp_path):
    """The other order: the lifeline thread is removing the folder when the main thread
    ends (end): the main thread's exit waits for the removal, and starts no second one.
    Before, exit(3) ended the process halfway, and the folder stayed with what was in it."""
    folder = tmp_path / (workfolder.PREFIX + "both")
    workfolder.make(str(folder))
    (folder / "sub").mkdir()
    (folder / "sub" / "file").write_text("x")
    done = subprocess.run([sys.executable, "-c", LIFELINE_REMOVING_AS_MAIN_ENDS, str(folder)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert not folder.exists()
