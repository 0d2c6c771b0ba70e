"""sandbox=True: the worker confines itself, for good, before the plugin's bytes are mapped.

Crash isolation (isolate=True) keeps a plugin's crash out of the host; it
does not keep a hostile plugin from the files, network and processes its
user can reach. A sandboxed worker gives those up itself, with four Linux
mechanisms, none of which needs privileges and none of which can be undone:

1. resource limits (setrlimit(2)): address space, CPU time, file size,
   descriptors, processes (policy.Limits);
2. PR_SET_NO_NEW_PRIVS (prctl(2)): no execve can ever grant more privileges,
   which Landlock and seccomp require of an unprivileged process; and, when
   the worker runs as root, capset(2) drops every capability;
3. Landlock (Documentation/userspace-api/landlock.rst): every file-system
   access right the kernel knows is "handled", and allowed only beneath the
   folders loading needs (the system's library folders, ld.so.cache, the
   worker's own Python and minildr), read-only, plus the folders the
   policy grants; TCP bind and connect are handled with no port allowed
   (ABI 4); abstract Unix sockets and signals are scoped to the sandbox
   (ABI 6): the plugin cannot signal the host or reach its sockets;
4. a seccomp-BPF filter (Documentation/userspace-api/seccomp_filter.rst,
   written below instruction by instruction, for x86_64 and aarch64) that answers EPERM (the
   plugin sees an error and may carry on; nothing is killed) to new
   processes (fork, vfork, clone without CLONE_THREAD: threads stay
   allowed), program execution, ptrace and reading or writing other
   processes' memory, sockets other than TCP ones (UDP, raw, netlink,
   packet, new Unix sockets: Landlock's network rules cover TCP only, and
   pathname Unix sockets not at all), io_uring (whose operations would
   bypass the filter), raising a resource limit, and the calls that
   mount, change namespaces, load kernel code or open files by handle.

All four are applied in the server process while it has one thread, so
every thread the plugin starts inherits them. If this kernel lacks one of
them, `require_sandbox` (in the host, before any worker starts) and
`confine` (in the worker) raise SandboxUnavailable saying what is missing:
a sandbox never silently confines less than it says.
"""
from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ..errors import SandboxUnavailable
from .kernel import (MACHINE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                     SYSCALLS, prctl, syscall)
from . import pids
from .policy import Limit, Limits, SandboxPolicy

LANDLOCK_ABI_NEEDED = 6      # signals and abstract Unix sockets scoped (Linux 6.12)

# ---------------------------------------------------------------------------
# Resource limits
# ---------------------------------------------------------------------------
def set_limits(limits: Limits) -> None:
    """Apply `limits` to this process (the worker's server, before any plugin code)."""
    for limit, value in limits.limits().items():
        soft = hard = value
        if limit is Limit.CPU_SECONDS:
            hard = value + 2                  # SIGXCPU at the soft limit, SIGKILL 2 s later
        elif limit is Limit.PROCESSES:
            soft = hard = value + processes_of_user()
        _, current_hard = resource.getrlimit(limit.rlimit)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(limit.rlimit, (soft, hard))


def processes_of_user() -> int:
    """How many processes and threads this user runs now (RLIMIT_NPROC counts them all).

    RLIMIT_NPROC bounds the user's total, not this process's children, so
    `processes` is added to what the user already runs. Root is exempt from
    the limit (kernel/fork.c), so for uid 0 nothing is counted.
    """
    uid = os.getuid()
    if uid == 0 or not os.path.isdir("/proc"):
        return 0
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid:
                    count += int(fields["Threads"])
            except (OSError, KeyError, ValueError):
                continue
    return count


# ---------------------------------------------------------------------------
# What this kernel offers
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Support:
    """What this system offers a sandbox; `missing` says in words what it lacks."""
    system: str
    landlock_abi: int            # 0: no Landlock
    landlock_error: str          # why not, when 0
    seccomp_filter: bool
    seccomp_error: str
    no_new_privs: bool

    @property
    def missing(self) -> List[str]:
        found = []
        if not sys.platform.startswith("linux"):
            return [f"a sandbox needs Linux (Landlock and seccomp); this is {self.system}"]
        if MACHINE not in SYSCALL_TABLES:
            found.append(f"minildr's seccomp filter knows the system calls of "
                         f"{', '.join(SYSCALL_TABLES)}; this machine is {MACHINE}")
        if self.landlock_abi < LANDLOCK_ABI_NEEDED:
            found.append(
                f"Landlock ABI {LANDLOCK_ABI_NEEDED} or later (Linux 6.12: signals and abstract "
                f"Unix sockets scoped); this kernel has "
                + (f"ABI {self.landlock_abi}" if self.landlock_abi else
                   f"no Landlock ({self.landlock_error})"))
        if not self.seccomp_filter:
            found.append(f"seccomp filters ({self.seccomp_error})")
        if not self.no_new_privs:
            found.append("PR_SET_NO_NEW_PRIVS")
        return found


