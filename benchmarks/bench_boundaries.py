"""Boundary benchmark: what one call costs across each boundary a program can put code behind.

The same C function, `int add(int a, int b)` (benchmarks/boundary/add.c), or
its Python twin, called from Python across each boundary, side by side in
one run:

    python        a Python function in a statically imported module
    cffi-api      add() compiled into a cffi API-mode extension module
                  (ffi.set_source + ffi.compile, out of line, into the build folder)
    plugin        add() in a minildr plugin, a typed lookup (cffi ABI mode, dlopen)
    contract      the same add() through a contract's vtable (a proxy method)
    isolated      add() in a plugin opened with isolate=True: a worker process
    process       a new process per call: `add 2 3` run as a program
    config-once   the behaviour named in a config file, parsed once at start
    config-reread the same, but the file read and parsed again on every call

Per call: short batches, interleaved (python, cffi-api, ..., python, ...) so
every boundary sees the same machine; each figure is the best batch, the one
least disturbed by everything else running. The timing harness itself (the
loop and a lambda, row `harness`) is measured the same way and subtracted:
`seconds` is the boundary's own cost, `raw` what the loop measured. Ratios are
against `python`, both net of the harness.

Then what data costs (`payloads`): count_spaces(text) with 16 B, 1 MB and
16 MB of text, in process and isolated; what the same add() costs called
from a compiled host (add_loop.c: a C caller, no Python); and the price paid
once per option (load/setup): import, compile, build, open (cold: a file
never opened, hashed whole and sealed; warm: the cache hit of a file opened
before), start a worker, start a Python and a C program, parse; and
minildr.discover over 1, 10, 100, 1000 plugins.

    python benchmarks/bench_boundaries.py             # table; JSON + CSV into build/bench/boundaries/
    python benchmarks/bench_boundaries.py --plot      # and boundaries.png beside them
    python benchmarks/bench_boundaries.py --quick     # a few thousand calls: seconds, not minutes

Notebook 06 imports this module and runs the --quick version.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import operator
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import cffi

try:
    import resource         # the CPU time of child processes (not on Windows)
except ImportError:
    resource = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
import minildr  # noqa: E402
from minildr.build import find_compiler  # noqa: E402
from minildr.console import human, times  # noqa: E402
from minildr.progress import progress  # noqa: E402

SOURCES = Path(__file__).resolve().parent / "boundary"
DEFAULT_OUT = ROOT / "build" / "bench" / "boundaries"
ADD_T = "int (int, int)"
COUNT_T = "int64_t (const char *)"
PAYLOAD_SIZES = (16, 1 << 20, 16 << 20)        # 16 B, 1 MB, 16 MB
A, B, SUM = 2, 3, 5

# The behaviours a config file may name: a config can choose among what the
# host already has, never add a new one (that is what a plugin is for).
OPERATIONS: Dict[str, Callable[[int, int], int]] = {"add": operator.add, "sub": operator.sub}


@dataclass
class Boundary:
    """One way to reach add(): a zero-argument call, and how much slower than Python it may be.

    `share` divides the batch size, so that a boundary 1000 times slower
    does not take 1000 times longer to measure.
    """
    key: str
    label: str
    call: Callable[[], int]
    share: int = 1


@dataclass
class Results:
    meta: Dict[str, object]
    calls: List[Dict[str, object]] = field(default_factory=list)   # key, label, seconds, ratio
    loads: List[Dict[str, object]] = field(default_factory=list)   # key, label, seconds, repeats
    #                                                 (, cpu_seconds: of a process started)
    discover: List[Dict[str, object]] = field(default_factory=list)  # plugins, seconds
    payloads: List[Dict[str, object]] = field(default_factory=list)  # bytes, in_process, isolated
    compiled_call: Optional[float] = None     # seconds per add() from a C caller
    harness: Optional[float] = None           # seconds per call of the timing loop itself

    def call_seconds(self) -> Dict[str, float]:
        return {row["key"]: row["seconds"] for row in self.calls}

    def ratios(self) -> Dict[str, float]:
        return {row["key"]: row["ratio"] for row in self.calls}

    def loads_by_key(self) -> Dict[str, float]:
        return {row["key"]: row["seconds"] for row in self.loads}

    def summary(self) -> str:
        """The figures notebook 06's prose refers to, by name, from this run."""
        calls, once = self.call_seconds(), self.loads_by_key()
        lines = [f"timing harness (loop + lambda), subtracted from every row: "
                 f"{human(self.harness or 0)}"]
        if calls.get("python", 1.0) <= 0:
            lines.append(NO_RATIO.format(python=human(calls["python"] + (self.harness or 0)),
                                         harness=human(self.harness or 0)))
        if any(r["seconds"] <= 0 for r in self.calls if r["key"] != "python"):
            lines.append("a row at <= 0 measured no more than the timing harness alone in "
                         "this run: too close to it to tell apart, so it has no ratio")
        lines += [f"per call  {r['key']:<14}{net_text(r['seconds']):>10}  "
                  + (f"{times(r['ratio']):>8} of python" if r["ratio"] is not None else
                     f"{'-':>8} (no ratio)") for r in self.calls]
        if self.compiled_call is not None:
            lines.append(f"per call  add() from a C caller (no Python): "
                         f"{human(self.compiled_call)}; an isolated call is "
                         f"{calls['isolated'] / self.compiled_call:,.0f}x that")
        for r in self.payloads:
            lines.append(f"payload   {size_name(r['bytes']):>6}: in process "
                         f"{human(r['in_process']):>9}, isolated {human(r['isolated']):>9} "
                         f"({r['isolated'] / r['in_process']:,.0f}x)")
        size = self.meta.get("plugin_bytes")
        lines.append(f"open      cold (first open of a {size_name(size or 0)} file: read, "
                     f"hash, seal, dlopen) {human(once['plugin-open-cold'])}; warm (cache "
                     f"hit) {human(once['plugin-open'])}; raw dlopen {human(once['raw-dlopen'])}")
        lines.append(f"start     a Python worker (isolate=True) {human(once['isolated-open'])}; "
                     f"a bare Python {human(once['python-start'])}; a C program "
                     f"{human(once['c-start'])}")
        return "\n".join(lines)

    def table(self) -> str:
        lines = [f"{'per call':<44}{'ns':>12}{'x python':>10}"]
        lines += [f"{r['label']:<44}"
                  + (f"{r['seconds'] * 1e9:>12,.0f}" if r["seconds"] > 0 else f"{'<= 0':>12}")
                  + (f"{r['ratio']:>10,.1f}" if r["ratio"] is not None else f"{'-':>10}")
                  for r in self.calls]
        lines += ["", f"{'once per option (load / setup)':<44}{'us':>12}{'repeats':>10}"]
        lines += [f"{r['label']:<44}{r['seconds'] * 1e6:>12,.1f}{r['repeats']:>10}"
                  for r in self.loads]
        if self.discover:
            lines += ["", f"{'minildr.discover + close':<44}{'ms':>12}{'per plugin us':>14}"]
            lines += [f"{plugins_text(r['plugins']):<44}{r['seconds'] * 1e3:>12,.2f}"
                      f"{r['seconds'] / r['plugins'] * 1e6:>14,.1f}" for r in self.discover]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# 1. prepare each boundary (and time what that costs)
