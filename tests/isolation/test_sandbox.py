"""sandbox=True: hostile plugins refused by the kernel, the host and other plugins unharmed.

Each hostile action (hostile.py) runs in a throwaway host, in-process,
isolated and sandboxed. Sandboxed, each is refused with an error the plugin
sees (EACCES, EPERM, ENOMEM) and the plugin, the host and a second plugin
carry on; the CPU limit stops the worker with a PluginCrashed that names it.
Isolated, most of them succeed: crash isolation is no protection from malice
(test_crash_isolation_does_not_stop_a_hostile_plugin documents it).
`python tests/isolation/hostile.py` prints the whole table.
"""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minildr
from minildr.isolation import process, sandbox
from minildr.isolation.policy import SandboxPolicy

import hostile
from examples.editor import Editor, build_plugins
from helpers import ROOT, build_once, run_in_worker_first
from platforms import requires_linux

SUPPORT = sandbox.probe()
requires_sandbox = pytest.mark.skipif(
    bool(SUPPORT.missing), reason="sandbox=True needs " + "; ".join(SUPPORT.missing))
pytestmark = requires_linux("sandbox=True confines a worker with Linux's Landlock and seccomp")

REFUSED = ["read_secret", "read_passwd", "create_file", "list_home", "tcp_connect", "udp_send",
           "fork", "exec", "signal_host", "ptrace_host", "host_environ", "list_proc"]
OUTSIDE = ["signal_host", "ptrace_host"]        # reach the host's process by its pid


