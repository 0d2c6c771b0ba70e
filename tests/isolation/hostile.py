"""A hostile plugin, and a throwaway host that runs it in-process, isolated or sandboxed.

    python tests/isolation/hostile.py          prints the table: hostile action x
                                               (in-process, isolated, sandboxed)

test_sandbox.py runs the same host and checks each cell. Each hostile
function returns 0 when the action worked, else the errno it met, so a
plugin that merely probes carries on. The host is a process of its own
(`python hostile.py --host MODE PLUGIN CONTEXT`): the plugin signals,
ptraces and execs against *it*, never against pytest.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, Tuple

HOSTILE_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int alive(void) { return 42; }

/* Not hostile: what a plugin may still do in a sandbox. */
static void *nothing(void *arg) { return arg; }
int run_thread(void) {
    pthread_t t;
    int e = pthread_create(&t, NULL, nothing, NULL);
    return e ? e : pthread_join(t, NULL);
}
int load_library(const char *name) { return dlopen(name, RTLD_NOW) ? 0 : ENOENT; }

int read_file(const char *path) {
    char c;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errno;
    int e = read(fd, &c, 1) < 0 ? errno : 0;
    close(fd);
    return e;
}

int create_file(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return errno;
    int e = write(fd, "x", 1) < 0 ? errno : 0;
    close(fd);
    return e;
}

int list_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return errno;
    closedir(d);
    return 0;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

int tcp_connect(int port) {
    struct sockaddr_in a = loopback(port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return errno;
    int e = connect(s, (struct sockaddr *)&a, sizeof a) ? errno : 0;
    close(s);
    return e;
}

int udp_send(int port) {
    struct sockaddr_in a = loopback(port);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return errno;
    int e = sendto(s, "hostile", 7, 0, (struct sockaddr *)&a, sizeof a) < 0 ? errno : 0;
    close(s);
    return e;
}

int do_fork(void) {
    pid_t p = fork();
    if (p < 0) return errno;
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return 0;
}

int do_exec(void) {
    char *argv[] = {"sh", "-c", "exit 7", NULL};
    char *envp[] = {NULL};
    execve("/bin/sh", argv, envp);
    return errno;
}

int signal_process(int pid) { return kill(pid, SIGUSR1) ? errno : 0; }

int ptrace_process(int pid) {
    if (ptrace(PTRACE_ATTACH, pid, NULL, NULL)) return errno;
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    return 0;
}

int read_environ(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    return read_file(path);
}

/* 0 if /proc lists the host's process; else minus how many processes it lists
   (a /proc of its own PID namespace), or the errno opendir met. */
int list_processes(int host) {
    DIR *d = opendir("/proc");
    if (!d) return errno;
    int seen = 0, host_seen = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9') {
            seen++;
            host_seen |= atoi(e->d_name) == host;
        }
    closedir(d);
    return host_seen ? 0 : -seen;
}

int has_env(const char *name) { return getenv(name) ? 0 : ENOENT; }

int allocate(long long bytes) {
    errno = 0;
    void *m = malloc((size_t)bytes);
    if (!m) return errno ? errno : ENOMEM;
    free(m);
    return 0;
}

int spin(double seconds) {
    clock_t end = clock() + (clock_t)(seconds * CLOCKS_PER_SEC);
    volatile unsigned long x = 0;
    while (clock() < end) x++;
    return 0;
}
"""
HOSTILE_H = """int alive(void);
int run_thread(void);
int load_library(const char *name);
int read_file(const char *path);
int create_file(const char *path);
int list_dir(const char *path);
int tcp_connect(int port);
int udp_send(int port);
int do_fork(void);
int do_exec(void);
int signal_process(int pid);
int ptrace_process(int pid);
int read_environ(int pid);
int list_processes(int host);
int has_env(const char *name);
int allocate(long long bytes);
int spin(double seconds);
"""

MODES = ("in-process", "isolated", "sandboxed")
MEMORY_LIMIT = 1 << 30            # the sandbox's memory= in these runs
ALLOCATION = 3 << 29              # 1.5 GiB: past it, within an isolated worker's 4 GiB
CPU_LIMIT = 1                     # the sandbox's cpu_seconds= for the spinning plugin
# CPU seconds the spinning plugin asks for: past CPU_LIMIT (the sandboxed worker is
# stopped at it), and little more: the isolated and in-process hosts spin all of it.
SPIN = CPU_LIMIT + 0.25
SECRET = "MINILDR_TEST_SECRET"

