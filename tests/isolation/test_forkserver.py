"""The fork server (minildr/isolation/zygote.py, forkserver.py): a worker forked from it is the
worker a direct start gives, its end is reported as before, and the server itself is safe to
lose.

Each comparison runs both paths in this process: the direct start is chosen with
MINILDR_NO_FORK_SERVER=1 (forkserver.DISABLE), the fork server is the default on Linux.
"""
from __future__ import annotations

import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import minildr
from minildr.isolation import forkserver, process
from helpers import run_python, write_plugin

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fork server is Linux's")

PROBE_H = """
const char *describe(void);
void segfault(void);
void do_exit(int code);
int add(int a, int b);
void say(const char *text);
"""
# What the plugin's process looks like from inside: its descriptors (how many, and what
# 0, 1, 2 are), umask, blocked and ignored signals, session, folder, environment, limits.
PROBE_C = r"""
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;
static char out[8192];

static void link_of(int fd, char *to, size_t size)
{
    char path[64];
    ssize_t n;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    n = readlink(path, to, size - 1);
    to[n < 0 ? 0 : n] = '\0';
    if (strchr(to, ':'))
        *strchr(to, ':') = '\0';          /* pipe:[123] -> pipe */
}

const char *describe(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fds = -1, s;                        /* less the directory's own descriptor */
    char l0[256], l1[256], l2[256], cwd[4096], names[2048] = "";
    unsigned long blocked = 0, ignored = 0, handled = 0;
    sigset_t set;
    struct sigaction sa;
    struct rlimit nofile, core;
    mode_t mask = umask(0);
    char **v;

    umask(mask);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            fds++;
    closedir(d);
    link_of(0, l0, sizeof l0);
    link_of(1, l1, sizeof l1);
    link_of(2, l2, sizeof l2);
    sigprocmask(SIG_BLOCK, NULL, &set);
    for (s = 1; s < 32; s++) {
        if (sigismember(&set, s))
            blocked |= 1UL << s;
        if (s != SIGKILL && s != SIGSTOP && sigaction(s, NULL, &sa) == 0) {
            if (sa.sa_handler == SIG_IGN)
                ignored |= 1UL << s;
            else if (sa.sa_handler != SIG_DFL)
                handled |= 1UL << s;
        }
    }
    for (v = environ; *v; v++) {
        strncat(names, *v, sizeof names - strlen(names) - 2);
        strcat(names, ";");
    }
    getrlimit(RLIMIT_NOFILE, &nofile);
    getrlimit(RLIMIT_CORE, &core);
    getcwd(cwd, sizeof cwd);
    snprintf(out, sizeof out,
             "fds=%d 0=%s 1=%s 2=%s umask=%o blocked=%lx ignored=%lx handled=%lx "
             "session_leader=%d group_is_session=%d cwd_is_its_folder=%d nofile=%ld/%ld "
             "core=%ld env=%s",
             fds, l0, l1, l2, (unsigned)mask, blocked, ignored, handled,
             getsid(0) == getpid(), getsid(0) == getpgid(0),
             strstr(cwd, "minildr-worker-") != NULL, (long)nofile.rlim_cur,
             (long)nofile.rlim_max, (long)core.rlim_cur, names);
    return out;
}
void segfault(void) { *(volatile int *)0 = 1; }
void do_exit(int code) { fflush(stdout); _exit(code); }
int add(int a, int b) { return a + b; }
void say(const char *text) { printf("out: %s\n", text); fprintf(stderr, "err: %s\n", text); }
"""


@pytest.fixture(autouse=True)
def fork_server_unless_asked(monkeypatch):
    """The fork server is what these tests are about, also when the whole run starts
    workers directly (make test-direct-start sets forkserver.DISABLE): each test sets
    the variable itself where it wants the direct start."""
    monkeypatch.delenv(forkserver.DISABLE, raising=False)


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("probe"), "probe", PROBE_C, PROBE_H, once=True)


@pytest.fixture(params=["direct", "fork server"])
def start(request, monkeypatch) -> str:
    if request.param == "direct":
        monkeypatch.setenv(forkserver.DISABLE, "1")
    return request.param


def kind_of(plugin) -> str:
    forked = isinstance(plugin._worker.process, forkserver.ForkedWorker)
    return "fork server" if forked else "direct"


