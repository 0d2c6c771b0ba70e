"""Isolation: plugins in a worker process, forwarded calls, crashes, hangs, no orphans.

Every failure here is triggered for real: the test plugins segfault, abort,
exit, hang, crash in their constructor and write garbage over the protocol
socket; the host must report each with its own error and keep working.
"""
from __future__ import annotations

import gc
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import minildr
from minildr import image as images
from minildr.isolation import IsolatedPlugin, marshal, process, protocol as isolate

from helpers import ORPHAN_GUARD, ROOT, run_in_worker_first, stress, write_plugin
from platforms import requires_isolation, requires_linux, requires_posix, requires_proc

pytestmark = requires_isolation      # Windows: see test_loader's NotImplementedError test

GREET_T = "const char *(void)"

CRASHY_H = """
#include <stdbool.h>
int add(int a, int b);
long long widen(long long x);
double scale(double x, float by);
char next_char(char c);
bool negate(bool b);
const char *shout(const char *text);
const char *null_string(void);
int length(const char *text);
void say(const char *text);
void segfault(void);
void do_abort(void);
void do_exit(int code);
void hang(void);
void hang_saying(const char *text);
void corrupt(void);
void garbage_stdout(void);
int flood(int lines);
int *address(void);
void *opaque(int x);
int sum(int n, ...);
extern double ratio;
extern int *pointer;
"""

CRASHY_C = r"""
#include <ctype.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double ratio = 0.5;
int *pointer = 0;
static char buffer[256];

int add(int a, int b) { return a + b; }
long long widen(long long x) { return x * 1000000; }
double scale(double x, float by) { return x * by; }
char next_char(char c) { return (char)(c + 1); }
bool negate(bool b) { return !b; }
const char *shout(const char *text)
{
    size_t i;
    for (i = 0; text[i] && i < sizeof buffer - 1; i++)
        buffer[i] = (char)toupper((unsigned char)text[i]);
    buffer[i] = '\0';
    return buffer;
}
const char *null_string(void) { return NULL; }
int length(const char *text) { return text ? (int)strlen(text) : -1; }
void say(const char *text)
{
    printf("plugin stdout: %s\n", text);          /* buffered: a pipe */
    fprintf(stderr, "plugin stderr: %s\n", text);
}
void segfault(void)
{
    fprintf(stderr, "crashy: about to write through NULL\n");
    *(volatile int *)0 = 1;
}
void do_abort(void) { fprintf(stderr, "crashy: calling abort()\n"); abort(); }
void do_exit(int code) { fprintf(stderr, "crashy: calling exit(%d)\n", code); exit(code); }
void hang(void) { for (;;) pause(); }
void hang_saying(const char *text) { fprintf(stderr, "%s\n", text); for (;;) pause(); }
void corrupt(void)
{
    /* Find the worker's protocol socket and write over it. */
    for (int fd = 3; fd < 1024; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
            (void)!write(fd, "this is not a frame\n", 20);
    }
}
void garbage_stdout(void)
{
    static const char junk[] = "MLDR\xff\xff\xff\x7f garbage on stdout\n";
    (void)!write(1, junk, sizeof junk - 1);
}
int flood(int lines)
{
    for (int i = 0; i < lines; i++)
        printf("line %06d of the flood\n", i);
    return lines;
}
int *address(void) { return &pointer[0]; }
void *opaque(int x) { return (void *)(long)x; }
int sum(int n, ...) { return n; }
"""


@pytest.fixture(scope="module")
def crashy(tmp_path_factory) -> Path:
    return write_plugin(tmp_path_factory.mktemp("crashy"), "crashy", CRASHY_C, CRASHY_H)


@pytest.fixture(scope="module")
def crashy_worker(crashy):
    """One isolated crashy for the checks that only look things up and make calls that
    change nothing in it (refused lookups, arguments refused in the host)."""
    with minildr.open(crashy, isolate=True) as plugin:
        yield plugin


@pytest.fixture
def shared_crashy(crashy_worker):
    """The module's crashy worker, checked alive and unchanged before each test uses it:
    a test that stopped it fails here by name, rather than the next one by surprise."""
    assert crashy_worker._worker.alive, "a test stopped the shared crashy worker"
    assert crashy_worker.lookup("add", "int (int, int)")(20, 22) == 42
    return crashy_worker


@pytest.fixture(scope="module")
def greet_worker(built):
    """One isolated greet (the session's file, never changed) for the checks that only
    look things up and call greet()."""
    with minildr.open(built["greet"], isolate=True) as plugin:
        yield plugin


@pytest.fixture
def shared_greet(greet_worker):
    """The module's greet worker, checked alive and answering before each test uses it."""
    assert greet_worker._worker.alive, "a test stopped the shared greet worker"
    assert minildr.ffi.string(greet_worker.lookup("greet", GREET_T)()).startswith(b"Hello")
    return greet_worker


