"""Isolation benchmark: one call's round trip to a worker process, beside an in-process call.

All in one run, interleaved round by round, on the same plugin:

- in-process     greet() called through the cffi pointer `lookup` gives
- isolated       greet() forwarded to the worker: request frame, the call,
                 reply frame, the string copied back (minildr.open(isolate=True))
- isolated+spin  the same, with both sides polling their socket for
                 isolate.SPIN_SECONDS before they sleep (see minildr/isolation/process.py)
- os floor       a bare 40-byte ping-pong over a socket pair between two
                 Python processes: what waking the other process costs here,
                 with no protocol at all
- run() ...      a contract method, the command example's upper.run("hello,
                 world"), through its proxy: in-process (proxy.py: the string
                 in, the plugin's malloc'd output copied and released), and
                 isolated (remote.py: arguments checked, forwarded, the worker's
                 proxy does the in-process call, the result checked against the
                 contract), with and without spinning; and the host's checks
                 alone, without the round trip

Each figure is the median and 99th percentile of single calls, in
microseconds. Goal (issue 4): isolated median <= 30 us. Then the price of
isolation paid once: opening (start a worker, check, load) and closing.

Then issue 17's ratios. Each is measured in rounds (--rounds); in each
round the kinds compared take turns call by call, the order rotating from
round to round, and each kind's median is taken per round; a goal is judged
on the median over the rounds of the per-round ratio (the lowest and highest
round are printed too), so one noisy slice of a busy machine does not decide
it. The load average is printed before and after.

- an empty isolated call, nothing(), beside a bare round trip between the
  very same two processes (the host and that worker) over the same AF_UNIX
  stream socket pair, with the call's own message sizes: an echo frame
  (protocol.ECHO_HANDLE, WorkerProcess.bare_round_trip) that the worker's
  own loop answers with a void reply and nothing called (in C, fastcall.c;
  in Python where the C loop is not built); the host's side is as lean as
  Python allows (sendall, recv_into). The call adds what isolation needs:
  its arguments checked and packed, the reply checked, the call itself and
  fflush(NULL) in the worker, and in the host forwarding what the plugin
  printed (poll(0) on its output pipes)                          goal <= 1.5x
- count(s) reading a 16 MB string argument (it crosses through the shared
  arena, isolation/shm.py) beside the same call in-process   goal <= 2x
- sandboxed calls beside isolated ones (nothing(), count()) goal <= 1.1x

    python benchmarks/bench_isolate.py [--calls 2000] [--rounds 15] [--big-calls 5] [--only-ratios]
"""
from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minildr  # noqa: E402
from minildr.isolation import fastcall, process as isolate, sandbox  # noqa: E402

GREET_T = "const char *(void)"


def timings(fn, calls: int) -> list:
    clock = time.perf_counter_ns
    out = []
    for _ in range(calls):
        start = clock()
        fn()
        out.append(clock() - start)
    return out