def described(start: str, probe: Path, **kwargs) -> str:
    with minildr.open(probe, isolate=True, **kwargs) as plugin:
        assert kind_of(plugin) == start
        keeper = plugin._worker.process.pid
        assert os.getsid(keeper) == os.getpgid(keeper) == keeper    # a session of its own
        return minildr.ffi.string(plugin.lookup("describe", "const char *(void)")()).decode()


def described_both_ways(probe: Path, monkeypatch, order=("direct", "fork server"),
                        **kwargs) -> dict:
    """What the probe says of its worker, started each way in `order`."""
    seen = {}
    for start in order:
        with monkeypatch.context() as m:
            if start == "direct":
                m.setenv(forkserver.DISABLE, "1")
            seen[start] = described(start, probe, **kwargs)
    return seen


def test_both_paths_give_the_same_worker(probe, monkeypatch):
    """Descriptors, stdin/stdout/stderr, umask, signal mask and dispositions, session,
    folder, environment and limits, as the plugin sees them, are the same both ways."""
    seen = described_both_ways(probe, monkeypatch, env={"PROBE_VALUE": "forty two"})
    assert seen["direct"] == seen["fork server"]
    assert "0=/dev/null 1=pipe 2=pipe" in seen["direct"]
    assert "PROBE_VALUE=forty two;" in seen["direct"] and "cwd_is_its_folder=1" in seen["direct"]


def test_both_paths_give_the_same_worker_when_the_host_changed_its_umask(probe, monkeypatch):
    """The umask is the host's at each open, not the fork server's at its start."""
    old = os.umask(0o027)
    try:
        seen = described_both_ways(probe, monkeypatch)
    finally:
        os.umask(old)
    assert seen["direct"] == seen["fork server"] and "umask=27" in seen["direct"]


def test_both_paths_report_a_crash_an_exit_code_and_the_output_alike(probe, start, capfd):
    with minildr.open(probe, isolate=True) as plugin:
        assert kind_of(plugin) == start
        plugin.lookup("say", "void (const char *)")(b"hello")
        out, err = capfd.readouterr()
        assert "out: hello" in out and "err: hello" in err
        with pytest.raises(minildr.PluginCrashed) as crash:
            plugin.lookup("segfault", "void (void)")()
    assert (crash.value.signal, crash.value.exit_code) == ("SIGSEGV", None)
    with minildr.open(probe, isolate=True) as plugin:
        with pytest.raises(minildr.PluginCrashed) as ended:
            plugin.lookup("do_exit", "void (int)")(7)
    assert (ended.value.signal, ended.value.exit_code) == (None, 7)


def test_a_keeper_killed_by_sigkill_is_reported_as_killed_by_sigkill(probe, start):
    """The keeper is the fork server's child: the server reports its wait status."""
    plugin = minildr.open(probe, isolate=True)
    assert kind_of(plugin) == start
    os.kill(plugin._worker.process.pid, signal.SIGKILL)        # the keeper
    with pytest.raises(minildr.PluginCrashed) as crash:
        for _ in range(100):
            plugin.lookup("add", "int (int, int)")(1, 2)
            time.sleep(0.02)
    assert crash.value.signal == "SIGKILL", str(crash.value)
    plugin.close()


