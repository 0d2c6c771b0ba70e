"""Before any plugin code runs: everything the plugin needs from outside is there.

`dlopen` maps a library, then relocates it, and relocating runs code of the
library: each IFUNC resolver is called to choose the function a relocation
points at (glibc: elf/dl-reloc.c relocates, elf_machine_rela in each
architecture's dl-machine.h calls the resolver), then its initialisers run
(DT_INIT, DT_INIT_ARRAY; Drepper, "How To Write Shared Libraries", 1.5.6
"Running the Constructors": once the relocations are performed). A symbol
missing from the process is found missing only while relocating, so a
plugin can have run its resolvers before dlopen refuses it.
`prepare` does the lookup first, with minildr's own ELF reading, so that a
plugin that cannot be linked is refused before dlopen ever sees it:

1. `needed_libraries`  each DT_NEEDED library is found the way ld.so(8)
   searches (DT_RPATH if there is no DT_RUNPATH, LD_LIBRARY_PATH, DT_RUNPATH,
   then the system's own search), with $ORIGIN meaning the folder the
   plugin file is in, not where its sealed copy lives (/proc/self/fd), and
   loaded by the system loader: its own code runs, the plugin's does not.
   A library found through $ORIGIN ships with the plugin: under trust= it is
   checked like the plugin (pinned or signed) and loaded from the checked
   bytes (a sealed copy, image.py), whose SONAME then answers the plugin's
   DT_NEEDED when dlopen maps it.
2. `unresolved`  each undefined symbol of the plugin that is not weak is
   looked up as dlopen would: in the process's global scope
   (dlsym(RTLD_DEFAULT)), then in the needed libraries and theirs (dlsym on
   each handle); where DT_VERSYM gives it a version, that version (dlvsym).
3. each version the plugin requires of a library (DT_VERNEED) is one that
   library defines (its DT_VERDEF, read from its file).

A miss is a LoadError naming the symbol or library, where it was looked
for, and what to do. The native loader finds its DT_NEEDED libraries with
the same `find_library` (native/resolve.py), so both loaders search alike.
ELF on Linux only: elsewhere `prepare` checks nothing and the system
loader's own refusal stands.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from .errors import LoadError, NotAPlugin, UntrustedPlugin
from .formats import elf
from .image import PluginImage, read as read_image

if TYPE_CHECKING:        # the store the host checked the plugin with (trust.check_trust)
    from .trust import TrustStore


ENABLED = sys.platform.startswith("linux")
if ENABLED:
    from . import libdl             # Linux: dlsym, dlvsym, dlinfo (glibc)
    ffi, libc = libdl.ffi, libdl.lib


@dataclass(frozen=True)
class Needs:
    """What an ELF file asks of the process, read from its dynamic section."""
    needed: List[str]                         # DT_NEEDED, in order
    rpath: List[str]                          # DT_RPATH (used only without DT_RUNPATH)
    runpath: List[str]                        # DT_RUNPATH
    symbols: List[Tuple[str, Optional[str]]]  # undefined, not weak: (name, version or None)
    versions: Dict[str, List[str]]            # DT_VERNEED: library -> versions
    soname: Optional[str] = None


def needs_of(data: bytes, path: str) -> Needs:
    """Read what the file at `path` (held in `data`) needs; runs and maps nothing."""
    return needs_in(elf.DynamicSection(elf.ElfFile(data, path)))


def image_needs(image: PluginImage) -> Needs:
    """What a checked image needs, read once per image (its dynamic section is shared)."""
    return image.fact("needs", lambda: _needs(image))


def _needs(image: PluginImage) -> Needs:
    found = image.survey()                  # (None: a file the one-pass reading declined)
    if found is None:
        return needs_in(image.dynamic_section())
    return Needs(found.needed, found.rpath, found.runpath, found.symbols, found.versions,
                 found.soname)


def needs_in(dyn: elf.DynamicSection) -> Needs:
    """What the file of this dynamic section asks of the process."""
    rows = dyn.symbol_rows()
    versym = dyn.versym(len(rows)) if rows else ()
    versions = dyn.versions_needed()
    undefined = []
    for index, (st_name, st_info, _, st_shndx, _, _) in enumerate(rows):
        if not index or st_shndx != elf.SHN_UNDEF or st_info >> 4 == elf.STB_WEAK:
            continue                          # defined here; or weak: found nowhere, it is 0
        name = dyn.string(st_name, "symbol name")
        if not name:
            continue
        version = versions.get(versym[index] & ~elf.VERSYM_HIDDEN) if versym else None
        undefined.append((name, version))

    def paths(tag: int) -> List[str]:
        return [p for v in dyn.all(tag) for p in dyn.string(v, "search path").split(":") if p]
    soname = dyn.string(dyn.get(elf.DT_SONAME), "DT_SONAME") if dyn.has(elf.DT_SONAME) else None
    return Needs([dyn.string(v, "DT_NEEDED") for v in dyn.all(elf.DT_NEEDED)],
                 paths(elf.DT_RPATH), paths(elf.DT_RUNPATH), undefined,
                 dyn.needed_by_library(), soname)


# ---------------------------------------------------------------------------
# 1. the needed libraries
# ---------------------------------------------------------------------------
class Found(NamedTuple):
    """Where a DT_NEEDED name was found: a file, or left to the system's search."""
    name: str
    path: Optional[str]            # the file, if a search path of ours found it
    bundled: bool                  # found through $ORIGIN: it ships with the plugin
    searched: Tuple[str, ...]      # the folders looked in, in order


