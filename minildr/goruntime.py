"""One Go runtime per process: a second Go c-shared library is refused before it loads.

A library built with `go build -buildmode=c-shared` carries a whole Go
runtime (scheduler, garbage collector, signal handlers), started by its
initialisers when it is loaded. Go does not support two of them in one
process: "We do not support multiple Go runtimes in a single process"
(Ian Lance Taylor, golang/go#18976). Two Go libraries, or the same one
rebuilt and loaded again as a new object (which minildr's load path does
on purpose), would start a second runtime beside the first.

So `open` asks `one_runtime` before loading in-process: the first Go
library loads; the same bytes again reuse the image already loaded (dlopen
hands back the same library, whose runtime is running); any other Go
library is refused with LoadError, suggesting isolate=True, which runs it
in a worker process with a runtime of its own.

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

_lock = threading.Lock()
_loaded: Optional[PluginImage] = None       # the Go library whose runtime runs here


def is_go_library(image: PluginImage) -> bool:
    """Whether the file is a Go binary: its Go build ID note, or its Go build information.

    Answered once per image: a repeated open of an unchanged file asks again.
    """
    return image.fact("go", lambda: image.data[:4] == elf.ELFMAG
                      and (has_go_build_id(image) or has_go_buildinfo(image)))


def has_go_build_id(image: PluginImage) -> bool:
    return any(n.name == "Go" and n.type == NT_GO_BUILDID for n in image.elf_file().notes())


def has_go_buildinfo(image: PluginImage) -> bool:
    """The build information header, aligned as Go's linker places it, in writable data.

    Go's linker puts the blob in its data segment, the first of the writable
    data sections (cmd/link/internal/ld/data.go, allocateDataSections: the
    SBUILDINFO symbol kind, permissions 06), and debug/buildinfo documents
    its search as "the first writable non-zero data segment" (DataStart). So
    only writable, non-executable PT_LOAD segments are searched: a plugin's
    20 MB of read-only constants are not.
    """
    data = image.data
    for ph in image.elf_file().segments(elf.PT_LOAD):
        if ph.p_flags & (elf.PF_W | elf.PF_X) != elf.PF_W:
            continue
        start, end = ph.p_offset, min(ph.p_offset + ph.p_filesz, len(data))
        at = data.find(BUILDINFO_MAGIC, start, end)
        while at != -1:
            if (ph.p_vaddr + at - ph.p_offset) % BUILDINFO_ALIGN == 0:
                return True
            at = data.find(BUILDINFO_MAGIC, at + 1, end)
    return False


def one_runtime(image: PluginImage) -> ContextManager[PluginImage]:
    """Yields the image to load in this process: `image`, or the Go library already loaded.

    Raises LoadError for a second, different Go library. A Go library counts
    as loaded once the `with` block ends without an error (a load the native
    loader refused starts no runtime); one Go load at a time. Any other
    library passes straight through (no generator, no lock: most opens).
    """
    return _one_go_runtime(image) if is_go_library(image) else contextlib.nullcontext(image)


@contextlib.contextmanager
def _one_go_runtime(image: PluginImage) -> Iterator[PluginImage]:
    global _loaded
    with _lock:
        if _loaded is not None and _loaded.sha256 == image.sha256:
            yield _loaded.named(image.path)  # the same bytes: the same loaded library
            return
        if _loaded is not None:
            raise LoadError(image.path, (
                f"is a Go c-shared library, and this process already runs the Go runtime of "
                f"{_loaded.path} (sha256 {_loaded.sha256[:12]}...). Go supports one Go runtime "
                f"per process (golang/go#18976, {GO_ISSUE}), and Go libraries stay loaded "
                "(NODELETE), so this one is refused before any of its code runs. Open it with "
                "isolate=True: it then runs in a worker process with a runtime of its own"))
        yield image
        _loaded = image                      # kept: its runtime runs for the process's life
