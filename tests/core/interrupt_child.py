"""Interrupt one minildr operation at many of its lines; report what each interrupt left behind.

    python interrupt_child.py OPERATION FOLDER CASES
    python interrupt_child.py --serve      (campaigns asked for on stdin: see serve)

OPERATION is one of OPERATIONS below, FOLDER a fresh folder to build in,
CASES how many interrupt points to try at most. The operation runs once
under a counter of the line events inside the minildr package (sys.settrace,
this thread only: where a Ctrl-C lands); then, for each point N chosen (all
of them if there are at most CASES, else CASES spread evenly over the
whole run), it runs again and KeyboardInterrupt is raised at event N, as if
the user pressed Ctrl-C just before that line. After each interrupt:

- the KeyboardInterrupt must reach the caller (not be swallowed or turned into
  another error);
- nothing may be left: no descriptor that was not open before, no mapping of
  the plugin's file or of a sealed copy (memfd), no child process (an isolated
  worker or its keeper, a compiler), no staged or temporary file in the build
  folder, nothing in the temporary folder (an isolated worker's folder, a
  build's: the campaign points TMPDIR at FOLDER/tmp, which it counts), no lock of minildr's held (a module's or an object's; a leaked lock
  is reported, then freed so the campaign goes on, rather than hanging the
  next run or passing unseen when it is an RLock the same thread takes again);
- the same operation must then succeed, and its undoing (close) leave nothing.

Prints one JSON object: {"events": ..., "tried": ..., "problems": [...]}, each
problem with the event number, the line it interrupted and what was left.
A separate process per operation: what one case leaks must not hide in the next.
"""
from __future__ import annotations

import gc
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import minildr
import minildr.native
from minildr import headercache
from minildr.build import find_compiler

PACKAGE = str(Path(minildr.__file__).resolve().parent) + os.sep
SOURCE = 'const char *greet(void) { return "hi"; }\nint twice(int x) { return 2 * x; }\n'
HEADER = "const char *greet(void);\nint twice(int x);\n"
# The native operations load a plugin with more steps to interrupt: a thread-local
# variable (tls.BorrowedModule: a stub glibc loads from a memfd) and a DT_NEEDED
# library of its own beside it (resolve.open_needed), which nothing else maps.
NATIVE_SOURCE = ('__thread int calls;\nextern int helper_add(int, int);\n'
                 'const char *greet(void) { return "hi"; }\n'
                 'int twice(int x) { calls++; return helper_add(x, x) + calls - calls; }\n')
HELPER_SOURCE = "int helper_add(int a, int b) { return a + b; }\n"
NATIVE = {"open-native", "lookup-native", "close-native", "load-native", "drop-last-native"}


class Interrupt:
    """A trace function: count minildr's line events; raise KeyboardInterrupt at the N-th."""

    def __init__(self, at: Optional[int] = None) -> None:
        self.at, self.events, self.where = at, 0, ""

    def __call__(self, frame, event, arg):               # a call: trace minildr's frames only
        return self.line if frame.f_code.co_filename.startswith(PACKAGE) else None

    def line(self, frame, event, arg):
        if event == "line":
            self.events += 1
            if self.events == self.at:
                self.where = f"{frame.f_code.co_filename[len(PACKAGE):]}:{frame.f_lineno}"
                raise KeyboardInterrupt
        return self.line

    def run(self, action: Callable[[], object]) -> object:
        sys.settrace(self)
        try:
            return action()
        finally:
            sys.settrace(None)


