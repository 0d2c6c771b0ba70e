"""The compiler driver: C sources in, a plugin with a manifest out.

minildr's analogue of `go build -buildmode=plugin`. The steps, each a function:

1. `find_compiler`      - $CC, else cc / gcc / clang (cl on Windows).
2. `read_exports`       - preprocess the exports header and record the C type
                          of every function and `extern` variable it declares
                          (the result reused by the next build in this process
                          while nothing the preprocessor read changed: headercache).
3. `manifest_appendix`  - the manifest as C, a note section, appended to the
                          first C source so that it is compiled in that
                          source's compiler run (`manifest_source`: a C file
                          of its own, for MSVC or a build without a C source).
4. `compile_command`    - compile with everything hidden by default; the exports
                          header is force-included into every source inside
                          `#pragma GCC visibility push(default)`, so exactly its
                          declarations are exported, and the compiler checks
                          each definition against its declaration.
5. `check_exports`      - read the result's exports (ELF .dynsym, PE export
                          directory, Mach-O export trie): every declared
                          export is defined, nothing undeclared is exported.
6. install              - move the file into place atomically, so a process
                          that has the old version mapped never sees a half-
                          written file, and return its path carrying the
                          bytes written: `open(build(...))` loads what this
                          build made even if another build has replaced the
                          file since (image.BuiltPath).

The compiler compiles the bytes read: each source, and each header it or the
exports header includes that `HeaderStage` can follow (beside it, "../",
absolute, in the folders of -iquote/-I/-isystem/-idirafter and CPATH /
C_INCLUDE_PATH), is read once through files.py and compiled from that copy.
What the stage cannot follow is still read by the compiler by name (its
docstring lists it: #include MACRO, #include_next, the compiler's own system
folders, -include/-imacros/--sysroot/-iprefix files, "../" through a link).

`build` runs these steps for the machine it runs on; `build_for` runs them for
another target with a cross compiler (tests/data/crossbuild/ is made that way),
and the manifest then records the target's platform, not this machine's.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import ctype, files, headercache
from .atomic import write_atomically
from .formats import elf, macho, pe
from .contracts.contract import INCLUDE_DIR, Contract
from .errors import BuildError, CompilerNotFound, PluginError
from .interrupts import under_lock
from .host import HOST, SUFFIXES, Platform
from .image import built_path
from .progress import progress
from .manifest import ABI_VERSION, NT_MINILDR_MANIFEST, NOTE_OWNER, Export, Manifest

log = logging.getLogger("minildr")

PathLike = Union[str, "os.PathLike[str]"]

HOW_TO_GET_A_COMPILER = {
    "linux": "on Debian/Ubuntu run `sudo apt install build-essential`, on Fedora "
             "`sudo dnf install gcc`",
    "darwin": "run `xcode-select --install` to get Apple's command line tools (clang)",
    "windows": "install 'Build Tools for Visual Studio' and use a 'Developer Command "
               "Prompt', or install MinGW-w64 gcc",
}


@dataclass(frozen=True)
class Compiler:
    path: str
    family: str          # "gcc", "clang" or "msvc"
    version: str         # the first line of `--version`, recorded in the manifest
    # Arguments that choose the target, given to every command the compiler
    # runs (e.g. ("-target", "arm64-apple-macos11") to cross-compile with clang).
    target_flags: Tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# 1. the compiler
# ---------------------------------------------------------------------------
def find_compiler(os_name: str = HOST.os, environ: Optional[Mapping[str, str]] = None) -> Compiler:
    """The C compiler to use: $CC if set, else the platform's usual names."""
    environ = os.environ if environ is None else environ
    wanted = environ.get("CC", "").split()
    candidates = [wanted[0]] if wanted else (
        ["cl", "gcc", "clang", "cc"] if os_name == "windows" else ["cc", "gcc", "clang"])
    for name in candidates:
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return _identify(found)
    looked = f"$CC={environ['CC']!r}" if wanted else ", ".join(candidates)
    raise CompilerNotFound(None, (
        f"no C compiler found (looked for {looked}). minildr.build compiles C source into "
        f"a plugin, so it needs one: {HOW_TO_GET_A_COMPILER.get(os_name, HOW_TO_GET_A_COMPILER['linux'])}; "
        "or, in a conda environment, `conda install -c conda-forge c-compiler`. "
        "Then set CC if it is not on your PATH."))


_SIGCHLD = getattr(signal, "SIGCHLD", None)        # POSIX only
_sigchld_lock = threading.Lock()


