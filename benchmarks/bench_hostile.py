"""Hostile-input benchmark: does reading a plugin cost time linear in its size?

Side by side in one run, interleaved round by round:

- plan(N)      minildr.native.plan on a plugin with N exports (step 1 of the
               native loader: every symbol name read from the string table),
               for N = 1,000 and 10,000; the ratio should be near 10, not 100
- manifest(N)  minildr.read_manifest on the same files (image cache cleared)
- lookup       a typed lookup on a plugin whose manifest declares 500
               structs: the first (the types parsed once) and the next ones
               (cached: the review measured 1.4-5 s for *each* lookup)

    python benchmarks/bench_hostile.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import minildr  # noqa: E402
from minildr import ctype, image  # noqa: E402


def build_exports(out: Path, count: int) -> Path:
    src = out / f"many{count}"
    src.mkdir()
    (src / "many.c").write_text("".join(f"int export_number_{i}(void) {{ return {i}; }}\n"
                                        for i in range(count)))
    (src / "many.h").write_text("".join(f"int export_number_{i}(void);\n"
                                        for i in range(count)))
    return minildr.build([src / "many.c"], name=f"many{count}", exports=src / "many.h",
                         out_dir=out)


def build_types(out: Path, count: int) -> Path:
    src = out / "types"
    src.mkdir()
    structs = "".join(f"struct s{i} {{ int a; double b; char *c; }};\n" for i in range(count))
    (src / "typed.h").write_text("#ifndef TYPED_H\n#define TYPED_H\n" + structs
                                 + "int first(struct s0 *p);\n#endif\n")
    (src / "typed.c").write_text('#include "typed.h"\nint first(struct s0 *p) { return p->a; }\n')
    return minildr.build([src / "typed.c"], name="typed", exports=src / "typed.h", out_dir=out)


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        small, large = build_exports(out, 1_000), build_exports(out, 10_000)
        typed = build_types(out, 500)
        times: dict = {}
        for _ in range(args.rounds):
            for label, path in (("1,000", small), ("10,000", large)):
                times.setdefault(f"plan({label})", []).append(
                    timed(lambda: minildr.native.plan(path)))
                image.clear_cache()
                times.setdefault(f"manifest({label})", []).append(
                    timed(lambda: minildr.read_manifest(path)))
            ctype.canonical.cache_clear()
            ctype.pointer_to.cache_clear()
            with minildr.open(typed) as plugin:
                times.setdefault("lookup, first", []).append(
                    timed(lambda: plugin.lookup("first", "int (struct s0 *)")))
                times.setdefault("lookup, next", []).append(
                    timed(lambda: plugin.lookup("first", "int (struct s0 *)")))
        medians = {k: statistics.median(v) for k, v in times.items()}
        for key, seconds in medians.items():
            print(f"{key:<20} {seconds * 1000:10.2f} ms")
        for what in ("plan", "manifest"):
            ratio = medians[f"{what}(10,000)"] / medians[f"{what}(1,000)"]
            print(f"{what}: 10x the exports costs {ratio:.1f}x the time (linear: ~10)")


if __name__ == "__main__":
    main()