# ---------------------------------------------------------------------------
def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best(fn: Callable[[], object], repeats: int) -> float:
    return min(_seconds(fn) for _ in range(repeats))


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have been waited for."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _best_with_cpu(fn: Callable[[], object], repeats: int) -> "tuple[float, Optional[float]]":
    """The best wall seconds of `repeats` runs of `fn`, which starts and waits for a process,
    and the best CPU seconds that process used (None where the system does not say).

    The wall time of a start is what a caller waits, and on a loaded machine it
    measures the load as much as the start: every start waits for a core, the
    long ones longest. The CPU time the started program used is what the
    start costs, whatever else runs: notebook 07 compares starts by it.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        before = _children_cpu() if resource is not None else 0.0
        walls.append(_seconds(fn))
        if resource is not None:
            cpus.append(_children_cpu() - before)
    return min(walls), (min(cpus) if cpus else None)


def import_python() -> Callable[[int, int], int]:
    """The plain Python side: boundary/pyadd.py, imported like any module."""
    if str(SOURCES) not in sys.path:
        sys.path.insert(0, str(SOURCES))
    return importlib.import_module("pyadd").add


def build_cffi_api(out: Path) -> Path:
    """add.c compiled into an extension module, cffi's API (out-of-line) mode.

    The wrapper cffi writes and add.c both include add_decl.h, so the C
    compiler checks add()'s definition against the declaration the wrapper
    calls: that shared header is what makes API mode "checked".
    """
    ffibuilder = cffi.FFI()
    ffibuilder.cdef("int add(int a, int b);")
    ffibuilder.set_source("_boundary_add", '#include "add_decl.h"',
                          sources=[str(SOURCES / "add.c")], include_dirs=[str(SOURCES)])
    return Path(ffibuilder.compile(tmpdir=str(out / "cffi-api"), verbose=False))


def import_extension(path: Path):
    """Import a compiled extension module from its file (it is not on sys.path)."""
    spec = importlib.util.spec_from_file_location("_boundary_add", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_plugin(out: Path, contract: minildr.Contract) -> Path:
    return minildr.build([SOURCES / "add.c", SOURCES / "adder.c", SOURCES / "payload.c"],
                         name="boundary",
                         version="1.0.0", exports=SOURCES / "add.h", contracts=[contract],
                         out_dir=out)


def build_program(out: Path, main: str = "add_main.c") -> Path:
    """`main` + add.c as a program, with the C compiler minildr.build uses."""
    compiler = find_compiler()
    stem = Path(main).stem.replace("_main", "")
    exe = out / (f"{stem}.exe" if os.name == "nt" else stem)
    if compiler.family == "msvc":
        cmd = [compiler.path, "/nologo", "/O2", f"/Fe{exe}", f"/Fo{out}{os.sep}",
               str(SOURCES / main), str(SOURCES / "add.c")]
    else:
        cmd = [compiler.path, "-O2", "-std=c11", "-o", str(exe), str(SOURCES / main),
               str(SOURCES / "add.c")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {exe.name} failed:\n{done.stdout}{done.stderr}")
    return exe


def run_program(exe: Path) -> Callable[[], int]:
    args = [str(exe), str(A), str(B)]

    def call() -> int:
        return int(subprocess.run(args, capture_output=True, check=True).stdout)
    return call


def compiled_call_seconds(exe: Path, calls: int = 100_000_000, runs: int = 5) -> float:
    """Seconds per add() called by a C program through a function pointer (add_loop.c).

    The best of `runs` runs of calls // runs each, as every other figure here is the
    best of its batches: the program times itself by the wall clock, and one run of
    all the calls at once measured whatever else the machine did meanwhile (notebook 07
    at load ~18: 10.4 ns for one run of 20 million calls, 2.15 ns on a quiet machine).
    """
    best = float("inf")
    for _ in range(runs):
        done = subprocess.run([str(exe), str(max(1, calls // runs))], capture_output=True,
                              text=True, check=True)
        per_call_ns, correct = done.stdout.split()
        if correct != "1":
            raise AssertionError(f"{exe.name}: add() gave a wrong sum")
        best = min(best, float(per_call_ns))
    return best * 1e-9


def spaces_text(size: int) -> bytes:
    """`size` bytes of text, one space in eight: the payload count_spaces reads."""
    return (b"abcdefg " * (size // 8 + 1))[:size]


def time_payloads(local: Callable[[bytes], int], remote: Callable[[bytes], int],
                  sizes: Sequence[int], repeats: int) -> List[Dict[str, object]]:
    """count_spaces over each size, in process and isolated: seconds per call, best batch."""
    rows = []
    for size in sizes:
        text = spaces_text(size)
        expected = text.count(b" ")
        for fn in (local, remote):
            if fn(text) != expected:
                raise AssertionError(f"count_spaces over {size} bytes is wrong")
        number = max(1, min(50, (1 << 20) // size))     # small payloads: batches, like calls

        def per_call(fn: Callable[[bytes], int]) -> float:
            return _best(lambda: [fn(text) for _ in range(number)], repeats) / number
        rows.append({"bytes": size, "in_process": per_call(local),
                     "isolated": per_call(remote)})
    return rows


def write_config(out: Path) -> Path:
    path = out / "config.json"
    path.write_text(json.dumps({"operation": "add"}) + "\n", encoding="utf-8")
    return path


def read_config(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Bench:
    """Everything built and opened once; `boundaries` to time; `close()` at the end."""

    def __init__(self, out: Path, repeats: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.loads: List[Dict[str, object]] = []
        self._closers: List[Callable[[], None]] = []
        contract = minildr.Contract.from_header(SOURCES / "adder.h", name="adder",
                                                version="1.0")

        def once(key: str, label: str, seconds: float, repeats: int = 1,
                 cpu_seconds: Optional[float] = None) -> None:
            row: Dict[str, object] = {"key": key, "label": label, "seconds": seconds,
                                      "repeats": repeats}
            if cpu_seconds is not None:             # a process started: the CPU it used
                row["cpu_seconds"] = cpu_seconds
            self.loads.append(row)

        # python: the first import, then a re-import from the cached .pyc
        py_add = import_python()

        def reimport() -> None:
            sys.modules.pop("pyadd", None)
            importlib.import_module("pyadd")
        once("python-import", "python: import a module (from .pyc)", _best(reimport, repeats),
             repeats)

        # cffi API mode: compile once (the C compiler, at build time), import once
        shutil.rmtree(out / "cffi-api", ignore_errors=True)     # a real compile, not "up to date"
        start = time.perf_counter()
        ext_path = build_cffi_api(out)
        once("cffi-api-compile", "cffi-api: compile the extension", time.perf_counter() - start)
        start = time.perf_counter()
        ext = import_extension(ext_path)
        once("cffi-api-import", "cffi-api: import it (once per process)",
             time.perf_counter() - start)

        # the plugin: build once; open+close as often as we like
        start = time.perf_counter()
        plugin_path = build_plugin(out, contract)
        once("plugin-build", "plugin: minildr.build", time.perf_counter() - start)
        raw = cffi.FFI()
        once("raw-dlopen", "plugin: raw ffi.dlopen + dlclose",
             _best(lambda: raw.dlclose(raw.dlopen(str(plugin_path))), repeats), repeats)
        self.plugin_bytes = plugin_path.stat().st_size     # what a cold open reads and hashes
        copies = out / "cold"                 # files never opened: no cache can answer
        shutil.rmtree(copies, ignore_errors=True)
        copies.mkdir()
        fresh = iter([Path(shutil.copy(plugin_path, copies / f"c{i}{minildr.SUFFIX}"))
                      for i in range(repeats)])
        once("plugin-open-cold", "plugin: minildr.open + close, cold (first open)",
             _best(lambda: minildr.open(next(fresh)).close(), repeats), repeats)
        once("plugin-open", "plugin: minildr.open + close, warm (cache hit)",
             _best(lambda: minildr.open(plugin_path).close(), repeats), repeats)
        once("plugin-open-native", "plugin: minildr.open(loader='native') + close",
             _best(lambda: minildr.open(plugin_path, loader="native").close(), repeats),
             repeats)

        def open_contract() -> None:
            with minildr.open(plugin_path, contracts=[contract]) as p:
                p.lookup("adder", contract)
        once("contract-open", "contract: open + lookup(contract) + close",
             _best(open_contract, repeats), repeats)
        few = max(1, repeats // 10)
        once("isolated-open", "isolated: open(isolate=True) + close",
             _best(lambda: minildr.open(plugin_path, isolate=True).close(), few), few)

        # the program: compile once; every call starts it
        start = time.perf_counter()
        exe = build_program(out)
        once("process-compile", "process: compile the program", time.perf_counter() - start)
        process_add = run_program(exe)
        wall, cpu = _best_with_cpu(process_add, repeats)
        once("c-start", "process: start a C program (add 2 3)", wall, repeats, cpu)
        python = [sys.executable, "-c", "pass"]
        # The best of as many Python starts as C starts; their wall times still measured
        # the load (notebook 07's claim that a Python start costs > 10 C starts printed
        # False at load ~20, and once more with 10 of each on a heavily loaded machine):
        # the claim compares the CPU time of the started programs.
        starts = max(3, repeats)
        wall, cpu = _best_with_cpu(lambda: subprocess.run(python, check=True), starts)
        once("python-start", "process: start a Python (python -c pass)", wall, starts, cpu)
        self.loop_exe = build_program(out, "add_loop.c")

        # the config file: parse once
        config_path = write_config(out)
        once("config-parse", "config: read + parse the file",
             _best(lambda: read_config(config_path), repeats), repeats)
        config = read_config(config_path)

        self.plugin_path = plugin_path
        # In a method of its own: this frame can outlive __init__ (cffi's compile above
        # leaves a traceback in a cycle that holds it until a collection), and the
        # functions looked up must not: close() would then leave the plugin mapped.
        self._look_up(plugin_path, contract, ext, py_add, process_add, config,
                      config_path)

    def _look_up(self, plugin_path: Path, contract: minildr.Contract, ext: Any,
                 py_add: Callable[[int, int], int], process_add: Callable[[], object],
                 config: dict, config_path: Path) -> None:
        """Open the plugin both ways and make the boundaries to time."""
        plugin = minildr.open(plugin_path, contracts=[contract])
        self._closers.append(plugin.close)
        isolated = minildr.open(plugin_path, isolate=True)
        self._closers.append(isolated.close)

        cffi_add = ext.lib.add
        typed_add = plugin.lookup("add", ADD_T)
        vtable = plugin.lookup("adder", contract)
        remote_add = isolated.lookup("add", ADD_T)
        self.count_local = plugin.lookup("count_spaces", COUNT_T)
        self.count_remote = isolated.lookup("count_spaces", COUNT_T)
        self.boundaries = [
            Boundary("harness", "(the timing loop and a lambda alone)", lambda: SUM),
            Boundary("python", "python function (static import)", lambda: py_add(A, B)),
            Boundary("cffi-api", "cffi API mode (compiled extension)", lambda: cffi_add(A, B)),
            Boundary("plugin", "plugin, typed lookup (ABI mode, dlopen)",
                     lambda: typed_add(A, B)),
            Boundary("contract", "plugin, contract method", lambda: vtable.add(A, B)),
            Boundary("isolated", "isolated plugin (worker process)",
                     lambda: remote_add(A, B), share=50),
            Boundary("process", "new process per call", process_add, share=2000),
            Boundary("config-once", "config file, parsed once",
                     lambda: OPERATIONS[config["operation"]](A, B)),
            Boundary("config-reread", "config file, re-read every call",
                     lambda: OPERATIONS[read_config(config_path)["operation"]](A, B),
                     share=50),
        ]
        for b in self.boundaries:              # every side computes the same thing
            got = b.call()
            if got != SUM:
                raise AssertionError(f"{b.key}: add({A}, {B}) gave {got!r}, not {SUM}")

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        # What was looked up goes too: a closed plugin stays mapped while its functions live.
        # The list is emptied, not replaced: a notebook's progress bar (tqdm) keeps the
        # list it counted through, in a cycle of its widgets.
        self.boundaries.clear()
        self.count_local = self.count_remote = None


# ---------------------------------------------------------------------------
# 2. time the calls, interleaved
# ---------------------------------------------------------------------------
def batch_seconds(fn: Callable[[], object], number: int) -> float:
    """Seconds per call of fn() over one batch of `number` calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_calls(boundaries: Sequence[Boundary], calls: int, rounds: int,
               show: Optional[bool] = None) -> Dict[str, float]:
    """Best seconds per call of each boundary; rounds interleave every boundary."""
    best = {b.key: float("inf") for b in boundaries}
    for b in boundaries:                                  # warm up
        batch_seconds(b.call, max(1, calls // b.share // 10))
    steps = [(r, b) for r in range(rounds) for b in boundaries]
    for _, b in progress(steps, desc="calls", unit="batch", show=show):
        best[b.key] = min(best[b.key], batch_seconds(b.call, max(1, calls // b.share)))
    return best


def time_discover(plugin: Path, out: Path, counts: Sequence[int], repeats: int,
                  show: Optional[bool] = None) -> List[Dict[str, object]]:
    """minildr.discover over folders of 1, 10, ... copies of one plugin, then close."""
    rows = []
    for n in progress(counts, desc="discover", unit="folder", show=show):
        folder = out / f"discover-{n}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for i in range(n):
            shutil.copyfile(plugin, folder / f"p{i:04d}{minildr.SUFFIX}")

        def scan() -> None:
            # copies of one plugin under other names: not a substitution to refuse
            report = minildr.discover(folder, expect=None)
            if len(report.loaded) != n:
                raise AssertionError(f"discover {folder.name}: {report.table()}")
            report.close()
        rows.append({"plugins": n, "seconds": _best(scan, repeats if n < 1000 else 1)})
    return rows


# ---------------------------------------------------------------------------
# 3. the whole run, its files and its plot
# ---------------------------------------------------------------------------
def run(out: Path = DEFAULT_OUT, *, calls: int = 20_000, rounds: int = 15, repeats: int = 50,
        discover_counts: Sequence[int] = (1, 10, 100, 1000),
        payload_sizes: Sequence[int] = PAYLOAD_SIZES, compiled_calls: int = 100_000_000,
        show: Optional[bool] = None) -> Results:
    out = Path(out)
    bench = Bench(out, repeats)
    try:
        raw = time_calls(bench.boundaries, calls, rounds, show)
        payloads = time_payloads(bench.count_local, bench.count_remote, payload_sizes,
                                 max(3, repeats // 10))
        compiled = compiled_call_seconds(bench.loop_exe, compiled_calls)
        discovered = time_discover(bench.plugin_path, out, discover_counts,
                                   max(1, repeats // 10), show)
        named = [(b.key, b.label) for b in bench.boundaries if b.key != "harness"]
    finally:
        bench.close()
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "system": platform.system(), "cpus": os.cpu_count(), "calls": calls,
            "rounds": rounds, "repeats": repeats, "plugin_bytes": bench.plugin_bytes,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    rows = net_rows(raw, named)
    return Results(meta, rows, bench.loads, discovered, payloads, compiled, raw["harness"])


def net_rows(raw: Dict[str, float], named: Sequence[tuple]) -> List[Dict[str, object]]:
    """One row per boundary (key, label) of `raw` (best seconds per call, the timing
    harness's row included): its seconds net of the harness, and its ratio to python's.

    Under a heavy load the harness's best batch may come out as slow as python's, or
    slower: python's net time is then <= 0, and a ratio to it (a division by zero or
    by a negative number) would be false. The ratio is then None (the summary says why),
    never a made-up number; so is that of any row whose own net time is <= 0.
    """
    harness = raw["harness"]
    base = raw["python"] - harness
    return [{"key": key, "label": label, "seconds": raw[key] - harness, "raw": raw[key],
             "ratio": (raw[key] - harness) / base if base > 0 and raw[key] > harness else None}
            for key, label in named]


NO_RATIO = ("no ratio to python in this run: a python call measured {python}, no more than "
            "the timing harness alone ({harness}), so its net time is not above zero and "
            "every ratio to it would be false; the machine was too busy: run it again")


def net_text(seconds: float) -> str:
    """A net time per call; one not above zero says so rather than show a negative time."""
    return human(seconds) if seconds > 0 else "<= 0"


# The results of one full run on the development machine, kept in the repository
# (`make bench` refreshes them): what notebook 07's decision guide was written from.
RESULTS = Path(__file__).resolve().parent / "results"


def write(results: Results, out: Path = DEFAULT_OUT) -> List[Path]:
    """boundaries.json (everything) and boundaries.csv (one row per figure)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "boundaries.json", out / "boundaries.csv"
    json_path.write_text(json.dumps(asdict(results), indent=2) + "\n", encoding="utf-8")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kind", "key", "label", "seconds", "ratio_to_python"])
        for r in results.calls:
            w.writerow(["call", r["key"], r["label"], f"{r['seconds']:.4g}",
                        "" if r["ratio"] is None else f"{r['ratio']:.4g}"])
        for r in results.loads:
            w.writerow(["load", r["key"], r["label"], f"{r['seconds']:.4g}", ""])
        for r in results.discover:
            w.writerow(["discover", f"discover-{r['plugins']}",
                        f"discover {plugins_text(r['plugins'])}", f"{r['seconds']:.4g}", ""])
    return [json_path, csv_path]


def load(path: Path = DEFAULT_OUT / "boundaries.json") -> Results:
    """Results a previous run wrote."""
    return Results(**json.loads(Path(path).read_text(encoding="utf-8")))


def size_name(size: float) -> str:
    """16 B, 1 MB, 16 MB: a payload's size as the notebook names it."""
    for unit, scale in (("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def plugins_text(n: int) -> str:
    return f"{n} plugin" if n == 1 else f"{n} plugins"


def plot(results: Results, path: Optional[Path] = None, calls: bool = True,
         loads: bool = True):
    """The charts, drawn by minildr.course.figures (the course's pictures live there)."""
    import matplotlib   # slow to import; only --plot needs it
    if path is not None and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from minildr.course import figures   # imports pyplot: after the backend is chosen
    return figures.boundaries(results, path, calls=calls, loads=loads)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="build folder for the results (default build/bench/boundaries)")
    ap.add_argument("--calls", type=int, default=20_000, help="calls per batch (python)")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    ap.add_argument("--repeats", type=int, default=50, help="timed opens/imports per option")
    ap.add_argument("--quick", action="store_true",
                    help="a few thousand calls and no 1000-plugin folder")
    ap.add_argument("--plot", action="store_true", help="also write boundaries.png")
    ap.add_argument("--save", action="store_true",
                    help="also copy the results and plot into benchmarks/results/ (committed)")
    args = ap.parse_args(argv)
    counts = (1, 10, 100, 1000)
    if args.quick:
        args.calls, args.rounds, args.repeats, counts = 2000, 5, 10, (1, 10, 100)
    results = run(args.out, calls=args.calls, rounds=args.rounds, repeats=args.repeats,
                  discover_counts=counts, compiled_calls=10_000_000 if args.quick else 100_000_000)
    m = results.meta
    print(f"add(2, 3) across each boundary: best of {m['rounds']} interleaved batches, "
          f"{m['calls']} python calls each; {m['cpus']} CPUs, load average "
          f"{m['load_average']:.2f}, Python {m['python']}")
    print(results.table())
    print()
    print(results.summary())
    written = write(results, args.out)
    if args.plot:
        written.append(args.out / "boundaries.png")
        plot(results, written[-1])
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        written += [Path(shutil.copy(p, RESULTS / p.name)) for p in list(written)]
    print("\nwrote " + ", ".join(os.path.relpath(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
