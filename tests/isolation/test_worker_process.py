"""What an isolated worker starts with, and that nothing it starts outlives it.

Crash isolation, honestly: an empty environment (the host passes what it
wants with env=), a folder of its own, no descriptor but its channel, its
output pipes and the sealed plugin, minildr imported from the host's own
package whatever the current folder holds, limits on memory and threads, and
every process a plugin forks ending with the worker (isolation/tree.py).
Each of these tests fails on the worker before issue 17/21.
"""
from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minildr
from minildr.isolation import pids, policy, process, tree

from helpers import ORPHAN_GUARD, ROOT, write_plugin
from platforms import requires_isolation, requires_linux, requires_proc

pytestmark = requires_isolation

PROBE_C = r"""
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static char text[65536];

const char *env(const char *name) { const char *v = getenv(name); return v ? v : "(unset)"; }

const char *cwd(void) { return getcwd(text, sizeof text) ? text : "(error)"; }

/* Every open descriptor and what it is, "fd=target;..." */
const char *descriptors(void) {
    char path[64], target[512];
    size_t used = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int own = d ? dirfd(d) : -1;
    text[0] = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == own) continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        used += snprintf(text + used, sizeof text - used, "%s=%s;", e->d_name, target);
    }
    if (d) closedir(d);
    return text;
}

long long limit(int which) {
    struct rlimit r;
    getrlimit(which, &r);
    return r.rlim_cur == RLIM_INFINITY ? -1 : (long long)r.rlim_cur;
}

/* A child in the worker's process group, sleeping. Returns its pid (in a PID namespace,
   isolation/pids.py, the namespace's number: the test finds the host's, as_seen_by_host). */
int spawn_child(void) {
    int fds[2];
    pid_t child = 0;
    if (pipe(fds)) return -1;
    if (fork() == 0) {
        pid_t me = getpid();
        write(fds[1], &me, sizeof me);
        for (;;) pause();
    }
    read(fds[0], &child, sizeof child);
    close(fds[0]);
    close(fds[1]);
    return child;
}

/* A daemon: fork, fork again, setsid() (a process group and session of its own),
   the middle process exits: the daemon is an orphan. Returns its pid. */
int spawn_daemon(void) {
    int fds[2];
    pid_t daemon = 0;
    if (pipe(fds)) return -1;
    pid_t middle = fork();
    if (middle == 0) {
        if (fork() == 0) {
            setsid();
            pid_t me = getpid();
            write(fds[1], &me, sizeof me);
            for (;;) pause();
        }
        _exit(0);
    }
    waitpid(middle, NULL, 0);
    read(fds[0], &daemon, sizeof daemon);
    close(fds[0]);
    close(fds[1]);
    return daemon;
}

void crash(void) { raise(SIGSEGV); }

/* What a plugin may try to end its own worker with: SIGTERM to its parent (in a PID
   namespace the init, isolation/tree.py) and to process 1. 0 if sent. */
int signal_parent(void) { return kill(getppid(), SIGTERM); }
int signal_init(void) { return kill(1, SIGTERM); }
"""
PROBE_H = """const char *env(const char *name);
const char *cwd(void);
const char *descriptors(void);
long long limit(int which);
int spawn_child(void);
int spawn_daemon(void);
void crash(void);
int signal_parent(void);
int signal_init(void);
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("probe"), "probe", PROBE_C, PROBE_H)


def as_seen_by_host(pid: int, plugin) -> int:
    """The host's number for a process the plugin numbered `pid` (its PID namespace's, where it
    has one: the worker's /proc is its own, mounts.py), found below the worker's keeper by
    the last field of NSpid in the host's /proc (proc(5))."""
    for below in tree.descendants(plugin._worker.process.pid):
        try:
            with open(f"/proc/{below}/status") as f:
                nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(nspid[-1]) == pid:
            return below
    raise AssertionError(f"no process numbered {pid} below the worker's keeper")


