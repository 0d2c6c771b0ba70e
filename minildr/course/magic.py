"""%%minildr: a notebook cell of C, built into a plugin, loaded, and bound to a name.

    %load_ext minildr

    %%minildr greet
    const char *greet(void) { return "Hello from a cell"; }

    greet.lookup("greet", "const char *(void)")()

The cell is the plugin's one source file, so the compiler's messages carry the
cell's own line numbers ("cell:3:5: error: ..."). What the plugin exports is
either an exports header given with --exports, or read from the cell itself:
every function and variable it defines without `static`. Running the cell
again after an edit builds a new file and opens it (the load path in image.py
treats a rebuilt file as new), and only then closes the old plugin. A cell
that fails to build or open closes the old plugin too and binds its name to a
`FailedCell`, whose every use raises CellBuildFailed: the name never goes on
meaning code the cell no longer holds (a check would pass on the old build).

The steps, each a function: `cell_exports` (the declarations a cell makes),
`build_cell` (write the cell, build it), and `MinildrMagics.minildr` (parse
the magic's arguments, build, open, bind).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from pycparser import c_ast, c_generator

from .. import ctype
from ..atomic import write_atomically
from ..build import INCLUDE_DIR, build, find_compiler, preprocess_command
from ..contracts.contract import Contract
from ..errors import BuildError, CellBuildFailed, PluginError
from ..loader import Plugin, open as open_plugin

DEFAULT_OUT_DIR = Path("build") / "cells"
CELL = "cell"             # how the cell's file is named in compiler messages


def split_line(line: str, windows: bool = os.name == "nt") -> List[str]:
    """The magic line's words, quoted as in a shell; on Windows, backslashes stay.

    A POSIX shell reads a backslash as an escape, so a path like C:\\Users\\h.h
    would lose its backslashes; Windows paths are made of them.
    """
    if not windows:
        return shlex.split(line)
    return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] and w[0] in "\"'" else w
            for w in shlex.split(line, posix=False)]


# ---------------------------------------------------------------------------
# 1. what a cell exports
# ---------------------------------------------------------------------------
def _include_lines(source: str) -> List[str]:
    return [line for line in source.splitlines() if re.match(r"\s*#\s*include\b", line)]


def cell_exports(source_file: Path, contracts: Sequence[Contract] = (),
                 cflags: Sequence[str] = ()) -> str:
    """An exports header for a C file: its #include lines and the non-static definitions.

    The file is preprocessed (against the stand-in standard headers, as
    build() reads exports headers) and parsed; each function it defines
    becomes a prototype, each variable an `extern` declaration.
    """
    compiler = find_compiler()
    work = source_file.parent
    forced = []
    for c in contracts:
        write_atomically(work / c.filename, c.text)
        forced.append(work / c.filename)
    cmd = preprocess_command(compiler, source_file, [work, INCLUDE_DIR], cflags, forced)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(CELL, f"the cell does not preprocess:\n{done.stderr.strip()}")
    try:
        ast = ctype.parse(done.stdout, str(source_file))
    except ctype.CTypeError as exc:
        # Most often a plain mistake in the C: then the compiler says it best.
        errors = _syntax_errors(compiler, source_file, [work, INCLUDE_DIR], forced, cflags)
        if errors:
            raise BuildError(CELL, f"the C compiler failed:\n{errors}") from None
        raise BuildError(CELL, f"cannot read the cell's declarations ({exc}); give its "
                               "exports in a header with --exports") from None
    gen = c_generator.CGenerator()
    declarations = []
    for node in ast.ext:
        if node.coord is None or Path(node.coord.file) != source_file:
            continue
        if isinstance(node, c_ast.FuncDef) and "static" not in node.decl.storage:
            declarations.append(gen.visit(node.decl) + ";")
        elif (isinstance(node, c_ast.Decl) and node.name and "static" not in node.storage
              and "extern" not in node.storage and not isinstance(node.type, c_ast.FuncDecl)):
            decl = c_ast.Decl(node.name, node.quals, node.align, ["extern"], node.funcspec,
                              node.type, None, None)
            declarations.append(gen.visit(decl) + ";")
    if not declarations:
        raise BuildError(CELL, "defines no function or variable to export (everything is "
                               "static?); define at least one without `static`")
    return "\n".join([*_include_lines(source_file.read_text()), *declarations]) + "\n"


def _syntax_errors(compiler: Any, source_file: Path, include_dirs: Sequence[Path],
                   forced: Sequence[Path], cflags: Sequence[str]) -> str:
    """The compiler's complaints about the cell, if it has any ('' if it compiles)."""
    if compiler.family == "msvc":
        cmd = [compiler.path, "/nologo", "/Zs", *[f"/I{d}" for d in include_dirs],
               *[f"/FI{f}" for f in forced], *cflags, str(source_file)]
    else:
        cmd = [compiler.path, "-fsyntax-only", *[f"-I{d}" for d in include_dirs],
               *[a for f in forced for a in ("-include", str(f))], *cflags, str(source_file)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return (done.stdout + done.stderr).strip() if done.returncode != 0 else ""


# ---------------------------------------------------------------------------
# 2. build the cell
# ---------------------------------------------------------------------------
def _in_cell_terms(message: str, source_file: Path, out_dir: Path) -> str:
    """Compiler messages as the learner sees the cell: 'cell:LINE:COL', no machine paths."""
    message = message.replace(str(source_file), CELL)
    return message.replace(str(out_dir) + os.sep, "")


def cell_folder(out_dir: Path, name: str, source: str, contracts: Sequence[Contract],
                cflags: Sequence[str]) -> Path:
    """Where a cell's files are written: a folder named after what goes into its build.

    Two kernels building the same NAME in one folder at once (a duplicated
    notebook, `make check` beside an open notebook) each write and compile
    their own cell's files: a cell never compiles another kernel's text.
    The same cell always gets the same folder, so a rerun rewrites nothing.
    """
    digest = hashlib.sha256("\0".join([source, *(c.text for c in contracts), *cflags])
                            .encode("utf-8")).hexdigest()[:16]
    return Path(out_dir).resolve() / f"{name}.src" / digest


def build_cell(source: str, *, name: str, version: str = "0.1.0",
               exports: Optional[Path] = None, contracts: Sequence[Contract] = (),
               out_dir: Path = DEFAULT_OUT_DIR, cflags: Sequence[str] = ()) -> Path:
    """Build a cell's C text into `out_dir/<name><SUFFIX>`; BuildError in the cell's terms.

    Every file is written whole or not at all (atomic.py), in a folder of its own
    (cell_folder), so a build running beside it never sees it half-written.
    """
    source = source if source.endswith("\n") else source + "\n"
    src_dir = cell_folder(out_dir, name, source, contracts, cflags)
    src_dir.mkdir(parents=True, exist_ok=True)
    source_file = src_dir / f"{name}.c"
    if not source_file.exists() or source_file.read_text() != source:
        write_atomically(source_file, source)
    try:
        if exports is None:
            exports = src_dir / f"{name}.h"
            header = cell_exports(source_file, contracts, cflags)
            # Rewriting an unchanged header would still be a change to the build.
            if not exports.exists() or exports.read_text() != header:
                write_atomically(exports, header)
        return build([source_file], name=name, version=version, exports=exports,
                     contracts=contracts, out_dir=out_dir, cflags=cflags)
    except BuildError as exc:
        where = exc.path or name
        if where == str(source_file):
            where = CELL
        elif where.startswith(str(src_dir) + os.sep):
            where = os.path.relpath(where, src_dir)
        raise BuildError(where, _in_cell_terms(exc.reason, source_file, src_dir)) from None


# ---------------------------------------------------------------------------
# 3. the magic
# ---------------------------------------------------------------------------
def _arguments() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%minildr", add_help=False,
                                description="Build this cell's C code into a plugin, open "
                                            "it, and bind it to NAME.")
    p.add_argument("name", help="the plugin's name, and the Python name it is bound to")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--exports", type=Path, help="an exports header (default: what the cell "
                                                "defines without static)")
    p.add_argument("--contract", action="append", default=[], metavar="FILE[:NAME:VERSION]")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    p.add_argument("--cflag", action="append", default=[])
    p.add_argument("--loader", default="system", choices=["system", "native"])
    p.add_argument("--isolate", nargs="?", type=float, const=True, default=False,
                   metavar="SECONDS",
                   help="open it in a worker process: a crash or a hang in the cell's code "
                        "is then an error (PluginCrashed, PluginTimeout), not a dead kernel")
    return p


