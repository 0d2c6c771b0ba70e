"""python -m minildr: build, inspect and scan plugins from the command line.

Exit codes: 0 success; 1 a plugin was refused or failed to build (the
message says why); 2 the command line itself was wrong.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__, trust
from .atload import code_run_at_load
from .build import build
from .console import printable, tolerant_output
from .contracts.contract import Contract
from .contracts.stubs import protocol_source
from .discover import discover
from .errors import PluginError
from .image import read as read_image
from .isolation import fastcall, sandbox
from .checks import check_binary, check_manifest, check_versions

EXIT_OK, EXIT_PLUGIN, EXIT_USAGE = 0, 1, 2


def say(text: str) -> None:
    """Print what a plugin's manifest or a signature file controls, escaped (console.printable)."""
    print(printable(text, keep="\n"))


def cmd_build(args: argparse.Namespace) -> int:
    path = build(args.sources, name=args.name, version=args.version, exports=args.exports,
                 contracts=[Contract.from_spec(c) for c in args.contract], out_dir=args.out_dir,
                 cflags=args.cflag)
    print(path)
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """The manifest and digest, read from the file's headers: nothing of it runs."""
    image = read_image(args.plugin)
    info = check_binary(image)
    manifest = check_manifest(image)
    if args.json:
        runs = code_run_at_load(image.data, image.path) if info.format == "ELF" else []
        print(json.dumps({"path": image.path, "sha256": image.sha256, "binary": str(info),
                          "manifest": manifest.to_json(),
                          "runs_at_load": [{"when": r.when, "address": r.address,
                                            "name": r.name} for r in runs]}, indent=2))
        return EXIT_OK
    say(f"plugin    {manifest.name} {manifest.version}")
    say(f"file      {image.path} ({len(image.data)} bytes, {info})")
    say(f"sha256    {image.sha256}")
    say(f"abi       {manifest.abi}")
    say(f"platform  {manifest.platform}")
    say(f"compiler  {manifest.compiler or '-'}")
    say("exports")
    for e in manifest.exports.values():
        say(f"  {e.name:<20} {e.kind:<8}  {e.ctype}")
    say("contracts" + ("" if manifest.contracts else "  none"))
    for c in manifest.contracts.values():
        say(f"  {c.name:<20} {c.version:<8}  sha256 {c.sha256}")
    if info.format == "ELF":
        runs = code_run_at_load(image.data, image.path)
        say("runs at load (in this order, inside dlopen, before open() returns)"
            + ("" if runs else "  nothing"))
        for run in runs:
            say(f"  {run}")
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    options = {"trust": args.trust} if args.trust else {}
    if args.isolate:
        options["isolate"] = True
    if args.sandbox:
        options["sandbox"] = True
    with discover(args.folder, **options) as report:
        say(report.table())
        return EXIT_OK if report.ok else EXIT_PLUGIN


def cmd_sandbox(args: argparse.Namespace) -> int:
    """What this kernel offers a sandboxed plugin, and what such a plugin can and cannot do."""
    support = sandbox.probe()
    print(sandbox.report(support, fastcall.status().reason))
    return EXIT_OK if not support.missing else EXIT_PLUGIN


