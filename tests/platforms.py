"""Where each test can run: the test suite's platform markers and notebook rule, declared once.

The package is portable (build, manifests, contracts, trust, the system
loader through cffi), but some tests check things only one kind of system
has. Each such test carries one of the markers below, and its reason is what
`pytest -ra` prints for the skip, so a run on macOS or Windows says exactly
what it did not check and why:

    requires_native_loader  minildr.native maps ELF files itself: Linux x86_64/aarch64
    requires_elf            reads the ELF file minildr.build writes on Linux
    requires_proc           reads /proc/self (maps, statm, fd)
    requires_isolation      isolate=True: POSIX only (Windows: NotImplementedError)
    requires_linux(why)     any other Linux-only detail, with its own reason
    requires_posix(why)     any other POSIX-only detail (not Windows)

Notebooks (nbval) follow one rule, `pytest_collection_modifyitems` below:
their saved outputs were recorded on one platform, named in the notebook's
metadata (`"minildr": {"outputs_recorded_on": "Linux x86_64"}`). On another
platform every cell still runs (an error still fails), but saved outputs are
not compared, and cells tagged `linux-only` (or `posix-only`, on Windows) are
skipped with the reason in their metadata (`"minildr": {"why": ...}`); a
notebook marked `"linux_only"` (`"posix_only"`) is skipped whole. Which cells
cannot run where is minildr.course.runs_on's rule, the one `make check` follows too.

MINILDR_TEST_PRETEND_HOST="Darwin arm64" (or "Windows AMD64") makes the
markers and the notebook rule believe they run there: the tests of this
rule use it, and on Linux

    MINILDR_TEST_PRETEND_HOST="Windows AMD64" make test

shows what a Windows run would skip, and that no cell left running needs a
skipped one (a NameError would fail it). Nothing in the package reads it.
"""
from __future__ import annotations

import os
from typing import Tuple

import pytest

from minildr.course import runs_on
from minildr.host import HOST, normalize_arch, normalize_os

PRETEND_ENV = "MINILDR_TEST_PRETEND_HOST"
OS_NAMES = {"linux": "Linux", "darwin": "Darwin", "windows": "Windows"}


def parse_platform(text: str) -> Tuple[str, str]:
    """('darwin', 'aarch64') from 'Darwin arm64': an OS name and a machine, as uname says them."""
    os_name, _, machine = text.strip().partition(" ")
    return normalize_os(os_name.lower()), normalize_arch(machine.strip())


def host() -> Tuple[str, str]:
    """The (os, arch) the tests run on, or pretend to (MINILDR_TEST_PRETEND_HOST)."""
    pretend = os.environ.get(PRETEND_ENV, "").strip()
    return parse_platform(pretend) if pretend else (HOST.os, HOST.arch)


def describe(platform: Tuple[str, str]) -> str:
    """'Linux x86_64': the spelling notebooks record."""
    return f"{OS_NAMES.get(platform[0], platform[0])} {platform[1]}"


# ---------------------------------------------------------------------------
# The markers
# ---------------------------------------------------------------------------
def requires_linux(why: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(host()[0] != "linux", reason=f"Linux only: {why}")


def requires_posix(why: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(host()[0] == "windows", reason=f"POSIX only (not Windows): {why}")


def skip_on(os_name: str, why: str) -> pytest.MarkDecorator:
    """Skip on one OS ('linux', 'darwin', 'windows'), where the test would not make sense."""
    return pytest.mark.skipif(host()[0] == os_name,
                              reason=f"not on {OS_NAMES.get(os_name, os_name)}: {why}")


requires_native_loader = pytest.mark.skipif(
    host() not in {("linux", "x86_64"), ("linux", "aarch64")},
    reason="the native loader maps ELF files: Linux x86_64/aarch64 only")

requires_elf = requires_linux(
    "reads the ELF file minildr.build writes here (macOS builds Mach-O, Windows PE)")

requires_proc = requires_linux("reads /proc/self (maps, statm, fd), which only Linux has")

requires_isolation = requires_posix(
    "isolate=True gives its worker a socketpair and the plugin by descriptor (pass_fds) "
    "and reads signals; on Windows it raises NotImplementedError")


# ---------------------------------------------------------------------------
# The notebook rule (nbval)
# ---------------------------------------------------------------------------
def _notebook_items(items):
    for item in items:
        if type(item).__name__ == "IPyNbCell" and hasattr(item, "options"):
            yield item


def cell_skip_reason(notebook_meta: dict, cell_meta: dict, here: Tuple[str, str]) -> str:
    """Why this cell cannot run here ('' if it can): minildr.course.runs_on's rule, with the host named."""
    recorded = notebook_meta.get("minildr", {}).get("outputs_recorded_on", "Linux x86_64")
    whole = runs_on.notebook_skip_reason(notebook_meta, here[0])
    if whole:
        return f"{whole} (this host is {describe(here)})"
    reason = runs_on.cell_skip_reason(cell_meta, here[0])
    if reason.startswith(runs_on.LINUX_ONLY):
        return f"{reason} (outputs recorded on {recorded}; this host is {describe(here)})"
    return f"{reason} (this host is {describe(here)})" if reason else ""


def pytest_collection_modifyitems(config, items):
    """Notebooks recorded elsewhere: run every cell, compare no output, skip tagged cells.

    tests/conftest.py imports this hook, and pytest hands a conftest's
    collection hook every collected item: the notebooks in notebooks/ and
    solutions/ too, whenever tests/ is among the paths (as in `make test`).
    Run alone (`pytest --nbval notebooks/x.ipynb`), add `-p platforms` with
    tests/ on PYTHONPATH to have the rule.
    """
    here = host()
    for item in _notebook_items(items):
        meta = item.parent.nb.metadata
        recorded = meta.get("minildr", {}).get("outputs_recorded_on")
        if recorded is None or parse_platform(recorded) == here:
            continue                           # recorded here: nbval as usual
        item.options["check"] = False          # outputs are this machine's, not the saved ones
        reason = cell_skip_reason(meta, item.cell.metadata, here)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
