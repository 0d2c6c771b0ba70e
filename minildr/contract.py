"""Contracts: a C header that host and plugins share, identified by its content.

Go refuses a plugin built against another version of a package the host also
uses. minildr's analogue is the contract: a named, versioned header (usually
a struct of function pointers) that both sides compile against. Its hash is
taken over the header's tokens, so reformatting or re-commenting it keeps the
hash, and any change a compiler would see changes it.

`build(..., contracts=[c])` compiles the plugin against exactly this text and
records (name, version, hash) in the manifest; `open(..., contracts=[c])`
refuses a plugin whose recorded hash differs (`DependencyMismatch`).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Union

from .manifest import ContractRef

# C's tokens, in the order they must be tried. Comments become nothing (the
# tokens around them are joined by a space anyway), and a newline matters
# only where it ends a preprocessor directive.
_TOKEN = re.compile(r"""
    (?P<space>[ \t\f\v\r]+|\\\r?\n)
  | (?P<newline>\n)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<unterminated>/\*)
  | (?P<literal>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<number>\.?[0-9](?:[eEpP][+-]|[A-Za-z0-9_.])*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>\.\.\.|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!=<>]=|\#\#|.)
""", re.VERBOSE | re.DOTALL)


def canonical_text(text: str, *, source: str = "<contract>") -> str:
    """The header with comments removed and whitespace normalised between tokens."""
    lines: List[List[str]] = [[]]
    directive = False          # inside a preprocessor directive
    line_start = True          # no token yet on this physical line
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("space", "comment"):
            continue
        if kind == "unterminated":
            raise ValueError(f"{source}: a /* comment is never closed")
        if kind == "newline":
            if directive:          # a directive ends at its newline
                lines.append([])
                directive = False
            line_start = True
            continue
        if m.group() == "#" and line_start:
            directive = True
            if lines[-1]:
                lines.append([])
        lines[-1].append(m.group())
        line_start = False
    return "\n".join(" ".join(tokens) for tokens in lines if tokens)


@dataclass(frozen=True)
class Contract:
    """A named, versioned C header shared by host and plugins."""

    name: str
    version: str
    text: str = field(repr=False)
    filename: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"contract name {self.name!r} must be a C identifier")
        if not self.filename:
            object.__setattr__(self, "filename", f"{self.name}.h")
        canonical_text(self.text, source=self.filename)     # reject broken text early

    @classmethod
    def from_header(cls, path_or_text: Union[str, "os.PathLike[str]"], *,
                    name: str = "", version: str = "1.0") -> "Contract":
        """A contract from a header file (name defaults to its stem) or from its text."""
        if isinstance(path_or_text, os.PathLike) or (
                "\n" not in str(path_or_text) and str(path_or_text).endswith(".h")):
            path = Path(path_or_text)
            return cls(name=name or path.stem, version=version,
                       text=path.read_text(encoding="utf-8"), filename=path.name)
        if not name:
            raise ValueError("Contract.from_header(text) needs name=... when given header text")
        return cls(name=name, version=version, text=str(path_or_text))

    @property
    def canonical(self) -> str:
        return canonical_text(self.text, source=self.filename)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical.encode("utf-8")).hexdigest()

    @property
    def ref(self) -> ContractRef:
        """How a manifest records this contract."""
        return ContractRef(self.name, self.version, self.sha256)

    def __str__(self) -> str:
        return f"contract {self.name} {self.version} (sha256 {self.sha256[:12]})"
