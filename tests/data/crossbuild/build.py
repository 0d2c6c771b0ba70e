"""Rebuilds the Windows and macOS plugins in this folder, with minildr's own recipe.

    python tests/data/crossbuild/build.py

Each file is made by `minildr.build.build_for`, the steps `minildr.build`
runs, given another target and a cross compiler; so these are the files
minildr.build makes on Windows and macOS, as far as a Linux machine can
make them. They are committed so that the PE and Mach-O readers are tested
on real toolchains' output on every machine (tests/formats/test_crossbuild.py);
that test also rebuilds them here when the tools are installed, and checks
that the new files carry the same manifest and exports.

Tools (Debian): gcc-mingw-w64-x86-64 for Windows; clang and lld (ld64.lld)
for macOS. What works, and why:

- Windows: x86_64-w64-mingw32-gcc, as build.py calls gcc. `-s` drops the
  debug information of MinGW's start-up objects (86 kB -> 13 kB).
- Windows, MSVC's way: clang-cl (LLVM's cl-compatible driver) and lld-link,
  given build.py's cl command line through msvc/clang-cl, a shim for POSIX
  paths (see there). There is no MSVC C runtime here, so only greet, which
  calls no C library function, is built, with `/Zl` and msvc/entry.c's entry.
- macOS: `clang -target x86_64-apple-macos11` (and arm64-apple-macos11),
  linked by `-fuse-ld=lld` (ld64.lld, LLVM's Mach-O linker). There is no
  macOS SDK here, so macos-stub/ stands in for the two parts the examples
  need: the C standard's prototypes (`-nostdlibinc -isystem macos-stub/include`,
  so glibc's headers are never used for a Mac) and a libSystem.tbd stub
  (`-L macos-stub`, found by clang's usual `-lSystem`). See macos-stub/README.md.
- macOS universal: `llvm-lipo -create` joins the two greet dylibs into one
  file with a slice for each CPU, as Apple's `lipo` does.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minildr import Contract, Platform          # noqa: E402
from minildr.build import Compiler, _identify, build_for  # noqa: E402

EXAMPLES = ROOT / "examples"
STUB = HERE / "macos-stub"
VERSION = "1.0.0"

COMMAND = Contract.from_header(EXAMPLES / "command" / "command.h", name="command", version="1.1")
# name: (sources, exports header, contracts)
PLUGINS: Dict[str, tuple] = {
    "greet": ([EXAMPLES / "greet" / "greet.c"], EXAMPLES / "greet" / "greet.h", ()),
    "echo": ([EXAMPLES / "echo" / "echo.c"], EXAMPLES / "echo" / "echo.h", ()),
    "upper": ([EXAMPLES / "command" / "upper.c"], EXAMPLES / "command" / "upper.h", (COMMAND,)),
}


@dataclasses.dataclass(frozen=True)
class Target:
    folder: str                  # where its files go, under this folder
    platform: Platform           # what the manifest records
    command: Tuple[str, ...]     # the compiler and the flags that choose the target
    cflags: Tuple[str, ...]
    tools: Tuple[str, ...]       # programs that must be on PATH
    plugins: Tuple[str, ...] = tuple(PLUGINS)
    extra_sources: Tuple[Path, ...] = ()
    posix_only: bool = False     # its compiler is a script (msvc/clang-cl)


MACOS_FLAGS = ("-fuse-ld=lld", "-nostdlibinc", "-isystem", str(STUB / "include"), f"-L{STUB}")
TARGETS = [
    Target("windows-x86_64", Platform("windows", "x86_64", 64), ("x86_64-w64-mingw32-gcc",),
           ("-s",), ("x86_64-w64-mingw32-gcc",)),
    Target("windows-msvc-x86_64", Platform("windows", "x86_64", 64),
           (str(HERE / "msvc" / "clang-cl"), "--target=x86_64-pc-windows-msvc"),
           ("-fuse-ld=lld", "/Zl"), ("clang", "lld-link"),
           plugins=("greet",), extra_sources=(HERE / "msvc" / "entry.c",), posix_only=True),
    Target("macos-x86_64", Platform("darwin", "x86_64", 64),
           ("clang", "-target", "x86_64-apple-macos11"), MACOS_FLAGS, ("clang", "ld64.lld")),
    Target("macos-arm64", Platform("darwin", "aarch64", 64),
           ("clang", "-target", "arm64-apple-macos11"), MACOS_FLAGS, ("clang", "ld64.lld")),
]


def find_tool(tool: str) -> Optional[str]:
    """A program on PATH, or one of LLVM's where clang looks (Debian: llvm-14/bin)."""
    found = shutil.which(tool)
    if found is None and tool in ("ld64.lld", "lld-link", "llvm-lipo") and shutil.which("clang"):
        asked = subprocess.run(["clang", f"-print-prog-name={tool}"], capture_output=True,
                               text=True).stdout.strip()
        found = asked if os.path.isabs(asked) and os.path.exists(asked) else None
    return found


def missing_tools(target: Target) -> List[str]:
    """What this machine lacks to build for `target`."""
    if target.posix_only and os.name != "posix":
        return [f"a POSIX system (to run {os.path.basename(target.command[0])}, a script)"]
    needed = [target.command[0], *target.tools]
    return [tool for tool in dict.fromkeys(needed) if find_tool(tool) is None]


def compiler_for(target: Target) -> Compiler:
    found = _identify(shutil.which(target.command[0]))
    return dataclasses.replace(found, target_flags=target.command[1:])


def build_plugin(target: Target, name: str, out_dir: Path) -> Path:
    """One plugin of PLUGINS, built for `target` into `out_dir`."""
    sources, header, contracts = PLUGINS[name]
    return build_for(target.platform, compiler_for(target),
                     [*sources, *target.extra_sources], name=name, version=VERSION,
                     exports=header, contracts=contracts, out_dir=out_dir,
                     cflags=target.cflags)


def build_target(target: Target, out_dir: Path) -> List[Path]:
    return [build_plugin(target, name, out_dir) for name in target.plugins]


UNIVERSAL = ("macos-universal", "greet", ("macos-x86_64", "macos-arm64"))


def build_universal(out_dir: Path, slices: List[Path]) -> Path:
    """One Mach-O file holding a slice per CPU (a "fat" or universal binary)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / slices[0].name
    subprocess.run([find_tool("llvm-lipo"), "-create", *map(str, slices), "-output", str(out)],
                   check=True)
    return out


def main() -> None:
    logging.basicConfig(format="%(message)s")      # compiler warnings, if any
    for target in TARGETS:
        missing = missing_tools(target)
        if missing:
            sys.exit(f"{target.folder}: {', '.join(missing)} not found "
                     "(see this script's docstring)")
        for path in build_target(target, HERE / target.folder):
            print(f"{path.relative_to(HERE)}: {path.stat().st_size} bytes")
    folder, name, parts = UNIVERSAL
    if find_tool("llvm-lipo") is None:
        sys.exit(f"{folder}: llvm-lipo not found (Debian: llvm)")
    path = build_universal(HERE / folder, [HERE / p / f"{name}.dylib" for p in parts])
    print(f"{path.relative_to(HERE)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
