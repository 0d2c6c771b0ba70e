"""Hostile-input benchmark: does reading a plugin cost time linear in its size?

Side by side in one run, interleaved round by round:

- plan(N)      minildr.native.plan on a plugin with N exports (step 1 of the
               native loader: every symbol name read from the string table),
               for N = 1,000 and 10,000; the ratio should be near 10, not 100
- manifest(N)  minildr.read_manifest on the same files (image cache cleared)
- lookup       a typed lookup on a plugin whose manifest declares 500
               structs: the first (the types parsed once) and the next ones
               (cached: the review measured 1.4-5 s for *each* lookup)
- types(N)     a plugin with N structs (each a typedef) and N functions each
               taking its own: open it and look up every export with its
               type, N = 250, 500, 1,000, 2,000 (--types-sizes); the time per
               declaration should be flat (each lookup used to read all the
               declarations again: N lookups cost N * N)

    python benchmarks/bench_hostile.py [--rounds 5] [--types-sizes 250,500,1000,2000]
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


def build_typed_exports(out: Path, count: int) -> Path:
    src = out / f"typed{count}"
    src.mkdir()
    (src / "typed.h").write_text(
        "#ifndef TYPED_H\n#define TYPED_H\n"
        + "".join(f"typedef struct s{i} {{ int a; double b; char *c; }} t{i};\n"
                  f"int get{i}(t{i} *p);\n" for i in range(count)) + "#endif\n")
    (src / "typed.c").write_text('#include "typed.h"\n' + "".join(
        f"int get{i}(t{i} *p) {{ return p->a + {i}; }}\n" for i in range(count)))
    return minildr.build([src / "typed.c"], name=f"typed{count}", exports=src / "typed.h",
                         out_dir=out)


def look_up_every_export(path: Path) -> None:
    """Open a plugin and look up each export with its type, as a host binding all of them."""
    with minildr.open(path) as plugin:
        for name, export in plugin.manifest.exports.items():
            plugin.lookup(name, export.ctype)


def clear_type_caches() -> None:
    for cache in (ctype.canonical, ctype.pointer_to, ctype.type_names, ctype.cffi_types):
        cache.cache_clear()


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--types-sizes", default="250,500,1000,2000",
                    help="numbers of declarations for types(N), comma-separated")
    args = ap.parse_args()
    sizes = [int(n) for n in args.types_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        small, large = build_exports(out, 1_000), build_exports(out, 10_000)
        typed = build_types(out, 500)
        many_types = {n: build_typed_exports(out, n) for n in sizes}
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
            for n, path in many_types.items():
                clear_type_caches()
                image.clear_cache()
                times.setdefault(f"types({n:,})", []).append(
                    timed(lambda: look_up_every_export(path)))
        medians = {k: statistics.median(v) for k, v in times.items()}
        for key, seconds in medians.items():
            print(f"{key:<20} {seconds * 1000:10.2f} ms")
        for what in ("plan", "manifest"):
            ratio = medians[f"{what}(10,000)"] / medians[f"{what}(1,000)"]
            print(f"{what}: 10x the exports costs {ratio:.1f}x the time (linear: ~10)")
        per = {n: medians[f"types({n:,})"] / (2 * n) for n in sizes}
        for n in sizes:
            print(f"types({n:,}): {per[n] * 1e3:.3f} ms per declaration "
                  f"({per[n] / per[sizes[0]]:.2f}x the {sizes[0]:,} figure; linear: ~1)")


if __name__ == "__main__":
    main()