# ---------------------------------------------------------------------------
# What an interrupt may leave
# ---------------------------------------------------------------------------
def descriptors() -> Dict[int, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass                                          # the listing's own descriptor
    return found


def mappings(plugin: Path) -> List[str]:
    """The mappings of the plugin's file or of any sealed copy (memfd) minildr made."""
    with open("/proc/self/maps") as maps:
        return sorted({line.split(None, 5)[-1].strip() for line in maps
                       if str(plugin) in line or "memfd:" in line or str(WORK) in line
                       or "minildr" in line
                       and ".so" in line and str(Path(minildr.__file__).parent) not in line})


def children() -> List[str]:
    """Every process below this one (any thread's children, and theirs), with its state:
    a zombie counts too. Below, not only children: a worker from the fork server
    (minildr/isolation/forkserver.py) is the server's child, and the server, started at
    the warm-up, lives on by design: what it forks and is left over is found below it."""
    found = []
    todo = ["self"]
    pids: List[str] = []
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    below = f.read().split()
            except OSError:
                continue
            pids.extend(below)
            todo.extend(below)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            state, ppid = stat[stat.rindex(')') + 2:].split()[:2]
            found.append(f"{pid} {state} {stat[stat.index('(') + 1:stat.rindex(')')]} "
                         f"(child of {ppid})")
        except OSError:
            pass
    return sorted(found)


def new_processes(now: List[str], before: List[str]) -> List[str]:
    """Of children()'s lines, the processes new since `before` by pid, or zombies now that
    were not (one running before and running or sleeping now, e.g. the fork server, is
    the same process whatever its state letter)."""
    was = {line.split()[0]: line.split()[1] for line in before}
    return [line for line in now if line.split()[0] not in was
            or line.split()[1] == "Z" != was[line.split()[0]]]


def files_in(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class State:
    """What this process holds that an interrupted operation could leave behind."""

    def __init__(self) -> None:
        gc.collect()
        self.fds = descriptors()
        self.maps = mappings(PLUGIN)
        self.children = children()
        self.files = files_in(OUT)
        self.temporary = files_in(TEMP)
        self.threads = threads()
        self.locks = held_locks()

    def left_since(self, before: "State") -> List[str]:
        left = []
        fds = {fd: t for fd, t in self.fds.items() if before.fds.get(fd) != t}
        if fds:
            left.append(f"descriptors {fds}")
        if set(self.maps) - set(before.maps):
            left.append(f"mapped {sorted(set(self.maps) - set(before.maps))}")
        new = new_processes(self.children, before.children)
        if new:
            left.append(f"processes {new}")
        if set(self.files) - set(before.files):
            left.append(f"files {sorted(set(self.files) - set(before.files))}")
        if set(self.temporary) - set(before.temporary):
            left.append(f"temporary {sorted(set(self.temporary) - set(before.temporary))}")
        if set(self.locks) - set(before.locks):
            left.append(f"locks held {sorted(set(self.locks) - set(before.locks))}")
        if self.threads > before.threads:
            left.append(f"threads: {self.threads - before.threads} more")
        return left


def left_since(before: State, wait: float = 3.0) -> List[str]:
    """What is here now and was not before; a process or thread is given `wait` s to end."""
    deadline = time.monotonic() + wait
    while (left := State().left_since(before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


LOCKS = (type(threading.Lock()), type(threading.RLock()))


def _lockers(objects: Iterable[object], classes: set) -> Dict[str, object]:
    """The locks in the __dict__ of each of `objects` whose class is one of `classes`."""
    found = {}
    for obj in objects:
        if type(obj) in classes:
            found.update((f"{type(obj).__qualname__}.{attr} ({id(obj):#x})", value)
                         for attr, value in list(getattr(obj, "__dict__", {}).items())
                         if isinstance(value, LOCKS))
    return found


# The locks of the objects alive when the campaign froze them (freeze_what_is_there):
# the collector no longer lists those objects, so their locks are remembered here.
_FROZEN_LOCKS: Dict[str, object] = {}


def locks(objects: Optional[Iterable[object]] = None) -> Dict[str, object]:
    """minildr's locks (name -> lock): each module's, and those in the __dict__ of each of
    `objects` (by default every live object of a minildr class: those the collector lists,
    and those alive when the campaign froze them)."""
    found, classes = {}, set()
    for name, module in list(sys.modules.items()):
        if name == "minildr" or name.startswith("minildr."):
            for attr, value in list(vars(module).items()):
                if isinstance(value, LOCKS):
                    found[f"{name}.{attr}"] = value
                elif isinstance(value, type) and value.__module__.startswith("minildr"):
                    classes.add(value)
    if objects is None:
        found.update(_FROZEN_LOCKS)
        objects = gc.get_objects()
    found.update(_lockers(objects, classes))
    return found


def freeze_what_is_there() -> None:
    """Move every object alive now (after the warm-up: imports, caches) out of the
    collector's sight (gc.freeze), remembering their locks first.

    Each check after an interrupt collects garbage and looks for minildr's
    objects among all that the collector tracks: ~15 ms per check with the
    loaded modules' objects in sight, ~2 ms without. What an operation makes
    after this point is collected and listed as before; a lock of an object
    that was already there is still checked (_FROZEN_LOCKS).
    """
    gc.collect()
    _FROZEN_LOCKS.clear()
    _FROZEN_LOCKS.update(locks())
    for name in [n for n in _FROZEN_LOCKS if " (0x" not in n]:
        del _FROZEN_LOCKS[name]                      # a module's: found by name each time
    gc.freeze()


def held_locks(objects: Optional[Iterable[object]] = None) -> Dict[str, object]:
    """The locks of minildr (`locks(objects)`) held now: a Lock held by anyone, an RLock
    held by this thread.

    The campaign runs in one thread and waits for what it starts, so a lock
    held between two operations was left held (an RLock would not even hang
    this thread: it takes it again)."""
    return {name: lock for name, lock in locks(objects).items()
            if (lock._is_owned() if hasattr(lock, "_is_owned") else lock.locked())}


def free_locks(held: Dict[str, object]) -> None:
    """Release what this thread left held, so the campaign can go on to its next point."""
    for lock in held.values():
        while lock._is_owned() if hasattr(lock, "_is_owned") else lock.locked():
            lock.release()


# ---------------------------------------------------------------------------
# The operations: (set up, the operation, undo what it made)
# ---------------------------------------------------------------------------
WORK = OUT = PLUGIN = TEMP = Path()   # set by main()


def build(native: bool = False) -> Path:
    src = WORK / "src"
    src.mkdir(exist_ok=True)
    (src / "greet.c").write_text(NATIVE_SOURCE if native else SOURCE)
    (src / "greet.h").write_text(HEADER)
    if not native:
        return minildr.build([src / "greet.c"], name="greet", exports=src / "greet.h",
                             out_dir=OUT)
    OUT.mkdir(exist_ok=True)
    (src / "helper.c").write_text(HELPER_SOURCE)
    subprocess.run([find_compiler().path, "-shared", "-fPIC", "-Wl,-soname,libhelper.so",
                    "-o", str(OUT / "libhelper.so"),
                    str(src / "helper.c")], check=True)
    return minildr.build([src / "greet.c"], name="greet", exports=src / "greet.h", out_dir=OUT,
                         cflags=["-Wl,--no-as-needed", f"-L{OUT}", "-lhelper",
                                 "-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"])


class Case:
    """One operation: set_up() before it, operation() itself, undo(result) after a clean run,
    and after_interrupt(): what the caller does with what the case set up (close it).
    `interrupt_reaches_caller`: False where the operation's minildr code runs only in a
    finalizer, whose exceptions Python reports as unraisable instead of raising them."""
    held: dict
    interrupt_reaches_caller = True

    def __init__(self, **kwargs) -> None:
        self.kwargs, self.held = kwargs, {}

    def set_up(self) -> None:
        pass

    def after_interrupt(self) -> None:
        pass


class Opening(Case):
    def operation(self):
        return minildr.open(PLUGIN, **self.kwargs)

    def undo(self, plugin) -> None:
        assert plugin.lookup("twice", "int (int)")(21) == 42
        plugin.close()


class LookingUp(Case):
    """A lookup on an open plugin; after an interrupt the caller closes the plugin, and then
    nothing of it may stay mapped (no keep-alive left behind)."""
    def set_up(self) -> None:
        self.held["plugin"] = minildr.open(PLUGIN, **self.kwargs)

    def operation(self):
        return self.held["plugin"].lookup("greet", "const char *(void)")

    def undo(self, function) -> None:
        assert minildr.ffi.string(function()) == b"hi"
        del function
        self.held.pop("plugin").close()

    def after_interrupt(self) -> None:
        self.held.pop("plugin").close()


class Calling(Case):
    """A call of a numbers-only function (isolated: process.call_numbers, the hot path);
    after an interrupt the caller closes the plugin, and nothing of it may stay."""
    def set_up(self) -> None:
        self.held["plugin"] = minildr.open(PLUGIN, **self.kwargs)
        self.held["twice"] = self.held["plugin"].lookup("twice", "int (int)")

    def operation(self):
        return self.held["twice"](21)

    def undo(self, result) -> None:
        assert result == 42
        self.held.pop("twice")
        self.held.pop("plugin").close()

    def after_interrupt(self) -> None:
        self.held.pop("twice")
        self.held.pop("plugin").close()


class Closing(LookingUp):
    """An interrupted close(); the caller calls close() again, which must finish the job."""
    def operation(self):
        self.held["plugin"].close()

    def undo(self, _) -> None:
        self.held.pop("plugin")


class DroppingTheLast(Case):
    """The last function handed out by a closed plugin, dropped: its finalizer (lifetime.py,
    keep_mapped_while) takes it off the library's holders and unloads the library. An
    interrupt there never reaches the caller (a finalizer's exception is unraisable); what
    it must not do is leave the library mapped with nothing left to unload it."""
    interrupt_reaches_caller = False

    def set_up(self) -> None:
        plugin = minildr.open(PLUGIN, **self.kwargs)
        self.held["last"] = plugin.lookup("twice", "int (int)")
        plugin.close()                        # still mapped: the function is alive

    def operation(self):
        del self.held["last"]                 # the finalizer runs here

    def undo(self, _) -> None:
        pass


class DroppingTheLastPointer(DroppingTheLast):
    """The same for the last pointer a function of it returned (lifetime.py,
    results_keep_mapped: a weak reference's callback)."""
    def set_up(self) -> None:
        plugin = minildr.open(PLUGIN, **self.kwargs)
        greet = plugin.lookup("greet", "const char *(void)")
        self.held["last"] = greet()
        del greet
        plugin.close()                        # still mapped: the pointer is alive


class Building(Case):
    def set_up(self) -> None:                 # a changed source: build compiles each time
        (WORK / "src" / "greet.c").write_text(SOURCE + f"int round_{time.monotonic_ns()};\n")

    def operation(self):
        return build()

    def undo(self, path) -> None:
        assert path == PLUGIN


class BuildingUncached(Building):
    """A build that preprocesses its exports header (nothing remembered: headercache), so
    the steps of a first build and of remembering its result are interrupted too."""
    def set_up(self) -> None:
        super().set_up()
        headercache.clear()


class LoadingNatively(Case):
    """minildr.native.load(path): the native loader on its own, no manifest (not from_image)."""
    def operation(self):
        return minildr.native.load(PLUGIN)

    def undo(self, library) -> None:
        assert library.lookup("twice", "int (int)")(21) == 42
        library.close()


class Discovering(Case):
    def operation(self):
        return minildr.discover(OUT, **self.kwargs)

    def undo(self, report) -> None:
        assert [p.name for p in report.loaded] == ["greet"], report.table()
        report.close()


OPERATIONS = {
    "open": lambda: Opening(),
    "open-native": lambda: Opening(loader="native"),
    "open-isolated": lambda: Opening(isolate=True),
    "lookup": lambda: LookingUp(),
    "lookup-native": lambda: LookingUp(loader="native"),
    "lookup-isolated": lambda: LookingUp(isolate=True),
    "call-isolated": lambda: Calling(isolate=True),
    "close": lambda: Closing(),
    "close-native": lambda: Closing(loader="native"),
    "load-native": lambda: LoadingNatively(),
    "close-isolated": lambda: Closing(isolate=True),
    "drop-last": lambda: DroppingTheLast(),
    "drop-last-native": lambda: DroppingTheLast(loader="native"),
    "drop-last-pointer": lambda: DroppingTheLastPointer(),
    "build": lambda: Building(),
    "build-uncached": lambda: BuildingUncached(),
    "discover": lambda: Discovering(),
    "discover-isolated": lambda: Discovering(isolate=True),
}


def interrupt_points(events: int, cases: int) -> List[int]:
    """All of 1..events if there are at most `cases`, else `cases` spread evenly (both ends in)."""
    if events <= cases:
        return list(range(1, events + 1))
    return sorted({1 + round(i * (events - 1) / (cases - 1)) for i in range(cases)})


def interrupted_at(case: Case, at: int) -> List[str]:
    """Run the case with an interrupt at event `at`; what went wrong (nothing: [])."""
    before = State()
    case.set_up()
    interrupt = Interrupt(at)
    try:
        result = interrupt.run(case.operation)
    except KeyboardInterrupt:
        outcome = "interrupted"
    except BaseException as exc:                      # the interrupt turned into something else
        outcome = f"raised {type(exc).__name__} instead: {exc}"
    else:
        if not interrupt.where:                       # past its last line: undo it as usual
            case.undo(result)
            return []
        # Raised, and not seen by the caller: a finalizer's (reported as unraisable)
        outcome = "interrupted" if not case.interrupt_reaches_caller else \
            "the interrupt did not reach the caller"
    problems = [] if outcome == "interrupted" else [outcome]
    try:
        case.after_interrupt()
    except BaseException as exc:
        problems.append(f"the caller's close after it failed: {type(exc).__name__}: {exc}")
    left = left_since(before)
    free_locks(held_locks())                          # reported in `left`; not a hang next
    try:                                              # the same operation works again
        case.set_up()
        case.undo(case.operation())
    except BaseException as exc:
        problems.append(f"then the operation failed: {type(exc).__name__}: {exc}")
    problems += left or left_since(before)
    return [f"event {at} ({interrupt.where}): {p}" for p in problems]


def main(argv: List[str]) -> int:
    global WORK, OUT, PLUGIN, TEMP
    name, WORK, cases = argv[0], Path(argv[1]), int(argv[2])
    OUT, TEMP = WORK / "out", WORK / "tmp"
    TEMP.mkdir(parents=True, exist_ok=True)        # this campaign's temporary folder: counted
    os.environ["TMPDIR"] = tempfile.tempdir = str(TEMP)
    PLUGIN = build(native=name in NATIVE)
    case = OPERATIONS[name]()
    case.set_up()                                     # warm up: imports, caches
    case.undo(case.operation())
    freeze_what_is_there()
    before = State()
    case.set_up()
    counter = Interrupt()
    case.undo(counter.run(case.operation))
    points = interrupt_points(counter.events, cases)
    problems = []
    for at in points:
        print(f"interrupt at event {at}", file=sys.stderr, flush=True)   # names a crash
        problems += interrupted_at(case, at)
    problems += [f"after the campaign: {p}" for p in left_since(before)]
    print(json.dumps({"events": counter.events, "tried": len(points), "problems": problems}))
    return 0


def serve() -> int:
    """Run campaigns, each in a process of its own forked from this one, which imported
    minildr once for them all (a fresh Python's start and imports, ~0.25 CPU s, paid
    once per test file rather than per campaign). Each forked process starts from the
    state a fresh one has after the imports: this process does nothing else, holds no
    thread, lock, plugin or child of its own.

    Reads one JSON request per line on stdin, [OPERATION, FOLDER, CASES, TIMEOUT];
    answers each with one JSON line: {"returncode", "stdout", "stderr"} of that
    process (returncode None: killed after TIMEOUT seconds; negative: the signal
    that ended it). Ends at the end of stdin.
    """
    for line in sys.stdin:
        operation, folder, cases, timeout = json.loads(line)
        print(json.dumps(forked_campaign([operation, folder, str(cases)], timeout)),
              flush=True)
    return 0


def forked_campaign(argv: List[str], timeout: float) -> dict:
    """main(argv) in a forked process: its exit status, its stdout, its stderr."""
    Path(argv[1]).mkdir(parents=True, exist_ok=True)
    err_path = Path(argv[1]) / "campaign.stderr"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                          # the campaign: never returns
        status = 3
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.close(write_end)
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(err, 2)
            os.close(err)
            status = main(argv)
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_end)
    out, deadline, ended = [], time.monotonic() + timeout, False
    with os.fdopen(read_end, "rb") as pipe:
        while not ended and time.monotonic() < deadline:  # its stdout ends when it does
            if select.select([pipe], [], [], 1.0)[0]:
                chunk = os.read(pipe.fileno(), 1 << 16)
                out.append(chunk)
                ended = not chunk
    if not ended:
        os.kill(pid, 9)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return {"returncode": status if ended else None,
            "stdout": b"".join(out).decode(errors="replace"),
            "stderr": err_path.read_text(errors="replace")}


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:]))
