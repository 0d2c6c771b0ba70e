"""Contracts: a C header that host and plugins share, identified by its content.

Go refuses a plugin built against another version of a package the host also
uses. minildr's analogue is the contract: a named, versioned header (usually
a struct of function pointers) that both sides compile against. Its hash is
taken over the header's tokens, so reformatting or re-commenting it keeps the
hash, and any change a compiler would see changes it.

`build(..., contracts=[c])` compiles the plugin against exactly this text and
records (name, version, hash) in the manifest; `open(..., contracts=[c])`
refuses a plugin whose recorded hash differs (`DependencyMismatch`), unless
the two are versions MAJOR.x of the same contract whose types differ only by
fields appended to their vtables (see `minildr.h` and `layout.py`).

The host reads its own contract without a C compiler: `preprocess` follows
the few directives a contract header needs (include guards, `#define` of
constants, `#include` of standard headers and "minildr.h"), and
`declarations` parses the result. `plugin.lookup(name, contract)` builds a
proxy from them (proxy.py).
"""
from __future__ import annotations

import hashlib
import os
import re
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from .. import ctype, files
from . import layout
from ..errors import DependencyMismatch
from ..manifest import ContractRef

INCLUDE_DIR = Path(__file__).resolve().parents[1] / "include"   # minildr/include: minildr.h

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
                       text=files.read_text(path, files.MAX_SOURCE_BYTES), filename=path.name)
        if not name:
            raise ValueError("Contract.from_header(text) needs name=... when given header text")
        return cls(name=name, version=version, text=str(path_or_text))

    @classmethod
    def from_spec(cls, spec: str) -> "Contract":
        """A contract from the command line's `FILE` or `FILE:NAME:VERSION`.

        FILE may start with a Windows drive (`C:\\...`): the spec is split at
        its last two colons, and a one-letter first part is a drive, not a file.
        """
        parts = spec.rsplit(":", 2)
        if len(parts) == 3 and len(parts[0]) > 1:
            return cls.from_header(Path(parts[0]), name=parts[1], version=parts[2])
        return cls.from_header(Path(spec))

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

    # -- what the header declares ----------------------------------------
    @property
    def major_minor(self) -> Optional[Tuple[int, int]]:
        """(major, minor) from a version like '1.2' or '1.2.3'; None if it has no such form."""
        return parse_version(self.version)

    @property
    def declarations(self) -> layout.Declarations:
        """The structs, enums and typedefs the header declares, read without a compiler."""
        return _declarations(self)

    def vtables(self) -> List[layout.Struct]:
        """The structs of function pointers this contract declares, by their typedef names."""
        seen, result = [], []
        structs = self.declarations.structs
        for name in sorted(structs, key=lambda n: n.startswith("struct ")):   # typedefs first
            struct = structs[name]
            if any(_is_function_pointer(f) for f in struct.fields) and struct.fields not in seen:
                seen.append(struct.fields)
                result.append(struct)
        return result

    def compatible_with(self, theirs: ContractRef, types: str) -> Optional[str]:
        """None if a plugin built against `theirs` (its declarations: `types`) can be used.

        Same hash: yes. Same MAJOR and the plugin's types differ from ours only
        by fields appended to vtables: yes. Otherwise the reason why not.
        """
        if theirs.sha256 == self.sha256:
            return None
        mine, other = self.major_minor, parse_version(theirs.version)
        if theirs.version == self.version or mine is None or other is None:
            return "same version label, different content" if theirs.version == self.version \
                else "the versions are not MAJOR.MINOR, so only identical contracts match"
        if mine[0] != other[0]:
            newer = "a newer" if other[0] > mine[0] else "an older"
            return (f"the plugin uses {newer} major version ({theirs.version}), and a new major "
                    "version may change anything")
        try:
            plugin_side = layout.Declarations(types, "<the plugin's manifest>")
        except ctype.CTypeError as exc:
            return f"the plugin's recorded declarations cannot be read ({exc})"
        problem = layout.compare(self.declarations, plugin_side)
        if problem:
            return f"not an append-only change: {problem}"
        return None


def dependency_mismatch(path: "os.PathLike[str] | str", contract: Contract,
                        theirs: ContractRef, why: str) -> DependencyMismatch:
    """The error for a plugin built against another version of `contract`.

    Both `open` (checks.check_contracts) and a contract lookup (proxy.bind)
    refuse with it, so the two say the same thing.
    """
    return DependencyMismatch(path, (
        f"plugin was built with a different version of contract {contract.name}: "
        f"the plugin has {contract.name} {theirs.version} (sha256 {theirs.sha256[:16]}), "
        f"the host has {contract.name} {contract.version} (sha256 {contract.sha256[:16]}): "
        f"{why}; rebuild the plugin against the host's {contract.filename}"))


