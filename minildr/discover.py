"""Finding plugins: a folder scan that survives bad plugins, and paths that do not move.

`discover` is what an application does at start-up: try every file with the
platform's suffix in a plugins folder, keep the ones that load, and report
the others with their reasons. One broken plugin never stops the rest.

`plugin_path` answers a classic trap: a relative path such as "greet.so" is
resolved against the *current working directory*, which is wherever the
user happened to start the program. Resolve it against something fixed
instead: the module's own file, or the executable.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Tuple

from .console import printable
from .errors import PluginError, PluginNotFound, UnreadableFile
from .host import SUFFIX
from .interrupts import finish
from .loader import Plugin, open as open_plugin

log = logging.getLogger("minildr")


@dataclass
class Report:
    """What a scan found: the plugins that loaded, and (path, error) for the rest."""

    folder: Path
    loaded: List[Plugin] = field(default_factory=list)
    failed: List[Tuple[Path, PluginError]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def rows(self) -> List[Tuple[str, str, str]]:
        """(file, status, detail) for every plugin, in the order they were tried."""
        rows = [(Path(p.path).name, "loaded", f"{p.name} {p.version}, exports "
                 f"{', '.join(p.exports) or 'nothing'}") for p in self.loaded]
        rows += [(path.name, type(err).__name__, err.reason) for path, err in self.failed]
        # A plugin names itself and its exports; a hostile folder names its files:
        # neither may put a control sequence on the terminal that shows the table.
        return sorted((printable(f), s, printable(d)) for f, s, d in rows)

    def table(self) -> str:
        rows = self.rows()
        if not rows:
            return f"no *{SUFFIX} files in {self.folder}"
        width = [max(len(r[i]) for r in rows + [("file", "status", "")]) for i in range(2)]
        lines = [f"{'file':<{width[0]}}  {'status':<{width[1]}}  detail"]
        lines += [f"{f:<{width[0]}}  {s:<{width[1]}}  {d}" for f, s, d in rows]
        lines.append(f"{len(self.loaded)} loaded, {len(self.failed)} failed")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def close(self) -> None:
        for plugin in self.loaded:
            plugin.close()

    def __enter__(self) -> "Report":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def discover(folder: "os.PathLike[str] | str", **open_kwargs: Any) -> Report:
    """Open every `*<SUFFIX>` file in `folder` (not recursive), in name order.

    Each file must be the plugin its name says: `greet.so` must carry the
    manifest of a plugin called greet (open's expect=), so a plugin copied
    over another's file (substitution, however it is signed) is refused.
    `open_kwargs` go to each open(): isolate=True, sandbox=True (or a
    SandboxPolicy), env=, trust=, contracts=.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PluginNotFound(folder, "is not a folder; pass the folder that holds the plugins")
    report = Report(folder)
    try:
        for path in entries(folder):
            try:
                report.loaded.append(open_plugin(path, **{"expect": path.stem, **open_kwargs}))
            except PluginError as exc:
                report.failed.append((path, exc))
        log.info("discover %s: %d loaded, %d failed", printable(os.fspath(folder)),
                 len(report.loaded), len(report.failed))
        return report           # inside the try: an interrupt here must not lose the plugins
    except BaseException:       # KeyboardInterrupt, MemoryError...: close what was opened
        finish(report.close)
        raise


def entries(folder: Path) -> List[Path]:
    """The folder's `*<SUFFIX>` entries in name order; a folder that cannot be listed
    (no permission, no descriptors left) is UnreadableFile naming it, not a bare OSError."""
    try:
        return sorted(path for path in folder.iterdir() if path.suffix == SUFFIX)
    except OSError as exc:
        raise UnreadableFile(folder, f"cannot be listed ({exc.strerror or exc}); check its "
                                     "permissions, or close other files, then scan it again"
                             ) from None


def plugin_path(name: str, base: "os.PathLike[str] | str") -> Path:
    """`name` + the platform suffix, in the folder of `base` (a file) or `base` (a folder).

    Typical bases: `__file__` (next to this module), `sys.executable`, or an
    application's plugins folder. The result is absolute, so changing the
    working directory later does not change what it names. Only an existing
    file counts as a file: a base that does not exist yet is a folder, so that
    the error for a missing plugins folder names the file inside it.
    """
    base_path = Path(base).resolve()
    folder = base_path.parent if base_path.is_file() else base_path
    filename = name if name.endswith(SUFFIX) else f"{name}{SUFFIX}"
    return folder / filename