@pytest.fixture(scope="module")
def plugins(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return (*hostile.build(folder), folder)


@pytest.fixture(scope="module")
def containment(plugins):
    """What holds an isolated worker's processes here (pids.Containment), from one worker."""
    with minildr.open(plugins[1], isolate=True) as plugin:
        return plugin.containment


@pytest.fixture(scope="module")
def namespaced(containment):
    """Whether isolated workers here run in a PID namespace of their own (pids.py):
    then the host is not there for a plugin to signal or ptrace (ESRCH)."""
    return containment.pid_namespace


@pytest.fixture(scope="module")
def private_proc(containment):
    """Whether isolated workers here have a /proc of their own PID namespace (mounts.py)."""
    return containment.private_proc


@pytest.fixture(scope="module")
def sandboxed(plugins):
    hostile_so, other, folder = plugins
    return hostile.observe("sandboxed", hostile_so, other, folder)


@pytest.fixture(scope="module")
def isolated(plugins):
    hostile_so, other, folder = plugins
    return hostile.observe("isolated", hostile_so, other, folder)


# ---------------------------------------------------------------------------
# Sandboxed: refused, and everyone carries on
# ---------------------------------------------------------------------------
@requires_sandbox
@pytest.mark.parametrize("action", REFUSED)
def test_the_sandbox_refuses(sandboxed, namespaced, private_proc, action):
    seen = sandboxed[action]
    if namespaced and action == "signal_host":              # (ptrace: seccomp's EPERM first)
        assert seen["outcome"] == "ESRCH", seen             # no such process in its namespace
    elif private_proc and action == "host_environ":         # no /proc/<host> to refuse
        assert seen["outcome"] == "ENOENT", seen
    else:
        assert seen["outcome"] in ("EACCES", "EPERM"), seen
    assert seen["carried_on"] and seen["others_fine"], seen    # the plugin probes on
    assert not seen["host_got_signal"]
    assert not seen.get("reached_server") and not seen.get("file_exists")


@requires_sandbox
def test_the_sandbox_hides_the_hosts_environment(sandboxed):
    assert sandboxed["getenv_secret"]["outcome"] == "ENOENT"


@requires_sandbox
def test_allocating_past_the_memory_limit_fails_in_the_plugin(sandboxed):
    seen = sandboxed["allocate"]
    assert seen["outcome"] == "ENOMEM" and seen["carried_on"] and seen["others_fine"], seen


@requires_sandbox
def test_spinning_past_the_cpu_limit_is_a_crash_that_names_the_limit(sandboxed):
    seen = sandboxed["spin"]
    assert seen["outcome"].startswith("PluginCrashed: "), seen
    assert "SIGXCPU" in seen["outcome"]
    assert f"cpu_seconds={hostile.CPU_LIMIT}" in seen["outcome"]
    assert not seen["carried_on"] and seen["others_fine"], seen


# ---------------------------------------------------------------------------
# What crash isolation does not stop
# ---------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform != "linux", reason="the hostile plugin reads Linux's /proc")
def test_crash_isolation_does_not_stop_a_hostile_plugin(isolated, namespaced, private_proc):
    """isolate=True is protection from bugs: a hostile isolated plugin reaches all this.

    In a PID namespace (pids.py) it cannot name the host's process: signal and
    ptrace find no such process (ESRCH); with a /proc of its own (mounts.py)
    /proc/<host>/environ is not there either (ENOENT).
    """
    outside = OUTSIDE if namespaced else []
    assert {a: isolated[a]["outcome"] for a in outside} == {a: "ESRCH" for a in outside}
    if private_proc:
        assert isolated["host_environ"]["outcome"] == "ENOENT"
        assert isolated["list_proc"]["outcome"] in ("-2", "-3")    # its init, server (+ a child)
        outside = outside + ["host_environ", "list_proc"]
    allowed = [a for a in REFUSED if a != "exec" and a not in outside] + ["allocate", "spin"]
    assert {a: isolated[a]["outcome"] for a in allowed} == {a: "allowed" for a in allowed}
    assert isolated["tcp_connect"]["reached_server"] and isolated["udp_send"]["reached_server"]
    assert isolated["create_file"]["file_exists"]
    assert isolated["signal_host"]["host_got_signal"] == (not namespaced)
    exec_outcome = isolated["exec"]["outcome"]               # the worker became /bin/sh
    assert exec_outcome.startswith("PluginCrashed") and "exited with code 7" in exec_outcome
    # What it does give: the host's variables are not in the worker's environment.
    assert isolated["getenv_secret"]["outcome"] == "ENOENT"


# ---------------------------------------------------------------------------
# What a sandboxed plugin may still do
# ---------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform != "linux", reason="a mount namespace and /proc: Linux")
def test_an_isolated_plugin_has_a_proc_of_its_own(plugins):
    """/proc in the worker lists only its PID namespace: the init (1) and the server (2).
    Sandboxed, /proc is unreadable (Landlock) unless granted; granted, the same."""
    hostile_so, _, _ = plugins
    kinds = [{"isolate": True}]
    if not sandbox.probe().missing:
        kinds += [{"sandbox": True}, {"sandbox": SandboxPolicy(read=["/proc"])}]
    seen = []
    for how in kinds:
        with minildr.open(hostile_so, **how) as plugin:
            if not plugin.containment.private_proc:
                pytest.skip(f"no private /proc here: {plugin.containment.reason}")
            listing = plugin.lookup("list_processes", "int (int)")(os.getpid())
            environ = plugin.lookup("read_environ", "int (int)")(os.getpid())
            own = plugin.lookup("read_file", "int (const char *)")(b"/proc/self/status")
            seen.append((listing, errno.errorcode.get(environ), own))
            worker_ns = os.readlink(f"/proc/{plugin.worker_pid}/ns/mnt")
            assert worker_ns != os.readlink("/proc/self/ns/mnt")     # a mount namespace of its own
            with open(f"/proc/{plugin.worker_pid}/mountinfo") as f:
                assert any(line.split()[4] == "/proc" and " - proc " in line for line in f)
    assert seen[0] == (-2, "ENOENT", 0)             # isolated: itself and its init, no host
    if len(seen) > 1:
        assert seen[1] == (errno.EACCES, "ENOENT", errno.EACCES)   # sandboxed: Landlock; no /proc/<host>
        assert seen[2] == (-2, "ENOENT", 0)         # granted /proc: still only its own


@requires_sandbox
def test_a_sandboxed_plugin_may_start_threads_and_load_system_libraries(plugins):
    hostile_so, _, _ = plugins
    with minildr.open(hostile_so, sandbox=True) as plugin:
        assert plugin.lookup("run_thread", "int (void)")() == 0     # clone(CLONE_THREAD)
        load = plugin.lookup("load_library", "int (const char *)")
        assert load(b"libz.so.1") == 0 or not Path("/usr/lib/x86_64-linux-gnu/libz.so.1").exists()
        assert load(b"libm.so.6") == 0


@requires_sandbox
def test_a_policy_grants_one_folder(plugins, tmp_path):
    hostile_so, _, _ = plugins
    readable, writable, other = tmp_path / "in", tmp_path / "out", tmp_path / "other"
    for folder in (readable, writable, other):
        folder.mkdir()
        (folder / "data.txt").write_text("data\n")
    policy = SandboxPolicy(read=[readable], write=[writable])
    with minildr.open(hostile_so, sandbox=policy) as plugin:
        read = plugin.lookup("read_file", "int (const char *)")
        create = plugin.lookup("create_file", "int (const char *)")
        assert read(str(readable / "data.txt").encode()) == 0
        assert read(str(writable / "data.txt").encode()) == 0
        assert read(str(other / "data.txt").encode()) == errno.EACCES
        assert create(str(readable / "new.txt").encode()) == errno.EACCES
        assert create(str(writable / "new.txt").encode()) == 0
        assert create(str(other / "new.txt").encode()) == errno.EACCES
    assert (writable / "new.txt").read_text() == "x"
    assert not (readable / "new.txt").exists() and not (other / "new.txt").exists()


def test_a_policy_checks_its_values(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        SandboxPolicy(read=[tmp_path / "missing"])
    with pytest.raises(ValueError, match="whole number"):
        SandboxPolicy(memory=-1)
    with pytest.raises(ValueError, match="whole number"):
        SandboxPolicy(cpu_seconds=1.5)
    assert SandboxPolicy(read=str(tmp_path)).read == (str(tmp_path),)


# ---------------------------------------------------------------------------
# Never less confinement than asked
# ---------------------------------------------------------------------------
def test_without_landlock_sandbox_is_refused_before_any_worker_starts(plugins, monkeypatch):
    hostile_so, _, _ = plugins
    lacking = sandbox.Support("linux x86_64", 3, "", True, "", True)
    monkeypatch.setattr(sandbox, "probe", lambda: lacking)
    started = []
    monkeypatch.setattr(process.subprocess, "Popen",
                        lambda *a, **k: started.append(a))
    with pytest.raises(minildr.SandboxUnavailable) as err:
        minildr.open(hostile_so, sandbox=True)
    assert "Landlock ABI 6" in str(err.value) and "this kernel has ABI 3" in str(err.value)
    assert str(hostile_so) in str(err.value) and not started
    lacking = sandbox.Support("linux x86_64", 7, "", False, "the kernel was built without "
                              "seccomp", True)
    monkeypatch.setattr(sandbox, "probe", lambda: lacking)
    with pytest.raises(minildr.SandboxUnavailable, match="seccomp"):
        minildr.open(hostile_so, sandbox=True)


@requires_sandbox
def test_a_worker_that_cannot_confine_itself_loads_nothing(plugins, monkeypatch):
    """The host's check passed, the worker's failed: SandboxUnavailable, nothing loaded."""
    hostile_so, _, _ = plugins
    run_in_worker_first(monkeypatch, (
        "import minildr.isolation.sandbox as s\n"
        "def refuse(policy): raise OSError(22, 'Invalid argument')\n"
        "s.landlock = refuse\n"))
    with pytest.raises(minildr.SandboxUnavailable, match="Landlock failed"):
        minildr.open(hostile_so, sandbox=True)


def test_python_m_minildr_sandbox_says_what_this_kernel_supports():
    result = subprocess.run([sys.executable, "-m", "minildr", "sandbox"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert f"Landlock: ABI {SUPPORT.landlock_abi}" in result.stdout or not SUPPORT.landlock_abi
    if SUPPORT.missing:
        assert result.returncode == 1 and "SandboxUnavailable" in result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert "sandbox=True works here" in result.stdout and "cannot" in result.stdout


# ---------------------------------------------------------------------------
# The seccomp filter, run on made-up system calls (a BPF interpreter)
# ---------------------------------------------------------------------------
def run_bpf(program, nr, args=(0,) * 6, arch=sandbox.AUDIT_ARCH_X86_64):
    """What the filter answers for one system call: classic BPF, the subset it uses."""
    data = {0: nr, 4: arch}
    for i, value in enumerate(args):
        data[16 + 8 * i], data[20 + 8 * i] = value & 0xFFFFFFFF, value >> 32
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == sandbox.LD_W_ABS:
            a = data[k]
        elif code == sandbox.AND:
            a &= k
        elif code in (sandbox.JEQ, sandbox.JGE, sandbox.JSET):
            taken = {sandbox.JEQ: a == k, sandbox.JGE: a >= k, sandbox.JSET: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == sandbox.RET:
            return k
        else:
            raise AssertionError(f"unknown instruction {code:#x}")


EPERM = sandbox.RET_ERRNO | errno.EPERM


@pytest.mark.parametrize("nr, args, answer", [
    (0, (), sandbox.RET_ALLOW),                                      # read
    (56, (0x3D0F00,), sandbox.RET_ALLOW),                            # clone: pthread_create's
    (56, (0x11,), EPERM),                                            # clone(SIGCHLD): fork
    (435, (), sandbox.RET_ERRNO | errno.ENOSYS),                     # clone3
    (41, (2, 1, 0), sandbox.RET_ALLOW),                              # socket(AF_INET, STREAM)
    (41, (10, 1 | 0o2000000, 6), sandbox.RET_ALLOW),                 # AF_INET6 TCP, CLOEXEC
    (41, (2, 2, 0), EPERM),                                          # UDP
    (41, (2, 1, 132), EPERM),                                        # SCTP over a stream
    (41, (2, 3, 1), EPERM),                                          # raw
    (41, (1, 1, 0), EPERM),                                          # a new Unix socket
    (41, (16, 3, 0), EPERM),                                         # netlink
    (41, (17, 3, 0), EPERM),                                         # packet
    (53, (1, 1, 0), sandbox.RET_ALLOW),                              # socketpair(AF_UNIX)
    (53, (2, 1, 0), EPERM),
    (302, (0, 7, 0, 0x7FFF0000), sandbox.RET_ALLOW),                 # prlimit64: reading
    (302, (0, 7, 0x1000, 0), EPERM),                                 # prlimit64: setting
    (302, (0, 7, 0x7FFF00000000, 0), EPERM),                         # a pointer above 4 GiB
    (0x40000000 + 59, (), EPERM),                                    # x32 execve
] + [(nr, (), EPERM) for nr in sandbox.X86_64.denied.values()])
def test_the_seccomp_filter_answers(nr, args, answer):
    args = tuple(args) + (0,) * (6 - len(args))
    assert run_bpf(sandbox.seccomp_program("x86_64"), nr, args) == answer


def test_the_seccomp_filter_kills_another_architectures_calls():
    program = sandbox.seccomp_program("x86_64")
    assert run_bpf(program, 0, arch=0x40000028) == sandbox.RET_KILL_PROCESS       # arm32
    assert run_bpf(program, 0, arch=0xC00000B7) == sandbox.RET_KILL_PROCESS       # aarch64


# aarch64 (include/uapi/asm-generic/unistd.h), run through the same interpreter:
# there is no such machine here, so the program is built for it and read.
A64 = 0xC00000B7                      # AUDIT_ARCH_AARCH64: EM_AARCH64 183 | 64-bit | LE


@pytest.mark.parametrize("nr, args, answer", [
    (63, (), sandbox.RET_ALLOW),                                     # read
    (56, (), sandbox.RET_ALLOW),                                     # openat (no open here)
    (220, (0x3D0F00,), sandbox.RET_ALLOW),                           # clone: pthread_create's
    (220, (0x11,), EPERM),                                           # clone(SIGCHLD): fork
    (435, (), sandbox.RET_ERRNO | errno.ENOSYS),                     # clone3
    (221, (), EPERM),                                                # execve
    (281, (), EPERM),                                                # execveat
    (117, (), EPERM),                                                # ptrace
    (198, (2, 1, 0), sandbox.RET_ALLOW),                             # socket(AF_INET, STREAM)
    (198, (2, 2, 0), EPERM),                                         # UDP
    (198, (1, 1, 0), EPERM),                                         # a new Unix socket
    (199, (1, 1, 0), sandbox.RET_ALLOW),                             # socketpair(AF_UNIX)
    (199, (2, 1, 0), EPERM),
    (261, (0, 7, 0, 0x7FFF0000), sandbox.RET_ALLOW),                 # prlimit64: reading
    (261, (0, 7, 0x1000, 0), EPERM),                                 # prlimit64: setting
    (164, (), EPERM),                                                # setrlimit
    (97, (), EPERM),                                                 # unshare
    (57, (), sandbox.RET_ALLOW),                                     # close (x86_64's fork)
    (59, (), sandbox.RET_ALLOW),                                     # pipe2 (x86_64's execve)
    (0x40000000 + 221, (), sandbox.RET_ALLOW),                       # no x32 bit on aarch64
] + [(nr, (), EPERM) for nr in sandbox.AARCH64.denied.values()])
def test_the_aarch64_seccomp_filter_answers(nr, args, answer):
    args = tuple(args) + (0,) * (6 - len(args))
    assert run_bpf(sandbox.seccomp_program("aarch64"), nr, args, arch=A64) == answer


def test_the_aarch64_filter_checks_its_architecture():
    program = sandbox.seccomp_program("aarch64")
    assert program[:3] == [(sandbox.LD_W_ABS, 0, 0, 4), (sandbox.JEQ, 1, 0, A64),
                           (sandbox.RET, 0, 0, sandbox.RET_KILL_PROCESS)]
    for arch in (0x40000028, sandbox.AUDIT_ARCH_X86_64):            # arm32 compat, x86_64
        assert run_bpf(program, 63, arch=arch) == sandbox.RET_KILL_PROCESS


KNOWN_AARCH64 = {"execve": 221, "execveat": 281, "ptrace": 117, "setrlimit": 164,
                 "unshare": 97, "mount": 40, "bpf": 280, "process_vm_readv": 270}


def test_the_aarch64_table_has_the_kernels_numbers():
    """Against known numbers, and against the kernel's own header where it is installed."""
    table = sandbox.AARCH64
    assert {k: table.denied[k] for k in KNOWN_AARCH64} == KNOWN_AARCH64
    assert (table.clone, table.clone3, table.socket, table.socketpair, table.prlimit64) == \
        (220, 435, 198, 199, 261)
    assert not {"fork", "vfork", "iopl", "ioperm"} & set(table.denied)   # not on aarch64
    assert set(table.denied) == set(sandbox.X86_64.denied) - {"fork", "vfork", "iopl", "ioperm"}
    header = Path("/usr/include/asm-generic/unistd.h")
    if header.exists():                                   # linux-libc-dev: the kernel's table
        defined = dict(re.findall(r"#define __NR(?:3264)?_(\w+)\s+(\d+)", header.read_text()))
        numbers = {**table.denied, "clone": table.clone, "clone3": table.clone3,
                   "socket": table.socket, "socketpair": table.socketpair,
                   "prlimit64": table.prlimit64}
        assert {k: int(defined[k]) for k in numbers} == numbers


def test_the_x86_64_table_has_the_kernels_numbers():
    table = sandbox.X86_64
    assert (table.denied["fork"], table.denied["execve"], table.clone, table.socket) == \
        (57, 59, 56, 41)
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if header.exists():
        defined = dict(re.findall(r"#define __NR_(\w+)\s+(\d+)", header.read_text()))
        numbers = {**table.denied, "clone": table.clone, "clone3": table.clone3,
                   "socket": table.socket, "socketpair": table.socketpair,
                   "prlimit64": table.prlimit64}
        assert {k: int(defined[k]) for k in numbers} == numbers


# ---------------------------------------------------------------------------
# The table (also: python tests/isolation/hostile.py)
# ---------------------------------------------------------------------------
@requires_sandbox
def test_the_table_of_hostile_actions(plugins, sandboxed, isolated, capsys):
    hostile_so, other, folder = plugins
    observed = {"in-process": hostile.observe("in-process", hostile_so, other, folder),
                "isolated": isolated, "sandboxed": sandboxed}
    text = hostile.table(observed)
    with capsys.disabled():
        print("\n" + text)
    assert observed["in-process"]["read_secret"]["outcome"] == "allowed"
    assert observed["in-process"]["exec"]["outcome"] == "allowed"       # the host became sh
    rows = text.splitlines()[2:]
    assert len(rows) == len(hostile.ACTIONS)
    assert all(row.split("|")[4].strip().startswith(("refused", "not there", "stopped"))
               for row in rows), text


# ---------------------------------------------------------------------------
# The editor example, sandboxed
# ---------------------------------------------------------------------------
@requires_sandbox
def test_the_editor_runs_its_plugins_sandboxed(tmp_path):
    folder = tmp_path / "plugins"
    build_plugins(folder, build=build_once)
    letter = ROOT / "tests" / "data" / "editor" / "letter.qp"
    with Editor() as local:
        local.load_plugins(folder)
        expected = local.open(letter).text
    with Editor(sandbox=True) as editor:
        report = editor.load_plugins(folder)
        assert report.loaded and all(p.loader == "isolated" for p in report.loaded)
        assert editor.open(letter).text == expected