def run_tool(cmd: Sequence[str], **kwargs: Any) -> "subprocess.CompletedProcess[str]":
    """Run the compiler (or its preprocessor), output captured as text: its real exit status.

    A process that sets SIGCHLD to SIG_IGN has its children reaped by the
    kernel as they exit (POSIX, wait(2): waitpid then fails with ECHILD),
    and subprocess reports such a child as exit 0: a compiler that failed
    would look like one that succeeded. So the default disposition is put
    back for the run, and SIG_IGN restored after (`_run_reported`, under a
    lock an interrupt cannot leave held: interrupts.under_lock). Only the
    main thread may change a disposition (Python's signal module); from
    another thread such a build is refused, saying why.
    """
    if _SIGCHLD is None or signal.getsignal(_SIGCHLD) != signal.SIG_IGN:
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if threading.current_thread() is not threading.main_thread():
        raise BuildError(None, (
            "this process ignores SIGCHLD (signal.signal(SIGCHLD, SIG_IGN)), so the exit "
            "status of the C compiler cannot be read, and only the main thread may change "
            "that: build from the main thread, or restore signal.SIG_DFL for SIGCHLD"))
    return under_lock(_sigchld_lock, _run_reported, cmd, kwargs)


def _run_reported(cmd: Sequence[str], kwargs: Mapping[str, Any]) -> "subprocess.CompletedProcess[str]":
    """Under _sigchld_lock: the tool run with SIGCHLD's default disposition, SIG_IGN after."""
    signal.signal(_SIGCHLD, signal.SIG_DFL)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    finally:
        signal.signal(_SIGCHLD, signal.SIG_IGN)


