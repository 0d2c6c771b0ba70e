"""open(): check everything that can be checked, then load.

The checks (checks.py) run in order on the bytes read once (image.py);
only then does a loader map those same bytes and run their initialisers:
the system loader (dlopen, `system.py`), with loader="native" minildr's own
(`native/`), or with isolate=True the system loader in a worker process
(`isolation/`). One `except` logs every refusal with the file's digest.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Mapping, Optional, Union

from .checks import check_contracts, check_file, check_image
from .console import printable
from .contracts.contract import Contract
from .errors import PluginError
from .goruntime import is_go_library, one_runtime
from .image import PluginImage, unchanged
from .interrupts import finish
from .isolation.policy import SandboxPolicy
from .lifetime import load_started, threads_before_load
from .linkage import Prepared, bundled_copies, nothing_to_prepare, prepare
from .plugin import Library, Plugin
from .system import SystemLibrary
from .trust import check_trust

log = logging.getLogger("minildr")


def load_library(image: PluginImage, loader: str, trust: Optional[Any] = None) -> Library:
    """Map the checked image with the loader asked for, once everything it needs is there.

    linkage.prepare loads its DT_NEEDED libraries (the bundled ones checked
    under `trust`) and resolves every symbol it uses first: a plugin that
    cannot be linked is refused before any of its code runs.
    """
    if loader == "system" and nothing_to_prepare(image):
        return SystemLibrary(image)         # (it undoes its own load if cut short)
    library: Optional[Library] = None
    prepared: Optional[Prepared] = None
    try:
        with prepare(image, trust) as prepared:
            if loader == "native":
                from . import native    # Linux only: its libc binding cannot be made elsewhere
                library = native.from_image(image, needed=prepared.targets)
            else:
                library = SystemLibrary(image)
        return library              # (an interrupt in prepare's exit must not lose it)
    except BaseException:
        # prepare's own finally closes what it loaded, except when the interrupt lands
        # on that finally's line (CPython runs it after the try's protection ends):
        if prepared is not None:
            finish(prepared.close)  # (a second close is harmless)
        if library is not None:
            finish(library.close)
        raise


def load_in_process(image: PluginImage, manifest: Any, loader: str,
                    trust: Optional[Any] = None) -> Plugin:
    """Load the image in this process; if anything fails after the load, unload it again.

    When the load began is noted: close() leaves the library mapped if threads
    Python did not start, started since, may still run its code (lifetime.py).
    """
    before, started = threads_before_load(), load_started()
    library: Optional[Library] = None
    try:                            # (an interrupt at any line must not lose the library)
        library = load_library(image, loader, trust)
        library.loaded_at = started          # type: ignore[attr-defined]
        library.note_loaded(before)          # type: ignore[attr-defined]
        return Plugin(image, manifest, library, loader)
    except BaseException:
        if library is not None:
            finish(library.close)
        raise


# An image's fact: the system loader loaded it in this process, and what that open checked
# of the bytes holds for any later open of them (checks 2-4 passed: the fact is their
# manifest; not a Go library; needs no library, and its symbols were found), so a
# repeated open takes `reopen`'s flat path.
REOPENS = "reopens"


def reopen(image: PluginImage, manifest: Any, contracts: Iterable[Contract], trust: Optional[Any],
           expect: Optional[str]) -> Plugin:
    """A repeated open of an unchanged file this process loaded before: one flat path.

    What the first open learnt of these bytes stands (checks 2-4, the Go
    check, SONAME, what they need: facts of the image); what depends on this
    call is asked again: the contracts given, and the trust store and
    `expect` (a store is checked on every open, as its files may have
    changed). Then the same load as `load_in_process` with nothing to prepare.
    """
    if contracts:
        check_contracts(image, manifest, list(contracts))
    if trust is not None or expect is not None:
        check_trust(image, trust, expect)
    library: Optional[SystemLibrary] = None
    try:                            # (an interrupt at any line must not lose the library)
        before = threads_before_load()
        library = SystemLibrary(image, load_started())
        library.note_loaded(before)
        return Plugin(image, manifest, library, "system")
    except BaseException:
        if library is not None:
            finish(library.close)
        raise


def open(path: "os.PathLike[str] | str", *, contracts: Iterable[Contract] = (),
         trust: Optional[Any] = None, isolate: Union[bool, float] = False,
         loader: str = "system", expect: Optional[str] = None,
         sandbox: Union[bool, SandboxPolicy] = False,
         env: Optional[Mapping[str, str]] = None) -> Plugin:
    """Check the plugin at `path` without running it, then load it.

    contracts: the contracts the host was built with; a plugin built against
        another version of one of them is refused (DependencyMismatch).
    trust: a TrustStore (or the path of a trust file); a plugin it does not
        trust is refused before any of its code runs (UntrustedPlugin).
    expect: the name of the plugin the host means to load; a file whose
        manifest names another plugin is refused (UntrustedPlugin, status
        unexpected-plugin), even if a trusted key signed it.
    isolate: True (or a per-call timeout in seconds) loads the plugin in a
        worker process: a crash gives PluginCrashed, a hang PluginTimeout,
        and the host keeps running (see isolation/). The worker starts with
        an empty environment, in a folder of its own, within WORKER_LIMITS.
        This protects the host from a plugin's bugs, not from its malice:
        the worker still runs as the host's user, with its files and network.
    sandbox: True (or a minildr.SandboxPolicy) implies isolate and confines
        the worker for good before the plugin is mapped: it can read only
        what loading needs and what the policy grants, has no network, and
        cannot start processes or programs (isolation/sandbox.py). Where the
        kernel cannot do that, SandboxUnavailable; never less confinement.
    env: the isolated worker's whole environment (default: none at all).
    loader: "system" (dlopen) or "native" (minildr.native, the loader in
        Python; Linux x86_64/aarch64, UnsupportedELF for what it cannot load).
        An isolated plugin is loaded by the system loader in its worker.
    """
    if loader not in ("system", "native"):
        raise ValueError(f"loader must be 'system' or 'native', not {loader!r}")
    if sandbox is not False and sandbox is not None and not isolate:
        isolate = True                      # a sandbox is an isolated worker, confined
    if env is not None and not isolate:
        raise ValueError("env= sets an isolated worker's environment; in-process plugins "
                         "share the host's (use isolate=True or sandbox=True)")
    if isolate and loader == "native":
        raise ValueError("isolate=True loads the plugin with the system loader in a worker "
                         "process; use loader='native' without isolate")
    image: Optional[PluginImage] = None
    plugin: Optional[Plugin] = None
    try:
        image = unchanged(path) or check_file(path)     # (a file unchanged since: one stat)
        manifest = image.known(REOPENS)                 # (checks 2-4 passed already)
        if manifest is not None and loader == "system" and not isolate:
            plugin = reopen(image, manifest, contracts, trust, expect)
        else:
            manifest = check_image(image)
            contracts = list(contracts)
            check_contracts(image, manifest, contracts)
            store = check_trust(image, trust, expect)
            if isolate:
                from .isolation.plugin import open_isolated  # slow (~15 ms); isolate=True only
                plugin = open_isolated(image, manifest, contracts, isolate, env,
                                       sandbox or False, bundled_copies(image, store))
            elif is_go_library(image):      # one Go runtime per process: see goruntime
                plugin = one_runtime(image, loader, load_in_process, manifest, loader, store)
            else:
                plugin = load_in_process(image, manifest, loader, store)
                if loader == "system" and nothing_to_prepare(image):
                    image.record(REOPENS, manifest)
        if log.isEnabledFor(logging.INFO):          # (the message costs more than the check)
            how = " (sandboxed)" if sandbox else " (isolated)" if isolate else ""
            log.info("%s", printable(f"open {image.path} sha256={image.sha256}: loaded "
                                     f"{manifest.name} {manifest.version}{how}"))
        return plugin       # all in the try: an interrupt at any line must not lose it
    except BaseException as exc:
        if plugin is not None:
            finish(plugin.close)
        if isinstance(exc, PluginError):
            log.warning("open %s sha256=%s: refused: %s", printable(os.fspath(path)),
                        image.sha256 if image else "-", exc.reason)
        raise
