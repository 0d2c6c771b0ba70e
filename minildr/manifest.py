"""The manifest: what `build` stamps into a plugin, read back without running it.

Go's `-buildmode=plugin` stamps metadata the Go runtime checks before it
trusts a plugin. minildr does the same in a way any tool can see: a JSON
document inside a note, the format-neutral way binaries carry metadata.

    ELF     a PT_NOTE entry, owner "minildr"    (`readelf -n plugin.so` shows it)
    Mach-O  the section __TEXT,__minildr        (`otool -s __TEXT __minildr`)
    PE      the section .minildr                (`objdump -s -j .minildr`)

In all three the bytes have the ELF note layout: namesz, descsz, type (32-bit
each), the owner name "minildr\\0", then the JSON payload.

Reading it only parses headers; no code of the plugin runs.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from .formats import elf, macho, pe
from .errors import NotAPlugin
from .host import HOST, Platform

ABI_VERSION = 1                   # bumped whenever the plugin conventions change
MANIFEST_FORMAT = 1               # the layout of the JSON document itself
NOTE_OWNER = "minildr"
NT_MINILDR_MANIFEST = 0x4D4C4452  # "MLDR"; note types are scoped by their owner
EXPORT_KINDS = ("function", "data")


@dataclass(frozen=True)
class BinaryInfo:
    """What a file is, read from its headers: format, kind, architecture, pointer size."""
    format: str          # "ELF", "Mach-O", "PE"
    kind: str            # "shared library", "executable", ...
    arch: str            # "x86_64", "aarch64", ...
    bits: int
    os: str              # the OS family the format belongs to

    def __str__(self) -> str:
        return f"{self.bits}-bit {self.format} {self.kind} for {self.arch}"


@dataclass(frozen=True)
class Export:
    """One exported symbol: its name, 'function' or 'data', and its C type."""
    name: str
    kind: str
    ctype: str


@dataclass(frozen=True)
class ContractRef:
    """A contract the plugin was built against, identified by its content hash."""
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What `build` stamped into a plugin: ABI, platform, name, version, exports, types,
    contracts. (A dataclass without a docstring has one made from inspect.signature,
    ~0.1 ms at every import: every isolated worker's start.)"""
    abi: int
    platform: Platform
    name: str
    version: str
    exports: Mapping[str, Export]
    contracts: Mapping[str, ContractRef] = field(default_factory=dict)
    types: str = ""                  # C declarations the export types refer to
    compiler: str = ""

    def to_json(self) -> dict:
        return {
            "minildr": MANIFEST_FORMAT,
            "abi": self.abi,
            "platform": self.platform.as_dict(),
            "name": self.name,
            "version": self.version,
            "exports": {e.name: {"kind": e.kind, "ctype": e.ctype} for e in self.exports.values()},
            "types": self.types,
            "contracts": {c.name: {"version": c.version, "sha256": c.sha256}
                          for c in self.contracts.values()},
            "compiler": self.compiler,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def decode(cls, payload: bytes, path: "os.PathLike[str] | str") -> "Manifest":
        """Parse and validate the JSON payload; anything malformed is NotAPlugin."""
        try:
            doc = json.loads(payload.decode("utf-8"))
        # ValueError covers UnicodeDecodeError and JSONDecodeError, and also the int
        # digit limit ("abi": 9999...); RecursionError: arrays nested too deep.
        except (ValueError, RecursionError) as exc:
            raise NotAPlugin(path, f"its minildr manifest is damaged (not valid JSON: {exc}); "
                                   "rebuild the plugin with minildr.build") from None
        check = _SchemaCheck(path)
        check.shape(doc, dict, "the manifest")
        platform = check.field(doc, "platform", dict)
        exports = check.field(doc, "exports", dict)
        contracts = doc.get("contracts", {})
        check.shape(contracts, dict, "'contracts'")
        return cls(
            abi=check.field(doc, "abi", int),
            platform=Platform(os=check.field(platform, "os", str),
                              arch=check.field(platform, "arch", str),
                              bits=check.field(platform, "bits", int)),
            name=check.field(doc, "name", str),
            version=check.field(doc, "version", str),
            exports={name: Export(name, check.kind(check.field(e, "kind", str, name), name),
                                  check.field(e, "ctype", str, name))
                     for name, e in exports.items() if check.shape(e, dict, f"export {name!r}")},
            contracts={name: ContractRef(name, check.field(c, "version", str, name),
                                         check.field(c, "sha256", str, name))
                       for name, c in contracts.items()
                       if check.shape(c, dict, f"contract {name!r}")},
            types=check.field(doc, "types", str, default=""),
            compiler=check.field(doc, "compiler", str, default=""),
        )


class _SchemaCheck:
    """Field access on the decoded JSON that turns every surprise into NotAPlugin."""

    _MISSING = object()

    def __init__(self, path) -> None:
        self.path = path

    def shape(self, value, kind: type, what: str) -> bool:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise NotAPlugin(self.path, f"its minildr manifest is damaged: {what} should be "
                                        f"a {kind.__name__}; rebuild the plugin with minildr.build")
        return True

    def kind(self, value: str, name: str) -> str:
        """An export's kind: one of EXPORT_KINDS, since lookups and isolation act on it."""
        if value not in EXPORT_KINDS:
            raise NotAPlugin(self.path, f"its minildr manifest is damaged: export {name!r} "
                                        f"has kind {value!r}, not one of {', '.join(EXPORT_KINDS)}; "
                                        "rebuild the plugin with minildr.build")
        return value

    def field(self, doc: dict, key: str, kind: type, where: str = "", default=_MISSING):
        try:
            value = doc[key]
        except KeyError:
            if default is not self._MISSING:
                return default
            where = f" of {where!r}" if where else ""
            raise NotAPlugin(self.path, f"its minildr manifest is damaged: field {key!r}{where} "
                                        "is missing; rebuild the plugin with minildr.build") from None
        if value.__class__ is not kind:      # (exactly the kind: the common case, checked fast)
            self.shape(value, kind, f"field {key!r}" + (f" of {where!r}" if where else ""))
        return value


# ---------------------------------------------------------------------------
# Finding the note in each binary format
# ---------------------------------------------------------------------------
def parse_note(raw: bytes, path) -> Optional[bytes]:
    """The payload of a minildr note held in a Mach-O or PE section."""
    if len(raw) < 12:
        raise NotAPlugin(path, "its minildr manifest section is truncated")
    namesz, descsz, ntype = struct.unpack_from("<III", raw)
    name_end = 12 + namesz
    desc_at = 12 + ((namesz + 3) & ~3)
    if desc_at + descsz > len(raw) or name_end > len(raw):
        raise NotAPlugin(path, "its minildr manifest is truncated: the note claims "
                               f"{descsz} bytes but the section holds {len(raw) - desc_at}")
    if raw[12:name_end].rstrip(b"\0") != NOTE_OWNER.encode() or ntype != NT_MINILDR_MANIFEST:
        raise NotAPlugin(path, "its minildr manifest section does not hold a minildr note")
    return raw[desc_at:desc_at + descsz]


def examine(data: bytes, path: "os.PathLike[str] | str") -> Tuple[BinaryInfo, Optional[bytes]]:
    """What the file is, and the manifest payload if it carries one."""
    if data[:4] == elf.ELFMAG:
        return examine_elf(elf.ElfFile(data, path))
    if macho.is_macho(data):
        m = macho.MachOFile(data, path, HOST.arch)
        info = BinaryInfo("Mach-O", m.kind, m.arch, 64, "darwin")
        raw = m.section_bytes(macho.MANIFEST_SEGMENT, macho.MANIFEST_SECTION)
        return info, None if raw is None else parse_note(raw, path)
    if pe.is_pe(data):
        p = pe.PEFile(data, path)
        info = BinaryInfo("PE", p.kind, p.arch, 64, "windows")
        raw = p.section_bytes(pe.MANIFEST_SECTION)
        return info, None if raw is None else parse_note(raw, path)
    raise NotAPlugin(path, f"not a shared library: {describe_unknown(data)}")


def examine_elf(f: "elf.ElfFile") -> Tuple[BinaryInfo, Optional[bytes]]:
    """`examine` of an ELF file already read (a PluginImage reads it once for every check)."""
    info = elf_info(f.header.e_type, f.header.e_machine)
    payload = next((n.desc for n in f.notes()
                    if n.name == NOTE_OWNER and n.type == NT_MINILDR_MANIFEST), None)
    return info, payload


def elf_info(e_type: int, e_machine: int) -> BinaryInfo:
    """What a 64-bit ELF file with this header is."""
    return BinaryInfo("ELF", elf.kind_name(e_type), elf.arch_name(e_machine), 64, "linux")


def is_binary(head: bytes) -> bool:
    """Whether the first bytes of a file start an ELF, Mach-O or PE file."""
    return head[:4] == elf.ELFMAG or macho.is_macho(head) or pe.is_pe(head)


def describe_unknown(data: bytes) -> str:
    if not data:
        return "the file is empty"
    if len(data) < 4 and elf.ELFMAG.startswith(data):
        return "a truncated ELF file"
    if data.startswith(b"!<arch>"):
        return "a static archive (.a), not a shared library"
    head = data[:512]
    try:
        head.decode("utf-8")
        if b"\0" not in head:
            return "it looks like a text file"
    except UnicodeDecodeError:
        pass
    return f"unknown format (first bytes {data[:8].hex(' ')})"


def manifest_from_bytes(data: bytes, path: "os.PathLike[str] | str") -> Manifest:
    return manifest_from_payload(*examine(data, path), path)


def manifest_from_payload(info: BinaryInfo, payload: Optional[bytes],
                          path: "os.PathLike[str] | str") -> Manifest:
    if payload is None:
        raise NotAPlugin(path, f"a {info} without a minildr manifest: built without "
                               "minildr.build? Rebuild it with minildr.build (or "
                               "`python -m minildr build`)")
    return Manifest.decode(payload, path)