def gone(pid: int, wait: float = 5.0) -> bool:
    """The process has ended, and if it was our child, has been reaped (no zombie left)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if ended(pid):
            return True
        time.sleep(0.02)
    return False


def ended(pid: int) -> bool:
    if not sys.platform.startswith("linux"):       # no /proc: a zombie still answers kill 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):    # gone before the open, or the read
        return True
    return fields[0] == "Z" and int(fields[1]) != os.getpid()   # its parent's job to reap


def in_host_maps(name: str) -> bool:
    with open("/proc/self/maps") as maps:
        return f"minildr:{name}" in maps.read()


# ---------------------------------------------------------------------------
# The same API, in another process
# ---------------------------------------------------------------------------
def test_isolated_plugin_has_the_plugin_api(greet_so):
    with minildr.open(greet_so, isolate=True) as plugin:
        assert isinstance(plugin, minildr.Plugin)
        assert (plugin.name, plugin.version, plugin.exports) == ("greet", "0.1.0", ["greet"])
        assert plugin.manifest == minildr.read_manifest(greet_so)
        assert plugin.worker_pid != os.getpid()
        greet = plugin.lookup("greet", GREET_T)
        assert minildr.ffi.string(greet()) == b"Hello from the greet plugin (version 0.1.0)"
        symbol = plugin.lookup("greet")
        assert (symbol.name, symbol.ctype, symbol.kind) == ("greet", GREET_T, "function")
        assert "isolated" in repr(plugin)
        pid = plugin.worker_pid
    assert plugin.closed and gone(pid)
    with pytest.raises(minildr.PluginClosed):
        plugin.lookup("greet", GREET_T)


def test_constructor_runs_in_the_worker(tmp_path):
    source = ("#include <stdio.h>\n#include <unistd.h>\n"
              "static int pid;\n"
              "__attribute__((constructor)) static void init(void) { pid = getpid(); }\n"
              "int loaded_in(void) { return pid; }\n")
    path = write_plugin(tmp_path, "where", source, "int loaded_in(void);\n")
    with minildr.open(path, isolate=True) as plugin:
        assert plugin.lookup("loaded_in", "int (void)")() == own_pid(plugin.worker_pid)
        assert plugin.worker_pid != os.getpid()


def own_pid(pid: int) -> int:
    """`pid` as the process itself sees it: in its PID namespace (pids.py) if it has one."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except FileNotFoundError:
        pass
    return pid


@requires_proc
def test_an_isolated_plugin_is_not_mapped_in_the_host(greet_so):
    # A name of its own: another test in this process may have left its greet.so
    # mapped (a pointer still alive, or a thread minildr could not account for).
    only_here = Path(shutil.copy(greet_so, greet_so.with_name(f"greet-isolated-{os.getpid()}.so")))
    with minildr.open(only_here, isolate=True) as plugin:
        assert plugin.lookup("greet", GREET_T)
        assert not in_host_maps(only_here.name)        # the code is not in the host
    with minildr.open(only_here) as plugin:             # the control: in-process, it is
        assert in_host_maps(only_here.name)


def test_lookup_errors_are_the_in_process_ones(shared_greet):
    remote = shared_greet
    with minildr.open(remote.path) as local:
        for name, ctype, error in [("greet", "int (void)", minildr.SymbolTypeError),
                                   ("message", None, minildr.SymbolNotFound),
                                   ("greet", "int (", minildr.SymbolTypeError)]:
            with pytest.raises(error) as here:
                local.lookup(name, ctype)
            with pytest.raises(error) as there:
                remote.lookup(name, ctype)
            assert str(there.value) == str(here.value)


def test_values_cross_both_ways(shared_crashy):
    plugin = shared_crashy
    f = lambda name, t: plugin.lookup(name, t)    # noqa: E731
    ratio = f("ratio", "double")
    try:
        assert f("add", "int (int, int)")(2, 40) == 42
        assert f("add", "int (int, int)")(-7, 2) == -5
        assert f("widen", "long long (long long)")(2**40) == 2**40 * 1000000
        assert f("scale", "double (double, float)")(3.0, 0.5) == 1.5
        assert math.isnan(f("scale", "double (double, float)")(math.nan, 1.0))
        assert f("next_char", "char (char)")(b"a") == b"b"
        assert f("negate", "bool (bool)")(True) is False
        shout = f("shout", "const char *(const char *)")
        assert minildr.ffi.string(shout(b"hello \xe9")) == b"HELLO \xe9"
        assert f("null_string", GREET_T)() == minildr.ffi.NULL
        length = f("length", "int (const char *)")
        assert (length(b"four"), length(None)) == (4, -1)
        assert ratio[0] == 0.5
        ratio[0] = 2.25
        assert ratio[0] == 2.25
    finally:
        ratio[0] = 0.5                   # the shared worker as it was


