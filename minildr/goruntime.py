"""One Go runtime per process: a second Go c-shared library is refused before it loads.

A library built with `go build -buildmode=c-shared` carries a whole Go
runtime (scheduler, garbage collector, signal handlers), started by its
initialisers when it is loaded. Go does not support two of them in one
process: "We do not support multiple Go runtimes in a single process"
(Ian Lance Taylor, golang/go#18976). Two Go libraries, or the same one
rebuilt and loaded again as a new object (which minildr's load path does
on purpose), would start a second runtime beside the first.

So `open` asks `one_runtime` before loading in-process: the first Go
library loads; with the system loader, the same bytes again reuse the image
already loaded (dlopen of the same sealed copy hands back the same library,
whose runtime is running); any other Go library is refused with LoadError,
suggesting isolate=True, which runs it in a worker process with a runtime
of its own. The native loader maps a new copy on every load, so there is no
"same library" to hand back: with loader="native" a Go library is refused
while any Go runtime runs in the process, whichever loader started it. And
`minildr.native.load(path)`, which skips `open`'s checks, asks `start` the
same question itself (a lock of its own: `one_runtime` holds `_lock` around
the whole load, the native loader's load included).

A Go library is recognised from its file, by either of two marks Go's
linker (cmd/link) writes into every ELF binary it links: the Go build ID
note (owner "Go", type 4, in a PT_NOTE segment: .note.go.buildid; `go tool
buildid` reads it), or, where that note was stripped, the build information
blob (.go.buildinfo: a 16-byte-aligned header starting "\\xff Go buildinf:",
what `go version FILE` and debug/buildinfo look for) in a writable loadable segment.
Section headers are not needed for either, so a library stripped of them
is still recognised.
"""
from __future__ import annotations

import contextlib
import threading
from typing import ContextManager, Iterator, Optional

from .errors import LoadError
from .formats import elf
from .image import PluginImage

NT_GO_BUILDID = 4
BUILDINFO_MAGIC = b"\xff Go buildinf:"     # debug/buildinfo's buildInfoMagic
BUILDINFO_ALIGN = 16                         # and its buildInfoAlign
GO_ISSUE = "https://github.com/golang/go/issues/18976"

_lock = threading.Lock()                    # one Go load at a time through open
_loaded: Optional[PluginImage] = None       # the Go library the system loader loaded here
_running_lock = threading.Lock()            # guards _running alone: taken inside _lock too
_running: Optional[str] = None              # the Go library whose runtime runs here


def is_go_library(image: PluginImage) -> bool:
    """Whether the file is a Go binary: its Go build ID note, or its Go build information.

    Answered once per image: a repeated open of an unchanged file asks again.
    """
    known = image.known("go")
    return known if known is not None else image.fact("go", lambda: _is_go(image))


def _is_go(image: PluginImage) -> bool:
    if image.data[:4] != elf.ELFMAG:
        return False
    found = image.survey()                  # (None: a file the one-pass reading declined)
    return found.go if found is not None else is_go_elf(image.elf_file())


def is_go_elf(f: elf.ElfFile) -> bool:
    """Whether the parsed ELF file is a Go binary (the native loader asks with its own parse)."""
    return has_go_build_id(f) or has_go_buildinfo(f)


def has_go_build_id(f: elf.ElfFile) -> bool:
    return any(n.name == "Go" and n.type == NT_GO_BUILDID for n in f.notes())


def has_go_buildinfo(f: elf.ElfFile) -> bool:
    """The build information header, aligned as Go's linker places it, in writable data.

    Go's linker puts the blob in its data segment, the first of the writable
    data sections (cmd/link/internal/ld/data.go, allocateDataSections: the
    SBUILDINFO symbol kind, permissions 06), and debug/buildinfo documents
    its search as "the first writable non-zero data segment" (DataStart). So
    only writable, non-executable PT_LOAD segments are searched: a plugin's
    20 MB of read-only constants are not.
    """
    for ph in f.segments(elf.PT_LOAD):
        if ph.p_flags & (elf.PF_W | elf.PF_X) != elf.PF_W:
            continue
        start = ph.p_offset                 # searched in place, no copy (cut to the file)
        end = min(ph.p_offset + ph.p_filesz, len(f.raw))
        at = f.raw.find(BUILDINFO_MAGIC, start, end)
        while at != -1:
            if (ph.p_vaddr + at - start) % BUILDINFO_ALIGN == 0:
                return True
            at = f.raw.find(BUILDINFO_MAGIC, at + 1, end)
    return False


def start(path: str) -> None:
    """Record that the native loader starts the Go runtime of `path`, or refuse a second.

    Called before the library's initialisers run (they start the runtime);
    `stopped(path)` takes it back if the load ends before any of them ran.
    """
    global _running
    with _running_lock:
        if _running is not None:
            raise LoadError(path, _second_runtime(_running, (
                "The native loader maps a new copy of a library on every load, so it would "
                "start a second runtime")))
        _running = path


def stopped(path: str) -> None:
    """A native load of `path` that ran none of its initialisers: no runtime was started."""
    global _running
    with _running_lock:
        if _running == path:
            _running = None


def _second_runtime(first: str, why: str) -> str:
    return (f"is a Go c-shared library, and this process already runs the Go runtime of "
            f"{first}. Go supports one Go runtime per process (golang/go#18976, {GO_ISSUE}), "
            f"and Go libraries stay loaded (NODELETE). {why}: this one is refused before "
            "any of its code runs. Open it with minildr.open(path, isolate=True): it then runs in a worker "
            "process with a runtime of its own")


def one_runtime(image: PluginImage, loader: str = "system") -> ContextManager[PluginImage]:
    """Yields the image to load in this process: `image`, or the Go library already loaded.

    Raises LoadError for a second Go runtime: another Go library, or with
    loader="native" any Go library once a runtime runs. A Go library counts
    as loaded once the `with` block ends without an error (a load the native
    loader refused starts no runtime); one Go load at a time. Any other
    library passes straight through (no generator, no lock: most opens).
    """
    return (_one_go_runtime(image, loader) if is_go_library(image)
            else contextlib.nullcontext(image))


@contextlib.contextmanager
def _one_go_runtime(image: PluginImage, loader: str) -> Iterator[PluginImage]:
    global _loaded, _running
    with _lock:
        if (loader == "system" and _loaded is not None and _loaded.sha256 == image.sha256
                and _running == _loaded.path):
            yield _loaded.named(image.path)  # the same bytes: the same loaded library
            return
        if _running is not None:
            why = ("The native loader maps a new copy of a library on every load, so it "
                   "would start a second runtime" if loader == "native" else
                   "Another library (other bytes, or one the native loader mapped) would "
                   "start a second runtime")
            raise LoadError(image.path, _second_runtime(_running, why))
        yield image
        if loader == "system":
            _loaded = image                  # kept: its runtime runs for the process's life
            with _running_lock:
                _running = image.path