def running_in_group(group: int) -> list:
    """The processes of process group `group` that have not ended (zombies do not count)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        state, _, pgrp = stat[stat.rindex(")") + 2:].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(int(name))
    return found


def test_a_worker_stopped_whole_is_killed_with_its_group(probe, start):
    """Stopping a worker asks its keeper (SIGTERM); a keeper that does not end within a
    second gets SIGKILL to its whole process group (tree.kill_group, both kinds of worker
    handle: ForkedWorker, WorkerPopen). With the group stopped (SIGSTOP), the keeper's own
    kill alone would leave the init and server below it stopped for ever."""
    plugin = minildr.open(probe, isolate=True)          # its start: the default timeout
    assert kind_of(plugin) == start
    plugin._worker.timeout = 0.5                          # a request it cannot answer now
    group = plugin._worker.process.pid
    assert len(running_in_group(group)) >= 2          # the keeper and what is below it
    os.killpg(group, signal.SIGSTOP)
    with pytest.raises(minildr.PluginTimeout):
        plugin.lookup("add", "int (int, int)")
    deadline = time.monotonic() + 10
    while running_in_group(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_in_group(group) == []
    plugin.close()


def test_a_killed_fork_server_is_replaced_and_its_workers_say_their_status_is_lost(probe):
    first = minildr.open(probe, isolate=True)
    assert kind_of(first) == "fork server"
    server = forkserver.server_pid()
    os.kill(server, signal.SIGKILL)
    with minildr.open(probe, isolate=True) as second:     # a new server
        assert kind_of(second) == "fork server"
        assert second.lookup("add", "int (int, int)")(2, 3) == 5
        assert forkserver.server_pid() not in (None, server)
    assert first.lookup("add", "int (int, int)")(20, 22) == 42    # lives on without it
    with pytest.raises(minildr.PluginCrashed) as crash:
        first.lookup("segfault", "void (void)")()
    assert crash.value.signal is None and crash.value.exit_code is None
    assert "the fork server that started it ended first" in str(crash.value)
    assert first._worker.process.returncode == forkserver.STATUS_LOST
    first.close()


def test_a_worker_whose_status_was_lost_with_its_server_never_looks_like_a_clean_exit(
        probe, caplog):
    """The fork server, the keeper's parent, is the only process that can read its exit
    status: killed while the worker runs, it takes that status with it. The worker then
    ends (here by a clean close, an exit 0 nobody can see); its handle says STATUS_LOST, to
    Popen's API (returncode, poll, wait) and in the close's log line, never 0."""
    caplog.set_level("WARNING", logger="minildr")   # (minildr.cli, run in-process, sets ERROR)
    plugin = minildr.open(probe, isolate=True)
    assert kind_of(plugin) == "fork server"
    worker, pid = plugin._worker.process, plugin.worker_pid
    os.kill(forkserver.server_pid(), signal.SIGKILL)
    assert plugin.lookup("add", "int (int, int)")(1, 2) == 3     # lives on without it
    plugin.close()
    assert worker.returncode == worker.poll() == worker.wait() == forkserver.STATUS_LOST
    assert worker.status_lost and worker.returncode != 0
    said = [r.getMessage() for r in caplog.records if f"(pid {pid})" in r.getMessage()]
    assert len(said) == 1 and "after close" in said[0], said
    assert "how cannot be known (the fork server that started it ended first" in said[0]


def test_several_threads_open_at_once_from_one_server(probe):
    forkserver.shutdown()
    results, errors = [], []
    barrier = threading.Barrier(6)

    def one(n: int) -> None:
        try:
            barrier.wait()
            with minildr.open(probe, isolate=True) as plugin:
                results.append((kind_of(plugin), plugin.lookup("add", "int (int, int)")(n, n)))
        except BaseException as exc:          # reported below
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [("fork server", 2 * n) for n in range(6)]


def test_the_fork_server_has_one_thread_and_nothing_of_the_host(probe, monkeypatch):
    """It is a fresh interpreter: none of the host's variables (a secret), one thread,
    and no descriptor but its standard three and its socket while no worker runs."""
    forkserver.shutdown()
    monkeypatch.setenv("HOST_SECRET", "do not pass on")
    with minildr.open(probe, isolate=True) as plugin:
        assert kind_of(plugin) == "fork server"
        pid = forkserver.server_pid()
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read()
    assert b"HOST_SECRET" not in environ
    assert os.listdir(f"/proc/{pid}/task") == [str(pid)]
    deadline = time.monotonic() + 5
    while len(os.listdir(f"/proc/{pid}/fd")) > 4 and time.monotonic() < deadline:
        time.sleep(0.02)                    # (the worker's end is being reported)
    assert sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))[:3] == [0, 1, 2]
    assert len(os.listdir(f"/proc/{pid}/fd")) == 4


@pytest.mark.parametrize("env", [{"LD_LIBRARY_PATH": "/nowhere"}, {"LANG": "C"},
                                 {"TZ": "UTC"}])
def test_a_variable_read_at_a_process_start_starts_the_worker_directly(probe, env):
    """ld.so, Python's locale coercion and time read these as a process starts: a forked
    child would not see them, so such a worker starts as a fresh process."""
    with minildr.open(probe, isolate=True, env=env) as plugin:
        assert kind_of(plugin) == "direct"
        assert plugin.lookup("add", "int (int, int)")(1, 1) == 2


def test_no_fork_server_when_asked(probe, monkeypatch):
    monkeypatch.setenv(forkserver.DISABLE, "1")
    with minildr.open(probe, isolate=True) as plugin:
        assert isinstance(plugin._worker.process, process.WorkerPopen)


def test_a_fork_of_the_host_starts_its_own_server(probe):
    """The parent's server answers the parent's socket only; a forked child of the host
    (with the lock perhaps held by a thread that does not exist in it) starts its own."""
    with minildr.open(probe, isolate=True) as plugin:
        parent_server = forkserver.server_pid()
        assert plugin.lookup("add", "int (int, int)")(1, 2) == 3
        read, write = os.pipe()
        forkserver._server.lock.acquire()   # held by this thread as it forks
        child = os.fork()
        if child != 0:
            forkserver._server.lock.release()
        if child == 0:
            code = 1
            try:
                with minildr.open(probe, isolate=True) as mine:
                    ok = (kind_of(mine) == "fork server"
                          and forkserver.server_pid() not in (None, parent_server)
                          and mine.lookup("add", "int (int, int)")(2, 2) == 4)
                forkserver.shutdown()
                code = 0 if ok else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(code)
        os.close(write)
        assert gone_within(child, 30), "the forked host hung (the lock held at the fork?)"
        assert os.read(read, 1) == b"\0"
        os.close(read)
        assert forkserver.server_pid() == parent_server
        assert plugin.lookup("add", "int (int, int)")(3, 4) == 7


def test_a_large_environment_starts_the_worker_directly(probe):
    env = {f"V{i}": "x" * 1000 for i in range(80)}         # 80 kB: more than MAX_ENV
    with minildr.open(probe, isolate=True, env=env) as plugin:
        assert kind_of(plugin) == "direct"
    with minildr.open(probe, isolate=True) as plugin:       # and the server is still used
        assert kind_of(plugin) == "fork server"


# A host that made a weakref.finalize object before its first isolated open imported the
# fork server (a build's TemporaryDirectory makes one), then exits with its plugin open;
# it says whether its worker was released when the fork server's exit function ran.
HOST_EXITING_OPEN = r"""
import sys, tempfile
import minildr
folder = tempfile.TemporaryDirectory()          # weakref.finalize's exit function: first
plugin = minildr.open(sys.argv[1], isolate=True)
from minildr.isolation import forkserver
keeper, shutdown = plugin._worker.process, forkserver.shutdown

