"""Ctrl-C at any line of open, lookup, close, build and discover leaves nothing half-done:
in process, with the native loader, and isolated.

The reliability review injected KeyboardInterrupt at random line events inside
minildr; this is that campaign, deterministic. For each operation,
interrupt_child.py counts the line events the operation runs inside the minildr
package, then raises KeyboardInterrupt at each of them (or at an even spread
of them when there are more than the budget), and after each interrupt checks
that no descriptor, mapping of the plugin or of its sealed copy, child process,
thread, staged file in the build folder, or lock of minildr's held is left,
and that the same operation then works. One child process per operation: what one case leaks
must not hide in, or be blamed on, the next (each forked from one that imported
minildr once for the file: interrupt_child.serve).

`make test` tries a short spread (SHORT interrupt points per operation);
`make fuzz` twenty times as many (fuzz_examples), which covers every line event
of the shorter operations.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import minildr
import minildr.native
from minildr.build import find_compiler

import interrupt_child
from helpers import fuzz_examples, write_plugin
from platforms import requires_isolation, requires_native_loader, requires_proc

HERE = Path(__file__).resolve().parent
SHORT = 6                    # interrupt points per operation in make test
SHORT_ISOLATED = 4           # each starts a worker process: fewer (80 in make fuzz)


@pytest.fixture(scope="module")
def campaigns():
    """interrupt_child.py --serve: each campaign a process of its own, forked from one
    that imported minildr once for the whole file (interrupt_child.serve)."""
    server = subprocess.Popen([sys.executable, str(HERE / "interrupt_child.py"), "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield server
    server.stdin.close()
    server.wait(timeout=60)


def campaign(campaigns, operation: str, folder: Path, cases: int,
             timeout: float = 900) -> dict:
    """interrupt_child's campaign of `operation` (in a process of its own): its report."""
    campaigns.stdin.write(json.dumps([operation, str(folder), cases, timeout]) + "\n")
    campaigns.stdin.flush()
    answer = campaigns.stdout.readline()
    assert answer, f"the campaign server ended (status {campaigns.wait(timeout=60)})"
    done = json.loads(answer)
    assert done["returncode"] == 0, done["stderr"][-3000:]
    return json.loads(done["stdout"].splitlines()[-1])


IN_PROCESS = ["open", "lookup", "close", "build", "build-uncached", "discover"]


@requires_proc
@pytest.mark.fuzz
@pytest.mark.parametrize("operation", IN_PROCESS)
def test_an_interrupt_at_any_line_leaves_nothing_behind(campaigns, operation, tmp_path):
    """The review's campaign (4,650 random interrupts) found open(), close() and discover
    leaving the library mapped: a library made in load_library lost when prepare()'s
    exit was interrupted, the plugin lost at open's `return`, and close() forgetting the
    library before closing it (so an interrupted close could never be finished)."""
    result = campaign(campaigns, operation, tmp_path, fuzz_examples(SHORT))
    assert result["events"] > 10 and result["tried"] >= min(SHORT, result["events"])
    assert result["problems"] == []


@requires_native_loader
@pytest.mark.fuzz
def test_an_interrupt_at_any_line_of_a_native_lookup_leaves_nothing_behind(campaigns, tmp_path):
    """keep_mapped_while counted a function before registering its release: an interrupt
    in between kept the library mapped for good. Now the release comes first."""
    result = campaign(campaigns, "lookup-native", tmp_path, fuzz_examples(SHORT))
    assert result["events"] > 10 and result["problems"] == []


@requires_proc
@requires_native_loader
@pytest.mark.fuzz
@pytest.mark.parametrize("operation", ["open-native", "close-native", "load-native"])
def test_an_interrupt_at_any_line_of_a_native_open_or_close_leaves_nothing_behind(
        campaigns, operation, tmp_path):
    """The native unload could not be run twice (a second __deregister_frame aborts the
    process), so an interrupted close left the library mapped for good; and an interrupt
    between two of its steps unmapped the code before its frames were deregistered
    (__deregister_frame then read unmapped memory: SIGSEGV). Now each step records that
    it ran as it runs, in order, and a second close finishes what is left.

    The plugin has a thread-local variable and a DT_NEEDED library of its own
    (interrupt_child.NATIVE_SOURCE): an interrupt in resolve.open_needed lost the
    handles it had dlopened, one in tls.borrow_module lost the TLS stub and its
    memfd, and native.load(path) (load-native) returned the library from inside a
    `with` whose exit could be interrupted. Each is held from the statement that
    makes it now."""
    result = campaign(campaigns, operation, tmp_path, fuzz_examples(SHORT))
    assert result["events"] > 10 and result["tried"] >= min(SHORT, result["events"])
    assert result["problems"] == []