# action: (words for the table, function, its C type, arguments from the context)
ACTIONS: Dict[str, Tuple[str, str, str, Tuple[str, ...]]] = {
    "read_secret": ("read a secret file in the test's folder", "read_file",
                    "int (const char *)", ("secret",)),
    "read_passwd": ("read /etc/passwd", "read_file", "int (const char *)", ("passwd",)),
    "create_file": ("create and write a file", "create_file", "int (const char *)",
                    ("new_file",)),
    "list_home": ("list a home folder", "list_dir", "int (const char *)", ("home",)),
    "tcp_connect": ("connect to a TCP server on 127.0.0.1", "tcp_connect", "int (int)",
                    ("tcp_port",)),
    "udp_send": ("send UDP to 127.0.0.1", "udp_send", "int (int)", ("udp_port",)),
    "fork": ("fork()", "do_fork", "int (void)", ()),
    "exec": ('execve("/bin/sh")', "do_exec", "int (void)", ()),
    "signal_host": ("signal the host (SIGUSR1)", "signal_process", "int (int)", ("host",)),
    "ptrace_host": ("ptrace the host", "ptrace_process", "int (int)", ("host",)),
    "host_environ": ("read the host's environment (/proc/<host>/environ)", "read_environ",
                     "int (int)", ("host",)),
    "list_proc": ("list the processes in /proc (is the host there?)", "list_processes",
                  "int (int)", ("host",)),
    "getenv_secret": ("getenv() a secret the host has", "has_env", "int (const char *)",
                      ("secret_name",)),
    "allocate": ("allocate 1.5 GiB (sandbox limit: 1 GiB)", "allocate", "int (long long)",
                 ("allocation",)),
    "spin": (f"spin {SPIN} s of CPU (sandbox limit: {CPU_LIMIT} s)", "spin", "int (double)",
             ("spin",)),
}


# The actions that get a worker of their own; the others, each a probe that gives back
# what it took (descriptors closed, a forked child waited for), take turns in one
# worker per mode, opened again if an action ended it (a worker start is ~0.13 CPU s,
# a sandboxed one more: 13 fewer per mode). spin: its sandbox has a CPU limit, and
# stops it; exec: the worker becomes /bin/sh.
OWN_WORKER = ("spin", "exec")


def outcome_of(code: int) -> str:
    return "allowed" if code == 0 else errno.errorcode.get(code, str(code))


# ---------------------------------------------------------------------------
# The throwaway host (runs in its own process)
# ---------------------------------------------------------------------------
def run_host(mode: str, plugin_path: str, other_path: str, context: dict) -> None:
    import minildr
    from minildr.isolation.policy import SandboxPolicy

    got_signal: List[int] = []
    signal.signal(signal.SIGUSR1, lambda *_: got_signal.append(1))
    context["host"] = os.getpid()
    os.environ[SECRET] = "hunter2"
    slow = 120.0                    # seconds a call may take: the machine may be busy
    kinds = {"in-process": {}, "isolated": {"isolate": slow},
             "sandboxed": {"isolate": slow, "sandbox": SandboxPolicy(memory=MEMORY_LIMIT)}}
    spinning = {"isolate": slow, "sandbox": SandboxPolicy(cpu_seconds=CPU_LIMIT)} \
        if mode == "sandboxed" else kinds[mode]
    other = minildr.open(other_path, **kinds[mode])            # a second, well-behaved plugin
    results = {}
    order = [a for a in ACTIONS if a != "exec"] + ["exec"]     # in-process, exec ends the host
    plugin = None
    for action in order:
        words, name, ctype, arg_names = ACTIONS[action]
        if mode == "in-process" and action == "exec":
            print(json.dumps(results), flush=True)             # what exec will not let us say
        if plugin is None or plugin.closed or action in OWN_WORKER:
            if plugin is not None:
                plugin.close()
            plugin = minildr.open(plugin_path, **(spinning if action == "spin" else kinds[mode]))
        args = [context[a].encode() if isinstance(context[a], str) else context[a]
                for a in arg_names]
        got_signal.clear()
        try:
            outcome = outcome_of(plugin.lookup(name, ctype)(*args))
        except minildr.PluginError as exc:
            outcome = f"{type(exc).__name__}: {exc.reason.splitlines()[0]}"
        carried_on = not plugin.closed and plugin.lookup("alive", "int (void)")() == 42
        others_fine = other.lookup("alive", "int (void)")() == 42
        results[action] = {"outcome": outcome, "carried_on": carried_on,
                           "others_fine": others_fine, "host_got_signal": bool(got_signal)}
        if action in OWN_WORKER:
            plugin.close()
            plugin = None
    print(json.dumps(results), flush=True)