def text(function, *args) -> str:
    return minildr.ffi.string(function(*args)).decode()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie.

    A process reaped between the open and the read of its stat file makes the
    read fail with ESRCH (ProcessLookupError), not the open with ENOENT."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def ends_soon(pid: int, wait: float = 5.0) -> bool:
    deadline = time.monotonic() + wait
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------------------
# What the worker starts with
# ---------------------------------------------------------------------------
def test_the_worker_starts_with_an_empty_environment(probe, monkeypatch):
    monkeypatch.setenv("MINILDR_TEST_SECRET", "the host's secret")
    with minildr.open(probe, isolate=True) as plugin:
        env = plugin.lookup("env", "const char *(const char *)")
        assert text(env, b"MINILDR_TEST_SECRET") == "(unset)"
        assert text(env, b"PATH") == "(unset)"
    with minildr.open(probe, isolate=True, env={"GREETING": "hello"}) as plugin:
        env = plugin.lookup("env", "const char *(const char *)")
        assert text(env, b"GREETING") == "hello"                  # what the host passes
        assert text(env, b"MINILDR_TEST_SECRET") == "(unset)"


def test_env_is_checked_and_only_for_isolated_plugins(probe):
    with pytest.raises(ValueError, match="isolated worker's environment"):
        minildr.open(probe, env={"A": "b"})
    for bad in ({"A=B": "c"}, {"A": 1}, {"A": "b\0c"}):
        with pytest.raises(ValueError, match="env= takes"):
            minildr.open(probe, isolate=True, env=bad)