def test_string_results_are_the_same_kind_of_value_as_in_process(crashy, shared_crashy):
    """A char * result is a `char *` cdata on both paths (once a char[] when isolated),
    whether it crossed in the frame, in the arena, by JSON or as a variable's value."""
    ffi, long_text = minildr.ffi, b"x" * 255
    remote = shared_crashy
    with minildr.open(crashy) as local:
        for plugin in (local, remote):
            shout = plugin.lookup("shout", "const char *(const char *)")
            for text in (b"hi", long_text):          # (in-process: one static buffer)
                result = shout(text)
                assert ffi.typeof(result) is ffi.typeof("char *"), plugin.loader
                assert ffi.string(result) == text.upper()
            null = plugin.lookup("null_string", GREET_T)()
            assert ffi.typeof(null) is ffi.typeof("char *") and null == ffi.NULL
        remote_shout = remote.lookup("shout", "const char *(const char *)")
        kept = remote_shout(b"kept")
        gc.collect()                                  # the copy lives as long as the pointer
        assert ffi.string(kept) == b"KEPT" and kept[0] == b"K"
        by_json = remote_shout._by_json((b"json",))
        assert ffi.typeof(by_json) is ffi.typeof("char *") and ffi.string(by_json) == b"JSON"


@pytest.mark.parametrize("name, args, error, fragment", [
    ("add", (1,), TypeError, "takes 2 argument(s) (1 given)"),
    ("add", ("1", 2), TypeError, "takes an int"),
    ("add", (2**40, 1), OverflowError, "does not fit 'int'"),
    ("length", ("text",), TypeError, "takes bytes"),
    ("next_char", (b"ab",), TypeError, "length 1"),
])
def test_bad_arguments_raise_like_cffi(crashy, shared_crashy, name, args, error, fragment):
    plugin = shared_crashy
    function = plugin.lookup(name, minildr.read_manifest(crashy).exports[name].ctype)
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        function(*args)
    assert plugin.lookup("add", "int (int, int)")(1, 1) == 2       # still fine


@pytest.mark.parametrize("name, what", [
    ("address", "its result type 'int *'"),
    ("opaque", "its result type 'void *'"),
    ("sum", "a variadic argument list"),
    ("pointer", "a variable of this type"),
])
def test_pointers_are_refused_clearly(crashy, shared_crashy, name, what):
    plugin = shared_crashy
    ctype = plugin.manifest.exports[name].ctype
    with pytest.raises(minildr.SymbolTypeError) as err:
        plugin.lookup(name, ctype)
    assert plugin.lookup("add", "int (int, int)")(1, 1) == 2       # still fine
    assert what in str(err.value) and "cannot cross into the isolated worker" in str(err.value)
    assert str(crashy) in str(err.value)


def test_echo_run_with_an_out_buffer_is_refused(echo_so):
    with minildr.open(echo_so, isolate=True) as plugin:
        with pytest.raises(minildr.SymbolTypeError, match=r"parameter 2 \('char \*'\)"):
            plugin.lookup("run", "size_t (const char *, char *, size_t)")
        calls = plugin.lookup("calls", "int")
        calls[0] = 5
        assert calls[0] == 5
        with pytest.raises(IndexError):
            calls[1]


def test_private_copy_path_sends_the_bytes(greet_so, monkeypatch):
    """Where there is no memfd, the verified bytes travel in the open message."""
    monkeypatch.setattr(images, "USE_MEMFD", False)
    images.clear_cache()
    with minildr.open(greet_so, isolate=True) as plugin:
        assert minildr.ffi.string(plugin.lookup("greet", GREET_T)()).startswith(b"Hello")
    images.clear_cache()


def test_contract_lookup_is_forwarded_to_the_worker(shared_greet):
    """The worker answers a contract lookup as its in-process Plugin does."""
    contract = minildr.Contract.from_header("int x;", name="Thing")
    remote = shared_greet
    with minildr.open(remote.path) as local:
        try:
            local.lookup("greet", contract)
            expected = None
        except Exception as exc:                          # what this version does
            expected = exc
    if expected is None:
        assert remote.lookup("greet", contract) is not None
    else:
        with pytest.raises(type(expected)) as err:
            remote.lookup("greet", contract)
        assert str(err.value).endswith(expected.reason if hasattr(expected, "reason")
                                       else str(expected))
        assert remote.lookup("greet", GREET_T)() != minildr.ffi.NULL   # still usable


def test_spinning_worker_gives_the_same_answers_and_output(crashy, monkeypatch, capsys):
    """SPIN_SECONDS (off by default) changes how both sides wait, nothing else."""
    monkeypatch.setattr(process, "SPIN_SECONDS", 200e-6)
    with minildr.open(crashy, isolate=True) as plugin:
        assert plugin._worker.spin == 200e-6
        add = plugin.lookup("add", "int (int, int)")
        assert [add(i, i) for i in range(200)] == [2 * i for i in range(200)]
        plugin.lookup("say", "void (const char *)")(b"spun")
        assert capsys.readouterr() == ("plugin stdout: spun\n", "plugin stderr: spun\n")
        with pytest.raises(minildr.PluginCrashed, match="SIGSEGV"):
            plugin.lookup("segfault", "void (void)")()