LANDLOCK_CREATE_RULESET_VERSION = 1 << 0


def landlock_abi() -> Tuple[int, str]:
    """(ABI version, '') or (0, why there is none)."""
    if "landlock_create_ruleset" not in SYSCALLS:
        return 0, f"not Linux x86_64/aarch64 ({sys.platform} {MACHINE})"
    try:
        return syscall("landlock_create_ruleset", None, ctypes.c_size_t(0),
                       ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)), ""
    except OSError as exc:
        why = {errno.ENOSYS: "the kernel was built without it",
               errno.EOPNOTSUPP: "built in but not enabled at boot (lsm=)"}
        return 0, why.get(exc.errno, exc.strerror or str(exc))


PR_GET_SECCOMP = 21


def probe() -> Support:
    """Ask this kernel what it supports (nothing is changed)."""
    system = f"{sys.platform} {MACHINE}"
    if not sys.platform.startswith("linux"):
        return Support(system, 0, "not Linux", False, "not Linux", False)
    abi, why = landlock_abi()
    seccomp, seccomp_why = True, ""
    try:
        prctl(PR_GET_SECCOMP)
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            if "errno" not in f.read().split():
                seccomp, seccomp_why = False, "the kernel offers no SECCOMP_RET_ERRNO"
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            seccomp, seccomp_why = False, "the kernel was built without seccomp"
        elif not isinstance(exc, FileNotFoundError):
            seccomp, seccomp_why = False, exc.strerror or str(exc)
    try:
        nnp = prctl(39) in (0, 1)                # PR_GET_NO_NEW_PRIVS: Linux 3.5
    except OSError:
        nnp = False
    return Support(system, abi, why, seccomp, seccomp_why, nnp)


def require_sandbox(path: str, policy: SandboxPolicy) -> Support:
    """The host's check before starting a sandboxed worker: SandboxUnavailable if lacking."""
    support = probe()
    if support.missing:
        raise SandboxUnavailable(path, (
            "cannot be sandboxed on this system: it lacks " + "; ".join(support.missing)
            + ". Nothing was started. Open it with isolate=True for crash isolation only "
              "(which does not stop a hostile plugin), or on a system that has these"))
    return support


# ---------------------------------------------------------------------------
# Landlock (Documentation/userspace-api/landlock.rst, include/uapi/linux/landlock.h)
# ---------------------------------------------------------------------------
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
FS_ALL = (1 << 16) - 1                   # every right of ABI 5 and later (ABI 7 adds none)
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_READ_FILE | FS_READ_DIR
WRITE = READ | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG \
    | FS_TRUNCATE
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1                 # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1      # ABI 6
LANDLOCK_RULE_PATH_BENEATH = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1                               # __attribute__((packed)) in landlock.h
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# What the dynamic loader reads when a plugin needs another shared library.
LOADER_FOLDERS = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32",
                  "/usr/local/lib", "/etc/ld.so.cache")


