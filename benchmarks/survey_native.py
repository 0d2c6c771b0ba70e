"""The survey: every shared library of this machine's library folder, through both loaders.

    python benchmarks/survey_native.py                  # /usr/lib/<multiarch>, 20 s per library
    python benchmarks/survey_native.py --folder DIR --timeout 10 --list

Each ELF shared object (ET_DYN, not an executable) in the folder, symlinks
resolved and counted once, is loaded and closed in its own forked child
process by glibc's dlopen and, in another, by minildr.native.load: a crash
or a hang costs one verdict, never the survey. The table counts: loaded by
both, loaded by glibc only (with the native loader's reasons), by the
native loader only, refused by both, and crashed or hung (either loader);
the goal is that the native loader loads at least 99% of what glibc loads
and crashes on none.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
MULTIARCH = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"


def shared_objects(folder: Path) -> List[Path]:
    """The ELF shared libraries in `folder` (not its subfolders), each real file once."""
    seen, found = set(), []
    for entry in sorted(folder.iterdir()):
        if ".so" not in entry.name or not entry.is_file():
            continue
        real = entry.resolve()
        if real in seen:
            continue
        seen.add(real)
        with open(real, "rb") as f:
            head = f.read(64)
        if head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[16:18], "little") == 3:
            found.append(real)
    return found


def load(mode: str, path: str, seconds: int) -> int:
    """In a forked child: 0 loaded (and closed), 1 refused (the reason on stdout), 2 other error."""
    signal.alarm(seconds)
    try:
        if mode == "glibc":
            handle = ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
            ctypes.CDLL(None).dlclose(ctypes.c_void_p(handle._handle))
        else:
            import minildr.native                        # the child's loader under test
            from minildr.errors import PluginError
            try:
                minildr.native.load(path).close()
            except PluginError as exc:
                print(str(exc).replace(path, "FILE"), flush=True)
                return 1
        return 0
    except OSError as exc:
        print(str(exc).replace(path, "FILE"), flush=True)
        return 1
    except BaseException as exc:                          # noqa: BLE001 - a verdict, not a failure
        print(f"{type(exc).__name__}: {exc}".replace(path, "FILE")[:300], flush=True)
        return 2


def verdict(mode: str, path: str, seconds: int) -> str:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.dup2(write, 1)
        os.dup2(write, 2)
        os._exit(load(mode, path, seconds))
    os.close(write)
    with os.fdopen(read, errors="replace") as f:
        said = f.read().strip().splitlines()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "hung" if sig == signal.SIGALRM else f"crashed ({signal.Signals(sig).name})"
    code = os.WEXITSTATUS(status)
    reason = said[-1] if said else ""
    return {0: "loaded", 1: f"refused: {reason}"}.get(code, f"error: {reason}")


def child(mode: str, paths: List[str], seconds: int) -> None:
    if mode == "native":
        import minildr.native  # noqa: F401  (imported once, before the forks)
    print(json.dumps({p: verdict(mode, p, seconds) for p in paths}))


def reason(v: str) -> str:
    """A refusal's reason without the file's own details: what to group by."""
    text = v.split(": ", 1)[-1].replace("FILE: ", "")
    text = re.sub(r"'[^']*'|\b0x[0-9a-f]+\b|\d+", "…", text)
    return text[:110]


def run(mode: str, paths: List[Path], seconds: int, root: Path) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--timeout", str(seconds),
                           *map(str, paths)], capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode:
        sys.exit(f"the {mode} survey failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(glibc: Dict[str, str], native: Dict[str, str], show: bool) -> None:
    kind = lambda v: v.split(":")[0].split(" (")[0]      # noqa: E731
    rows: Counter = Counter()
    why: Counter = Counter()
    crashed = []
    for path in glibc:
        g, n = kind(glibc[path]), kind(native[path])
        if g in ("crashed", "hung", "error") or n in ("crashed", "hung", "error"):
            rows["crashed, hung or failed (either loader)"] += 1
            crashed.append(f"{Path(path).name}: glibc {glibc[path][:60]}; native {native[path][:120]}")
        elif g == n == "loaded":
            rows["loaded by both"] += 1
        elif g == "loaded":
            rows["loaded by glibc only"] += 1
            why[reason(native[path])] += 1
        elif n == "loaded":
            rows["loaded by minildr.native only"] += 1
        else:
            rows["refused by both"] += 1
    both, by_glibc = rows["loaded by both"], rows["loaded by both"] + rows["loaded by glibc only"]
    print(f"{len(glibc)} shared objects")
    for name in ("loaded by both", "loaded by glibc only", "loaded by minildr.native only",
                 "refused by both", "crashed, hung or failed (either loader)"):
        print(f"  {name:<42} {rows[name]:>5}")
    if by_glibc:
        print(f"minildr.native loads {both} of the {by_glibc} glibc loads: {100 * both / by_glibc:.1f}%")
    if why:
        print("why minildr.native refused what glibc loads:")
        for text, count in why.most_common():
            print(f"  {count:>4}  {text}")
    for line in crashed:
        print(f"  crashed/hung: {line}")
    if show:
        for path in glibc:
            print(f"{Path(path).name:<40} glibc: {glibc[path][:50]:<50} native: {native[path][:100]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("/usr/lib") / MULTIARCH)
    ap.add_argument("--timeout", type=int, default=20, help="seconds per library and loader")
    ap.add_argument("--root", type=Path, default=ROOT, help="the minildr checkout to survey")
    ap.add_argument("--list", action="store_true", help="every library's two verdicts too")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.paths, args.timeout)
    paths = shared_objects(args.folder)
    start = time.perf_counter()
    glibc = run("glibc", paths, args.timeout, args.root)
    native = run("native", paths, args.timeout, args.root)
    print(f"survey of {args.folder}: {time.perf_counter() - start:.0f} s")
    table(glibc, native, args.list)


if __name__ == "__main__":
    main()