class FailedCell:
    """What a %%minildr cell's name refers to after its last build (or open) failed.

    Not the previous plugin: a check calling it would judge the old code and
    could pass. Every use (an attribute, a call, a `with`, a path) raises
    CellBuildFailed saying the cell's last build failed; its repr says so
    too, without raising, so that displaying it in a notebook still works.
    """

    __slots__ = ("_name", "_why")

    def __init__(self, name: str, why: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_why", why)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise CellBuildFailed(None, f"`{self._name}`: this cell's last build failed "
                                    f"({self._why}); fix the cell and run it again")

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):           # tools probing (_repr_html_, __array__...)
            raise AttributeError(attribute)
        self._refuse()

    def __setattr__(self, attribute: str, value: Any) -> None:
        self._refuse()

    __call__ = __enter__ = __exit__ = __fspath__ = __iter__ = __getitem__ = __len__ = _refuse

    def __repr__(self) -> str:
        return f"<{self._name}: the cell's last build failed; fix the cell and run it again>"


def _first_line(error: BaseException) -> str:
    """The line of an error that says most, short enough to quote in another message:
    the compiler's first "error:" line if it has one, else the first line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    line = (errors or lines or [type(error).__name__])[0].rstrip(":")
    return line if len(line) <= 160 else line[:157] + "..."


def _summary(plugin: Plugin) -> str:
    exports = "; ".join(f"{e.name}: {e.ctype}" for e in plugin.manifest.exports.values())
    where = " in a worker process" if plugin.loader == "isolated" else ""
    return f"{plugin.name} {plugin.version}: built and opened{where}; exports {exports}"


try:
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, cell_magic, magics_class
except ImportError:  # pragma: no cover - the magic needs IPython; the package does not
    Magics = None  # type: ignore[assignment,misc]


if Magics is not None:
    @magics_class
    class MinildrMagics(Magics):
        """The %%minildr cell magic (see the module docstring)."""

        def __init__(self, shell: Any) -> None:
            super().__init__(shell)
            self.plugins: Dict[str, Plugin] = {}      # name -> the plugin a cell opened

        @cell_magic
        def minildr(self, line: str, cell: str) -> None:
            try:
                args = _arguments().parse_args(split_line(line))
            except SystemExit:
                raise UsageError("usage: %%minildr NAME [--version V] [--exports HEADER] "
                                 "[--contract FILE[:NAME:VERSION]] [--out-dir DIR] "
                                 "[--cflag FLAG] [--loader system|native] "
                                 "[--isolate [SECONDS]]") from None
            if not args.name.isidentifier():
                raise UsageError(f"{args.name!r} is not a Python name; the plugin is bound to "
                                 "its name, so use letters, digits and '_'")
            try:
                contracts = [Contract.from_spec(c) for c in args.contract]
                path = build_cell(cell, name=args.name, version=args.version,
                                  exports=args.exports, contracts=contracts,
                                  out_dir=args.out_dir, cflags=args.cflag)
                plugin = open_plugin(path, contracts=contracts, loader=args.loader,
                                     isolate=args.isolate)
            except PluginError as exc:
                self._unbind(args.name, _first_line(exc))
                # The compiler's own words, without a Python traceback around them.
                raise UsageError(str(exc)) from None
            except BaseException as exc:        # interrupted, or a bug: not built either
                self._unbind(args.name, _first_line(exc))
                raise
            self._close_old(args.name)
            self.plugins[args.name] = plugin
            self.shell.user_ns[args.name] = plugin
            print(_summary(plugin))

        def _close_old(self, name: str) -> None:
            old = self.plugins.pop(name, None)
            if old is not None:
                old.close()

        def _unbind(self, name: str, why: str) -> None:
            """The cell did not build: its name must not go on meaning the old plugin."""
            self.shell.user_ns[name] = FailedCell(name, why)
            self._close_old(name)

    def load(ipython: Any) -> None:
        ipython.register_magics(MinildrMagics)