def python_folders() -> List[str]:
    """The worker's own Python: the standard library, site-packages, and minildr itself.

    The worker imports everything before it confines itself, but Python
    still reads a module now and then later (an encoding looked up on first
    use, for instance). minildr's parent folder is not granted (it may be a
    project folder): only the package.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = os.path.dirname(package)
    folders = [package]
    for entry in sys.path:
        if entry and os.path.exists(entry) and os.path.abspath(entry) != parent:
            folders.append(os.path.abspath(entry))
    return folders


def readable_for_loading() -> List[str]:
    return [p for p in LOADER_FOLDERS if os.path.exists(p)] + python_folders()


def landlock(policy: SandboxPolicy) -> None:
    """Restrict this thread (and every thread it starts) to the policy's folders."""
    attr = _RulesetAttr(FS_ALL, NET_BIND_TCP | NET_CONNECT_TCP,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    ruleset = syscall("landlock_create_ruleset", ctypes.byref(attr),
                      ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    try:
        grants = [(p, READ) for p in readable_for_loading() + list(policy.read)]
        grants += [(p, WRITE) for p in policy.write]
        for path, rights in grants:
            _allow(ruleset, path, rights)
        syscall("landlock_restrict_self", ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            rights &= FILE_RIGHTS            # a file takes file rights only (else EINVAL)
        rule = _PathBeneathAttr(rights, fd)
        syscall("landlock_add_rule", ctypes.c_int(ruleset),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# seccomp-BPF (Documentation/userspace-api/seccomp_filter.rst, linux/filter.h)
# ---------------------------------------------------------------------------
# The filter is a classic BPF program run on struct seccomp_data for every
# system call: nr at offset 0, arch at 4, args[i] at 16 + 8*i (the low 32
# bits first: both machines below are little-endian). Each instruction is
# (code, jump-if-true, jump-if-false, k); jumps count instructions skipped.
LD_W_ABS = 0x00 | 0x00 | 0x20        # BPF_LD | BPF_W | BPF_ABS: A = data[k]
JEQ, JGE, JSET = 0x05 | 0x10, 0x05 | 0x30, 0x05 | 0x40     # BPF_JMP | op | BPF_K
AND = 0x04 | 0x50                    # BPF_ALU | BPF_AND | BPF_K: A &= k
RET = 0x06                           # BPF_RET | BPF_K
RET_ALLOW, RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
RET_ERRNO = 0x00050000               # | errno: the call fails with that errno
# include/uapi/linux/audit.h: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
AUDIT_ARCH_X86_64 = 62 | 0x80000000 | 0x40000000           # EM_X86_64 = 62: 0xC000003E
AUDIT_ARCH_AARCH64 = 183 | 0x80000000 | 0x40000000         # EM_AARCH64 = 183: 0xC00000B7
X32_SYSCALL_BIT = 0x40000000
CLONE_THREAD = 0x00010000
AF_UNIX, AF_INET, AF_INET6, SOCK_STREAM, IPPROTO_TCP = 1, 2, 10, 1, 6
SOCK_TYPE_MASK = 0xF                 # without SOCK_NONBLOCK | SOCK_CLOEXEC


@dataclass(frozen=True)
class SyscallTable:
    """One machine's system call numbers, as the filter needs them.

    `denied` are refused with EPERM; `clone`, `clone3`, `socket`,
    `socketpair` and `prlimit64` are refused or allowed by their arguments.
    """
    machine: str
    audit_arch: int
    denied: Dict[str, int]
    clone: int
    clone3: int
    socket: int
    socketpair: int
    prlimit64: int
    x32: bool = False                # x86_64 also runs x32 calls (nr | X32_SYSCALL_BIT)


# x86_64: arch/x86/entry/syscalls/syscall_64.tbl.
X86_64 = SyscallTable("x86_64", AUDIT_ARCH_X86_64, {
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,              # new programs
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,     # other processes
    "kcmp": 312, "pidfd_getfd": 438, "process_madvise": 440,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "setrlimit": 160,                                                     # limits stay
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "name_to_handle_at": 303, "open_by_handle_at": 304,                  # around paths
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
    "request_key": 249, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167,
    "swapoff": 168, "acct": 163, "iopl": 172, "ioperm": 173, "quotactl": 179,
}, clone=56, clone3=435, socket=41, socketpair=53, prlimit64=302, x32=True)

# aarch64: include/uapi/asm-generic/unistd.h. No fork, vfork (clone does both),
# iopl or ioperm; the same calls otherwise, under other numbers.
AARCH64 = SyscallTable("aarch64", AUDIT_ARCH_AARCH64, {
    "execve": 221, "execveat": 281,                                      # new programs
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,     # other processes
    "kcmp": 272, "pidfd_getfd": 438, "process_madvise": 440,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "setrlimit": 164,                                                     # limits stay
    "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
    "chroot": 51, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "name_to_handle_at": 264, "open_by_handle_at": 265,                  # around paths
    "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "keyctl": 219, "add_key": 217,
    "request_key": 218, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
    "finit_module": 273, "delete_module": 106, "reboot": 142, "swapon": 224,
    "swapoff": 225, "acct": 89, "quotactl": 60,
}, clone=220, clone3=435, socket=198, socketpair=199, prlimit64=261)

SYSCALL_TABLES = {table.machine: table for table in (X86_64, AARCH64)}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> Tuple[int, int, int, int]:
    return (code, jt, jf, k)


def _arg(i: int, high: bool = False) -> int:
    return 16 + 8 * i + (4 if high else 0)


def seccomp_program(machine: str = MACHINE) -> List[Tuple[int, int, int, int]]:
    """The filter for `machine` (this one by default), instruction by instruction.

    Each block ends in a RET. A call made under another ABI (i386 or x32 on
    x86_64, arm32 compat on aarch64) has other numbers: the process is killed.
    """
    t = SYSCALL_TABLES[machine]
    deny = _op(RET, RET_ERRNO | errno.EPERM)
    allow = _op(RET, RET_ALLOW)
    prog = [
        _op(LD_W_ABS, 4),                                  # A = arch
        _op(JEQ, t.audit_arch, jt=1),                      # another ABI's numbers: kill
        _op(RET, RET_KILL_PROCESS),
        _op(LD_W_ABS, 0),                                  # A = nr
    ]
    if t.x32:
        prog += [_op(JGE, X32_SYSCALL_BIT, jf=1), deny]    # x32 system calls: refused
    for nr in sorted(t.denied.values()):
        prog += [_op(JEQ, nr, jf=1), deny]
    # clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes
    # glibc's pthread_create fall back to clone, whose flags it can check.
    prog += [_op(JEQ, t.clone3, jf=1), _op(RET, RET_ERRNO | errno.ENOSYS)]
    prog += [_op(JEQ, t.clone, jf=4),                      # clone: threads only
             _op(LD_W_ABS, _arg(0)),                       # flags: argument 0 on both
             _op(JSET, CLONE_THREAD, jf=1),
             allow,
             deny]
    prog += [_op(JEQ, t.socket, jf=11),                    # socket: TCP only
             _op(LD_W_ABS, _arg(0)),                       # family
             _op(JEQ, AF_INET, jt=1),
             _op(JEQ, AF_INET6, jf=7),
             _op(LD_W_ABS, _arg(1)),                       # type
             _op(AND, SOCK_TYPE_MASK),
             _op(JEQ, SOCK_STREAM, jf=4),
             _op(LD_W_ABS, _arg(2)),                       # protocol: 0 or IPPROTO_TCP
             _op(JEQ, 0, jt=1),
             _op(JEQ, IPPROTO_TCP, jf=1),
             allow,
             deny]
    prog += [_op(JEQ, t.socketpair, jf=4),                 # socketpair: Unix only (no name)
             _op(LD_W_ABS, _arg(0)),
             _op(JEQ, AF_UNIX, jf=1),
             allow,
             deny]
    prog += [_op(JEQ, t.prlimit64, jf=6),                  # prlimit64: reading only
             _op(LD_W_ABS, _arg(2)),                       # new_limit == NULL?
             _op(JEQ, 0, jf=3),
             _op(LD_W_ABS, _arg(2, high=True)),
             _op(JEQ, 0, jf=1),
             allow,
             deny]
    prog.append(allow)                                     # everything else
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp(program: List[Tuple[int, int, int, int]]) -> None:
    """Install the filter on this thread (and every thread it starts)."""
    for code, jt, jf, k in program:
        assert 0 <= jt < 256 and 0 <= jf < 256 and 0 <= k < 1 << 32, (code, jt, jf, k)
    filters = (_SockFilter * len(program))(*[_SockFilter(c, jt, jf, k)
                                             for c, jt, jf, k in program])
    fprog = _SockFprog(len(program), filters)
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


# ---------------------------------------------------------------------------
# Capabilities (capset(2), linux/capability.h): root's worker keeps none
# ---------------------------------------------------------------------------
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def drop_capabilities() -> None:
    header = struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)                     # two {effective, permitted, inheritable}: all 0
    syscall("capset", ctypes.c_char_p(header), ctypes.c_char_p(data))


# ---------------------------------------------------------------------------
# All of it
# ---------------------------------------------------------------------------
def confine(path: str, policy: SandboxPolicy) -> None:
    """Confine this process for good; SandboxUnavailable if any step fails.

    Called in the worker's server while it is single-threaded: Landlock and
    seccomp apply to the calling thread and to the threads it starts later.
    """
    steps = (("PR_SET_NO_NEW_PRIVS", lambda: prctl(PR_SET_NO_NEW_PRIVS, 1)),
             ("Landlock", lambda: landlock(policy)),
             ("dropping capabilities", drop_capabilities),
             ("the seccomp filter", lambda: seccomp(seccomp_program())))
    support = probe()
    if support.missing:
        raise SandboxUnavailable(path, "cannot be sandboxed here: it lacks "
                                 + "; ".join(support.missing))
    for name, step in steps:
        try:
            step()
        except OSError as exc:
            raise SandboxUnavailable(path, (
                f"the worker could not confine itself: {name} failed ({exc.strerror or exc}); "
                "nothing was loaded")) from None


# ---------------------------------------------------------------------------
# python -m minildr sandbox
# ---------------------------------------------------------------------------
def report(support: Optional[Support] = None, call_loop: str = "") -> str:
    """What this kernel supports, and what a sandboxed plugin can and cannot do here.

    `call_loop`: why the worker's C call loop is not built ("" if it is:
    fastcall.status(), which the caller asks for, since building it is the
    host's business and this module is also the worker's).
    """
    s = support or probe()
    lines = [f"System: {s.system}",
             "Landlock: " + (f"ABI {s.landlock_abi}" if s.landlock_abi else
                             f"absent ({s.landlock_error})")
             + f" (minildr's sandbox needs {LANDLOCK_ABI_NEEDED})",
             "seccomp filters: " + ("yes" if s.seccomp_filter else f"no ({s.seccomp_error})"),
             "PR_SET_NO_NEW_PRIVS: " + ("yes" if s.no_new_privs else "no")]
    why_not = pids.probe_pid_namespace() if sys.platform.startswith("linux") else "not Linux"
    cgroup = sys.platform.startswith("linux") and pids.pids_parent() is not None
    lines += ["PID namespace per worker: " + ("yes (nothing a plugin forks outlives its "
                                              "worker, even a killed keeper)" if not why_not
                                              else f"no ({why_not}): the keeper alone"),
              "pids cgroup per worker: " + ("yes (pids.max = processes, root included)"
                                            if cgroup else "no (RLIMIT_NPROC only, which "
                                            "does not bind root)")]
    lines.append("C call loop (numbers-only calls served in C in the worker): "
                 + (f"no ({call_loop})" if call_loop else "yes"))
    if s.missing:
        lines += ["", "sandbox=True is unavailable here; open() raises SandboxUnavailable:"]
        lines += [f"  - missing {m}" for m in s.missing]
        return "\n".join(lines)
    p = SandboxPolicy()
    lines += ["", "sandbox=True works here. A sandboxed plugin:",
              "  can read     the system's library folders and ld.so.cache, its worker's "
              "Python and minildr (read-only), and what SandboxPolicy(read=...) grants",
              "  can write    only what SandboxPolicy(write=...) grants (files up to "
              f"{p.file_size >> 20} MiB by default)",
              "  can start    threads (up to " + (
                  f"{p.processes} tasks in all, its worker's own included: its pids cgroup"
                  if cgroup else
                  f"{p.processes} more than its user runs"
                  + ("; the kernel exempts root from this limit" if os.getuid() == 0 else ""))
              + ")",
              "  cannot       read or list anything else (EACCES), connect or bind TCP, "
              "create UDP, raw, netlink or packet sockets or new Unix sockets (EPERM/EACCES)",
              "  cannot       fork, run a program (execve), ptrace or read another process's "
              "memory, signal a process outside its sandbox, use io_uring (EPERM)",
              "  cannot       raise its limits: address space "
              f"{p.memory >> 30} GiB, CPU {p.cpu_seconds} s (then SIGXCPU), "
              f"{p.open_files} descriptors",
              "  sees         an empty environment (what open(env=...) passes) and a folder of "
              "its own as its current folder"]
    if os.getuid() == 0:
        lines.append("  as root, its worker drops every capability before the plugin loads")
    return "\n".join(lines)


def summary() -> Dict[str, object]:
    """probe() as plain values (for tests and the benchmark's header)."""
    s = probe()
    return {"landlock_abi": s.landlock_abi, "seccomp_filter": s.seccomp_filter,
            "missing": s.missing}
