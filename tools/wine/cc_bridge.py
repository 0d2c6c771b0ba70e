"""The Linux half of tools/wine/gcc_bridge.c: runs Debian's MinGW-w64 gcc for a
Windows program under wine, translating its Windows paths to this machine's.

    python3 tools/wine/cc_bridge.py SPOOL_DIR WINEPREFIX

Serves requests until killed. Paths: "C:\\x\\y" -> $WINEPREFIX/dosdevices/c:/x/y
(arguments), and #include "C:/x/y" in the sources resolves through -iquote on a
folder of drive-letter links. Unix paths in gcc's messages are mapped back to
the Windows spelling the caller used, so its output reads as on Windows.
Only for tools/windows-under-wine.sh; never part of the course.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

GCC = os.environ.get("WINE_BRIDGE_GCC", "x86_64-w64-mingw32-gcc")
# A drive path at the start of an argument, after -I/-L/-o glued to it, or after "=".
DRIVE_PATH = re.compile(r"(?:^|(?<=^-I)|(?<=^-L)|(?<=^-o)|(?<==))([A-Za-z]):([\\/][^\"'<>|;,]*)?")


def drive_links(spool: Path, prefix: Path) -> Path:
    """A folder with one link per wine drive, spelled C: and c:, for -iquote."""
    root = spool / "drives"
    root.mkdir(exist_ok=True)
    for dev in (prefix / "dosdevices").iterdir():
        if re.fullmatch(r"[a-z]:", dev.name):
            for name in (dev.name, dev.name.upper()):
                link = root / name
                if not link.is_symlink():
                    link.symlink_to(dev.resolve())
    return root


def to_unix(arg: str, root: Path, seen: dict) -> str:
    def one(m: re.Match) -> str:
        win = m.group(0)
        unix = str(root / (m.group(1).upper() + ":")) + (m.group(2) or "/").replace("\\", "/")
        seen[unix] = win
        return unix
    arg = DRIVE_PATH.sub(one, arg)
    # A relative path (build\ex05\fragile.c, -Iinclude\x): Windows' separators.
    if "\\" in arg and '"' not in arg and (not arg.startswith("-") or arg[:2] in ("-I", "-L", "-o")):
        unix = arg.replace("\\", "/")
        seen[unix] = arg
        arg = unix
    return arg


def to_windows(text: str, root: Path, seen: dict) -> str:
    for unix, win in sorted(seen.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(unix, win)
    # Anything else under the drive links (an included header): C:/x/y
    return re.sub(re.escape(str(root)) + r"/([A-Za-z]:)", r"\1", text)


def serve_one(req: Path, root: Path) -> None:
    fields = req.read_bytes().decode("utf-8").split("\0")[:-1]
    cwd, args = fields[0], fields[1:]
    seen: dict = {}
    unix_cwd = to_unix(cwd, root, seen)
    cmd = [GCC, "-iquote", str(root), *[to_unix(a, root, seen) for a in args]]
    if args == ["--version"]:
        cmd = [GCC, "--version"]
    try:
        done = subprocess.run(cmd, cwd=unix_cwd, capture_output=True)
        status, out, err = done.returncode, done.stdout, done.stderr
    except OSError as exc:
        status, out, err = 127, b"", f"gcc (wine bridge): {exc}\n".encode()
    out = to_windows(out.decode("utf-8", "replace"), root, seen).encode()
    err = to_windows(err.decode("utf-8", "replace"), root, seen).encode()
    tmp = req.with_suffix(".restmp")
    tmp.write_bytes(f"{status}\n{len(out)}\n".encode() + out + err)
    req.unlink()
    os.replace(tmp, req.with_suffix(".res"))


def main(spool: str, prefix: str) -> None:
    spool_dir = Path(spool)
    spool_dir.mkdir(parents=True, exist_ok=True)
    root = drive_links(spool_dir, Path(prefix))
    alive = spool_dir / "bridge.alive"
    alive.write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    busy: set = set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        try:
            while True:
                for req in spool_dir.glob("*.req"):
                    if req not in busy:
                        busy.add(req)
                        pool.submit(serve_one, req, root).add_done_callback(
                            lambda _f, r=req: busy.discard(r))
                time.sleep(0.005)
        finally:
            alive.unlink(missing_ok=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
