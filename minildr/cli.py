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
from .build import build
from .console import tolerant_output
from .contract import Contract
from .discover import discover
from .errors import PluginError
from .image import read as read_image
from .loader import check_binary, check_manifest

EXIT_OK, EXIT_PLUGIN, EXIT_USAGE = 0, 1, 2


def _contract(spec: str) -> Contract:
    """FILE or FILE:NAME:VERSION (FILE may start with a Windows drive, C:)."""
    parts = spec.rsplit(":", 2)
    if len(parts) == 3 and len(parts[0]) > 1:          # not a bare drive letter
        return Contract.from_header(Path(parts[0]), name=parts[1], version=parts[2])
    return Contract.from_header(Path(spec))


def cmd_build(args: argparse.Namespace) -> int:
    path = build(args.sources, name=args.name, version=args.version, exports=args.exports,
                 contracts=[_contract(c) for c in args.contract], out_dir=args.out_dir,
                 cflags=args.cflag)
    print(path)
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """The manifest and digest, read from the file's headers: nothing of it runs."""
    image = read_image(args.plugin)
    info = check_binary(image)
    manifest = check_manifest(image)
    if args.json:
        print(json.dumps({"path": image.path, "sha256": image.sha256, "binary": str(info),
                          "manifest": manifest.to_json()}, indent=2))
        return EXIT_OK
    print(f"plugin    {manifest.name} {manifest.version}")
    print(f"file      {image.path} ({len(image.data)} bytes, {info})")
    print(f"sha256    {image.sha256}")
    print(f"abi       {manifest.abi}")
    print(f"platform  {manifest.platform}")
    print(f"compiler  {manifest.compiler or '-'}")
    print("exports")
    for e in manifest.exports.values():
        print(f"  {e.name:<20} {e.kind:<8}  {e.ctype}")
    print("contracts" + ("" if manifest.contracts else "  none"))
    for c in manifest.contracts.values():
        print(f"  {c.name:<20} {c.version:<8}  sha256 {c.sha256}")
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    options = {"trust": args.trust} if args.trust else {}
    if args.isolate:
        options["isolate"] = True
    with discover(args.folder, **options) as report:
        print(report.table())
        return EXIT_OK if report.ok else EXIT_PLUGIN


def cmd_protocol(args: argparse.Namespace) -> int:
    """Type hints (typing.Protocol) for the proxies of some contracts (contracts issue)."""
    from .proxy import protocol_source
    try:
        text = protocol_source(*[_contract(c) for c in args.contract])
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the contract: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text, encoding="utf-8")
    return EXIT_OK


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
    s.set_defaults(run=cmd_scan)

    t = sub.add_parser("protocol", help="write typing.Protocol hints for contract proxies")
    t.add_argument("contract", nargs="+", metavar="FILE[:NAME:VERSION]")
    t.add_argument("-o", "--output", type=Path, default=None, help="a .py file (default: stdout)")
    t.set_defaults(run=cmd_protocol)

    trust.add_commands(sub)            # keygen, sign, pin, verify
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