@requires_proc
@requires_isolation
@pytest.mark.fuzz
@pytest.mark.parametrize("operation", ["open-isolated", "close-isolated", "lookup-isolated",
                                       "call-isolated", "discover-isolated"])
def test_an_interrupt_at_any_line_of_an_isolated_operation_leaves_nothing_behind(
        campaigns, operation, tmp_path):
    """An interrupt after the worker started and before its finalizer was registered left
    three pipes, the arena's memfd and a zombie worker; one in the middle of stopping it
    left the pipes and the arena. Now each thing is held (isolation.process.Held) from
    the statement that makes it, and its release can be finished by a second close."""
    result = campaign(campaigns, operation, tmp_path, fuzz_examples(SHORT_ISOLATED))
    assert result["events"] > 10 and result["tried"] >= min(SHORT_ISOLATED, result["events"])
    assert result["problems"] == []


@requires_proc
@pytest.mark.fuzz
@pytest.mark.parametrize("operation", ["drop-last", "drop-last-pointer",
                                       pytest.param("drop-last-native",
                                                    marks=requires_native_loader)])
def test_an_interrupt_at_any_line_of_a_last_reference_drop_leaves_nothing_mapped(
        campaigns, operation, tmp_path):
    """The last function (or pointer) from a closed plugin, dropped: its finalizer takes it
    off the library's holders and unloads the library. An interrupt between the two steps,
    or before the first, left the library mapped for good with no holder left (every
    campaign found it at its first event). Now the finalizer runs the release through
    interrupts.finish. Every line event of the two in-process drops (~40 each); a spread
    of the native one's ~460 (all of them in make fuzz)."""
    cases = fuzz_examples(4 * SHORT) if operation == "drop-last-native" else 10**5
    result = campaign(campaigns, operation, tmp_path, cases)
    assert result["events"] > 10 and result["tried"] >= min(cases, result["events"])
    assert result["problems"] == []


@requires_proc
@pytest.mark.parametrize("step", ["_release_token", "dropped"])
def test_an_interrupt_between_a_last_release_and_the_unload_check_still_unloads(
        greet_so, step, monkeypatch):
    """Exactly there: KeyboardInterrupt at the unload check's line, after the last holder
    (a function: _release_token) or the last pointer (results_keep_mapped's `dropped`)
    was taken off. The finalizer's interrupt is unraisable (reported, not raised); the
    library was left mapped with nothing to unload it. Now it unloads all the same."""
    from minildr import lifetime
    code = (lifetime.KeepsMappedWhileReferenced._release_token.__code__ if step != "dropped"
            else next(c for c in lifetime.KeepsMappedWhileReferenced.results_keep_mapped
                      .__code__.co_consts if getattr(c, "co_name", "") == "dropped"))
    lines = [line for _, _, line in code.co_lines() if line is not None]
    check = max(lines)                    # the last line: the unload check, after the discard
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(info.exc_type))
    before = _mapped("greet")
    plugin = minildr.open(greet_so)
    greet = plugin.lookup("greet", "const char *(void)")
    last = greet() if step == "dropped" else greet
    del greet
    plugin.close()
    assert _mapped("greet") != before                     # kept mapped: `last` is alive

    def trace(frame, event, arg):
        if frame.f_code is not code:
            return None

        def line(frame, event, arg):
            if event == "line" and frame.f_lineno == check and not reported:
                reported.append("raised")
                raise KeyboardInterrupt
            return line
        return line
    sys.settrace(trace)
    try:
        del last                                          # the finalizer runs here
    finally:
        sys.settrace(None)
    assert reported == ["raised", KeyboardInterrupt]      # it landed there, unseen by us
    assert _mapped("greet") == before