@functools.lru_cache(maxsize=None)
def _identify(path: str) -> Compiler:
    if Path(path).stem.lower() == "cl":
        return Compiler(path, "msvc", "MSVC cl")
    try:
        out = run_tool([path, "--version"], timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerNotFound(None, f"the C compiler {path} does not run ({exc}); "
                                     "reinstall it or set CC to another compiler") from None
    first = out.splitlines()[0].strip() if out else Path(path).name
    if Path(path).stem.lower() == "clang-cl":   # LLVM's driver with cl's command line
        return Compiler(path, "msvc", first)
    return Compiler(path, "clang" if "clang" in out else "gcc", first)


# ---------------------------------------------------------------------------
# 2. the exports header
# ---------------------------------------------------------------------------
def preprocess_command(compiler: Compiler, header: Path, include_dirs: Sequence[Path],
                       cflags: Sequence[str] = (),
                       forced_includes: Sequence[Path] = ()) -> List[str]:
    """Preprocess the header as the sources will see it, against stand-in standard headers.

    The contracts are force-included first, as in the compile command, so the
    header can use their types; the stand-ins (see fake_libc/) keep compiler
    extensions out of the text the C parser reads.
    """
    user = preprocessor_flags(cflags)
    if compiler.family == "msvc":
        return [compiler.path, *compiler.target_flags, "/nologo", "/E", "/X", "/I",
                str(ctype.FAKE_LIBC),
                *[f"/I{d}" for d in include_dirs], f"/FI{ctype.FAKE_LIBC / '_msvc.h'}",
                *[f"/FI{f}" for f in forced_includes], *user, str(header)]
    forced = [arg for f in forced_includes for arg in ("-include", str(f))]
    return [compiler.path, *compiler.target_flags, "-E", "-nostdinc", "-I", str(ctype.FAKE_LIBC),
            *[f"-I{d}" for d in include_dirs], *forced, *user,
            "-D__attribute__(x)=", "-D__extension__=", "-D__restrict=", "-D__inline=inline",
            str(header)]


# The flags of `cflags` the exports header is preprocessed with: its macros and where its
# includes are found. Each may take its value joined or as the next word.
_PREPROCESSOR_FLAGS = ("-D", "-U", "-I", "-iquote", "-isystem", "-idirafter", "/D", "/I")


def preprocessor_flags(cflags: Sequence[str]) -> List[str]:
    """The macro and include-folder flags of `cflags`, each with its value (joined, or the
    next word: `-I dir` keeps `dir`, which HeaderStage.flags writes that way)."""
    words, kept, i = list(cflags), [], 0
    while i < len(words):
        flag = next((f for f in _PREPROCESSOR_FLAGS if words[i].startswith(f)), None)
        if flag is not None and words[i] == flag:
            kept += words[i:i + 2]
            i += 2
            continue
        if flag is not None and not (flag == "-I" and words[i].startswith("-I-")):
            kept.append(words[i])
        i += 1
    return kept


def read_exports(compiler: Compiler, header: Path, include_dirs: Sequence[Path],
                 cflags: Sequence[str] = (), forced_includes: Sequence[Path] = (),
                 shown: Optional[Path] = None,
                 work: Optional[Path] = None) -> Tuple[List[ctype.Declaration], str]:
    """The declarations of the exports header, with canonical C types.

    `shown`: the header's own path, for messages, when `header` is its staged copy.
    `work`: the build's own folder; given, the result may come from, and goes to,
    headercache (the same header preprocessed again by this process, nothing it
    read changed: see there), for GCC-style compilers.
    """
    cmd = preprocess_command(compiler, header, include_dirs, cflags, forced_includes)
    header = shown or header
    if work is None or compiler.family == "msvc":
        return _preprocessed_exports(cmd, header)
    cache_key = headercache.key(compiler, cmd, work, header)
    remembered = headercache.lookup(cache_key, work)
    if remembered is not None:
        return list(remembered[0]), remembered[1]
    deps = work / "exports.d"
    started = headercache.now_ns()
    declarations, types = _preprocessed_exports([*cmd, "-MD", "-MF", str(deps)], header)
    headercache.remember(cache_key, (tuple(declarations), types), deps,
                         searched_folders(cmd), work, started)
    return declarations, types


def _preprocessed_exports(cmd: Sequence[str], header: Path) -> Tuple[List[ctype.Declaration], str]:
    """Run the preprocessor's command `cmd` on the exports header and parse what it gives."""
    done = run_tool(cmd)
    if done.returncode != 0:
        raise BuildError(header, f"the exports header does not preprocess:\n{done.stderr.strip()}")
    try:
        declarations, types = ctype.parse_header(done.stdout, str(header))
    except ctype.CTypeError as exc:
        raise BuildError(header, f"cannot read the exports header: {exc}") from None
    if not declarations:
        raise BuildError(header, "the exports header declares no function or extern variable; "
                                 "declare what the plugin exports there")
    return declarations, types


def searched_folders(cmd: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> List[Path]:
    """Every folder a GCC-style preprocessor command searches for an #include besides the
    including file's own: its -I, -iquote, -isystem and -idirafter folders and the
    environment's (CPATH, C_INCLUDE_PATH)."""
    folders = [folder for kind, folder, _ in _folder_flags(cmd) if kind is not None]
    return folders + [folder for _, folder in
                      environment_folders(os.environ if environ is None else environ)]


# ---------------------------------------------------------------------------
# 3. the manifest, as C
# ---------------------------------------------------------------------------
def manifest_source(payload: bytes) -> str:
    """A C file holding `payload` as a minildr note, in the section each format uses."""
    return f"""\
/* The plugin's manifest, generated by minildr.build: do not edit.
 * An ELF-style note (namesz, descsz, type, owner name, JSON payload) placed
 * where each binary format keeps such data, so that tools can read it
 * without running the plugin. */
{manifest_definition(payload)}"""


def manifest_appendix(payload: bytes) -> str:
    """`payload` as a minildr note, to append to the first C source (`manifest_host`).

    The compiler then makes the note in the run that compiles that source,
    instead of starting a compiler and an assembler for a file of its own
    (about 10 ms of a build's 55). Appended, the definition follows whatever
    the source leaves open, so it is written to stand anywhere: it starts on
    a line of its own, after two newlines (a source that ends with a
    backslash or without a newline), it holds no comment (a source that
    ends inside an unterminated comment stays unterminated, and the compiler
    still says so), it is `static` (hidden whatever visibility pragma the
    source left pushed) and it spells attributes and members with names no
    user macro takes (`__used__`, `minildr_*`). `#line` names it in any
    message. MSVC keeps the file of its own: it needs an external name
    (`/include:minildr_manifest`).
    """
    return '\n\n#line 1 "minildr_manifest.c"\n' + manifest_definition(payload, "static ")


def manifest_definition(payload: bytes, storage: str = "") -> str:
    """The C definition of the note, comment-free; `storage` e.g. "static "."""
    text = payload.decode("ascii")
    size = (len(payload) + 3) & ~3
    def c_string(chunk: str) -> str:
        return '"' + chunk.replace("\\", "\\\\").replace('"', '\\"').replace("?", "\\?") + '"'

    # Split before escaping, so that no escape sequence is cut in two.
    chunks = "\n    ".join(c_string(text[i:i + 100]) for i in range(0, len(text), 100))
    return f"""\
#undef MINILDR_MANIFEST_SECTION
#if defined(__APPLE__)
#  define MINILDR_MANIFEST_SECTION __attribute__((__section__("__TEXT,__minildr"), __used__, __aligned__(4)))
#elif defined(_MSC_VER)
#  pragma section(".minildr", read)
#  pragma comment(linker, "/include:minildr_manifest")
#  define MINILDR_MANIFEST_SECTION __declspec(allocate(".minildr"))
#elif defined(_WIN32)
#  define MINILDR_MANIFEST_SECTION __attribute__((__section__(".minildr"), __used__, __aligned__(4)))
#else
#  define MINILDR_MANIFEST_SECTION __attribute__((__section__(".note.minildr"), __used__, __aligned__(4)))
#endif

{storage}MINILDR_MANIFEST_SECTION const struct {{
    unsigned int minildr_namesz, minildr_descsz, minildr_type;
    char minildr_name[8];
    char minildr_desc[{size}];
}} minildr_manifest = {{
    {len(NOTE_OWNER) + 1}, {len(payload)}, {NT_MINILDR_MANIFEST:#x}u, "{NOTE_OWNER}",
    {chunks}
}};
#undef MINILDR_MANIFEST_SECTION
"""


def manifest_host(sources: Sequence[Path], compiler: Compiler) -> Optional[int]:
    """The index of the source the manifest is appended to: the first C source (".c"), for
    GCC-style compilers; None (the manifest gets a file of its own) for MSVC or without one."""
    if compiler.family == "msvc":
        return None
    return next((i for i, src in enumerate(sources) if src.suffix == ".c"), None)


def exports_wrapper(header: Path, os_name: str) -> str:
    """The file force-included into every source: the exports header, made public."""
    if os_name == "windows":       # PE exports are listed in the .def file instead
        return f'#include "{header.as_posix()}"\n'
    return (f"#pragma GCC visibility push(default)\n"
            f'#include "{header.as_posix()}"\n'
            f"#pragma GCC visibility pop\n")


# ---------------------------------------------------------------------------
# 4. the compile command
# ---------------------------------------------------------------------------
# What every ELF plugin is linked with (GNU ld and lld take the same words;
# only ELF targets get them: ld64 and link.exe have their own defaults).
#
# -z relro -z now: full RELRO. With -z now (DF_BIND_NOW) the loader binds
#   every function slot of the GOT at load, so the linker can put those slots
#   inside PT_GNU_RELRO too, and the loader makes them read-only once
#   relocated. Under the default partial RELRO, RELRO covers only the GOT's
#   first entries; the function slots (.got.plt) stay writable for lazy
#   binding for the life of the process, a classic target for overwriting
#   (Drepper, "How To Write Shared Libraries", 2.6 "Increasing Security";
#   ld(1) -z relro, -z now). A plugin is opened with RTLD_NOW anyway, so
#   binding at load costs it nothing more.
# -z noexecstack: the plugin declares it needs no executable stack
#   (PT_GNU_STACK without PF_X). Without the note an object file may leave,
#   the linker could mark the stack executable, and glibc would then make the
#   whole process's stacks executable when the plugin is loaded.
# -Bsymbolic: the plugin's own references to its own exports bind to its
#   own definitions at link time (DF_SYMBOLIC), so a same-named symbol
#   elsewhere in the process (libc's getpid, another plugin loaded with
#   RTLD_GLOBAL) cannot interpose on them. By default a default-visibility
#   definition in a shared library can be preempted, because lookups search
#   the global scope first (Drepper 1.5.4 "Lookup Scope"; DF_SYMBOLIC, what
#   -Bsymbolic sets, is described at the end of 2.2.7 "Avoid Using Exported
#   Symbols", which 1.5.4 points to).
#   Why -Bsymbolic, although Drepper advises never to use DF_SYMBOLIC:
#   - his reasons are that it applies to every interface at once, that the
#     compiler is not told (calls still go through the PLT), and that the
#     object comes first in its own lookup scope. For a plugin the first and
#     the last are the point: every export, and nothing else, must bind to
#     the plugin's own definition; the PLT indirection costs one jump;
#   - the side effect 2.2.7 warns of for every such scheme, that code outside
#     the object may find another definition and function pointers then
#     compare unequal (ISO C), needs code that reaches the plugin's functions
#     by name through the global scope: nothing links against a plugin, it is
#     dlopen'ed RTLD_LOCAL and its functions are found with dlsym;
#   - protected visibility would change how the exports header's declarations
#     are compiled, and 2.2.3 "Define Per-Symbol Visibility" discourages it
#     (references to protected symbols cost the dynamic linker more than a
#     normal lookup, to keep function pointers comparable); toolchains have
#     also changed their treatment of it over the years;
#   - it is one linker flag, visible in the file (DF_SYMBOLIC, which
#     minildr.native honours too), covering functions and variables alike.
ELF_HARDENING = ("-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack", "-Wl,-Bsymbolic")

def compile_command(compiler: Compiler, os_name: str, sources: Sequence[Path], out: Path, *,
                    forced_includes: Sequence[Path], include_dirs: Sequence[Path],
                    defines: Mapping[str, str], cflags: Sequence[str] = (),
                    def_file: Optional[Path] = None,
                    quote_dirs: Sequence[Path] = ()) -> List[str]:
    """The command that compiles and links the plugin on `os_name`.

    `quote_dirs`: the sources' own folders, searched for "quoted" includes
    (the sources compiled are copies: see source_copies).
    """
    srcs = [str(s) for s in sources]
    if compiler.family == "msvc":
        return [compiler.path, *compiler.target_flags, "/nologo", "/LD", "/O2", "/W3",
                *[f"/FI{f}" for f in forced_includes], *[f"/I{d}" for d in include_dirs],
                *[f"/I{d}" for d in quote_dirs],
                *[f"/D{k}={v}" for k, v in defines.items()], *cflags, *srcs,
                # /Brepro: a hash of the contents where link.exe would put the
                # time, so the same sources give the same DLL (and SHA-256).
                f"/Fe:{out}", "/link", "/Brepro", f"/DEF:{def_file}"]
    shared = {"linux": ["-shared", "-fPIC"],
              # The install name is what a program that links against the dylib
              # records; without it, ld64 records the output path of this build.
              "darwin": ["-dynamiclib", "-fPIC", f"-Wl,-install_name,@rpath/{out.name}"],
              "windows": ["-shared"]}[os_name]
    if os_name == "linux":
        shared += list(ELF_HARDENING)
    if os_name == "windows" and compiler.family == "gcc":
        # MinGW's GNU ld stamps the time, and derives the DLL's preferred
        # address from the output's path (a new temporary folder each build):
        # without these, the same sources give another file, and another
        # SHA-256 for the trust store, every time (as they do not on Linux).
        shared += ["-Wl,--no-insert-timestamp", "-Wl,--disable-auto-image-base"]
    cmd = [compiler.path, *compiler.target_flags, *shared, "-fvisibility=hidden", "-O2", "-Wall",
           "-Werror=implicit-function-declaration"]
    for f in forced_includes:
        cmd += ["-include", str(f)]
    cmd += [f"-I{d}" for d in include_dirs]
    cmd += [arg for d in quote_dirs for arg in ("-iquote", str(d))]
    cmd += [f"-D{k}={v}" for k, v in defines.items()]
    cmd += [*cflags, *srcs]
    if os_name == "windows" and def_file is not None:
        cmd.append(str(def_file))
    return cmd + ["-o", str(out)]


def def_file_text(name: str, exports: Iterable[str], data: Iterable[str] = ()) -> str:
    """A module-definition file: the list of DLL exports, for Windows linkers.

    The DLL's file name is given whole and quoted: a bare `LIBRARY v1.2`
    is a syntax error for GNU ld, and `LIBRARY my.plugin` names the DLL
    "my.plugin", without ".dll". Variables are marked DATA: without it the
    linker puts a call stub for them in the import library, as if they
    were functions.
    """
    data = set(data)
    return f'LIBRARY "{name}.dll"\nEXPORTS\n' + "".join(
        f"    {e}{' DATA' if e in data else ''}\n" for e in exports)


# ---------------------------------------------------------------------------
# 5. the exported symbols
# ---------------------------------------------------------------------------
_LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def exported_names(path: Path, arch: str = HOST.arch) -> Set[str]:
    """The names a shared library exports, read from its own format's table.

    ELF: the defined global symbols of .dynsym; PE: the export directory;
    Mach-O: the export trie, without C's leading underscore (`arch` picks
    the slice of a universal file).
    """
    data = path.read_bytes()
    if data[:4] == elf.ELFMAG:
        return {s.name for s in elf.ElfFile(data, path).exported_symbols()} - _LINKER_SYMBOLS
    if pe.is_pe(data):
        return {e.name for e in pe.PEFile(data, path).exports()}
    if macho.is_macho(data):
        return {e.name for e in macho.MachOFile(data, path, arch).exports()}
    raise BuildError(path, "the compiler made a file that is neither ELF, PE nor Mach-O")


def check_defined(declared: Sequence[ctype.Declaration], defined: Iterable[str],
                  header: Path) -> None:
    """Every name the header declares must be defined (exported) by the sources."""
    missing = sorted({d.name for d in declared} - set(defined))
    if missing:
        raise BuildError(header, f"declares {', '.join(missing)} but no source file defines "
                                 f"{'it' if len(missing) == 1 else 'them'}; define "
                                 f"{'it' if len(missing) == 1 else 'them'} (not static) or "
                                 "remove the declaration")


def check_exports(path: Path, declared: Sequence[ctype.Declaration], header: Path,
                  arch: str = HOST.arch) -> None:
    """Declared and exported must be the same set of names, in every format."""
    exported = exported_names(path, arch)
    check_defined(declared, exported, header)
    extra = sorted(exported - {d.name for d in declared})
    if extra:
        raise BuildError(header, f"the plugin also exports {', '.join(extra)}, which this "
                                 "header does not declare; declare it here, or remove the "
                                 "attribute (visibility or dllexport) that exports it")


# ---------------------------------------------------------------------------
# build(): all the steps
# ---------------------------------------------------------------------------
def _as_paths(sources: Union[PathLike, Iterable[PathLike]]) -> List[Path]:
    if isinstance(sources, (str, os.PathLike)):
        return [Path(sources)]
    return [Path(s) for s in sources]


def _unique(paths: Iterable[Path]) -> List[Path]:
    return list(dict.fromkeys(paths))


def _find_header(exports: PathLike, sources: Sequence[Path]) -> Path:
    header = Path(exports)
    if not header.is_absolute() and not header.exists() and sources:
        beside = sources[0].parent / header
        if beside.exists():
            header = beside
    if not header.is_file():
        raise BuildError(exports, "exports header not found; pass exports= the header that "
                                  "declares what the plugin exports (relative to the current "
                                  "directory or to the first source file)")
    return header


_LINE_DIRECTIVE_SUFFIXES = {".c", ".h", ".cc", ".cpp", ".cxx", ".C", ".m", ".S"}


def read_source(path: Path) -> bytes:
    """A source or header, read as a file that may be hostile (files.py).

    A regular file, at most files.MAX_SOURCE_BYTES, not changing while read:
    a FIFO, a device or a kernel pseudo-file put in its place is refused by
    name instead of stalling or feeding the compiler.
    """
    try:
        data, _ = files.read_regular(path, files.MAX_SOURCE_BYTES)
    except PluginError as exc:
        raise BuildError(path, f"cannot be compiled: {exc.reason}") from None
    return data


def with_line(data: bytes, path: Path) -> bytes:
    """`data` headed by a #line directive naming `path`: the compiler's messages and
    __FILE__ name the file read, not its copy (for C-family sources and headers)."""
    if path.suffix not in _LINE_DIRECTIVE_SUFFIXES:
        return data
    shown = os.fsencode(str(path)).replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'#line 1 "' + shown + b'"\n' + data


def source_copies(sources: Sequence[Path], work: Path) -> List[Path]:
    """Each source as read by `read_source`, written into the build folder: what the
    compiler compiles is the bytes read, not whatever the name holds by then.

    A `#line` directive keeps the source's own name in the compiler's messages
    and in __FILE__; the headers it includes are staged the same way
    (`HeaderStage`), and its folder is searched for "quoted" includes after
    them (-iquote, see compile_command), for what the stage could not see.
    """
    copies = []
    for index, src in enumerate(sources):
        data = read_source(src)
        folder = work / "sources" / str(index)      # two sources may share a name
        folder.mkdir(parents=True)
        copy = folder / src.name
        copy.write_bytes(with_line(data, src))
        copies.append(copy)
    return copies


# An #include line as the preprocessor reads it (a name in quotes or angle brackets).
_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\r\n]+)[>"]', re.M)


class HeaderStage:
    """The user's headers, each read once through files.py into the build folder.

    The compiler would otherwise read every #included header by name, while
    the build runs: a header replaced meanwhile would be compiled as found, and
    a FIFO named like a header would stall the compiler for good. So from the
    sources and the exports header, each `#include` line is followed where the
    compiler would look (`search`): "quoted" names in the including file's
    folder, then the sources' folders, then the folders of the build's -iquote,
    -I, -isystem and -idirafter flags and of CPATH and C_INCLUDE_PATH, in the
    compiler's order; <angled> names from -I on. Each header found is read by
    `read_source` (a FIFO, device or oversized file is a BuildError naming
    it) and written, with a #line naming it, to the same absolute path under
    a mirror of the file system (`place`), so a "../x.h" from a staged copy
    leads where it led from the original. Each folder flag is given twice,
    its mirror first (`flags`), and an absolute #include in a staged copy is
    rewritten to name the staged file (`rewritten`).

    Still read by the compiler by name, behind the mirrors: a name made by a
    macro (#include MACRO), #include_next, a header only in the compiler's own
    system folders (the system's, not the user's), files given by -include,
    -imacros, --sysroot or -iprefix/-iwithprefix, and a "../" that passes
    through a symbolic link (the kernel resolves it where the link points).
    """

    def __init__(self, work: Path, quote_roots: Sequence[Path], cflags: Sequence[str] = (),
                 environ: Optional[Mapping[str, str]] = None) -> None:
        self.root = work / "headers"
        self.quote_roots = [r.resolve() for r in quote_roots]
        self.environ = os.environ if environ is None else environ
        self.folders = folder_flags(cflags, self.environ)
        self.staged: "dict[Path, Path]" = {}

    def place(self, original: Path) -> Path:
        """Where `original` (absolute, resolved) goes: its own path under the mirror root."""
        return self.root / original.relative_to(original.anchor)

    def mirror(self, folder: Path) -> Path:
        """The mirror of a folder the compiler searches, made so that "../" can pass it."""
        mirrored = self.place(folder.resolve())
        mirrored.mkdir(parents=True, exist_ok=True)
        return mirrored

    def search(self, folder: Path, quoted: bool) -> List[Path]:
        """Where the compiler looks for an #include, in its order (GCC, "Search Path")."""
        flags = [d for kind, d in self.folders if quoted or kind != "-iquote"]
        quote = [folder, *self.quote_roots] if quoted else []
        return quote + flags

    def add(self, original: Path, data: Optional[bytes] = None) -> Path:
        """Stage `original` (read now unless `data` is its bytes) and what it includes."""
        original = original.resolve()
        if original in self.staged:
            return self.staged[original]
        target = self.staged[original] = self.place(original)   # first: includes may cycle
        data = read_source(original) if data is None else data
        data = self.follow(original.parent, data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(with_line(data, original))
        return target

    def follow(self, folder: Path, data: bytes) -> bytes:
        """Stage each header `data` includes, as the compiler would find it; `data` with
        each absolute #include naming the staged copy (`rewritten`)."""
        absolute: "dict[bytes, Path]" = {}
        for kind, name in _INCLUDE.findall(data):
            relative = Path(os.fsdecode(name))
            places = [Path(relative.anchor)] if relative.is_absolute() else \
                self.search(folder, kind == b'"')
            for place in places:
                candidate = place / relative
                if os.path.lexists(candidate):     # (a FIFO exists too: read_source refuses it)
                    staged = self.add(candidate)
                    if relative.is_absolute():
                        absolute[name] = staged
                    break
        return rewritten(data, absolute)

    def flags(self, cflags: Sequence[str]) -> List[str]:
        """`cflags` with each include-folder flag preceded by the same flag for its mirror, and
        the environment's folders (CPATH as -I, C_INCLUDE_PATH as -isystem) mirrored last,
        before the compiler reads the originals after them."""
        out: List[str] = []
        for kind, folder, given in _folder_flags(cflags):
            if kind is not None and folder.is_dir():
                out += [kind, str(self.mirror(folder))]
            out += given
        for kind, folder in environment_folders(self.environ):
            out += [kind, str(self.mirror(folder))]
        return out

    def quote_dirs(self) -> List[Path]:
        """-iquote folders: each source folder's mirror, then the folder itself."""
        return [self.mirror(r) for r in self.quote_roots] + list(self.quote_roots)


_INCLUDE_FLAGS = ("-iquote", "-isystem", "-idirafter", "-I")


def _folder_flags(cflags: Sequence[str]) -> Iterator[Tuple[Optional[str], Path, List[str]]]:
    """Each flag of `cflags` as (include kind or None, its folder, the words as given)."""
    words, i = list(cflags), 0
    while i < len(words):
        word = words[i]
        kind = next((k for k in _INCLUDE_FLAGS if word == k or word.startswith(k)
                     and not (k == "-I" and word.startswith("-I-"))), None)
        if kind is not None and word == kind and i + 1 < len(words):
            yield kind, Path(words[i + 1]), words[i:i + 2]
            i += 2
            continue
        if kind is not None and word != kind:
            yield kind, Path(word[len(kind):]), [word]
        else:
            yield None, Path(), [word]
        i += 1


def environment_folders(environ: Mapping[str, str]) -> List[Tuple[str, Path]]:
    """CPATH's folders (searched as -I, after the command line's) and C_INCLUDE_PATH's (as
    -isystem), as GCC reads them ("Environment Variables"); an empty entry is skipped."""
    return [(kind, Path(d)) for variable, kind in (("CPATH", "-I"), ("C_INCLUDE_PATH", "-isystem"))
            for d in environ.get(variable, "").split(os.pathsep) if d and Path(d).is_dir()]


def folder_flags(cflags: Sequence[str], environ: Mapping[str, str]) -> List[Tuple[str, Path]]:
    """The include folders of `cflags` and the environment, in the compiler's search order:
    -iquote, -I, CPATH, -isystem, C_INCLUDE_PATH, -idirafter (each kind in the order given)."""
    given = [(kind, folder.resolve()) for kind, folder, _ in _folder_flags(cflags)
             if kind is not None and folder.is_dir()]
    env = [(kind, folder.resolve()) for kind, folder in environment_folders(environ)]
    rank = {"-iquote": 0, "-I": 1, "env-I": 2, "-isystem": 3, "env-isystem": 4, "-idirafter": 5}
    ordered = [(rank[kind], n, kind, folder) for n, (kind, folder) in enumerate(given)]
    ordered += [(rank["env" + kind], len(given) + n, kind, folder)
                for n, (kind, folder) in enumerate(env)]
    return [(kind, folder) for _, _, kind, folder in sorted(ordered)]


def rewritten(data: bytes, absolute: "dict[bytes, Path]") -> bytes:
    """`data` with each `#include "/abs/name"` naming the staged copy of that file instead."""
    if not absolute:
        return data

    def staged(match: "re.Match[bytes]") -> bytes:
        copy = absolute.get(match.group(2))
        if copy is None:
            return match.group(0)
        return match.group(0).replace(match.group(2), os.fsencode(str(copy)))
    return _INCLUDE.sub(staged, data)


def build(sources: Union[PathLike, Iterable[PathLike]], *, name: str,
          version: str = "0.1.0", exports: PathLike = "greet.h",
          contracts: Iterable[Contract] = (), out_dir: PathLike = ".",
          cflags: Sequence[str] = ()) -> Path:
    """Compile C sources into `out_dir/<name><SUFFIX>`, a plugin with a manifest.

    Only the functions and `extern` variables declared in the `exports`
    header are exported, and their C types are recorded in the manifest.
    Each contract is compiled in (force-included) and recorded by hash.
    """
    return build_for(HOST, None, sources, name=name, version=version, exports=exports,
                     contracts=contracts, out_dir=out_dir, cflags=cflags)


def build_for(target: Platform, compiler: Optional[Compiler],
              sources: Union[PathLike, Iterable[PathLike]], *, name: str,
              version: str = "0.1.0", exports: PathLike = "greet.h",
              contracts: Iterable[Contract] = (), out_dir: PathLike = ".",
              cflags: Sequence[str] = ()) -> Path:
    """`build` for `target` (os, arch), with `compiler` (None: find the usual one).

    With a cross compiler (e.g. `Compiler(..., target_flags=("-target",
    "arm64-apple-macos11"))`) this makes a plugin for another OS: the file
    is named, linked and checked the way that OS wants, and its manifest
    records `target`, which is what `open` compares with the host there.
    """
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise BuildError(name, "plugin names may use letters, digits, '_', '.' and '-'")
    srcs = _as_paths(sources)
    if not srcs:
        raise BuildError(None, "no source files given")
    for src in srcs:
        if not src.exists():
            raise BuildError(src, "source file not found")
    header = _find_header(exports, srcs)
    header_bytes = read_source(header)    # the preprocessor reads its staged copy
    contracts = list(contracts)
    compiler = compiler or find_compiler(target.os)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    installed = out_dir / f"{name}{SUFFIXES.get(target.os, '.so')}"

    with tempfile.TemporaryDirectory(prefix="minildr-build-") as tmp:
        work = Path(tmp)
        contract_dir = work / "contracts"
        contract_dir.mkdir()
        for c in contracts:
            (contract_dir / c.filename).write_text(c.text, encoding="utf-8")
        contract_headers = [contract_dir / c.filename for c in contracts]
        copies = source_copies(srcs, work)
        stage = HeaderStage(work, _unique(s.resolve().parent for s in srcs), cflags)
        staged_header = stage.add(header, header_bytes)
        for src, copy in zip(srcs, copies):
            copy.write_bytes(stage.follow(src.resolve().parent, copy.read_bytes()))
        cflags = stage.flags(cflags)             # each include folder: its mirror first
        include_dirs = [contract_dir, INCLUDE_DIR]
        declared, types = read_exports(compiler, staged_header, include_dirs, cflags,
                                       contract_headers, shown=header.resolve(), work=work)

        manifest = Manifest(
            abi=ABI_VERSION, platform=target, name=name, version=version,
            exports={d.name: Export(d.name, d.kind, d.ctype) for d in declared},
            contracts={c.name: c.ref for c in contracts}, types=types,
            compiler=compiler.version)
        payload, host = manifest.encode(), manifest_host(srcs, compiler)
        if host is None:
            manifest_file = [work / "minildr_manifest.c"]
            manifest_file[0].write_text(manifest_source(payload))
        else:
            manifest_file = []
            with open(copies[host], "ab") as copy:
                copy.write(manifest_appendix(payload).encode("ascii"))
        (work / "minildr_exports.h").write_text(exports_wrapper(staged_header, target.os))
        def_file = work / f"{name}.def"
        def_file.write_text(def_file_text(name, [d.name for d in declared],
                                          [d.name for d in declared if d.kind == "data"]))

        partial = work / installed.name
        cmd = compile_command(
            compiler, target.os, [*copies, *manifest_file],
            partial, forced_includes=[*contract_headers, work / "minildr_exports.h"],
            include_dirs=include_dirs, quote_dirs=stage.quote_dirs(),
            defines={"MINILDR_PLUGIN_NAME": f'"{name}"', "MINILDR_PLUGIN_VERSION": f'"{version}"'},
            cflags=cflags, def_file=def_file)
        log.debug("build %s: %s", name, " ".join(cmd))
        done = run_tool(cmd)
        output = (done.stdout + done.stderr).replace(f"{work}{os.sep}", "")
        if done.returncode != 0:
            raise BuildError(srcs[0] if len(srcs) == 1 else name,
                             f"the C compiler failed (exit {done.returncode}):\n{output.strip()}")
        if output.strip():
            log.warning("build %s: compiler output:\n%s", name, output.strip())
        check_exports(partial, declared, header, target.arch)
        data = partial.read_bytes()
    # Atomic: a new inode under a name unique to this call, renamed into place,
    # so no reader ever sees a half-written file (atomic.py).
    written = write_atomically(installed, data, mode=0o755)
    log.info("built %s: %s %s, %d export(s)", installed, name, version, len(declared))
    return built_path(installed, data, written)


# ---------------------------------------------------------------------------
# Many plugins at once, with a progress bar
# ---------------------------------------------------------------------------
def build_many(jobs: Iterable[Mapping[str, object]], *, show_progress: Optional[bool] = None,
               ) -> List[Path]:
    """`build(**job)` for each job (a dict of build's arguments), in order, with a progress bar.

    Stops at the first failure, as a build tool does: the BuildError names
    the plugin that failed; the plugins built before it stay built.
    """
    jobs = list(jobs)
    built = []
    for job in progress(jobs, desc="building plugins", total=len(jobs), unit="plugin",
                        show=show_progress):
        built.append(build(**job))      # type: ignore[arg-type]
    return built
