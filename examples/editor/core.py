"""A small editor core whose file formats and on-save checks come from plugins.

The editor knows two contracts (contracts.py), and nothing about any plugin:

- a *format* turns a file's bytes into text on open, and back on save;
- a *linter* runs on save and returns diagnostics (line, column, rule, message).

`Editor.load_plugins(folder)` scans a folder with `minildr.discover`: every
plugin that passes minildr's checks and exports a vtable of one of the two
contracts is registered; every other one is reported with its reason and
skipped, and the editor keeps working without it.

`Editor(isolate=True)` loads each plugin in its own worker process
(minildr's isolation): the formats and linters behave the same, and a plugin
that crashes or hangs becomes an error (a linter's, a diagnostic) instead of
ending the editor. `isolate=2.5` also bounds each plugin call to 2.5 s.
`Editor(sandbox=True)` also confines each worker (minildr.SandboxPolicy): a
format plugin from a stranger can then read, write and reach nothing but
what it is handed.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import minildr

from .contracts import CONTRACTS, FORMAT
from .protocols import FileFormat, LintDiagnostic, Linter

log = logging.getLogger("examples.editor")


class EditorError(Exception):
    """A file cannot be opened or saved; the message names the file and the reason."""


@dataclass
class Buffer:
    """A file's text in memory, with the format it was read in (None: plain UTF-8)."""
    path: Path
    text: str
    format: Optional[str] = None
    dirty: bool = False

    def replace(self, text: str) -> None:
        self.text, self.dirty = text, True

    @property
    def lines(self) -> List[str]:
        return self.text.splitlines()


@dataclass(frozen=True)
class Diagnostic:
    """One finding of an on-save check, with the linter that made it."""
    line: int
    column: int
    rule: str
    message: str
    source: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.rule}: {self.message} [{self.source}]"


@dataclass
class Editor:
    formats: Dict[str, FileFormat] = field(default_factory=dict)     # suffix -> format
    hooks: List[Tuple[str, Linter]] = field(default_factory=list)    # (name, linter)
    skipped: List[Tuple[str, str]] = field(default_factory=list)     # (file, reason)
    isolate: Union[bool, float] = False      # each plugin in a worker process (minildr)
    sandbox: Union[bool, minildr.SandboxPolicy] = False   # and confined by the kernel
    _reports: List[minildr.Report] = field(default_factory=list, repr=False)

    # -- plugins -------------------------------------------------------
    def load_plugins(self, folder: "os.PathLike[str] | str") -> minildr.Report:
        """Register every format and linter a plugins folder offers; report the rest."""
        report = minildr.discover(folder, contracts=CONTRACTS, isolate=self.isolate,
                                  sandbox=self.sandbox)
        for path, error in report.failed:
            self.skipped.append((path.name, f"{type(error).__name__}: {error.reason}"))
        for plugin in report.loaded:
            self._register(plugin)
        self._reports.append(report)
        return report

    def _register(self, plugin: minildr.Plugin) -> None:
        found = False
        for export in plugin.manifest.exports.values():
            contract = self._contract_for(export)
            if contract is None:
                continue
            try:
                vtable = plugin.lookup(export.name, contract)
            except minildr.PluginError as exc:
                self.skipped.append((Path(plugin.path).name,
                                     f"{type(exc).__name__}: {exc.reason}"))
                continue
            found = True
            if contract is FORMAT:
                self.add_format(vtable)
            else:
                self.add_hook(vtable)
        if not found:
            self.skipped.append((Path(plugin.path).name, "implements neither a format "
                                 "nor a linter"))

    @staticmethod
    def _contract_for(export: minildr.manifest.Export) -> Optional[minildr.Contract]:
        if export.kind != "data":
            return None
        for contract in CONTRACTS:
            if contract.declarations.struct(export.ctype) is not None:
                return contract
        return None

    def add_format(self, fmt: FileFormat) -> None:
        for suffix in fmt.suffixes().split():
            self.formats[suffix.lower()] = fmt
        log.info("format %s for %s", fmt.name(), fmt.suffixes())

    def add_hook(self, linter: Linter) -> None:
        self.hooks.append((linter.name(), linter))

    def close(self) -> None:
        self.formats.clear()
        self.hooks.clear()
        for report in self._reports:
            report.close()
        self._reports.clear()

    # -- files ---------------------------------------------------------
    def format_for(self, path: Path) -> Optional[FileFormat]:
        return self.formats.get(path.suffix.lower())

    def open(self, path: "os.PathLike[str] | str") -> Buffer:
        """Read a file into a buffer, decoding it with its format's plugin, if any."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EditorError(f"{path}: cannot open: {exc.strerror}") from None
        fmt = self.format_for(path)
        if fmt is None:
            raw, name = data, None
        else:
            name = None
            try:
                name = fmt.name()
                raw = fmt.decode(data)
            except minildr.PluginCallError as exc:
                raise EditorError(f"{path}: not valid {name or 'for its format'}: "
                                  f"{exc.plugin_message or exc}") from None
            except minildr.PluginError as exc:      # an isolated format crashed or hung
                raise EditorError(f"{path}: its format plugin failed: {exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EditorError(f"{path}: not UTF-8 text (byte {exc.start + 1})") from None
        return Buffer(path, text, name)

    def check(self, buffer: Buffer) -> List[Diagnostic]:
        """Run every on-save hook on the buffer's text; a failing hook is reported, not fatal."""
        found: List[Diagnostic] = []
        for name, linter in self.hooks:
            try:
                items: List[LintDiagnostic] = linter.lint(buffer.text)
            except minildr.PluginError as exc:
                found.append(Diagnostic(0, 0, "linter-failed", str(exc), name))
                continue
            found += [Diagnostic(d.line, d.column, d.rule, d.message, name) for d in items]
        return sorted(found, key=lambda d: (d.line, d.column, d.rule))

    def save(self, buffer: Buffer, path: "os.PathLike[str] | str | None" = None
             ) -> List[Diagnostic]:
        """Lint, encode and write the buffer (atomically); return the diagnostics."""
        target = Path(path) if path is not None else buffer.path
        diagnostics = self.check(buffer)
        fmt = self.format_for(target)
        data = buffer.text.encode("utf-8")
        if fmt is not None:
            try:
                data = fmt.encode(data)
            except minildr.PluginCallError as exc:
                raise EditorError(f"{target}: cannot write as {fmt.name()}: {exc}") from None
            except minildr.PluginError as exc:      # an isolated format crashed or hung
                raise EditorError(f"{target}: its format plugin failed: {exc}") from None
        fd, staged = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(staged, target)
        except BaseException:
            os.unlink(staged)
            raise
        buffer.path, buffer.dirty = target, False
        return diagnostics

    def __enter__(self) -> "Editor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