def test_the_interrupt_points_spread_over_the_whole_operation():
    sys.path.insert(0, str(HERE))
    try:
        from interrupt_child import interrupt_points
    finally:
        sys.path.remove(str(HERE))
    assert interrupt_points(5, 12) == [1, 2, 3, 4, 5]
    points = interrupt_points(1000, 12)
    assert len(points) == 12 and points[0] == 1 and points[-1] == 1000


def test_the_campaign_counts_what_is_left_in_its_temporary_folder(tmp_path, monkeypatch):
    """interrupt_child points TMPDIR at a folder of its own and reports what stays in it
    (a worker's folder whose name an interrupt lost would be this)."""
    child = _child_helpers()
    monkeypatch.setattr(child, "TEMP", tmp_path / "tmp")
    monkeypatch.setattr(child, "OUT", tmp_path / "out")
    (tmp_path / "tmp").mkdir()
    before = child.State()
    (tmp_path / "tmp" / "minildr-worker-x").mkdir()
    assert "temporary ['minildr-worker-x']" in child.left_since(before, wait=0)


def _child_helpers():
    sys.path.insert(0, str(HERE))
    try:
        import interrupt_child
    finally:
        sys.path.remove(str(HERE))
    return interrupt_child


def _left_since(fds: dict, kids: list, wait: float = 5.0) -> list:
    """Descriptors and child processes (zombies too) here now that were not before."""
    child = _child_helpers()
    deadline = time.monotonic() + wait
    while True:
        left = [f"fd {fd}: {what}" for fd, what in child.descriptors().items()
                if fds.get(fd) != what]
        left += child.new_processes(child.children(), kids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class _InterruptOnce:
    """Stands in for a module attribute: its first use raises KeyboardInterrupt, as a Ctrl-C
    landing on that line would; later uses are the real thing."""

    def __init__(self, real):
        self.real, self.hits = real, 0

    def __getattr__(self, name):
        self.hits += 1
        if self.hits == 1:
            raise KeyboardInterrupt
        return getattr(self.real, name)


@requires_proc
@requires_isolation
def test_an_interrupt_just_after_the_worker_started_leaves_no_pipe_arena_or_zombie(
        greet_so, monkeypatch):
    """Interrupted after Popen returned and before the worker's finalizer was registered
    (here: setting up its poller), the isolated open left three pipes, the arena's memfd
    and a zombie worker (found by the campaign above at process.py's lines after Popen)."""
    from minildr.isolation import process
    child = _child_helpers()
    minildr.open(greet_so, isolate=True).close()                 # warm: imports, caches
    fds, kids = child.descriptors(), child.children()
    monkeypatch.setattr(process, "select", _InterruptOnce(process.select))
    with pytest.raises(KeyboardInterrupt):
        minildr.open(greet_so, isolate=True)
    monkeypatch.undo()
    assert _left_since(fds, kids) == []
    with minildr.open(greet_so, isolate=True) as plugin:         # and the next open works
        assert plugin.lookup("greet", "const char *(void)")()


@requires_proc
@requires_isolation
def test_an_interrupted_isolated_close_is_finished_by_the_next(greet_so, monkeypatch):
    """Interrupted while stopping the worker (here: removing its folder), close() left the
    output pipes and the arena open for good; now it finishes the job before the interrupt
    goes on, and a second close() is harmless."""
    from minildr.isolation import process
    child = _child_helpers()
    minildr.open(greet_so, isolate=True).close()
    fds, kids = child.descriptors(), child.children()
    plugin = minildr.open(greet_so, isolate=True)
    folder = plugin._worker.folder
    monkeypatch.setattr(process, "workfolder", _InterruptOnce(process.workfolder))
    with pytest.raises(KeyboardInterrupt):
        plugin.close()
    monkeypatch.undo()
    plugin.close()
    assert plugin.closed and _left_since(fds, kids) == []
    assert not os.path.exists(folder)


def _mapped(name: str) -> list:
    """The mappings of a memfd minildr made for `name` (address range and name)."""
    with open("/proc/self/maps") as maps:
        return sorted(line.split()[0] + " " + line.split()[5] for line in maps
                      if f"minildr:{name}" in line)


def _raise_once(real):
    """A stand-in for a function or method: its first call raises KeyboardInterrupt, as a
    Ctrl-C landing there would; later calls are the real thing."""
    hits = []

    def stand_in(*args, **kwargs):
        hits.append(1)
        if len(hits) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    stand_in.hits = hits
    return stand_in


@requires_proc
@requires_native_loader
@pytest.mark.parametrize("step", ["_unload", "unmap", "run"])
def test_an_interrupted_native_close_is_finished(greet_so, step, monkeypatch):
    """The native unload could not run twice, so close() interrupted before it or during it
    left the library mapped for good: a second close() did nothing. Now a close finishes
    its unload before the interrupt goes on (unmap, a finaliser), and one interrupted
    before the unload began is finished by the next close()."""
    from minildr.native import initfini, library, mapping
    before = _mapped("greet")
    plugin = minildr.open(greet_so, loader="native")
    assert _mapped("greet") != before
    owner, name = {"_unload": (library.NativeLibrary, "_unload"), "unmap": (mapping, "unmap"),
                   "run": (initfini, "run")}[step]
    once = _raise_once(getattr(owner, name))
    monkeypatch.setattr(owner, name, once)
    with pytest.raises(KeyboardInterrupt):
        plugin.close()
    plugin.close()
    assert once.hits and plugin.closed and _mapped("greet") == before


def _tls_plugin_with_a_needed_library(folder: Path) -> Path:
    """interrupt_child's native plugin: a thread-local variable, and libhelper.so beside it."""
    (folder / "out").mkdir(parents=True)
    (folder / "helper.c").write_text(interrupt_child.HELPER_SOURCE)
    subprocess.run([find_compiler().path, "-shared", "-fPIC", "-Wl,-soname,libhelper.so",
                    "-o", str(folder / "out" / "libhelper.so"), str(folder / "helper.c")],
                   check=True)
    return write_plugin(folder, "greet", interrupt_child.NATIVE_SOURCE, interrupt_child.HEADER,
                        cflags=["-Wl,--no-as-needed", f"-L{folder / 'out'}", "-lhelper",
                                "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"])


def _maps(fragment: str) -> list:
    with open("/proc/self/maps") as maps:
        return [line.split(None, 5)[-1].strip() for line in maps if fragment in line]


def _open_descriptors() -> set:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


@requires_proc
@requires_native_loader
@pytest.mark.parametrize("step", ["needed", "tls"])
def test_an_interrupt_just_after_a_native_load_step_gives_back_what_it_took(tmp_path, step):
    """A trace callback runs inside the load, as a Ctrl-C can land there: interrupted at the
    "needed" event, the handle of the library just dlopened was in a list only
    resolve.open_needed knew (libhelper.so stayed mapped); at the "tls" event, the TLS stub
    and its memfd were in a BorrowedModule only tls.borrow_module knew (the stub stayed
    loaded, the memfd open). Now the library owns each from the statement that makes it."""
    plugin = _tls_plugin_with_a_needed_library(tmp_path / "p")
    helper = str(tmp_path / "p" / "out" / "libhelper.so")
    library = minildr.native.load(plugin)            # warm: imports, libgcc_s, caches
    library.close()
    fds, maps = _open_descriptors(), _maps("minildr-tls-stub") + _maps(str(tmp_path))

    def interrupt(event) -> None:
        if event.step == step:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        minildr.native.load(plugin, trace=interrupt)
    assert _maps("minildr-tls-stub") + _maps(str(tmp_path)) == maps == []
    assert _open_descriptors() == fds
    library = minildr.native.load(plugin)
    assert library.lookup("twice", "int (int)")(21) == 42 and _maps(helper)
    library.close()


# ---------------------------------------------------------------------------
# Locks: a `with lock:` whose body spans lines can be left held
# ---------------------------------------------------------------------------
_FORMS = '''
def with_block(lock, step):
    with lock:
        result = step()
    return result

def try_finally(lock, step):
    lock.acquire()
    try:
        result = step()
    finally:
        lock.release()
    return result

def one_line(lock, step):
    with lock: return step()
'''


def _left_held_by(form, lock) -> list:
    """Run `form(lock, step)` with KeyboardInterrupt raised at each of its line events in
    turn (interrupt_child's model); the lines after which the lock was left held."""
    def step():
        return 1
    counted = interrupt_child.Interrupt()
    sys.settrace(lambda frame, event, arg: counted.line if frame.f_code is form.__code__ else None)
    try:
        form(lock, step)
    finally:
        sys.settrace(None)
    left = []
    for at in range(1, counted.events + 1):
        interrupt = interrupt_child.Interrupt(at)
        sys.settrace(lambda frame, event, arg: interrupt.line
                     if frame.f_code is form.__code__ else None)
        try:
            form(lock, step)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        if lock.locked():
            left.append(interrupt.where.split(":")[-1])
            lock.release()
    return left


def test_a_lock_taken_with_under_lock_is_never_left_held():
    """CPython 3.11 reports a line event for a `with` line before it calls __exit__ when the
    block ends: an interrupt there skips the release (it hung make fuzz once, in
    isolation/fastcall.py). try/finally with the acquire outside has two such points (the
    `try:` line and the finally's own line on the normal path). A `with` on one line has
    none: interrupts.under_lock is written that way."""
    from minildr.interrupts import under_lock
    forms: dict = {}
    exec(compile(_FORMS, "forms.py", "exec"), forms)
    lock = threading.Lock()
    assert _left_held_by(forms["with_block"], lock) == ["3"]          # `with lock:` (line 3)
    assert _left_held_by(forms["try_finally"], lock) == ["9", "12"]   # `try:`, `lock.release()`
    assert _left_held_by(forms["one_line"], lock) == []
    assert _left_held_by(under_lock, lock) == []


_FINISH_AS_IT_WAS = '''
def finish(undo, *args):
    try:
        undo(*args)
    except BaseException:
        undo(*args)
        raise
'''


def _undo_skipped_by(finish) -> list:
    """Run `finish(undo)` with KeyboardInterrupt raised at each of its own line events in
    turn; the lines where the interrupt skipped the undo (it never ran to its end)."""
    counted = interrupt_child.Interrupt()
    sys.settrace(lambda frame, event, arg: counted.line if frame.f_code is finish.__code__
                 else None)
    try:
        finish(lambda: None)
    finally:
        sys.settrace(None)
    skipped = []
    for at in range(1, counted.events + 1):
        done = []
        interrupt = interrupt_child.Interrupt(at)
        sys.settrace(lambda frame, event, arg: interrupt.line
                     if frame.f_code is finish.__code__ else None)
        try:
            finish(done.append, "undone")
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        if not done:
            skipped.append(interrupt.where.split(":")[-1])
    return skipped


def test_finish_runs_its_undo_whatever_line_an_interrupt_lands_on():
    """finish's `try:` on a line of its own had a line event outside its handler: an
    interrupt there skipped the undo (a finalizer calling finish then lost its release:
    lifetime.py). With the try on the call's line there is none."""
    from minildr.interrupts import finish
    forms: dict = {}
    exec(compile(_FINISH_AS_IT_WAS, "forms.py", "exec"), forms)
    assert _undo_skipped_by(forms["finish"]) == ["3"]                  # `try:` (line 3)
    assert _undo_skipped_by(finish) == []


def _locks_left_at_every_event(operation, before=lambda made: None,
                                after=lambda made: None, points: int = 10**6) -> list:
    """Interrupt `operation(made)` at each of its line events inside minildr in turn (or at
    `points` of them spread evenly); where a lock of minildr's (a module's, or one of an
    object the operation put in `made`) was left held. `before(made)` and `after(made)`
    run uninterrupted around it."""
    counted = interrupt_child.Interrupt()
    made: list = []
    before(made)
    counted.run(lambda: operation(made))
    after(made)
    left = []
    for at in interrupt_child.interrupt_points(counted.events, points):
        made = []
        before(made)
        interrupt = interrupt_child.Interrupt(at)
        try:
            interrupt.run(lambda: operation(made))
        except KeyboardInterrupt:
            pass
        after(made)
        held = interrupt_child.held_locks(made)
        if held:
            left.append(f"event {at} ({interrupt.where}): {sorted(held)}")
            interrupt_child.free_locks(held)
    return left


@requires_proc
@requires_native_loader
@pytest.mark.fuzz
def test_an_interrupt_at_any_line_of_a_locked_step_leaves_no_lock_held(greet_so, monkeypatch):
    """image.py's cache lock (an RLock: the next open in the same thread took it again, so
    only another thread would have hung), a plugin's lookup/close lock, the lifetime guard
    and goruntime's record were each taken in a multi-line `with`: an interrupt at its
    exit line left it held (build's SIGCHLD lock too, in a generator's `with`, and the C
    type parser's). Each is
    taken through interrupts.under_lock now. (make test:
    every event of the image's and the Go record's steps, a spread of a lookup and close's;
    make fuzz: every event of each.)"""
    from minildr import goruntime, image
    from minildr.build import run_tool

    def read_acquire_release(made):
        image.clear_cache()
        read = image.read(str(greet_so))
        read.acquire(read)
        read.release(read)

    def opened(made):
        plugin = minildr.open(greet_so, loader=loader)
        made += [plugin, plugin._library]

    def lookup_and_close(made):                      # (a Symbol: no C type to parse)
        made[0].lookup("greet")
        made[0].close()

    def typed_lookup(made):                          # ctype.PARSE_LOCK, around the parse
        made.append(made[0].lookup("greet", "const char *(void)"))   # dropped untraced

    def closed(made):
        made[0].close()
        assert made[0].closed

    def claim_and_give_back(made):
        made.append(object())
        goruntime.start(str(greet_so), made[0])
        goruntime.stopped(made[0])

    def given_back(made):                            # by the load's undoing, if interrupted
        goruntime.stopped(made[0]) if made else None
        assert goruntime._running is None

    minildr.open(greet_so).close()                        # warm: imports, caches
    assert _locks_left_at_every_event(read_acquire_release) == []
    for loader in ("system", "native"):
        assert _locks_left_at_every_event(lookup_and_close, opened, closed,
                                          points=fuzz_examples(40)) == []
        assert _locks_left_at_every_event(typed_lookup, opened, closed,
                                          points=fuzz_examples(40)) == []
    monkeypatch.setattr(goruntime, "go_object_loaded", lambda: None)   # its lines: no lock
    assert _locks_left_at_every_event(claim_and_give_back, after=given_back) == []
    # build's: taken while a tool runs in a host that ignores SIGCHLD (main thread only)
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert _locks_left_at_every_event(lambda made: run_tool(["true"])) == []
    finally:
        signal.signal(signal.SIGCHLD, previous)


@requires_proc
def test_an_interrupt_at_any_line_of_an_atomic_write_leaves_no_descriptor_or_file(tmp_path):
    """The build campaign at every event (3,438) found write_atomically leaving its staged
    file's descriptor open (and the file) when interrupted at its `try:` line, just after
    mkstemp, or at the `with os.fdopen` line, before the file object owned the descriptor.
    Now both are made inside the try and given back by what owns them at that moment."""
    from minildr.atomic import write_atomically
    target = tmp_path / "out" / "greet.so"
    target.parent.mkdir()
    counted = interrupt_child.Interrupt()
    counted.run(lambda: write_atomically(target, b"data"))
    fds, left = interrupt_child.descriptors(), []
    for at in range(1, counted.events + 1):
        interrupt = interrupt_child.Interrupt(at)
        try:
            interrupt.run(lambda: write_atomically(target, b"data"))
        except KeyboardInterrupt:
            pass
        now = interrupt_child.descriptors()
        extra = {fd: what for fd, what in now.items() if fds.get(fd) != what}
        files = sorted(p.name for p in target.parent.iterdir() if p.name != "greet.so")
        if extra or files:
            left.append(f"event {at} ({interrupt.where}): {extra} {files}")
            for fd in extra:
                os.close(fd)
            for name in files:
                (target.parent / name).unlink()
    assert counted.events > 3 and left == []
