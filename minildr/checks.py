"""The checks `open` makes, in order, on the bytes read once, before anything is loaded.

Each check is one function with its own error, so that `open`, `verify`,
`inspect` and the isolated worker run the very same code:

1. `check_file`       the path is an existing regular file        PluginNotFound
2. `check_binary`     a shared library for this OS and CPU          NotAPlugin
3. `check_manifest`   it carries a minildr manifest                 NotAPlugin
4. `check_versions`   same minildr ABI, same platform               VersionMismatch
5. `check_contracts`  every contract both name: same hash, or an    DependencyMismatch
                      append-only change within one major version
6. `check_trust`      a pinned digest or a trusted signature,       UntrustedPlugin
   (in trust.py)      no older than the store's floor for its name
                      (only with trust=...); and with expect=NAME,
                      the plugin the host asked for

The sixth lives with the trust store: the isolated worker runs checks 2-5
again on the bytes the host checked and trusted, and so imports no trust
code (tests/package/test_imports.py).

`read_manifest` is steps 1 and 3 alone: the manifest, read without running
anything (the way importlib's finders read a spec before any loader runs).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

from . import image as images
from .contracts.contract import Contract, dependency_mismatch
from .console import printable
from .errors import NotAPlugin, VersionMismatch
from .host import BINARY_FORMAT, HOST
from .image import PluginImage
from .logger import LOG
from .manifest import ABI_VERSION, BinaryInfo, Manifest

log = LOG                   # the "minildr" logger, once a host attached it (logger.py)

_OS_NAMES = {"linux": "Linux", "darwin": "macOS", "windows": "Windows"}


def check_file(path: "os.PathLike[str] | str") -> PluginImage:
    return images.read(path)


def check_binary(image: PluginImage) -> BinaryInfo:
    info, _ = image.examine()
    if info.format != BINARY_FORMAT:
        raise NotAPlugin(image.path, (
            f"a {info.format} file, the format of {_OS_NAMES.get(info.os, info.os)}; this "
            f"machine runs {_OS_NAMES.get(HOST.os, HOST.os)} and loads {BINARY_FORMAT} "
            f"libraries: rebuild the plugin here"))
    if info.kind != "shared library":
        raise NotAPlugin(image.path, f"not a shared library: it is an {info.format} "
                                     f"{info.kind}; build plugins with minildr.build")
    if info.arch != HOST.arch:
        raise NotAPlugin(image.path, f"wrong architecture: a shared library for {info.arch}, "
                                     f"but this machine is {HOST.arch}; rebuild it here")
    return info


def check_manifest(image: PluginImage) -> Manifest:
    return image.manifest()


def check_versions(image: PluginImage, manifest: Manifest) -> None:
    if manifest.abi != ABI_VERSION:
        raise VersionMismatch(image.path, (
            f"built for minildr ABI version {manifest.abi}, but this host uses ABI version "
            f"{ABI_VERSION}; rebuild the plugin with this host's minildr"))
    if manifest.platform != HOST:
        raise VersionMismatch(image.path, (
            f"built for platform {manifest.platform}, but this host is {HOST}; rebuild the "
            "plugin on this platform"))


def check_contracts(image: PluginImage, manifest: Manifest,
                    contracts: Iterable[Contract]) -> None:
    for contract in contracts:
        theirs = manifest.contracts.get(contract.name)
        if theirs is None:
            continue
        why = contract.compatible_with(theirs, manifest.types)
        if why is not None:
            raise dependency_mismatch(image.path, contract, theirs, why)
        if theirs.sha256 != contract.sha256:
            log.info("%s", printable(f"open {image.path}: contract {contract.name} "
                                     f"{theirs.version} (plugin) and {contract.version} (host) "
                                     "differ by appended fields only: compatible"))


CHECKED = "checked"          # an image's fact: its manifest, once checks 2-4 passed on its bytes


def check_image(image: PluginImage) -> Manifest:
    """Checks 2-4 on an image `check_file` (or image.unchanged) gave: its manifest, or the
    check's error.

    They read the bytes alone (and this host, which does not change), so
    their verdict is a fact of the image: a repeated open of an unchanged
    file (image.unchanged: one stat) takes it from there instead of asking
    again. A file not seen before, or changed, is checked in full.
    """
    manifest = image.known(CHECKED)
    if manifest is None:
        check_binary(image)
        manifest = check_manifest(image)
        check_versions(image, manifest)
        image.record(CHECKED, manifest)
    return manifest


def read_manifest(path: "os.PathLike[str] | str") -> Manifest:
    """The plugin's manifest, read from its headers WITHOUT running any of its code.

    The file is read the way `open` reads it (image.read: a regular file,
    read once, cached by identity), so both see the same bytes.
    """
    return check_manifest(check_file(path))
