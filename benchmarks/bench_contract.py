"""Contract benchmark: a proxy method call against a raw cffi call of the same function.

The raw side is what a careful host writes by hand with cffi: the vtable
declared with ffi.cdef, the library opened with ffi.dlopen, the function
pointer fetched once, and the same work per call as the proxy does (encode
the str argument, allocate the out-pointer and the error buffer, check the
status, copy the result, give it back with release(), decode it). The
proxy adds only its checks and the method dispatch.

Both run in this one process on the same plugin, in short batches that
alternate (raw, contract, raw, contract, ...); each figure is the best batch,
the one least disturbed by whatever else the machine is doing.

    python benchmarks/bench_contract.py

Goal (issue: contracts): a contract-method call <= 1.3x the raw cffi call.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cffi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import minildr  # noqa: E402
from timing import best_of  # noqa: E402  (benchmarks/timing.py)
from minildr.contracts import proxy  # noqa: E402




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--calls", type=int, default=2000, help="calls per batch")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="minildr-bench-") as out:  # goes however the run ends
        compare(args, Path(out))


def compare(args: argparse.Namespace, out: Path) -> None:
    """The contract's calls against cffi's by hand, on one `upper` plugin built into `out`."""
    folder = ROOT / "examples" / "command"
    contract = minildr.Contract.from_header(folder / "command.h", version="1.1")
    path = minildr.build([folder / "upper.c"], name="upper", exports=folder / "upper.h",
                         contracts=[contract], out_dir=out)

    # The raw side: cffi by hand, same declarations, same library file.
    raw_ffi = cffi.FFI()
    raw_ffi.cdef(proxy.host_ffi_source(contract) + "\nextern command_t upper;  /* const in C, but cffi reads const globals as constants */")
    lib = raw_ffi.dlopen(str(path))
    vtable = raw_ffi.addressof(lib, "upper")
    run, name, release = vtable.run, vtable.name, vtable.release
    new, string = raw_ffi.new, raw_ffi.string

    def raw_run(line: str) -> str:
        output = new("char *[1]")
        err = new("minildr_error *")
        if run(line.encode(), output, err):
            raise RuntimeError(string(err.message).decode())
        p = output[0]
        try:
            return string(p).decode()
        finally:
            release(p)

    def raw_name() -> str:
        return string(name()).decode()

    with minildr.open(path, contracts=[contract]) as plugin:
        cmd = plugin.lookup("upper", contract)
        line = "a line of text for the command to shout"
        assert cmd.run(line) == raw_run(line) and cmd.name() == raw_name()
        cases = [
            ("run(line) -> str", lambda: raw_run(line), lambda: cmd.run(line)),
            ("name() -> str", raw_name, cmd.name),
        ]
        print(f"{'method':<20} {'raw cffi':>10} {'contract':>10} {'ratio':>7}")
        ratios = {}
        for label, raw, ours in cases:
            best_raw = best_ours = float("inf")
            for _ in range(args.batches):         # interleaved, so both see the same machine
                best_raw = min(best_raw, best_of(raw, args.calls, 1))
                best_ours = min(best_ours, best_of(ours, args.calls, 1))
            ratios[label] = best_ours / best_raw
            print(f"{label:<20} {best_raw * 1e9:>8.0f}ns {best_ours * 1e9:>8.0f}ns "
                  f"{ratios[label]:>6.2f}x")
    goal = ratios["run(line) -> str"]
    print(f"\ncontract call / raw cffi call (run): {goal:.2f}x (goal <= 1.3x): "
          f"{'met' if goal <= 1.3 else 'NOT met'}")
    lib = None


if __name__ == "__main__":
    main()