def watched(timeout=10.0):
    print("released" if keeper.returncode is not None else "open", flush=True)
    shutdown(timeout)
forkserver.shutdown = watched                   # what its exit function calls
assert plugin.lookup("add", "int (int, int)")(1, 2) == 3
"""


def test_a_host_exiting_with_a_plugin_open_releases_its_worker_before_the_fork_server(probe):
    """The fork server's exit function waits for its server, which ends once its keepers
    have: a worker still open then made every such exit wait the whole 2 s (process._at_exit
    releases the workers first, whatever order the other exit functions were made in)."""
    done = run_python(HOST_EXITING_OPEN, probe, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["released"], (done.stdout, done.stderr[-2000:])


def gone_within(child: int, seconds: float) -> bool:
    """Whether our child `child` ended with exit code 0 within `seconds` (else it is killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.02)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return False


def test_a_limit_the_host_lowered_reaches_the_next_worker(probe, monkeypatch):
    """A worker inherits the host's resource limits as they are at its open: a fork server
    started before the host lowered one is replaced (so are credentials, capabilities,
    no_new_privs and seccomp filters: forkserver.INHERITED)."""
    with minildr.open(probe, isolate=True):
        before = forkserver.server_pid()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 900) - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        seen = described_both_ways(probe, monkeypatch, order=("fork server", "direct"))
        after = forkserver.server_pid()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert seen["direct"] == seen["fork server"] and f"nofile={lowered}/" in seen["direct"]
    assert after != before


def test_a_fork_server_that_cannot_serve_gives_way_to_the_direct_start(probe, monkeypatch):
    """A server that dies before answering is started again once; failing twice, it is
    not tried again in this process and workers start directly (the open works)."""
    forkserver.shutdown()
    monkeypatch.setattr(process, "BOOT_ZYGOTE", "import os; os._exit(3)")
    monkeypatch.setattr(forkserver._server, "broken", None)      # (restored after the test)
    monkeypatch.setattr(forkserver._server, "failures", 0)
    for _ in range(2):
        with minildr.open(probe, isolate=True) as plugin:
            assert kind_of(plugin) == "direct"
            assert plugin.lookup("add", "int (int, int)")(1, 2) == 3
    assert "the fork server failed twice" in forkserver._server.broken
    monkeypatch.undo()
    monkeypatch.delenv(forkserver.DISABLE, raising=False)       # (undo put it back)
    with minildr.open(probe, isolate=True) as plugin:           # a good one again
        assert kind_of(plugin) == "fork server"
