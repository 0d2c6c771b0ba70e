"""One Go runtime per process: a second Go c-shared library is refused before it loads.

A library built with `go build -buildmode=c-shared` carries a whole Go
runtime (scheduler, garbage collector, signal handlers), started by its
initialisers when it is loaded. Go does not support two of them in one
process: "We do not support multiple Go runtimes in a single process"
(Ian Lance Taylor, golang/go#18976). Two Go libraries, or the same one
rebuilt and loaded again as a new object (which minildr's load path does
on purpose), would start a second runtime beside the first.

So `open` loads a Go library in-process through `one_runtime`: the first Go
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

The record of the running runtime is claimed *before* the library's code can
run and given back only if none of it ran, in statements an interrupt cannot
separate from the load's own undoing (see `start`, `_load_go`): a runtime
never runs unrecorded. A Go library minildr did not load (ctypes.CDLL, a Go
program hosting Python) is found in the system loader's list of loaded
objects (`go_object_loaded`: dl_iterate_phdr, each object's notes as mapped),
so the rule holds for it too.

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

import os
import struct
import threading
from typing import Any, Callable, NamedTuple, Optional, TypeVar

from .errors import LoadError
from .formats import elf
from .image import PluginImage
from .interrupts import finish, under_lock

if os.name == "posix":
    from . import libdl                      # the system loader's list of loaded objects

T = TypeVar("T")

NT_GO_BUILDID = 4
GO_NOTE_NAME = b"Go\0\0"                   # cmd/link's ELF_NOTE_GO_NAME
BUILDINFO_MAGIC = b"\xff Go buildinf:"     # debug/buildinfo's buildInfoMagic
BUILDINFO_ALIGN = 16                         # and its buildInfoAlign
GO_ISSUE = "https://github.com/golang/go/issues/18976"

_lock = threading.Lock()                    # one Go load at a time through open
_running_lock = threading.Lock()            # guards _running alone: taken inside _lock too


class Runtime(NamedTuple):
    """The Go runtime a load through minildr started (or is starting) in this process."""

    path: str                      # the library whose initialisers start it
    owner: object                  # the load that claimed it: only that load gives it back
    image: Optional[PluginImage]   # the system loader's: the same bytes are handed back


_running: Optional[Runtime] = None


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
    """A note of owner "Go" and type NT_GO_BUILDID; the notes are read only if one of the
    note segments holds the owner's name at all (a C library's never does)."""
    named = any(f.raw.find(b"Go\0", ph.p_offset, ph.p_offset + ph.p_filesz) >= 0
                for ph in f.segments(elf.PT_NOTE))
    return named and any(n.name == "Go" and n.type == NT_GO_BUILDID for n in f.notes())


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


NATIVE_WHY = ("The native loader maps a new copy of a library on every load, so it would "
              "start a second runtime")
SYSTEM_WHY = ("Another library (other bytes, or one the native loader mapped) would start a "
              "second runtime")


def start(path: str, owner: object) -> None:
    """Record that `owner`, a native load of `path`, starts the Go runtime; or refuse a second.

    Called inside the load's `try`, before the library's initialisers run
    (they start the runtime): the claim is made in this call, so an interrupt
    anywhere after it reaches the load's undoing, which gives it back with
    `stopped(owner)` if none of the initialisers ran.
    """
    under_lock(_running_lock, _claim, Runtime(path, owner, None), NATIVE_WHY)


def stopped(owner: object) -> None:
    """`owner`'s load ran none of its initialisers: no runtime was started; its claim, if
    it made one, is given back (another load's claim is left alone)."""
    under_lock(_running_lock, _give_back, owner)


def _claim(runtime: Runtime, why: str) -> None:
    """Under _running_lock: record `runtime`, unless a Go runtime runs here already."""
    global _running
    if _running is not None:
        raise LoadError(runtime.path, _second_runtime(_running.path, why))
    other = go_object_loaded()
    if other is not None:
        raise LoadError(runtime.path, _second_runtime(other, (
            "It was loaded by other means than minildr (ctypes.CDLL, or a Go program "
            "hosting Python); loading this one would start a second runtime")))
    _running = runtime


def _give_back(owner: object) -> None:
    global _running
    if _running is not None and _running.owner is owner:
        _running = None


def go_object_loaded() -> Optional[str]:
    """The name of a Go binary the system loader has loaded into this process, or None.

    Every binary Go's linker links externally (a c-shared library always is;
    a program using cgo too) carries a Go build ID note, "Go\\0\\0" type 4
    (cmd/link/internal/ld/elf.go: ELF_NOTE_GOBUILDID_TAG, written by
    addgonote when linking externally with a build ID, which cmd/go always
    passes, cmd/go/internal/work/gc.go), in a read-only PT_NOTE segment, so
    it is mapped with the library: each loaded object's notes are read from
    memory (libdl.loaded_notes), no file is opened. About a millisecond,
    asked only when a Go library is about to load. A binary linked with an
    empty build ID (-ldflags=-buildid=) carries no note and is not seen here.
    """
    if os.name != "posix":
        return None
    for loaded in libdl.loaded_notes():
        if any(_has_go_build_id(align, data) for align, data in loaded.notes):
            return _shown(loaded.name)
    return None


def _has_go_build_id(align: int, data: bytes) -> bool:
    """Whether the note segment `data` holds a Go build ID note (gABI note layout)."""
    if GO_NOTE_NAME not in data:            # most objects: no walk
        return False
    align = 8 if align == 8 else 4
    offset = 0
    while offset + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("=III", data, offset)
        name_at = offset + 12
        if ntype == NT_GO_BUILDID and data[name_at:name_at + namesz].rstrip(b"\0") == b"Go":
            return True
        desc_at = name_at + -(-namesz // align) * align
        offset = desc_at + -(-descsz // align) * align
    return False


def _shown(name: str) -> str:
    """A loaded object's name as the user knows it: "" is the program itself."""
    return name or f"this program ({os.path.basename(os.path.realpath('/proc/self/exe'))})"


def _second_runtime(first: str, why: str) -> str:
    return (f"is a Go c-shared library, and this process already runs the Go runtime of "
            f"{first}. Go supports one Go runtime per process (golang/go#18976, {GO_ISSUE}), "
            f"and Go libraries stay loaded (NODELETE). {why}: this one is refused before "
            "any of its code runs. Open it with minildr.open(path, isolate=True): it then runs in a worker "
            "process with a runtime of its own")


def one_runtime(image: PluginImage, loader: str, load: Callable[..., T], *args: Any) -> T:
    """`load(image, *args)`: `image` loaded in this process, or the Go library already loaded.

    Raises LoadError for a second Go runtime: another Go library, or with
    loader="native" any Go library once a runtime runs. One Go load at a
    time. Any other library goes straight to `load` (no lock: most opens).
    """
    if not is_go_library(image):
        return load(image, *args)
    return under_lock(_lock, _load_go, image, loader, load, args)


def _load_go(image: PluginImage, loader: str, load: Callable[..., T], args: tuple) -> T:
    """Under _lock: load a Go library, claiming the runtime first (see `start`).

    With the system loader the claim is given back after a failed load only
    if no Go object is in the system loader's list: a load refused after
    dlopen ran the library's initialisers (a check after dlopen) leaves its
    runtime running, and recorded.
    """
    running = _running
    if (loader == "system" and running is not None and running.image is not None
            and running.image.sha256 == image.sha256):
        return load(running.image.named(image.path), *args)   # the same bytes: the same library
    if loader == "native":
        if running is not None:
            raise LoadError(image.path, _second_runtime(running.path, NATIVE_WHY))
        return load(image, *args)             # NativeLibrary claims it itself (start)
    owner = object()
    try:
        under_lock(_running_lock, _claim, Runtime(image.path, owner, image), SYSTEM_WHY)
        return load(image, *args)
    except BaseException:
        finish(lambda: None if go_object_loaded() else stopped(owner))
        raise