def test_the_worker_has_a_folder_of_its_own(probe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with minildr.open(probe, isolate=True) as plugin:
        folder = text(plugin.lookup("cwd", "const char *(void)"))
        assert Path(folder).is_dir() and Path(folder) != tmp_path
        assert os.listdir(folder) == []
    assert not Path(folder).exists()                      # removed with its worker


@requires_proc
def test_the_worker_holds_only_its_channel_pipes_and_plugin(probe, tmp_path):
    leaked = open(tmp_path / "host-file", "w")            # inheritable, on purpose
    os.set_inheritable(leaked.fileno(), True)
    try:
        with minildr.open(probe, isolate=True) as plugin:
            table = text(plugin.lookup("descriptors", "const char *(void)"))
    finally:
        leaked.close()
    targets = dict(item.split("=", 1) for item in table.split(";") if item)
    assert targets["0"] == "/dev/null"
    assert targets["1"].startswith("pipe:") and targets["2"].startswith("pipe:")
    kinds = sorted(t.split(":")[0].split(" ")[0] for fd, t in targets.items()
                   if fd not in ("0", "1", "2"))
    # the socket, the lifeline pipe, the sealed memfd (and the loader's own map of it)
    assert set(kinds) <= {"socket", "pipe", "/memfd"}, targets
    assert "host-file" not in table


def test_isolated_workers_have_limits_by_default(probe):
    with minildr.open(probe, isolate=True) as plugin:
        limit = plugin.lookup("limit", "long long (int)")
        assert limit(resource.RLIMIT_AS) == policy.WORKER_LIMITS.memory == 4 << 30
        assert limit(resource.RLIMIT_NPROC) >= policy.WORKER_LIMITS.processes
        assert limit(resource.RLIMIT_NPROC) != -1


def test_a_stray_minildr_in_the_current_folder_never_runs(probe, tmp_path, monkeypatch):
    """A minildr/ (and a sitecustomize on PYTHONPATH) the host did not import stays unrun."""
    marker = tmp_path / "ran"
    fake = tmp_path / "cwd" / "minildr"
    (fake / "isolation").mkdir(parents=True)
    payload = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for name in ("__init__.py", "isolation/__init__.py", "isolation/worker.py"):
        (fake / name).write_text(payload)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(payload)
    monkeypatch.chdir(fake.parent)
    monkeypatch.setenv("PYTHONPATH", str(site))
    with minildr.open(probe, isolate=True) as plugin:
        assert text(plugin.lookup("env", "const char *(const char *)"), b"X") == "(unset)"
    assert not marker.exists(), marker.read_text()
    command = process.worker_command(3, 4, policy.WORKER_LIMITS)
    assert command[1] == "-I"                       # no cwd, no PYTHON* variables, no user site


# ---------------------------------------------------------------------------
# Nothing a plugin forks outlives its worker
# ---------------------------------------------------------------------------
@requires_linux("the worker keeps its process tree as Linux's child subreaper")
def test_close_ends_every_process_the_plugin_started(probe):
    plugin = minildr.open(probe, isolate=True)
    child = as_seen_by_host(plugin.lookup("spawn_child", "int (void)")(), plugin)
    daemon = as_seen_by_host(plugin.lookup("spawn_daemon", "int (void)")(), plugin)
    assert child > 0 and daemon > 0 and alive(child) and alive(daemon)
    assert os.getpgid(daemon) != os.getpgid(child)          # it left the worker's group
    plugin.close()
    assert ends_soon(child) and ends_soon(daemon)


@requires_linux("the worker keeps its process tree as Linux's child subreaper")
def test_a_crash_is_seen_at_once_though_a_daemon_holds_the_socket(probe):
    """The daemon inherited the worker's socket: the crash is still PluginCrashed, now."""
    plugin = minildr.open(probe, isolate=30)
    daemon = as_seen_by_host(plugin.lookup("spawn_daemon", "int (void)")(), plugin)
    crash = plugin.lookup("crash", "void (void)")
    start = time.monotonic()
    with pytest.raises(minildr.PluginCrashed) as err:
        crash()
    assert time.monotonic() - start < 10                   # not the 30 s timeout
    assert err.value.signal == "SIGSEGV"
    assert ends_soon(daemon)
    plugin.close()


FORK_HANG_C = r"""
#include <unistd.h>

/* A copy of this process in a session of its own, waiting: its pid (in a PID namespace,
   the namespace's number), known before the call returns. */
int fork_copy(void) {
    int fds[2];
    pid_t child = 0;
    if (pipe(fds)) return -1;
    if (fork() == 0) {
        setsid();
        pid_t me = getpid();
        write(fds[1], &me, sizeof me);
        for (;;) pause();
    }
    read(fds[0], &child, sizeof child);
    close(fds[0]);
    close(fds[1]);
    return child;
}

int hang(void) { for (;;) pause(); }
"""


@requires_linux("the worker keeps its process tree as Linux's child subreaper")
def test_a_timeout_ends_the_whole_tree(probe, tmp_path):
    """A plugin that forks a copy of itself (in a session of its own), then hangs.

    The copy is found while nothing is timed (its call returned), so the hang's
    short timeout cannot race the test looking for it on a busy machine; the
    start and the first call have the default timeout, the hang alone 0.5 s.
    """
    path = write_plugin(tmp_path, "forkhang", FORK_HANG_C,
                        "int fork_copy(void);\nint hang(void);\n")
    plugin = minildr.open(path, isolate=True)
    worker = plugin.worker_pid
    child = as_seen_by_host(plugin.lookup("fork_copy", "int (void)")(), plugin)
    assert alive(child) and child != worker
    plugin._worker.timeout = 0.5
    with pytest.raises(minildr.PluginTimeout, match=r"no answer within 0\.5 s during hang"):
        plugin.lookup("hang", "int (void)")()
    assert ends_soon(worker) and ends_soon(child)


HOST_WITH_DAEMON = r"""
import sys, minildr
plugin = minildr.open({path!r}, isolate=True)
daemon = plugin.lookup("spawn_daemon", "int (void)")()
print(daemon, flush=True)
import time
time.sleep(60)
"""


@requires_linux("watches for orphans as Linux's child subreaper (prctl)")
def test_a_plugins_daemon_never_outlives_a_killed_host(probe):
    host = HOST_WITH_DAEMON.format(path=str(probe))
    result = subprocess.run([sys.executable, "-c", ORPHAN_GUARD, host, "kill"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert int(outcome["first"]) > 0
    assert outcome["state"] == "none left", outcome


# ---------------------------------------------------------------------------
# Out of descriptors while starting a worker
# ---------------------------------------------------------------------------
EMFILE_RUN = r"""
import json, os, resource, sys
import minildr
from minildr import image as images

def open_fds():
    return set(os.listdir("/proc/self/fd"))

path = sys.argv[1]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
top = max(int(fd) for fd in open_fds())
while (fd := os.open(os.devnull, os.O_RDONLY)) <= top:     # fill the free numbers below
    pass
os.close(fd)                                               # so new descriptors go above top
results = []
for extra in range(0, 14):
    images.clear_cache()                # its sealed copies are kept on purpose
    before = open_fds()
    resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1 + extra, hard))
    try:
        with minildr.open(path, isolate=True) as plugin:
            plugin.lookup("cwd", "const char *(void)")
        outcome = "opened"
    except minildr.PluginError as exc:
        outcome = type(exc).__name__ + (" naming the file" if path in str(exc) else "")
    except Exception as exc:
        outcome = "not a PluginError: " + repr(exc)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    images.clear_cache()
    results.append([outcome, sorted(open_fds() - before)])
print(json.dumps(results))
"""


@requires_proc
def test_out_of_descriptors_is_a_worker_start_error_and_leaks_nothing(probe):
    """EMFILE at each step of starting a worker: a PluginError naming the file, no fd left.

    Run in a fresh process with every free descriptor number below its top
    one taken, so that limit = top + 1 + extra allows exactly `extra` more.
    """
    result = subprocess.run([sys.executable, "-c", EMFILE_RUN, str(probe)], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    outcomes = [outcome for outcome, _ in results]
    assert all(leaked == [] for _, leaked in results), results
    assert all(o == "opened" or o.endswith("naming the file") for o in outcomes), outcomes
    assert "PluginError naming the file" not in outcomes, outcomes     # always a subclass
    assert "WorkerStartError naming the file" in outcomes and outcomes[-1] == "opened", outcomes


# ---------------------------------------------------------------------------
# A plugin that kills its keeper; a fork bomb (the PID namespace, the pids cgroup)
# ---------------------------------------------------------------------------
ESCAPE_C = r"""
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* A setsid() daemon (double fork), then SIGKILL to the keeper: what errno kill() gave
   if it failed; if it worked, no reply (the server dies with its keeper, PR_SET_PDEATHSIG). */
int escape(int keeper) {
    pid_t middle = fork();
    if (middle == 0) {
        if (fork() == 0) { setsid(); for (;;) pause(); }
        _exit(0);
    }
    waitpid(middle, NULL, 0);
    if (kill(keeper, SIGKILL)) return errno;
    for (;;) pause();
}

/* Every process forks for ever. */
int bomb(void) { for (;;) fork(); }
"""
ESCAPE_H = "int escape(int keeper);\nint bomb(void);\n"

HOST_ESCAPE = r"""
import os, signal, sys
import minildr
from minildr.isolation import process
if {no_namespace}:                # the fallback: the keeper alone (as where unshare is refused)
    process.BOOT = process.BOOT.replace("from minildr.isolation.worker import main",
        "import minildr.isolation.pids as p; p.enter_pid_namespace = lambda: 'off (test)'; "
        "from minildr.isolation.worker import main")
plugin = minildr.open({path!r}, isolate=True)
keeper = plugin._worker.process
try:
    errno = plugin.lookup("escape", "int (int)")(keeper.pid)
    ended = "returned"
except minildr.PluginError as exc:            # the keeper died, and the server with it
    errno, ended = 0, f"{{type(exc).__name__}}:{{getattr(exc, 'signal', None)}}"
if errno:                         # ESRCH: from inside its namespace the keeper is not there
    os.kill(keeper.pid, signal.SIGKILL)      # so kill it from outside, as if it had worked
keeper.wait(60)                   # the keeper has ended (its status is in)
print(errno, plugin.containment.pid_namespace, ended, flush=True)
plugin.close()
"""


@pytest.fixture(scope="module")
def escaping(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("escape"), "escape", ESCAPE_C, ESCAPE_H)


def escape_outcome(path: Path, no_namespace: bool, seconds: float = 10) -> dict:
    """What the guard saw `seconds` after the host's exit (ORPHAN_GUARD)."""
    host = HOST_ESCAPE.format(path=str(path), no_namespace=no_namespace)
    result = subprocess.run([sys.executable, "-c", ORPHAN_GUARD, host, "exit", str(seconds)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@requires_linux("a PID namespace of its own (pid_namespaces(7))")
def test_a_daemon_survives_no_killed_keeper_in_a_pid_namespace(escaping):
    """Double fork, setsid(), SIGKILL to the keeper: after close, nothing is left."""
    outcome = escape_outcome(escaping, no_namespace=False)
    errno_, namespaced, ended = outcome["first"].split()
    if namespaced != "True":
        pytest.skip("no PID namespace here (unshare refused): see the next test")
    assert (int(errno_), ended) == (errno.ESRCH, "returned")   # it cannot even name its keeper
    assert outcome["state"] == "none left", outcome


@requires_linux("the keeper as child subreaper (prctl)")
def test_without_the_namespace_a_killed_keeper_leaves_the_daemon(escaping):
    """The gap the namespace closes: the keeper alone cannot end what outlives it.

    The daemon holds the worker's socket open, so no end-of-file tells the
    host that its keeper was killed: the keeper's own end does, at once
    (PluginCrashed, not a PluginTimeout after isolate=True's 10 s). The daemon
    is still there 3 s after the host's exit: nothing is left that could end it
    (in the namespace, the previous test, none is left even as the host exits).
    """
    outcome = escape_outcome(escaping, no_namespace=True, seconds=3)
    errno_, namespaced, ended = outcome["first"].split()
    assert (int(errno_), namespaced) == (0, "False")     # the plugin killed its keeper
    assert ended == "PluginCrashed:SIGKILL", outcome
    assert outcome["state"].startswith("left running"), outcome   # (the guard kills it)


HOST_BOMB = r"""
import json, os, threading, time
import minildr
plugin = minildr.open({path!r}, isolate=True)    # its start: the default timeout
containment = plugin.containment
plugin._worker.timeout = 2.0                     # the bomb's call: 2 s
refused, called = [0], threading.Event()

def watch():                                     # the forks its pids cgroup refused so far
    while not called.wait(0.01):
        try:
            with open(os.path.join(containment.cgroup, "pids.events")) as f:
                refused[0] = max(refused[0], int(f.read().split()[1]))      # "max N"
        except (OSError, IndexError, ValueError):
            pass                                 # not there yet, or gone with the worker
watcher = threading.Thread(target=watch)
if containment.cgroup:
    watcher.start()
start = time.monotonic()
try:
    plugin.lookup("bomb", "int (void)")()
    outcome = "returned"
except minildr.PluginTimeout:
    outcome = "PluginTimeout"
took = time.monotonic() - start
called.set()
if containment.cgroup:
    watcher.join()
plugin.close()
start = time.monotonic()
time.sleep(0.1)                                  # the host is responsive: a short sleep is short
print(json.dumps([outcome, took, time.monotonic() - start, containment.cgroup,
                  containment.pid_namespace, refused[0]]), flush=True)
"""


@requires_linux("a pids cgroup, or RLIMIT_NPROC for a user other than root")
def test_a_fork_bomb_ends_with_its_call_and_leaves_nothing(escaping):
    """Bounded by the pids cgroup (pids.max = processes; RLIMIT_NPROC does not bind root):
    where there is one, its count of refused forks says the bomb reached that bound. Its
    call has 2 s: the first refusal came ~0.15 s after its start at load 29 here, up to
    ~0.5 s at load 130-220; with 1 s, once in 12 runs at load 96 it had come in none."""
    with minildr.open(escaping, isolate=True) as plugin:
        bounded = plugin.containment.cgroup or os.geteuid() != 0
    if not bounded:
        pytest.skip("root without a writable pids cgroup: nothing here would bound a fork "
                    "bomb (RLIMIT_NPROC does not bind root), so it is not run")
    result = subprocess.run([sys.executable, "-c", ORPHAN_GUARD, HOST_BOMB.format(path=str(
        escaping)), "exit"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    call, took, nap, cgroup, _, refused = json.loads(outcome["first"])
    assert call == "PluginTimeout" and took < 30, outcome
    assert not cgroup or refused > 0, outcome              # it hit pids.max
    assert nap < 2.0, outcome
    assert outcome["state"] == "none left", outcome
    assert not cgroup or not os.path.exists(cgroup)        # its cgroup went with it


@requires_linux("pids cgroups")
def test_a_cgroup_left_by_a_killed_keeper_is_swept(probe):
    """An empty cgroup named after a keeper that is gone goes when the next worker starts."""
    parent = pids.pids_parent()
    if parent is None:
        pytest.skip("no writable pids cgroup here")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()   # a pid now free
    stale = Path(parent) / f"{pids.PREFIX}{dead}"
    stale.mkdir(exist_ok=True)
    with minildr.open(probe, isolate=True) as plugin:
        assert plugin.containment.cgroup
    assert not stale.exists()


HOST_KILLED_WITH_ITS_KEEPER = r"""
import json, sys, time
import minildr
plugin = minildr.open(sys.argv[1], isolate=True)
c = plugin.containment
print(json.dumps([plugin._worker.process.pid, plugin.worker_pid, c.cgroup, c.pid_namespace]),
      flush=True)
time.sleep(600)                                   # until the test kills it
"""


@requires_linux("pids cgroups and PID namespaces")
def test_a_cgroup_goes_when_host_and_keeper_are_both_killed(probe):
    """SIGKILL to the keeper, then to the host: nobody is left to remove the worker's cgroup
    but the namespace's init, which its keeper's death wakes (PR_SET_PDEATHSIG): it ends
    the namespace and removes the cgroup, with no other worker started."""
    if pids.pids_parent() is None:
        pytest.skip("no writable pids cgroup here")
    host = subprocess.Popen([sys.executable, "-c", HOST_KILLED_WITH_ITS_KEEPER, str(probe)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        keeper, server, cgroup, namespaced = json.loads(host.stdout.readline())
        if not namespaced:
            pytest.skip("no PID namespace here: the init that removes the cgroup is not there")
        assert cgroup and os.path.isdir(cgroup)
        os.kill(keeper, 9)
        host.kill()
        host.wait()
        deadline = time.monotonic() + 10
        while (os.path.exists(cgroup) or os.path.exists(f"/proc/{server}")) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(cgroup), "the cgroup stayed"
        assert not os.path.exists(f"/proc/{server}"), "the server is still there"
    finally:
        host.kill()
        host.wait()


@requires_linux("PID namespaces")
def test_a_plugin_cannot_end_its_worker_by_signalling_its_init(probe):
    """SIGTERM is the init's parent-death signal (tree.run_init); the same signal from a
    process of its namespace (si_pid > 0, tree.from_outside) is ignored, so a plugin's
    kill(getppid(), SIGTERM) and kill(1, SIGTERM) are delivered and change nothing."""
    with minildr.open(probe, isolate=True) as plugin:
        if not plugin.containment.pid_namespace:
            pytest.skip(f"no PID namespace here: {plugin.containment.reason}")
        init = as_seen_by_host(1, plugin)
        assert plugin.lookup("signal_parent", "int (void)")() == 0     # sent, not refused
        assert plugin.lookup("signal_init", "int (void)")() == 0
        time.sleep(0.5)                                   # time for the init to act on them
        assert alive(init) and not plugin.closed
        assert text(plugin.lookup("env", "const char *(const char *)"), b"HOME") == "(unset)"


@requires_linux("PID namespaces")
def test_sigterm_from_outside_the_namespace_still_ends_the_init(probe):
    """From outside (si_pid 0, as the parent-death signal): the init ends its namespace,
    and the host sees the worker's crash at the next call. The keeper, still there,
    removes its cgroup (the init leaves that to it: tree.orphaned)."""
    with minildr.open(probe, isolate=True) as plugin:
        if not plugin.containment.pid_namespace:
            pytest.skip(f"no PID namespace here: {plugin.containment.reason}")
        init = as_seen_by_host(1, plugin)
        os.kill(init, signal.SIGTERM)
        assert ends_soon(init)
        with pytest.raises(minildr.PluginCrashed):
            plugin.lookup("cwd", "const char *(void)")()
        cgroup = plugin.containment.cgroup
        assert not cgroup or not os.path.exists(cgroup)