# ---------------------------------------------------------------------------
# Output: the plugin's stdout and stderr appear in the host's
# ---------------------------------------------------------------------------
def test_plugin_output_is_shown_by_the_host(shared_crashy, capsys):
    plugin = shared_crashy
    capsys.readouterr()
    plugin.lookup("say", "void (const char *)")(b"hello")
    captured = capsys.readouterr()
    assert captured.out == "plugin stdout: hello\n"
    assert captured.err == "plugin stderr: hello\n"


def test_more_output_than_a_pipe_holds(shared_crashy, capsys):
    """The host drains the pipes while it waits, so a chatty call cannot deadlock (a call
    that did would time out, stopping the shared worker: this test and the next fail)."""
    plugin = shared_crashy
    capsys.readouterr()
    assert plugin.lookup("flood", "int (int)")(20_000) == 20_000
    out = capsys.readouterr().out
    assert len(out) == 20_000 * len("line 000000 of the flood\n")
    assert out.endswith("line 019999 of the flood\n")


def test_garbage_on_stdout_is_just_output(shared_crashy, capsys):
    plugin = shared_crashy
    plugin.lookup("garbage_stdout", "void (void)")()
    assert plugin.lookup("add", "int (int, int)")(1, 2) == 3
    assert "garbage on stdout" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Crashes and hangs: specific errors, the host keeps working, no orphans
# ---------------------------------------------------------------------------
CRASHES = {
    "segfault": ((), "SIGSEGV", None, "crashy: about to write through NULL"),
    "do_abort": ((), "SIGABRT", None, "crashy: calling abort()"),
    "do_exit": ((3,), None, 3, "crashy: calling exit(3)"),
}


@pytest.mark.parametrize("name", list(CRASHES))
def test_crash_is_reported_and_the_host_survives(crashy, greet_so, shared_crashy, name):
    args, signame, code, last_line = CRASHES[name]
    other = shared_crashy           # another worker of the same plugin, started before
    local = minildr.open(greet_so)
    plugin = minildr.open(crashy, isolate=True)
    pid = plugin.worker_pid
    function = plugin.lookup(name, plugin.manifest.exports[name].ctype)
    with pytest.raises(minildr.PluginCrashed) as err:
        function(*args)
    error = err.value
    assert (error.signal, error.exit_code) == (signame, code)
    message = str(error)
    assert str(crashy) in message and f"during {name}()" in message
    assert (f"killed by {signame}" if signame else f"exited with code {code}") in message
    assert error.stderr[-1] == last_line and last_line in message
    assert error.pid == pid
    assert "open the plugin again" in message
    assert gone(pid)
    assert plugin.closed
    with pytest.raises(minildr.PluginCrashed):            # it stays crashed
        function(*args)
    # The host, an in-process plugin and another isolated plugin are unharmed.
    assert other.lookup("add", "int (int, int)")(20, 22) == 42
    assert minildr.ffi.string(local.lookup("greet", GREET_T)()).startswith(b"Hello")
    # And the crashed plugin opens again, in a new worker.
    with minildr.open(crashy, isolate=True) as again:
        assert again.worker_pid != pid
        assert again.lookup("add", "int (int, int)")(20, 22) == 42
    plugin.close()
    local.close()


@requires_posix("SIGCHLD")
@pytest.mark.parametrize("start", ["direct", "fork server"])
def test_a_host_ignoring_sigchld_still_sees_a_crash_and_says_why_its_status_is_unknown(
        crashy, start, monkeypatch):
    """A host with SIGCHLD ignored passed SIG_IGN on to its worker (dispositions survive
    exec): the worker's keeper then died of ChildProcessError waiting for the plugin's
    process, and the host reported the crash as exit code 0. Now the worker puts SIGCHLD
    back first (its keeper sees the SIGSEGV, ends the tree), and the host, whose own
    children's status the kernel now discards, says so instead of claiming exit 0.
    A worker from the fork server (isolation/forkserver.py) is the server's child, not
    the host's: the server reports its status, so the host knows the signal."""
    if start == "direct":
        monkeypatch.setenv("MINILDR_NO_FORK_SERVER", "1")
    elif not sys.platform.startswith("linux"):
        pytest.skip("the fork server is Linux's")
    else:                           # also under make test-direct-start
        monkeypatch.delenv("MINILDR_NO_FORK_SERVER", raising=False)
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        plugin = minildr.open(crashy, isolate=True)
        pid = plugin.worker_pid
        with pytest.raises(minildr.PluginCrashed) as err:
            plugin.lookup("segfault", "void (void)")()
        assert gone(pid)
        with minildr.open(crashy, isolate=True) as again:       # the next worker works
            assert again.lookup("add", "int (int, int)")(20, 22) == 42
    finally:
        signal.signal(signal.SIGCHLD, previous)
    error = err.value
    if start == "direct":
        assert (error.signal, error.exit_code) == (None, None), str(error)
        assert "ignores SIGCHLD" in str(error) and "exited with code 0" not in str(error)
    else:
        assert (error.signal, error.exit_code) == ("SIGSEGV", None), str(error)
    assert error.stderr[-1] == "crashy: about to write through NULL"
    assert not any("ChildProcessError" in line for line in error.stderr), error.stderr