def expand_origin(folder: str, origin: str) -> str:
    """$ORIGIN (or ${ORIGIN}) in a search path: the folder of the file that asks (ld.so(8))."""
    return folder.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)


def find_library(name: str, needs: Needs, origin: str,
                 environ: Optional[Dict[str, str]] = None) -> Found:
    """Where ld.so would find `name` for a file in folder `origin` with these search paths.

    ld.so(8), "Dynamic library search": a name with a slash is a path; else
    DT_RPATH (only if there is no DT_RUNPATH), LD_LIBRARY_PATH, DT_RUNPATH,
    then /etc/ld.so.cache and the default folders, which are left to dlopen.
    """
    if "/" in name:
        return Found(name, expand_origin(name, origin), False, ())
    library_path = (os.environ if environ is None else environ).get("LD_LIBRARY_PATH")
    if not (needs.rpath or needs.runpath or library_path):
        return Found(name, None, False, ())         # the system's search alone (most plugins)
    environ = {"LD_LIBRARY_PATH": library_path or ""}
    folders: List[Tuple[str, bool]] = []
    if not needs.runpath:
        folders += [(expand_origin(d, origin), "$ORIGIN" in d or "${ORIGIN}" in d)
                    for d in needs.rpath]
    folders += [(d, False) for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    folders += [(expand_origin(d, origin), "$ORIGIN" in d or "${ORIGIN}" in d)
                for d in needs.runpath]
    for folder, bundled in folders:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return Found(name, candidate, bundled, tuple(f for f, _ in folders))
    return Found(name, None, False, tuple(f for f, _ in folders))


@dataclass(eq=False)             # hashable by identity: it is the images' holder
class Prepared:
    """The needed libraries, loaded; handles closed by `close` (the plugin keeps its own)."""
    handles: List[Tuple[str, Any]] = field(default_factory=list)   # (name, dlopen handle)
    images: List[PluginImage] = field(default_factory=list)          # sealed copies in use
    # What dlopen was given for each of the plugin's own DT_NEEDED names: for a
    # checked bundled library its sealed copy, so a loader that opens the
    # plugin's libraries itself (native/resolve.py) gets the same bytes.
    targets: Dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        """Each handle taken off as it is closed (a failed dlopen's NULL skipped), each image
        released before it is forgotten: run again after an interrupt, this finishes what is
        left and closes nothing twice."""
        while self.handles:
            if self.handles[-1][1] == ffi.NULL:
                self.handles.pop()
            else:
                libc.dlclose(self.handles.pop()[1])
        while self.images:
            self.images[-1].release(self, resident=True)   # the system loader keeps it: keep
            self.images.pop()                              # its fd (a second release: harmless)


MAX_BUNDLED_DEPTH = 8      # a bundled library's bundled libraries' ..., this deep at most


def load_needed(plugin: str, needs: Needs, origin: str, trust: Optional[TrustStore],
                prepared: Prepared, copies: Optional[Dict[str, PluginImage]] = None,
                chain: Tuple[str, ...] = ()) -> None:
    """Load each DT_NEEDED library, checking the bundled ones under `trust`.

    `copies` are bundled libraries already read and checked (by the host
    of an isolated worker, `bundled_copies`): loaded from those bytes.
    A bundled library loaded from its checked copy has its own bundled
    libraries loaded first, the same way (`load_bundled_needs`); `chain`
    is the bundled libraries that are waiting for this one's to load.
    """
    for name in needs.needed:
        found = find_library(name, needs, origin)
        target = found.path or name
        copy = (copies or {}).get(name) if found.bundled else None
        if copy is None and found.bundled and trust is not None:
            copy = checked_copy(plugin, found, trust)
        if copy is not None:
            load_bundled_needs(plugin, copy, found, trust, prepared, copies, chain)
            prepared.images.append(copy)
            target = copy.acquire(prepared)
        # held in the statement that opens it: an interrupt at the next line loses nothing
        prepared.handles.append((name, libc.dlopen(target.encode(), os.RTLD_NOW | os.RTLD_LOCAL)))
        if prepared.handles[-1][1] == ffi.NULL:
            message = libdl.error()
            prepared.handles.pop()
            raise LoadError(plugin, not_found(name, found, message))
        if not chain:
            prepared.targets[name] = target


def load_bundled_needs(plugin: str, copy: PluginImage, found: Found,
                       trust: Optional[TrustStore],
                       prepared: Prepared, copies: Optional[Dict[str, PluginImage]],
                       chain: Tuple[str, ...]) -> None:
    """Before a bundled library is loaded from its sealed copy: the libraries *it* bundles.

    From /proc/self/fd/N its own $ORIGIN would mean /proc/self/fd, so the
    system loader could not find a libhelper2.so that libhelper.so finds
    beside itself (RUNPATH=$ORIGIN). So its DT_NEEDED libraries are found
    from its file's folder, the bundled ones checked under `trust` and loaded
    from their checked copies, before it: its DT_NEEDED names then match
    their SONAMEs, as the plugin's match its own libraries'.

    So a cycle (libA needs libB, which needs libA) cannot be loaded from
    copies: each would have to be loaded before the other. The system loader
    maps a cycle from the files (each once, then relocates them together),
    but a sealed copy finds its libraries only among those already loaded.
    It is refused, naming the cycle (`cycle`).
    """
    chain = (*chain, found.name)
    if len(chain) > MAX_BUNDLED_DEPTH:
        raise LoadError(plugin, (
            f"its bundled libraries need bundled libraries more than {MAX_BUNDLED_DEPTH} deep "
            f"({' -> '.join(chain)}); link them flat beside the plugin"))
    needs = image_needs(copy)
    for name in needs.needed:
        if name in chain:
            raise LoadError(plugin, cycle((*chain, name)))
    load_needed(plugin, needs, os.path.dirname(os.path.abspath(found.path or "")),
                trust, prepared, copies, chain)


def cycle(names: Tuple[str, ...]) -> str:
    """Why a cycle of bundled libraries is refused when they load from checked copies."""
    start = names.index(names[-1])
    shown = " -> ".join(names[start:])
    return (f"its bundled libraries need each other in a cycle ({shown}). minildr loads "
            "each bundled library from a sealed copy of the bytes it checked, and a copy finds "
            "the libraries it needs only among those already loaded, so in a cycle none can "
            "load first (the system loader, given the files themselves, maps a cycle in one "
            "go: that is how it loads without trust= in-process). Link the libraries of the "
            "cycle into one library, or break the cycle (one of them need not name the other "
            "in DT_NEEDED)")


def origin_of(image: PluginImage) -> str:
    """What $ORIGIN means for a plugin: the folder its file is in (not its sealed copy's)."""
    return os.path.dirname(os.path.abspath(image.path))


def bundled_copies(image: PluginImage, trust: Optional[TrustStore] = None
                   ) -> Dict[str, PluginImage]:
    """The libraries that ship with the plugin (found through $ORIGIN), read and checked here.

    An isolated worker is handed these as sealed copies, as it is the plugin:
    it loads the bytes this process checked (under `trust`: verified like the
    plugin), and a sandboxed worker, which cannot read the plugin's folder,
    needs no access to it. Without `trust`, a library whose SONAME is not
    its DT_NEEDED name is left out: the worker then loads it by path.
    The libraries a bundled library itself bundles (its own $ORIGIN) are
    included, by DT_NEEDED name, the first found for a name kept.
    """
    copies: Dict[str, PluginImage] = {}
    if ENABLED and image.data[:4] == elf.ELFMAG:
        add_bundled(image.path, image_needs(image), origin_of(image), trust, copies, 0)
    return copies


def add_bundled(plugin: str, needs: Needs, origin: str, trust: Optional[TrustStore],
                copies: Dict[str, PluginImage], depth: int) -> None:
    """`bundled_copies` of one library's needs, then of each bundled one's, depth first."""
    for name in needs.needed:
        found = find_library(name, needs, origin)
        if not found.bundled or name in copies:
            continue
        copy = checked_copy(plugin, found, trust, required=trust is not None)
        if copy is None:
            continue
        copies[name] = copy
        if depth + 1 >= MAX_BUNDLED_DEPTH:
            raise LoadError(plugin, (
                f"its bundled libraries need bundled libraries more than {MAX_BUNDLED_DEPTH} "
                f"deep (at {name}); link them flat beside it"))
        add_bundled(plugin, image_needs(copy), os.path.dirname(os.path.abspath(found.path or "")),
                    trust, copies, depth + 1)


def not_found(name: str, found: Found, message: str) -> str:
    """Why a needed library did not load: which, where it was looked for, what to do."""
    looked = ", ".join(found.searched) if found.searched else "no folder of its own"
    if found.path is not None:
        return (f"needs {name}, found at {found.path}, which the system loader cannot load "
                f"({message}); rebuild or replace that library")
    return (f"needs {name}, which was not found: searched its RUNPATH/RPATH and "
            f"LD_LIBRARY_PATH ({looked}), then the system's library folders and cache "
            f"(the system loader: {message}); put {name} beside the plugin and link the plugin "
            "with -Wl,-rpath,'$ORIGIN', install it where the system finds libraries, or add "
            "its folder to LD_LIBRARY_PATH before starting the program")


def as_given(plugin: str, path: str) -> str:
    """`path` the way the caller named the plugin: relative to the current folder if it was.

    $ORIGIN is expanded from the plugin's absolute folder (the loader needs
    it); a message names the library as the user would find it.
    """
    return path if os.path.isabs(plugin) else os.path.relpath(path)


def checked_copy(plugin: str, found: Found, trust: Optional[TrustStore],
                 required: bool = True) -> Optional[PluginImage]:
    """A bundled library, read once (files.py), checked like the plugin under `trust`, to
    be loaded from those bytes: its SONAME must then be the plugin's DT_NEEDED name (the
    name the system loader matches). None if it is not and `required` is False."""
    image = read_image(found.path)
    shown = as_given(plugin, found.path)
    if trust is not None:
        verdict = trust.verdict(image)
        if not verdict.trusted:
            error = UntrustedPlugin(plugin, (
                f"refused before loading: it needs {found.name}, which ships with it "
                f"({shown}), and that library is not trusted: {verdict.explanation}"))
            error.verdict = verdict      # type: ignore[attr-defined]
            raise error
    soname = image_needs(image).soname
    if soname != found.name:
        if not required:
            return None
        raise LoadError(plugin, (
            f"needs {found.name}, which ships with it ({shown}); to load it from its "
            f"checked copy its SONAME must be {found.name!r}, but it is "
            f"{soname!r}: link it with -Wl,-soname,{found.name}"))
    return image


# ---------------------------------------------------------------------------
# 2. and 3. the symbols and versions
# ---------------------------------------------------------------------------
def unresolved(needs: Needs, prepared: Prepared) -> List[str]:
    """The plugin's symbols found neither in the global scope nor in its needed libraries."""
    scopes = [libdl.RTLD_DEFAULT] + [handle for _, handle in prepared.handles]
    missing = []
    for name, version in needs.symbols:
        encoded = name.encode()
        if version is None:
            found = any(libc.dlsym(h, encoded) for h in scopes)
        else:
            v = version.encode()
            found = any(libc.dlvsym(h, encoded, v) for h in scopes)
        if not found:
            missing.append(f"{name}@{version}" if version else name)
    return missing


def library_file(handle: Any) -> Optional[str]:
    """The file a loaded library came from (dlinfo's link map), or None."""
    return libdl.loaded_from(handle) or None


@functools.lru_cache(maxsize=64)
def _versions_defined(path: str, identity: Tuple[int, int, int]) -> Tuple[str, ...]:
    """Read once per library file (cached by its identity): libc is a few MB."""
    with open(path, "rb") as f:
        data = f.read()
    return tuple(elf.DynamicSection(elf.ElfFile(data, path)).versions_defined())


def missing_versions(needs: Needs, prepared: Prepared) -> List[str]:
    """Each DT_VERNEED version the library it names does not define, as 'VERSION (LIBRARY)'."""
    missing = []
    handles = dict(prepared.handles)
    for library, versions in needs.versions.items():
        handle = handles.get(library)
        path = library_file(handle) if handle is not None else None
        if path is None or not os.path.isfile(path):
            continue                 # not one of ours to read: dlopen checks it
        try:
            st = os.stat(path)
            defined = _versions_defined(path, (st.st_ino, st.st_size, st.st_mtime_ns))
        except (OSError, ValueError, NotAPlugin):
            continue
        missing += [f"{v} ({library})" for v in versions if v not in defined]
    return missing


def version_miss(needs: Needs, versions: List[str]) -> str:
    """Why a plugin that asks for versions its libraries lack is refused, and what to do.

    A version (GLIBC_2.38) names the library release that added or changed a
    symbol (Drepper, "How To Write Shared Libraries", "ABI Versioning"):
    the plugin was linked against a newer release than this system has.
    """
    names = {v.split(" (")[0] for v in versions}
    asking = [f"{name}@{version}" for name, version in needs.symbols if version in names]
    return (f"needs symbol version{'s' if len(versions) > 1 else ''} {', '.join(versions)}"
            + (f" (for {', '.join(asking)})" if asking else "")
            + ", which that library does not define: the plugin was built against a newer "
            "release than this system has; refused before loading it, so none of its code "
            "ran. Rebuild the plugin against the oldest release you support (on this system, "
            "or in an older one's container), or install a newer release here")


# Per image (a repeated open of an unchanged file reuses its image), in its
# facts: the needed libraries (handles) every symbol was last found with.
RESOLVED = "resolved-against"


def check_resolved(image: PluginImage, needs: Needs, prepared: Prepared) -> None:
    """LoadError if a symbol version or a symbol the plugin uses is found nowhere."""
    versions = missing_versions(needs, prepared)     # first: its symbols are missing too
    if versions:
        raise LoadError(image.path, version_miss(needs, versions))
    missing = unresolved(needs, prepared)
    if missing:
        raise LoadError(image.path, (
            f"undefined symbol{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
            "looked in the host process's global scope and in "
            + (', '.join(needs.needed) if needs.needed else
               "its needed libraries, but it names none (no DT_NEEDED)")
            + "; refused "
            "before loading it, so none of its code ran. Link the plugin against the "
            "library that defines it, or load that library first"))


def nothing_to_prepare(image: PluginImage) -> bool:
    """Whether `prepare` would load nothing and check nothing: the image needs no library
    (DT_NEEDED), and either uses no undefined symbol that is not weak, or its symbols were
    found in the process's global scope by an earlier open of these bytes (a repeated open
    of an unchanged file, as `prepare` itself judges). A damaged file: NotAPlugin, as
    `prepare` would raise."""
    resolved = image.known(RESOLVED)
    if resolved is not None:
        return resolved == ()
    if not ENABLED or image.data[:4] != elf.ELFMAG:
        return False
    needs = image_needs(image)
    return not needs.needed and not needs.symbols


@contextlib.contextmanager
def prepare(image: PluginImage, trust: Optional[TrustStore] = None,
            origin: Optional[str] = None, copies: Optional[Dict[str, PluginImage]] = None
            ) -> Iterator[Prepared]:
    """Load what the plugin needs and resolve every symbol it uses, before it is loaded.

    Yields while the needed libraries are held loaded (load the plugin in
    the `with` block); LoadError before that if anything is missing.
    `origin` and `copies` are given by an isolated worker: the plugin's
    folder as its host saw it, and the bundled libraries its host checked.
    """
    prepared = Prepared()
    if not ENABLED or image.data[:4] != elf.ELFMAG:
        yield prepared
        return
    needs = image_needs(image)
    if origin is None:          # (only a search path or a name can say $ORIGIN)
        origin = origin_of(image) if image.fact("says-origin", lambda: bool(
            needs.rpath or needs.runpath or any("$" in name for name in needs.needed))) else ""
    try:
        load_needed(image.path, needs, origin, trust, prepared, copies)
        scope = tuple(h for _, h in prepared.handles)      # (cffi pointers: equal by address)
        if image.known(RESOLVED) != scope:     # else resolved before against these libraries
            check_resolved(image, needs, prepared)
            image.record(RESOLVED, scope)
        # One way out, no `return` in this try: an interrupt at the line of a
        # `return` that used to follow the first `yield` skipped this finally
        # (CPython 3.11: prepared.close() never ran, the needed libraries
        # stayed loaded; open-native campaign).
        yield prepared
    finally:
        prepared.close()
