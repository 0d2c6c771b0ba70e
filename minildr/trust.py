"""Trust: decide, before any plugin code runs, whether these bytes may run at all.

Loading a shared library runs its code (its initialisers run inside dlopen),
so "do I trust this plugin?" has to be answered before the load, on the very
bytes that will be loaded. `open(path, trust=store)` asks the store about
`image.data` (see image.py): the same bytes then go to the loader.

A `TrustStore` trusts a plugin file in one of two ways:

- its SHA-256 digest is *pinned*: exactly this file, and nothing else, may run.
  Simple, but every rebuild needs a new pin.
- it carries a *detached signature* (a small text file beside it,
  `plugin.so.sig`) made with an Ed25519 private key whose public key is in
  the store. The author signs each release; users trust the author's key once.

The store is a human-readable text file, one entry a line:

    # minildr trust store
    sha256 9f2c...e1  greet 0.1.0
    key alice ed25519 mVZt6Q1v...=
    floor greet 1.4.0

A signature says who built a file, not which file a host meant to load: an
attacker who can write the plugins folder can put there *another* file the
same key signed, an older release with a known hole (rollback) or another
plugin (substitution). The plugin's name and version are in its manifest,
inside the signed bytes, so they cannot be changed without breaking the
signature; the store and the host use them. A `floor NAME VERSION` line
refuses any `NAME` older than `VERSION` (status `rollback`), however it is
signed or pinned; `open(path, expect="greet")` refuses a file whose manifest
names another plugin (status `unexpected-plugin`). The Update Framework
(TUF, theupdateframework.io) treats both attacks, and more, in full.

What is signed is not the file itself but a fixed prefix and its digest
(`minildr-plugin-sha256:` + the 32 digest bytes): the digest is computed once
on the bytes read, and the signature file repeats it, so a plugin changed
after signing is reported as exactly that.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Optional, Union

from . import edwards, files
from .errors import BadTrustFile, PluginError, PluginNotFound, UnreadableFile, UntrustedPlugin
from .image import PluginImage, read as read_image
from .manifest import Manifest

SIGNATURE_SUFFIX = ".sig"
SIGNED_PREFIX = b"minildr-plugin-sha256:"
SIGNATURE_HEADER = "minildr signature 1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.@+-]+")

PathLike = Union[str, "os.PathLike[str]"]

if TYPE_CHECKING:
    from packaging.version import Version
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                                   Ed25519PublicKey)


def _ed25519():
    """The `cryptography` package's Ed25519 module, imported on first use.

    Importing it costs more than the rest of minildr's trust code, and most
    programs (and every isolated plugin's worker) never verify a signature.
    """
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519


def _serialization():
    from cryptography.hazmat.primitives import serialization
    return serialization


def _invalid_signature() -> type:
    from cryptography.exceptions import InvalidSignature
    return InvalidSignature


def signed_message(sha256: str) -> bytes:
    """The bytes an Ed25519 signature covers: a fixed prefix and the file's digest."""
    return SIGNED_PREFIX + bytes.fromhex(sha256)


def signature_path(plugin: PathLike) -> Path:
    """Where the detached signature of `plugin` lives: beside it, with `.sig` appended."""
    return Path(os.fspath(plugin) + SIGNATURE_SUFFIX)


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PublicKey:
    """A named Ed25519 public key: who signs plugins."""

    name: str
    key: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        serialization = _serialization()
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        """16 hex digits of the key's SHA-256: enough to tell keys apart by eye."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def line(self) -> str:
        """The key as one line of a trust file (and of a `.pub` file)."""
        return f"key {self.name} ed25519 {base64.b64encode(self.raw).decode()}"

    @classmethod
    def from_line(cls, line: str, source: str = "<key>") -> "PublicKey":
        parts = line.split()
        if len(parts) != 4 or parts[0] != "key" or parts[2] != "ed25519":
            raise BadTrustFile(source, f"expected 'key NAME ed25519 BASE64', found {line!r}")
        return cls(parts[1], _public_key(parts[3], source))

    @classmethod
    def from_file(cls, path: PathLike) -> "PublicKey":
        """A `.pub` file written by `keygen` (its one non-comment line)."""
        lines = [ln for ln in _read_text(path, files.MAX_KEY_BYTES).splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        if len(lines) != 1:
            raise BadTrustFile(path, "a public key file holds exactly one 'key NAME ed25519 "
                                     "BASE64' line; use the .pub file that keygen wrote")
        return cls.from_line(lines[0], os.fspath(path))

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"


def _public_key(text: str, source: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        key = _ed25519().Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise BadTrustFile(source, f"{text!r} is not an Ed25519 public key (32 bytes, "
                                   "base64)") from None
    weakness = edwards.weakness(raw)
    if weakness is not None:
        raise BadTrustFile(source, (
            f"the key {text!r} is {weakness}: signatures made up without any private key "
            "verify with it, so it can never be trusted; make a new key pair with "
            "python -m minildr keygen NAME"))
    return key


def _read_text(path: PathLike, limit: int) -> str:
    """A trust, key or signature file's text, read as files.py reads any hostile file."""
    try:
        return files.read_text(path, limit)
    except PluginNotFound as exc:
        raise BadTrustFile(path, exc.reason) from None
    except UnreadableFile as exc:
        raise BadTrustFile(path, exc.reason) from None


def generate_key(name: str, out_dir: PathLike = ".") -> tuple[Path, Path]:
    """A new key pair: NAME.key (private, PEM, readable only by you) and NAME.pub."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"key name {name!r}: use letters, digits and . _ @ + - only")
    folder = Path(out_dir)
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    serialization = _serialization()
    private = _ed25519().Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o600)                      # O_BINARY: Windows' descriptors are text by default
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = PublicKey(name, private.public_key())
    public_path.write_text("# minildr public key: add this line to a trust file to trust "
                           f"plugins signed by {name}\n{public.line()}\n")
    return private_path, public_path


def load_private_key(path: PathLike) -> Ed25519PrivateKey:
    try:
        data, _ = files.read_regular(path, files.MAX_KEY_BYTES)
    except (PluginNotFound, UnreadableFile) as exc:
        raise BadTrustFile(path, f"cannot read the private key: {exc.reason}") from None
    try:
        key = _serialization().load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadTrustFile(path, f"not an unencrypted PEM private key ({exc}); make one "
                                 "with python -m minildr keygen NAME") from None
    if not isinstance(key, _ed25519().Ed25519PrivateKey):
        raise BadTrustFile(path, "is not an Ed25519 key; make one with python -m minildr keygen")
    return key


# ---------------------------------------------------------------------------
# Detached signatures
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """A detached signature file: who signed which digest.

        minildr signature 1
        sha256 <the signed file's digest>
        key <name> ed25519 <base64 public key>
        ed25519 <base64 signature>

    The key in it says who claims to have signed; only a key the trust store
    holds (matched by fingerprint) decides whether to believe it.
    """

    sha256: str
    signer: PublicKey
    signature: bytes

    def text(self) -> str:
        return (f"{SIGNATURE_HEADER}\nsha256 {self.sha256}\n{self.signer.line()}\n"
                f"ed25519 {base64.b64encode(self.signature).decode()}\n")

    def valid_with(self, key: PublicKey) -> bool:
        try:
            key.key.verify(self.signature, signed_message(self.sha256))
        except _invalid_signature():
            return False
        return True

    @classmethod
    def parse(cls, text: str, source: str) -> "Signature":
        """Read a signature file; any damage raises BadTrustFile saying what is wrong."""
        fields: Dict[str, str] = {}
        lines = text.splitlines()
        if not lines or lines[0].strip() != SIGNATURE_HEADER:
            raise BadTrustFile(source, f"does not start with '{SIGNATURE_HEADER}'")
        for line in lines[1:]:
            word, _, rest = line.strip().partition(" ")
            if word:
                fields[word] = rest.strip()
        for word in ("sha256", "key", "ed25519"):
            if word not in fields:
                raise BadTrustFile(source, f"has no '{word}' line (truncated?)")
        if not _HEX64.fullmatch(fields["sha256"]):
            raise BadTrustFile(source, "its sha256 line is not 64 hex digits (truncated?)")
        signer = PublicKey.from_line(f"key {fields['key']}", source)
        try:
            signature = base64.b64decode(fields["ed25519"], validate=True)
        except binascii.Error:
            signature = b""
        if len(signature) != 64:
            raise BadTrustFile(source, "its ed25519 line is not a 64-byte signature in base64 "
                                       "(truncated?)")
        return cls(fields["sha256"], signer, signature)


def sign(plugin: PathLike, private_key: Union[PathLike, Ed25519PrivateKey], *,
         name: Optional[str] = None) -> Path:
    """Write `plugin.sig` beside `plugin`, signing its current bytes; returns its path.

    `name` labels the signer (default: the key file's stem, e.g. `alice` for alice.key).
    """
    if isinstance(private_key, _ed25519().Ed25519PrivateKey):
        key, label = private_key, name or "key"
    else:
        key, label = load_private_key(private_key), name or Path(private_key).stem
    digest = read_image(os.fspath(plugin)).sha256     # the file as it is now, by its name
    signature = Signature(digest, PublicKey(label, key.public_key()),
                          key.sign(signed_message(digest)))
    path = signature_path(plugin)
    path.write_text(signature.text())
    return path


# ---------------------------------------------------------------------------
# The store and its verdicts
# ---------------------------------------------------------------------------
class Status(str, Enum):
    """Why a plugin is trusted or not: one word per reason (equal to its string)."""

    PINNED = "pinned"                        # trusted: its digest is pinned
    SIGNED = "signed"                        # trusted: a trusted key signed it
    UNKNOWN_DIGEST = "unknown-digest"        # not pinned, and the store holds no keys
    NO_SIGNATURE = "no-signature"            # not pinned, and no .sig beside it
    DAMAGED_SIGNATURE = "damaged-signature"  # its .sig cannot be read
    TAMPERED = "tampered"                    # its .sig was made for other bytes
    UNKNOWN_KEY = "unknown-key"              # signed by a key the store does not hold
    BAD_SIGNATURE = "bad-signature"          # the signature does not verify
    ROLLBACK = "rollback"                    # older than the store's floor for its name
    UNEXPECTED_PLUGIN = "unexpected-plugin"  # another plugin than the host expected
    NO_MANIFEST = "no-manifest"              # a floor or expectation needs a manifest

    def __str__(self) -> str:
        return self.value


TRUSTED = frozenset({Status.PINNED, Status.SIGNED})


@dataclass(frozen=True)
class Verdict:
    """The store's answer for one plugin file, and why.

    status: a `Status`: PINNED or SIGNED (trusted), or the reason it is not.
    """

    trusted: bool
    status: Status
    explanation: str
    sha256: str
    signer: Optional[PublicKey] = None

    def __str__(self) -> str:
        return f"{'trusted' if self.trusted else 'NOT trusted'}: {self.explanation}"


class TrustStore:
    """Pinned SHA-256 digests and trusted Ed25519 public keys.

        store = TrustStore.load("trust.txt")          # or TrustStore() and fill it
        store.pin("plugins/greet.so")                  # this exact file may run
        store.add_key(PublicKey.from_file("alice.pub"))  # whatever alice signs may run
        minildr.open("plugins/greet.so", trust=store)
    """

    def __init__(self, digests: Union[Iterable[str], Dict[str, str]] = (),
                 keys: Iterable[PublicKey] = (), *, path: Optional[PathLike] = None) -> None:
        self.digests: Dict[str, str] = {}        # sha256 -> a note (what the file was)
        self.keys: Dict[str, PublicKey] = {}     # fingerprint -> key
        self.floors: Dict[str, str] = {}         # plugin name -> oldest version allowed
        self.path = None if path is None else os.fspath(path)
        notes = digests if isinstance(digests, dict) else dict.fromkeys(digests, "")
        for digest, note in notes.items():
            self.pin(digest, note)
        for key in keys:
            self.add_key(key)

    # -- filling it -------------------------------------------------------
    def pin(self, digest_or_path: PathLike, note: str = "") -> str:
        """Trust exactly one file: by its hex digest, or by reading the file now."""
        text = os.fspath(digest_or_path)
        if _HEX64.fullmatch(text.lower()):
            digest = text.lower()
        else:
            image = read_image(text)
            digest = image.sha256
            if not note:
                try:
                    manifest = image.manifest()
                    note = f"{manifest.name} {manifest.version}"
                except PluginError:      # pinning a file needs no manifest
                    note = Path(text).name
        self.digests[digest] = " ".join(note.split())
        return digest

    def set_floor(self, name: str, version: str) -> None:
        """Refuse any plugin called `name` older than `version` (a rollback), however trusted."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"plugin name {name!r}: use letters, digits and . _ @ + - only")
        _version(version, f"the floor for {name}")
        self.floors[name] = version

    def add_key(self, key: Union[PublicKey, PathLike]) -> PublicKey:
        """Trust what this key signs: a PublicKey or the path of a `.pub` file.

        A weak key (of small order, or not a point of the curve) is refused
        with BadTrustFile, whichever way it came: see edwards.py.
        """
        if not isinstance(key, PublicKey):
            key = PublicKey.from_file(key)
        weakness = edwards.weakness(key.raw)
        if weakness is not None:
            raise BadTrustFile(None, f"the key {key.name!r} is {weakness}: signatures made up "
                                     "without any private key verify with it; it cannot be "
                                     "trusted")
        self.keys[key.fingerprint] = key
        return key

    # -- the file -------------------------------------------------------------
    @classmethod
    def load(cls, path: PathLike) -> "TrustStore":
        store = cls(path=path)
        for number, raw in enumerate(_read_text(path, files.MAX_TRUST_STORE_BYTES).splitlines(), 1):
            line = raw.split("#", 1)[0].strip() if raw.lstrip().startswith("#") else raw.strip()
            if not line:
                continue
            where = f"{os.fspath(path)}:{number}"
            word = line.split()[0]
            if word == "sha256":
                parts = line.split(None, 2)
                if len(parts) < 2 or not _HEX64.fullmatch(parts[1].lower()):
                    raise BadTrustFile(where, "a sha256 line is 'sha256 <64 hex digits> [note]'")
                store.digests[parts[1].lower()] = parts[2] if len(parts) > 2 else ""
            elif word == "key":
                store.add_key(PublicKey.from_line(line, where))
            elif word == "floor":
                parts = line.split()
                if len(parts) != 3 or not _NAME.fullmatch(parts[1]):
                    raise BadTrustFile(where, "a floor line is 'floor <plugin name> <oldest "
                                              "version allowed>'")
                try:
                    store.set_floor(parts[1], parts[2])
                except ValueError as exc:
                    raise BadTrustFile(where, str(exc)) from None
            else:
                raise BadTrustFile(where, f"unknown entry {word!r}: each line is 'sha256 ...', "
                                          "'key ...', 'floor ...' or a # comment")
        return store

    def text(self) -> str:
        lines = ["# minildr trust store: plugins that may run on this machine.",
                 "# sha256 <digest> [note]          this exact file may run",
                 "# key <name> ed25519 <base64>     whatever this key signs may run",
                 "# floor <plugin> <version>        nothing older of that plugin may run"]
        lines += [f"sha256 {d} {note}".rstrip() for d, note in self.digests.items()]
        lines += [key.line() for key in self.keys.values()]
        lines += [f"floor {name} {version}" for name, version in self.floors.items()]
        return "\n".join(lines) + "\n"

    def save(self, path: Optional[PathLike] = None) -> Path:
        target = path if path is not None else self.path
        if target is None:
            raise ValueError("save(path): this store was not loaded from a file")
        Path(target).write_text(self.text())
        self.path = os.fspath(target)
        return Path(target)

    # -- the question ----------------------------------------------------------
    def verdict(self, plugin: Union[PluginImage, PathLike], *,
                expect: Optional[str] = None) -> Verdict:
        """Is this plugin trusted, and why (or why not)? Reads, never loads.

        First where the bytes come from (a pinned digest, or a signature by a
        trusted key), then what they are (their manifest's name and version,
        inside those bytes): not older than this store's floor for that
        name, and, with `expect`, the plugin the host asked for.
        """
        image = plugin if isinstance(plugin, PluginImage) else read_image(plugin)
        origin = self._origin(image)
        if not origin.trusted:
            return origin
        return self._contents(image, origin, expect) or origin

    def _contents(self, image: PluginImage, origin: Verdict,
                  expect: Optional[str]) -> Optional[Verdict]:
        """A refusal for what a trusted file *is* (rollback, substitution), or None."""
        if expect is None and not self.floors:
            return None
        try:
            manifest = image.manifest()
        except PluginError as exc:
            return Verdict(False, Status.NO_MANIFEST, (
                f"{origin.explanation}, but it has no readable manifest ({exc.reason}), so its "
                "name and version cannot be checked against the store's floors and the name "
                "expected"), image.sha256, origin.signer)
        return (unexpected(manifest, expect, image.sha256, origin)
                or self._rollback(manifest, image.sha256, origin))

    def _rollback(self, manifest: Manifest, digest: str, origin: Verdict) -> Optional[Verdict]:
        floor = self.floors.get(manifest.name)
        if floor is None:
            return None
        where = f"the trust store{f' ({os.path.basename(self.path)})' if self.path else ''}"
        try:
            older = _version(manifest.version, "its version") < _version(floor, "the floor")
        except ValueError:
            older = True
        if not older:
            return None
        return Verdict(False, Status.ROLLBACK, (
            f"{origin.explanation}, but it is {manifest.name} {manifest.version}, and {where} "
            f"allows nothing older than {manifest.name} {floor} (floor {manifest.name} {floor}): "
            "an older release put in place of a newer one is a rollback, which may bring back "
            "a fixed hole; install a release at or above the floor"), digest, origin.signer)

    def _origin(self, image: PluginImage) -> Verdict:
        """Pinned or signed by a trusted key: where the bytes come from."""
        digest = image.sha256
        if digest in self.digests:
            note = self.digests[digest]
            return Verdict(True, Status.PINNED, f"its sha256 {digest} is pinned in the trust store"
                           + (f" ({note})" if note else ""), digest)
        sig_path = signature_path(image.path)
        unpinned = f"its sha256 {digest} is not pinned"
        if not os.path.lexists(sig_path):
            if not self.keys:
                return Verdict(False, Status.UNKNOWN_DIGEST, (
                    f"{unpinned} in the trust store, which holds no signing keys; pin this "
                    "file's digest if you trust it (TrustStore.pin), or have it signed by a "
                    "key you add to the store"), digest)
            return Verdict(False, Status.NO_SIGNATURE, (
                f"{unpinned} and it has no signature ({sig_path.name} is missing); sign it "
                "with python -m minildr sign --key KEY PLUGIN, or pin its digest"), digest)
        try:
            signature = Signature.parse(_read_text(sig_path, files.MAX_SIGNATURE_BYTES),
                                        os.fspath(sig_path))
        except BadTrustFile as exc:
            return Verdict(False, Status.DAMAGED_SIGNATURE, (
                f"{unpinned} and its signature file {sig_path.name} is damaged: {exc.reason}; "
                "sign the plugin again"), digest)
        if signature.sha256 != digest:
            return Verdict(False, Status.TAMPERED, (
                f"{sig_path.name} was made for a file with sha256 {signature.sha256}, but this "
                f"file's sha256 is {digest}: the plugin changed after it was signed (tampered "
                "with, or rebuilt without signing); do not run it unless you know why, then "
                "sign it again"), digest, signature.signer)
        key = self.keys.get(signature.signer.fingerprint)
        if key is None:
            return Verdict(False, Status.UNKNOWN_KEY, (
                f"{unpinned} and it is signed by key {signature.signer}, which the trust store "
                "does not hold; add that key's .pub file to the store if you trust its owner"),
                digest, signature.signer)
        if not signature.valid_with(key):
            return Verdict(False, Status.BAD_SIGNATURE, (
                f"its signature does not verify with key {key}: the signature file is forged "
                "or damaged; do not run it"), digest, key)
        return Verdict(True, Status.SIGNED, f"signed by trusted key {key}", digest, key)

    def check(self, image: PluginImage, *, expect: Optional[str] = None) -> Verdict:
        """The verdict if trusted; otherwise UntrustedPlugin (with `.verdict`)."""
        return refuse_unless_trusted(image.path, self.verdict(image, expect=expect))

    def __repr__(self) -> str:
        return (f"<TrustStore {len(self.digests)} pinned digest(s), "
                f"{len(self.keys)} key(s): {', '.join(map(str, self.keys.values())) or '-'}>")


def refuse_unless_trusted(path: str, verdict: Verdict) -> Verdict:
    """The verdict if trusted; otherwise UntrustedPlugin (with `.verdict`)."""
    if not verdict.trusted:
        raise UntrustedPlugin(path, f"refused before loading: {verdict.explanation}",
                              verdict=verdict)
    return verdict


def unexpected(manifest: Manifest, expect: Optional[str], digest: str,
               origin: Optional[Verdict] = None) -> Optional[Verdict]:
    """A refusal if the host expected another plugin than the one this file is, else None.

    Used with a trust store (a file signed by a trusted key may still be the
    wrong plugin: substitution) and without one (open(expect=...) alone).
    """
    if expect is None or manifest.name == expect:
        return None
    said = f"{origin.explanation}, but" if origin is not None else "this file"
    return Verdict(False, Status.UNEXPECTED_PLUGIN, (
        f"{said} is the plugin {manifest.name!r} {manifest.version} (its manifest says so), "
        f"not {expect!r}, the plugin the host expected here: a plugin put in place of "
        f"another (substitution) is refused, however it is signed; put {expect!r} back, or "
        "ask for the plugin this file is"), digest, origin.signer if origin else None)


def _version(text: str, what: str) -> Version:
    """A PEP 440 version (1.4.0, 2.0rc1); ValueError naming `what` otherwise."""
    from packaging.version import InvalidVersion, Version   # slow; only a floor needs it
    try:
        return Version(text)
    except InvalidVersion:
        raise ValueError(f"{what} {text!r} is not a version a floor can compare "
                         "(use numbers such as 1.4.0)") from None


def check_trust(image: PluginImage, trust: Any, expect: Optional[str] = None
                ) -> Optional[TrustStore]:
    """With a trust store (or the path of a trust file), refuse what it does not trust.

    With `expect` (a plugin name), refuse a file whose manifest names another
    plugin, with or without a store: a file put in place of another. The
    sixth of open()'s checks (checks.py); the store it checked against (None
    without trust=), which then checks the plugin's bundled libraries too
    (linkage.py).
    """
    if trust is not None:
        store = as_store(trust)
        store.check(image, expect=expect)
        return store
    if expect is not None:
        verdict = unexpected(image.manifest(), expect, image.sha256)
        if verdict is not None:
            refuse_unless_trusted(image.path, verdict)
    return None


def as_store(trust: Union[TrustStore, PathLike]) -> TrustStore:
    """open(trust=...) takes a TrustStore or the path of a trust file."""
    if isinstance(trust, TrustStore):
        return trust
    if not isinstance(trust, (str, os.PathLike)):
        raise TypeError(f"trust= takes a TrustStore or the path of a trust file, not "
                        f"{type(trust).__name__}")
    return TrustStore.load(trust)