def test_hang_times_out(crashy):
    plugin = minildr.open(crashy, isolate=0.5)
    assert plugin.timeout == 0.5
    pid = plugin.worker_pid
    hang = plugin.lookup("hang", "void (void)")
    start = time.monotonic()
    with pytest.raises(minildr.PluginTimeout) as err:
        hang()
    assert 0.5 <= time.monotonic() - start < 5
    assert "no answer within 0.5 s during hang()" in str(err.value)
    assert gone(pid)
    with minildr.open(crashy, isolate=0.5) as again:
        assert again.lookup("add", "int (int, int)")(1, 2) == 3


def test_garbage_on_the_protocol_socket(crashy):
    plugin = minildr.open(crashy, isolate=True)
    pid = plugin.worker_pid
    with pytest.raises(minildr.PluginProtocolError) as err:
        plugin.lookup("corrupt", "void (void)")()
    assert isinstance(err.value, minildr.PluginCrashed)
    assert "this is not a frame" in str(err.value) and "during corrupt()" in str(err.value)
    assert gone(pid)
    with minildr.open(crashy, isolate=True) as again:
        assert again.lookup("add", "int (int, int)")(2, 2) == 4


def test_crash_in_the_constructor(tmp_path, greet_so):
    source = ("#include <stdio.h>\n#include <stdlib.h>\n"
              "__attribute__((constructor)) static void init(void)\n"
              "{ fprintf(stderr, \"boom: constructor gives up\\n\"); abort(); }\n"
              "int answer(void) { return 1; }\n")
    path = write_plugin(tmp_path, "boom", source, "int answer(void);\n")
    before = set(children())
    with pytest.raises(minildr.PluginCrashed) as err:
        minildr.open(path, isolate=True)
    message = str(err.value)
    assert "killed by SIGABRT" in message and "during loading the plugin" in message
    assert "boom: constructor gives up" in message and str(path) in message
    assert set(children()) <= before                     # no worker left behind
    with minildr.open(greet_so, isolate=True) as plugin:   # isolation still works
        assert plugin.lookup("greet", GREET_T)() != minildr.ffi.NULL


def test_constructor_hang_times_out(tmp_path):
    source = ("#include <unistd.h>\n"
              "__attribute__((constructor)) static void init(void) { for (;;) pause(); }\n"
              "int answer(void) { return 1; }\n")
    path = write_plugin(tmp_path, "stuck", source, "int answer(void);\n")
    before = set(children())
    with pytest.raises(minildr.PluginTimeout, match="during loading the plugin"):
        minildr.open(path, isolate=0.5)
    assert set(children()) <= before


def children() -> list:
    """Pids of this process's live children (zombies excluded)."""
    if not sys.platform.startswith("linux"):        # no /proc: ask ps (BSD and procps agree)
        ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid=,stat="], stdout=subprocess.PIPE,
                              text=True)
        rows = [line.split() for line in ps.communicate()[0].splitlines()]
        return [int(pid) for pid, ppid, stat, *_ in rows                # not ps itself
                if int(ppid) == os.getpid() and not stat.startswith("Z") and int(pid) != ps.pid]
    result = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                result.append(int(entry))
    return result


def test_untrusted_plugin_starts_no_worker(crashy):
    before = set(children())
    with pytest.raises(minildr.UntrustedPlugin):
        minildr.open(crashy, isolate=True, trust=minildr.TrustStore())
    assert set(children()) <= before


def test_dropping_an_unclosed_plugin_ends_its_worker(greet_so):
    plugin = minildr.open(greet_so, isolate=True)
    pid = plugin.worker_pid
    del plugin
    gc.collect()
    assert gone(pid)


# ---------------------------------------------------------------------------
# No orphans when the host goes away
# ---------------------------------------------------------------------------
HOST = r"""
import sys, minildr
plugin = minildr.open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, isolate=True)
hang = plugin.lookup("hang", "void (void)")
print(plugin.worker_pid, flush=True)
{then}
"""