def parse_version(version: str) -> Optional[Tuple[int, int]]:
    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _is_function_pointer(f: layout.Field) -> bool:
    return f.ctype.endswith(")") and "(*)" in f.ctype


@functools.lru_cache(maxsize=64)
def _declarations(contract: Contract) -> layout.Declarations:
    text = preprocess(contract.text, source=contract.filename)
    try:
        return layout.Declarations(text, contract.filename)
    except ctype.CTypeError as exc:
        raise ValueError(f"{contract.filename}: cannot read the contract's declarations: "
                         f"{exc}") from None


# ---------------------------------------------------------------------------
# A preprocessor for contract headers
# ---------------------------------------------------------------------------
_DIRECTIVE = re.compile(r"\s*#\s*(\w*)\s*(.*)")
_MACRO = re.compile(r"([A-Za-z_]\w*)(\()?\s*(.*)")


def _without_comments(text: str, source: str) -> str:
    out = []
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "unterminated":
            raise ValueError(f"{source}: a /* comment is never closed")
        if m.lastgroup == "comment":
            out.append(" " + "\n" * m.group().count("\n"))
        elif m.lastgroup == "space" and m.group().startswith("\\"):
            out.append(" ")                  # a continued line joins the next
        else:
            out.append(m.group())
    return "".join(out)


def preprocess(text: str, *, source: str = "<contract>",
               macros: Optional[Dict[str, str]] = None, depth: int = 0) -> str:
    """The header's declarations as a C preprocessor would leave them, for a simple header.

    Follows #ifndef/#ifdef/#else/#endif, object-like #define (expanded),
    #undef, #pragma (ignored), #include <standard> (their types are always
    known) and #include "minildr.h". Anything else is refused with a message,
    rather than read wrong.
    """
    macros = {} if macros is None else macros
    if depth > 8:
        raise ValueError(f"{source}: #include nests too deeply")
    active: List[bool] = []
    out: List[str] = []
    for number, line in enumerate(_without_comments(text, source).split("\n"), 1):
        d = _DIRECTIVE.fullmatch(line)
        if d is None:
            if all(active):
                out.append(_expand(line, macros))
            continue
        word, rest = d.group(1), d.group(2).strip()
        where = f"{source}:{number}"
        if word in ("ifdef", "ifndef"):
            active.append((rest.split()[0] in macros) == (word == "ifdef") if rest else False)
        elif word == "else":
            if not active:
                raise ValueError(f"{where}: #else without #if")
            active[-1] = not active[-1]
        elif word == "endif":
            if not active:
                raise ValueError(f"{where}: #endif without #if")
            active.pop()
        elif not all(active) or word in ("pragma", ""):
            continue
        elif word == "define":
            m = _MACRO.fullmatch(rest)
            if m is None:
                raise ValueError(f"{where}: cannot read '#define {rest}'")
            if not m.group(2):              # function-like macros are for the C side only
                macros[m.group(1)] = m.group(3)
        elif word == "undef":
            macros.pop(rest, None)
        elif word == "include":
            if rest.startswith("<"):
                continue
            if rest == '"minildr.h"':
                header = INCLUDE_DIR / "minildr.h"
                out.append(preprocess(header.read_text(encoding="utf-8"), source="minildr.h",
                                      macros=macros, depth=depth + 1))
                continue
            raise ValueError(f"{where}: '#include {rest}': a contract header must be "
                             "self-contained (it may include <standard headers> and "
                             '"minildr.h" only); put the declarations it needs in it')
        else:
            raise ValueError(f"{where}: '#{word}' is more than minildr reads in a contract "
                             "header; use include guards (#ifndef/#define/#endif) and "
                             "plain declarations")
    if active:
        raise ValueError(f"{source}: an #if block is never closed with #endif")
    return "\n".join(out)


def _expand(line: str, macros: Dict[str, str], depth: int = 0) -> str:
    if not macros or depth > 16:
        return line
    expanded = re.sub(r"[A-Za-z_]\w*", lambda m: macros.get(m.group(), m.group()), line)
    return expanded if expanded == line else _expand(expanded, macros, depth + 1)