def cmd_protocol(args: argparse.Namespace) -> int:
    """Type hints (typing.Protocol) for the proxies of some contracts (contracts issue)."""
    try:
        text = protocol_source(*[Contract.from_spec(c) for c in args.contract])
    except (OSError, ValueError, PluginError) as exc:      # PluginError: files.py's refusals
        print(f"error: cannot read the contract: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text, encoding="utf-8")
    return EXIT_OK


# ---------------------------------------------------------------------------
# Trust: keygen, sign, pin, verify
# ---------------------------------------------------------------------------
def cmd_keygen(args: argparse.Namespace) -> int:
    private_path, public_path = trust.generate_key(args.name, args.out_dir)
    print(f"private key  {private_path}  (keep it secret; sign with --key {private_path})")
    print(f"public key   {public_path}  (give it to users: their trust file needs its line)")
    if args.trust:
        store = trust.TrustStore.load(args.trust) if Path(args.trust).exists() else trust.TrustStore()
        store.add_key(public_path)
        store.save(args.trust)
        print(f"added to     {args.trust}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    path = trust.sign(args.plugin, args.key, name=args.name)
    print(f"signed {args.plugin}: {path}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    store = trust.TrustStore.load(args.trust) if Path(args.trust).exists() else trust.TrustStore()
    for plugin in args.plugins:
        print(f"pinned {plugin}: sha256 {store.pin(plugin)}")
    store.save(args.trust)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Every check open() makes, without loading; with --trust, the trust verdict too.

    Each line says what was checked and what was found, so a refusal can be
    read as a reason: where the bytes come from (pinned, signed), then what
    they are (the plugin expected, not older than the store's floor).
    """
    image = read_image(args.plugin)
    check_binary(image)
    manifest = check_manifest(image)
    check_versions(image, manifest)
    say(f"plugin    {manifest.name} {manifest.version}")
    say(f"sha256    {image.sha256}")
    say("checks    binary, manifest, ABI and platform: ok")
    if args.expect is not None:
        say(f"expected  {args.expect}: " + (
            "ok, its manifest names it" if manifest.name == args.expect else
            f"NO, its manifest names {manifest.name!r} (another plugin in its place)"))
    sig_path = trust.signature_path(image.path)
    if not args.trust:
        say(f"signature {sig_path.name if sig_path.exists() else 'none'}")
        say("trust     not checked: pass --trust FILE to decide")
        return 0 if args.expect in (None, manifest.name) else 1
    store = trust.TrustStore.load(args.trust)
    floor = store.floors.get(manifest.name)
    say(f"floor     {f'{manifest.name} {floor} or newer' if floor else 'none for ' + manifest.name}")
    verdict = store.verdict(image, expect=args.expect)
    say(f"verdict   {verdict.status}: {verdict}")
    return 0 if verdict.trusted else 1


def add_trust_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add keygen, sign, pin and verify to the `python -m minildr` parser."""
    k = sub.add_parser("keygen", help="make an Ed25519 key pair for signing plugins")
    k.add_argument("name", help="the signer's name: writes NAME.key and NAME.pub")
    k.add_argument("--out-dir", default=".", type=Path)
    k.add_argument("--trust", type=Path, help="also add the public key to this trust file")
    k.set_defaults(run=cmd_keygen)

    s = sub.add_parser("sign", help="write PLUGIN.sig, a detached signature, beside a plugin")
    s.add_argument("plugin", type=Path)
    s.add_argument("--key", required=True, type=Path, help="a private key from keygen")
    s.add_argument("--name", help="the signer's name (default: the key file's stem)")
    s.set_defaults(run=cmd_sign)

    p = sub.add_parser("pin", help="add plugins' SHA-256 digests to a trust file")
    p.add_argument("plugins", nargs="+", type=Path)
    p.add_argument("--trust", required=True, type=Path)
    p.set_defaults(run=cmd_pin)

    v = sub.add_parser("verify", help="check a plugin without loading it and explain "
                                      "the trust verdict")
    v.add_argument("plugin", type=Path)
    v.add_argument("--trust", type=Path, help="a trust file (pinned digests, keys, floors)")
    v.add_argument("--expect", metavar="NAME", help="the plugin this file must be")
    v.set_defaults(run=cmd_verify)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minildr",
                                description="Build, inspect, scan, sign and verify minildr plugins.")
    p.add_argument("--version", action="version", version=f"minildr {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="compile C sources into a plugin")
    b.add_argument("sources", nargs="+", type=Path)
    b.add_argument("--name", required=True)
    b.add_argument("--version", default="0.1.0")
    b.add_argument("--exports", required=True, help="the header declaring what is exported")
    b.add_argument("--contract", action="append", default=[],
                   metavar="FILE[:NAME:VERSION]", help="a contract header (repeatable)")
    b.add_argument("--out-dir", default=".", type=Path)
    b.add_argument("--cflag", action="append", default=[], help="an extra compiler flag")
    b.set_defaults(run=cmd_build)

    i = sub.add_parser("inspect", help="show a plugin's manifest without loading it")
    i.add_argument("plugin", type=Path)
    i.add_argument("--json", action="store_true")
    i.set_defaults(run=cmd_inspect)

    s = sub.add_parser("scan", help="try to open every plugin in a folder")
    s.add_argument("folder", type=Path)
    s.add_argument("--trust", type=Path, help="refuse plugins this trust file does not trust")
    s.add_argument("--isolate", action="store_true", help="load each in a worker process")
    s.add_argument("--sandbox", action="store_true",
                   help="load each in a confined worker process (see the sandbox command)")
    s.set_defaults(run=cmd_scan)

    x = sub.add_parser("sandbox", help="what this kernel supports for sandbox=True, and what "
                                       "a sandboxed plugin can and cannot do here")
    x.set_defaults(run=cmd_sandbox)

    t = sub.add_parser("protocol", help="write typing.Protocol hints for contract proxies")
    t.add_argument("contract", nargs="+", metavar="FILE[:NAME:VERSION]")
    t.add_argument("-o", "--output", type=Path, default=None, help="a .py file (default: stdout)")
    t.set_defaults(run=cmd_protocol)

    add_trust_commands(sub)            # keygen, sign, pin, verify
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    tolerant_output()                   # plugin and file names may hold any character
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("minildr").setLevel(logging.ERROR)
    try:
        return args.run(args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PLUGIN


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