def ping_pong():
    """A child process echoing 40-byte messages: the operating system's floor."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:                                   # pragma: no cover - the child
        a.close()
        while True:
            data = b.recv(1 << 16)
            if not data:
                os._exit(0)
            b.sendall(data)
    b.close()
    poller = select.poll()
    poller.register(a.fileno(), select.POLLIN)

    def once() -> None:
        a.sendall(b"x" * 40)
        poller.poll(1000)
        a.recv(1 << 16)

    def stop() -> None:
        a.close()
        os.waitpid(pid, 0)
    return once, stop


BIG_C = r"""
long count(const char *s) { long n = 0; for (; *s; s++) n += (*s == 'a'); return n; }
void nothing(void) { }
"""
BIG_H = "long count(const char *s);\nvoid nothing(void);\n"


def median_us(values: list) -> float:
    return statistics.median(values) / 1000


def turns(kinds: dict, calls: int, rounds: int) -> dict:
    """Each kind's median microseconds per call, round by round: in every round the kinds
    take turns call by call (`calls` turns), the order rotating from round to round, so a
    noisy slice of the machine's time falls on all of them alike."""
    names = list(kinds)
    clock = time.perf_counter_ns
    per_round = {name: [] for name in names}
    for number in range(rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        fns = [kinds[name] for name in order]
        samples = [[] for _ in order]
        for _ in range(calls):
            for fn, out in zip(fns, samples):
                start = clock()
                fn()
                out.append(clock() - start)
        for name, values in zip(order, samples):
            per_round[name].append(median_us(values))
    return per_round


def ratio(per_round: dict, over: str, under: str) -> tuple:
    """(median, lowest, highest) over the rounds of one round's median ratio."""
    values = [a / b for a, b in zip(per_round[over], per_round[under])]
    return statistics.median(values), min(values), max(values)


def ratios(out: Path, calls: int, rounds: int, big_calls: int) -> None:
    """Issue 17's three ratios (see the module's docstring)."""
    load_before = os.getloadavg()
    source = out / "big.c"
    source.write_text(BIG_C)
    (out / "big.h").write_text(BIG_H)
    path = minildr.build([source], name="big", exports=out / "big.h", out_dir=out)
    isolated = minildr.open(path, isolate=True)
    local = minildr.open(path)
    sandboxed = minildr.open(path, sandbox=True) if not sandbox.probe().missing else None
    worker = isolated._worker

    empty = isolated.lookup("nothing", "void (void)")
    bare = worker.bare_round_trip()
    empty_pair = {"isolated nothing()": empty, "bare round trip, same processes": bare}
    with worker.lock:                                   # (the call takes it again: an RLock)
        turns(empty_pair, 1000, 1)                      # warm up
        empty_rounds = turns(empty_pair, calls, rounds)

    big = b"ab" * (8 << 20)                                 # 16 MB, 8 Mi 'a'
    fns = {"count(16 MB) in-process": local.lookup("count", "long (const char *)"),
           "count(16 MB) isolated": isolated.lookup("count", "long (const char *)")}
    if sandboxed is not None:
        fns["count(16 MB) sandboxed"] = sandboxed.lookup("count", "long (const char *)")
    assert all(fn(big) == 8 << 20 for fn in fns.values())  # and warm: the arena is mapped
    big_rounds = turns({name: (lambda fn=fn: fn(big)) for name, fn in fns.items()},
                       big_calls, rounds)
    empties = {"isolated nothing()": empty}
    if sandboxed is not None:
        empties["sandboxed nothing()"] = sandboxed.lookup("nothing", "void (void)")
    turns(empties, 1000, 1)
    empties_rounds = turns(empties, calls, rounds)

    loop = fastcall.status()
    print(f"\nissue 17 ratios: {rounds} rounds; in each, {calls} turns of one empty call "
          f"each, {big_calls} of one 16 MB call each (the order rotating round by round); "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"baseline: a bare round trip between the same two processes (the host and this "
          f"worker), over the call's own socket pair, with nothing()'s own message sizes "
          f"({empty._frames.request.size} bytes there, {empty._frames.reply.size} back): the "
          "host's side in Python (sendall, recv_into), the worker's in " +
          ("the C call loop, which answers it with nothing called" if loop.path else
           f"the worker's Python loop ({loop.reason})"))
    print(f"{'median of round medians, us':<48}{'':>10}")
    for per_round in (empty_rounds, big_rounds, empties_rounds):
        for name, values in per_round.items():
            print(f"  {name:<46}{statistics.median(values):>10.1f}")

    def goal(what: str, per_round: dict, over: str, under: str, limit: float) -> None:
        middle, low, high = ratio(per_round, over, under)
        print(f"goal: {what} <= {limit:g}x: {'met' if middle <= limit else 'NOT met'} "
              f"(median of {rounds} rounds {middle:.2f}x; rounds {low:.2f}x to {high:.2f}x)")
    goal("empty isolated call / bare round trip", empty_rounds, "isolated nothing()",
         "bare round trip, same processes", 1.5)
    goal("count(16 MB) isolated / in-process", big_rounds, "count(16 MB) isolated",
         "count(16 MB) in-process", 2.0)
    if sandboxed is not None:
        goal("sandboxed / isolated nothing()", empties_rounds, "sandboxed nothing()",
             "isolated nothing()", 1.1)
        goal("sandboxed / isolated count(16 MB)", big_rounds, "count(16 MB) sandboxed",
             "count(16 MB) isolated", 1.1)
    else:
        print("sandboxed: unavailable here:", "; ".join(sandbox.probe().missing))
    for plugin in (isolated, local, sandboxed):
        if plugin is not None:
            plugin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2_000, help="calls per round and kind")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--opens", type=int, default=10, help="isolated opens to time")
    ap.add_argument("--big-calls", type=int, default=5, help="16 MB calls per round and kind")
    ap.add_argument("--only-ratios", action="store_true", help="issue 17's ratios only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="minildr-bench-") as out:  # goes however the run ends
        if args.only_ratios:
            ratios(Path(out), args.calls, args.rounds, args.big_calls)
        else:
            measure(args, Path(out))


def measure(args: argparse.Namespace, out: Path) -> None:
    """Every measurement: opens, empty and typed calls, 16 MB calls, on plugins built into `out`."""
    greet = ROOT / "examples" / "greet"
    path = minildr.build([greet / "greet.c"], name="greet", exports=greet / "greet.h",
                         out_dir=out)

    command = ROOT / "examples" / "command"
    contract = minildr.Contract.from_header(command / "command.h", name="command",
                                            version="1.1")
    upper = minildr.build([command / "upper.c"], name="upper", exports=command / "upper.h",
                          contracts=[contract], out_dir=out)

    local = minildr.open(path)
    local_cmd = minildr.open(upper, contracts=[contract])
    spin = isolate.SPIN_SECONDS
    isolate.SPIN_SECONDS = 0.0
    remote = minildr.open(path, isolate=True)
    remote_cmd = minildr.open(upper, contracts=[contract], isolate=True)
    isolate.SPIN_SECONDS = 100e-6
    spinning = minildr.open(path, isolate=True)
    spinning_cmd = minildr.open(upper, contracts=[contract], isolate=True)
    isolate.SPIN_SECONDS = spin
    floor, stop_floor = ping_pong()

    def run(plugin):
        method = plugin.lookup("upper", contract).run
        return lambda: method("hello, world")

    def checks(proxy):
        """What remote.py adds in the host: the argument and the result checked."""
        shape = proxy._shapes["run"]
        return lambda: shape.result("HELLO, WORLD") and shape.arguments(("hello, world",))

    kinds = {
        "in-process": local.lookup("greet", GREET_T),
        "isolated": remote.lookup("greet", GREET_T),
        "isolated+spin (100 us)": spinning.lookup("greet", GREET_T),
        "os floor (ping-pong)": floor,
        "run() in-process": run(local_cmd),
        "run() isolated": run(remote_cmd),
        "run() isolated+spin": run(spinning_cmd),
        "run() host checks only": checks(remote_cmd.lookup("upper", contract)),
    }
    for fn in kinds.values():                     # warm up
        timings(fn, 1000)
    samples = {name: [] for name in kinds}
    for _ in range(args.rounds):
        for name, fn in kinds.items():
            samples[name] += timings(fn, args.calls)

    assert minildr.ffi.string(kinds["isolated"]()) == minildr.ffi.string(kinds["in-process"]())
    assert kinds["run() isolated"]() == kinds["run() in-process"]() == "HELLO, WORLD"
    print(f"greet() and upper.run() round trips, {args.rounds} x {args.calls} calls each, "
          f"{os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, SPIN_SECONDS default {spin * 1e6:g} us")
    print(f"{'':<24}{'median us':>10}{'p99 us':>10}")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values) / 1000
        p99 = values[int(len(values) * 0.99)] / 1000
        print(f"{name:<24}{median:>10.2f}{p99:>10.2f}")
    for name in ("isolated", "run() isolated"):
        median = statistics.median(samples[name]) / 1000
        print(f"goal: {name} median <= 30 us: {'met' if median <= 30 else 'NOT met'} "
              f"({median:.1f} us)")

    opens = {"open+close in-process": lambda: minildr.open(path).close(),
             "open+close isolated": lambda: minildr.open(path, isolate=True).close()}
    print(f"{'':<24}{'median ms':>10}{'max ms':>10}")
    for name, fn in opens.items():
        values = sorted(timings(fn, args.opens))
        print(f"{name:<24}{statistics.median(values) / 1e6:>10.3f}{values[-1] / 1e6:>10.3f}")

    stop_floor()
    for plugin in (local, remote, spinning, local_cmd, remote_cmd, spinning_cmd):
        plugin.close()
    ratios(out, args.calls, args.rounds, args.big_calls)


if __name__ == "__main__":
    main()