@requires_linux("watches for orphans as Linux's child subreaper (prctl)")
@pytest.mark.parametrize("then, how, expected", [
    ("pass", "exit", "none left"),                            # exits without close()
    ("import os; os._exit(0)", "exit", "none left"),          # no atexit at all
    ("hang()", "kill", "none left"),                          # SIGKILLed mid-call
], ids=["exit-without-close", "os._exit", "sigkill-during-hang"])
def test_worker_never_outlives_its_host(crashy, then, how, expected):
    host = HOST.format(path=str(crashy), then=then)
    result = subprocess.run([sys.executable, "-c", ORPHAN_GUARD, host, how], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["state"] == expected, outcome


# ---------------------------------------------------------------------------
# Load: four isolated plugins, interleaved, one crashing half-way
# ---------------------------------------------------------------------------
STEP_C = """
#include <stdlib.h>
int step(int i)
{
#ifdef CRASH_AT
    if (i == CRASH_AT) abort();
#endif
    return i * FACTOR + 1;
}
"""


@pytest.mark.fuzz
def test_four_plugins_many_calls_each_one_crashing(tmp_path):
    """1,000 interleaved calls each in make test (one plugin aborts at the 500th), 10,000 in make fuzz."""
    calls = stress(1_000, 10_000)
    factors = [3, 5, 7, 11]
    crash_at = calls // 2
    plugins = []
    for n, factor in enumerate(factors):
        flags = [f"-DFACTOR={factor}"] + ([f"-DCRASH_AT={crash_at}"] if n == 1 else [])
        path = write_plugin(tmp_path, f"load{n}", STEP_C, "int step(int i);\n", cflags=flags)
        plugins.append(minildr.open(path, isolate=True))
    steps = [p.lookup("step", "int (int)") for p in plugins]
    right = [0] * len(steps)
    crashed_at = None
    for i in range(calls):
        for n, step in enumerate(steps):
            if n == 1 and crashed_at is not None:
                continue
            try:
                result = step(i)
            except minildr.PluginCrashed:
                assert n == 1
                crashed_at = i
                continue
            right[n] += result == i * factors[n] + 1
    assert crashed_at == crash_at
    assert right == [calls, crash_at, calls, calls]
    for p in plugins:
        p.close()


# ---------------------------------------------------------------------------
# The same, with the host in a Jupyter kernel
# ---------------------------------------------------------------------------
def test_a_jupyter_kernel_shows_output_under_the_cell_and_survives(crashy):
    """Output lands under the calling cell; a crash, then an interrupt, leave the kernel up."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable            # this environment's Python
    km.start_kernel(cwd=str(ROOT))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code: str, also=lambda msg: None) -> tuple:
            outputs = []
            reply = kc.execute_interactive(
                code, timeout=60, output_hook=lambda msg: (outputs.append(msg), also(msg)))
            streams = {}
            for msg in outputs:
                if msg["msg_type"] == "stream":
                    name = msg["content"]["name"]
                    streams[name] = streams.get(name, "") + msg["content"]["text"]
            return reply["content"], streams

        setup = (f"import os, minildr\nplugin = minildr.open({str(crashy)!r}, isolate=True)\n"
                 "kernel_pid = os.getpid()\nprint(plugin.worker_pid)")
        content, streams = run(setup)
        assert content["status"] == "ok", content
        worker = int(streams["stdout"])
        content, streams = run('plugin.lookup("say", "void (const char *)")(b"in a cell")')
        assert streams == {"stdout": "plugin stdout: in a cell\n",
                           "stderr": "plugin stderr: in a cell\n"}
        content, _ = run('plugin.lookup("segfault", "void (void)")()')
        assert (content["status"], content["ename"]) == ("error", "PluginCrashed")
        assert gone(worker)
        content, streams = run("print(os.getpid() == kernel_pid)")
        assert streams["stdout"] == "True\n"             # the same kernel, still running
        # An interrupt while a plugin hangs stops its worker, not the kernel.
        content, streams = run(f"plugin = minildr.open({str(crashy)!r}, isolate=True)\n"
                               "print(plugin.worker_pid)")
        worker = int(streams["stdout"])

        def interrupt_once_it_hangs(msg: dict) -> None:    # the plugin says so, in its call
            if msg["msg_type"] == "stream" and "hanging now" in msg["content"]["text"]:
                km.interrupt_kernel()
        content, _ = run('plugin.lookup("hang_saying", "void (const char *)")(b"hanging now")',
                         interrupt_once_it_hangs)
        assert (content["status"], content["ename"]) == ("error", "KeyboardInterrupt")
        assert gone(worker)
        content, streams = run("again = minildr.open(plugin.path, isolate=True)\n"
                               "print(again.lookup('add', 'int (int, int)')(40, 2))")
        assert streams["stdout"] == "42\n"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------
# The protocol's pieces, on their own
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("data, fragment", [
    (b"this is not a frame", "does not start with the frame magic"),
    (b"ML", None),                                         # incomplete: wait for more
    (b"MX", "does not start with the frame magic"),
    (isolate.HEADER.pack(b"MLDR", isolate.MAX_FRAME + 1), "announces a"),
    (isolate.HEADER.pack(b"MLDR", 3) + b"{x}", "not JSON"),
    (isolate.HEADER.pack(b"MLDR", 2) + b"\xff\xfe", "not JSON"),
])
def test_frame_reader_refuses_what_is_not_a_frame(data, fragment):
    reader = isolate.FrameReader()
    reader.feed(data)
    if fragment is None:
        assert reader.next() is None
    else:
        with pytest.raises(isolate.ProtocolViolation, match=fragment):
            reader.next()


def test_frames_round_trip_split_anywhere():
    messages = [["ok", 1, "é\x00"], ["call", 2, 0, [1, 2.5, None]], ["ok", 3, None]]
    stream = b"".join(isolate.frame(m) for m in messages)
    reader, got = isolate.FrameReader(), []
    for i in range(0, len(stream), 3):
        reader.feed(stream[i:i + 3])
        while (m := reader.next()) is not None:
            got.append(m)
    assert got == messages


@pytest.mark.parametrize("kind, value", [("i", "1"), ("i", 1.5), ("f", "x"), ("c", "ab"),
                                         ("s", 5), ("v", 0), ("b", "yes")])
def test_a_result_of_the_wrong_kind_is_a_violation(kind, value):
    with pytest.raises(isolate.ProtocolViolation):
        marshal.decode_result(marshal.Value(kind), value, minildr.ffi)


def test_worker_refuses_bytes_other_than_the_verified_ones(tmp_path):
    """The worker loads nothing whose digest is not the one the host checked."""
    import base64
    from minildr.isolation.worker import Server
    from minildr.isolation.policy import WORKER_LIMITS
    marker = tmp_path / "ran"
    source = ("#include <fcntl.h>\n#include <unistd.h>\n"
              "__attribute__((constructor)) static void init(void)\n"
              f"{{ int fd = creat({json.dumps(str(marker))}, 0644); if (fd >= 0) close(fd); }}\n"
              "int answer(void) { return 42; }\n")
    path = write_plugin(tmp_path, "w", source, "int answer(void);\n")
    spec = {"path": str(path), "sha256": "0" * 64, "fd": None, "contracts": [],
            "data": base64.b64encode(path.read_bytes()).decode()}
    with pytest.raises(minildr.PluginError, match="not the 0000.* the host verified"):
        Server(WORKER_LIMITS, None).open(spec)
    assert not marker.exists()


@pytest.mark.parametrize("value", [{"bytes": 1}, {"record": "1x", "fields": ["a"], "values": [1]},
                                   {"other": 1}])
def test_values_that_are_not_protocol_values_are_violations(value):
    with pytest.raises(isolate.ProtocolViolation):
        isolate.decode_value(value)


def test_discover_isolated(tmp_path, built, crashy):
    folder = tmp_path / "plugins"
    folder.mkdir()
    for path in (built["greet"], built["echo"], crashy):
        (folder / path.name).symlink_to(path)
    (folder / f"broken{minildr.SUFFIX}").write_bytes(b"\x7fELF broken")
    with minildr.discover(folder, isolate=True) as report:
        assert sorted(p.name for p in report.loaded) == ["crashy", "echo", "greet"]
        assert all(isinstance(p, IsolatedPlugin) for p in report.loaded)
        pids = [p.worker_pid for p in report.loaded]
        assert [type(e) for _, e in report.failed] == [minildr.NotAPlugin]
    assert all(gone(pid) for pid in pids)


def test_an_unexpected_exception_in_the_worker_is_a_runtime_error(crashy, tmp_path,
                                                                  monkeypatch):
    """Exceptions outside the known classes arrive as RuntimeError; the worker lives on."""
    run_in_worker_first(monkeypatch, textwrap.dedent("""
        import minildr.isolation.marshal
        class Weird(Exception):
            pass
        def frames_for(*args):           # (every typed lookup of a function makes its frames)
            raise Weird("the worker's lookup went wrong")
        minildr.isolation.marshal.frames_for = frames_for
    """))
    with minildr.open(crashy, isolate=True) as plugin:
        with pytest.raises(RuntimeError, match="Weird in the isolated plugin's worker: "
                                               "the worker's lookup went wrong"):
            plugin.lookup("add", "int (int, int)")
        assert plugin.lookup("add").name == "add"             # still answering


# Closing waits for the worker's end as long as a call may take (its timeout): these two
# give it a generous one, so that on a loaded machine they wait for the crash or the exit
# itself rather than see the worker stopped by the host first (each failed once so, when
# close() gave the worker 5 s to answer and 2 s to exit).
PATIENT = 300.0


def test_crash_in_the_destructor_does_not_break_close(tmp_path, caplog):
    source = ("#include <stdlib.h>\n"
              "__attribute__((destructor)) static void fini(void) { abort(); }\n"
              "int answer(void) { return 1; }\n")
    path = write_plugin(tmp_path, "fini", source, "int answer(void);\n")
    plugin = minildr.open(path, isolate=PATIENT)
    pid = plugin.worker_pid
    assert plugin.lookup("answer", "int (void)")() == 1
    plugin.close()                                        # does not raise
    assert plugin.closed and gone(pid, wait=PATIENT)
    aborted = signal.strsignal(signal.SIGABRT)       # "Aborted"; macOS: "Abort trap: 6"
    assert any(f"killed by SIGABRT ({aborted}) during closing" in r.getMessage()
               for r in caplog.records)


def test_a_worker_failing_after_close_is_logged(greet_so, tmp_path, monkeypatch, caplog):
    """Something at the worker's exit (after its plugin closed fine) is still reported."""
    run_in_worker_first(monkeypatch, "import atexit, os\natexit.register(os._exit, 5)\n")
    plugin = minildr.open(greet_so, isolate=PATIENT)
    pid = plugin.worker_pid
    plugin.close()
    assert gone(pid, wait=PATIENT)
    assert any(f"its worker (pid {pid}) exited with code 5 after close" in r.getMessage()
               for r in caplog.records)


def test_the_workers_log_lines_escape_the_plugins_file_name(greet_so, tmp_path, monkeypatch,
                                                           caplog):
    """A file name is text whoever fills a plugins folder controls: the worker's log lines
    (a failure, a status after close) named it unescaped."""
    evil = tmp_path / "greet\x1b[2J\u202e.so"
    shutil.copy(greet_so, evil)
    run_in_worker_first(monkeypatch, "import atexit, os\natexit.register(os._exit, 5)\n")
    caplog.set_level("INFO", logger="minildr")
    plugin = minildr.open(evil, isolate=PATIENT)
    plugin.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("after close" in line for line in lines), lines
    assert all("\x1b" not in line and "\u202e" not in line for line in lines), lines


def test_a_worker_slow_to_exit_after_close_is_waited_for(greet_so, monkeypatch, caplog):
    """A worker whose exit takes longer than the 2 s close() used to give it (a loaded
    machine, a slow atexit handler) was stopped by the host and reported as killed by
    SIGTERM; it is given the plugin's timeout, and its own exit status is what is logged."""
    run_in_worker_first(monkeypatch, "import atexit, os, time\n"
                                     "atexit.register(os._exit, 5)\n"
                                     "atexit.register(time.sleep, 3)\n")
    plugin = minildr.open(greet_so, isolate=PATIENT)
    pid = plugin.worker_pid
    plugin.close()
    assert gone(pid, wait=PATIENT)
    assert any(f"its worker (pid {pid}) exited with code 5 after close" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_the_workers_exit_runs_the_plugins_atexit_handlers_and_its_own(tmp_path, monkeypatch,
                                                                       capfd):
    """The worker leaves without Python's teardown (worker.end), but not without its
    exit functions: Python's atexit ones first, then exit(3)'s, which run what the plugin
    gave atexit() (once closed: the handler was unregistered with the library, glibc's
    __cxa_finalize; so a plugin that is never unloaded, by a worker whose host went).
    os._exit in its place fails this test at the plugin's handler; no atexit call, at
    Python's."""
    source = ("#include <stdio.h>\n#include <stdlib.h>\n"
              "static void bye(void) { printf(\"plugin atexit ran\\n\"); }\n"
              "int arm(void) { return atexit(bye); }\n")
    path = write_plugin(tmp_path, "bye", source, "int arm(void);\n")
    run_in_worker_first(monkeypatch, "import atexit, os\n"
                                     "atexit.register(os.write, 2, b'python atexit ran\\n')\n")
    plugin = minildr.open(path, isolate=PATIENT)
    pid = plugin.worker_pid
    assert plugin.lookup("arm", "int (void)")() == 0
    plugin._worker._sock.shutdown(socket.SHUT_WR)        # end-of-file: the worker ends itself
    assert gone(pid, wait=PATIENT)
    plugin.close()
    out, err = capfd.readouterr()
    assert "python atexit ran" in err
    assert "plugin atexit ran" in out


def test_a_worker_is_waited_for_on_a_pidfd_closed_with_it(greet_so):
    """close() sleeps on the worker's pidfd until it ends (WorkerPopen), and the pidfd
    goes with the rest of what the host held."""
    plugin = minildr.open(greet_so, isolate=True)
    process_ = plugin._worker.process
    fd = process_.pidfd
    assert fd is not None and os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
    with pytest.raises(subprocess.TimeoutExpired):
        process_.wait(0.05)                                # alive: the timeout holds
    plugin.close()
    assert process_.returncode == 0 and process_.pidfd is None
    assert not os.path.exists(f"/proc/self/fd/{fd}") or \
        os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[pidfd]"


def test_calls_and_lookups_racing_close_get_an_answer_or_plugin_closed(crashy):
    """Review case 34, isolated: threads calling through a function they hold, and looking
    up, while another thread closes the plugin. Each call gives the right answer or
    PluginClosed (no other exception, no hang), and the worker is gone after close."""
    import threading
    plugin = minildr.open(crashy, isolate=True)
    pid = plugin.worker_pid
    add = plugin.lookup("add", "int (int, int)")
    results = {"right": 0, "closed": 0, "other": []}
    start = threading.Barrier(5)

    def work(k: int) -> None:
        start.wait()
        for i in range(2000):
            try:
                function = add if i % 2 else plugin.lookup("add", "int (int, int)")
                if function(i, k) == i + k:
                    results["right"] += 1
                else:
                    results["other"].append(("wrong", i, k))
            except minildr.PluginClosed:
                results["closed"] += 1
                return
            except Exception as exc:                      # noqa: BLE001 - what must not be
                results["other"].append(exc)
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    start.wait()
    time.sleep(0.05)
    plugin.close()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert results["other"] == [] and results["right"] > 0, results
    assert plugin.closed and gone(pid)


def test_threads_share_one_worker_safely(shared_crashy):
    """Requests from several threads are serialized: each gets its own reply."""
    from concurrent.futures import ThreadPoolExecutor
    add = shared_crashy.lookup("add", "int (int, int)")

    def work(k: int) -> bool:
        return all(add(i, k) == i + k for i in range(500))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))