# ---------------------------------------------------------------------------
# The test's side: servers to reach, a context, one host per mode
# ---------------------------------------------------------------------------
class Servers:
    """A TCP listener and a UDP socket on 127.0.0.1 that record what reached them."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.0)
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.tcp.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def datagrams(self) -> int:
        count = 0
        while True:
            try:
                self.udp.recv(64)
                count += 1
            except OSError:
                return count

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.tcp.close()
        self.udp.close()


def context_in(folder: Path, servers: Servers) -> dict:
    secret = folder / "secret.txt"
    secret.write_text("the host's secret\n")
    return {"secret": str(secret), "passwd": "/etc/passwd",
            "new_file": str(folder / "created-by-plugin.txt"),
            "home": os.path.expanduser("~"), "tcp_port": servers.tcp.getsockname()[1],
            "udp_port": servers.udp.getsockname()[1], "secret_name": SECRET,
            "allocation": ALLOCATION, "spin": SPIN}


def observe(mode: str, plugin: Path, other: Path, folder: Path) -> Dict[str, dict]:
    """Run every hostile action in one throwaway host in `mode`; what each one did."""
    servers = Servers()
    try:
        context = context_in(folder, servers)
        result = subprocess.run([sys.executable, __file__, "--host", mode, str(plugin), str(other),
                                 json.dumps(context)], capture_output=True, text=True, timeout=600)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"the {mode} host printed nothing:\n{result.stderr[-3000:]}")
        results = json.loads(lines[-1])
        if mode == "in-process":        # exec replaced the host: it never printed again
            results["exec"] = {"outcome": "allowed" if result.returncode == 7 else
                               f"host exit {result.returncode}", "carried_on": False,
                               "others_fine": False, "host_got_signal": False}
        reached = {"tcp_connect": servers.connections, "udp_send": servers.datagrams()}
        for action, count in reached.items():
            results[action]["reached_server"] = count > 0
        results["create_file"]["file_exists"] = Path(context["new_file"]).exists()
        Path(context["new_file"]).unlink(missing_ok=True)
        return results
    finally:
        servers.close()


def build(folder: Path) -> Tuple[Path, Path]:
    """The hostile plugin, and a second one to check others keep working (the same code)."""
    import minildr
    src = folder / "src"
    src.mkdir(exist_ok=True)
    (src / "hostile.c").write_text(HOSTILE_C)
    (src / "hostile.h").write_text(HOSTILE_H)
    hostile = minildr.build([src / "hostile.c"], name="hostile", exports=src / "hostile.h",
                            out_dir=folder / "out")
    other = minildr.build([src / "hostile.c"], name="bystander", exports=src / "hostile.h",
                          out_dir=folder / "out")
    return hostile, other


def cell(mode: str, action: str, seen: dict) -> str:
    """One table cell in words."""
    outcome = seen["outcome"]
    if outcome.startswith("PluginCrashed") and "SIGXCPU" in outcome:
        named = "cpu_seconds=" in outcome
        return "stopped: SIGXCPU, PluginCrashed" + (" naming cpu_seconds" if named else "")
    if outcome.startswith("PluginCrashed") and "exited with code 7" in outcome:
        return "allowed: the worker became sh (PluginCrashed, exit 7)"
    if outcome.startswith("Plugin"):
        return outcome.split(":")[0]
    if outcome == "allowed":
        extra = {"list_proc": ": the host's and every other process","signal_host": " (the host got it)" if seen.get("host_got_signal") else "",
                 "exec": ": the host became sh", "tcp_connect": " (server reached)"
                 if seen.get("reached_server") else "", "udp_send": " (server reached)"
                 if seen.get("reached_server") else "",
                 "create_file": " (file written)" if seen.get("file_exists") else ""}
        return "allowed" + extra.get(action, "")
    if action == "getenv_secret" and outcome == "ENOENT":
        return "not there (empty environment)"
    if mode == "in-process" and action == "ptrace_host":
        return "moot: it is the host (EPERM on itself)"
    if outcome == "ESRCH":
        return "refused (ESRCH: the host is outside its PID namespace)"
    if action == "list_proc" and outcome.startswith("-"):
        return f"only its own {outcome[1:]} (its PID namespace's /proc)"
    if action == "host_environ" and outcome == "ENOENT":
        return "not there (ENOENT: its /proc is its PID namespace's)"
    return f"refused ({outcome})"


def table(observed: Dict[str, Dict[str, dict]]) -> str:
    rows = [("hostile action",) + MODES]
    for action, (words, *_rest) in ACTIONS.items():
        rows.append((words,) + tuple(cell(m, action, observed[m][action]) for m in MODES))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def observe_all(folder: Path) -> Dict[str, Dict[str, dict]]:
    hostile, other = build(folder)
    return {mode: observe(mode, hostile, other, folder) for mode in MODES}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--host"]:
        run_host(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            print(table(observe_all(Path(scratch))))
