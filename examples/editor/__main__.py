"""python -m examples.editor FILE: open a file, show it, save it (linting on save).

    python -m examples.editor notes.qp                 # plugins built into build/editor-plugins
    python -m examples.editor notes.qp --plugins DIR   # or any plugins folder
    python -m examples.editor notes.qp --save-as copy.txt --append "one more line"
    python -m examples.editor notes.qp --isolate       # each plugin in a worker process
    python -m examples.editor notes.qp --sandbox       # ... confined by the kernel (Linux)

Prints the plugin scan (what loaded, what was skipped and why), the decoded
text, then saves and prints each diagnostic as LINE:COLUMN: RULE: MESSAGE.
Exit status: 0 clean, 1 diagnostics, 2 the file could not be opened or saved.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from minildr.console import tolerant_output

from . import Editor, EditorError, build_plugins

ROOT = Path(__file__).resolve().parents[2]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.editor", description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--plugins", type=Path, default=None,
                        help="plugins folder (default: build the examples into "
                             "build/editor-plugins)")
    parser.add_argument("--save-as", type=Path, default=None, help="save to another file")
    parser.add_argument("--append", action="append", default=[],
                        help="append a line before saving (repeatable)")
    parser.add_argument("--isolate", action="store_true",
                        help="load each plugin in its own worker process, so a crashing "
                             "plugin cannot end the editor")
    parser.add_argument("--sandbox", action="store_true",
                        help="--isolate, and confine each worker (minildr.SandboxPolicy): "
                             "no files but what loading needs, no network, no processes")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="with --isolate: the time a plugin call may take (default 10)")
    args = parser.parse_args(argv)
    if args.timeout is not None and (not (args.isolate or args.sandbox) or args.timeout <= 0):
        parser.error("--timeout takes a number of seconds > 0, and needs --isolate or --sandbox")
    isolate = (args.timeout or True) if args.isolate or args.sandbox else False
    tolerant_output(sys.stdout, sys.stderr)   # the text shown may hold any character
    folder = args.plugins
    if folder is None:
        folder = ROOT / "build" / "editor-plugins"
        build_plugins(folder)
    with Editor(isolate=isolate, sandbox=args.sandbox) as editor:
        report = editor.load_plugins(folder)
        print(report.table())
        if args.sandbox:
            print(f"sandboxed: {len(report.loaded)} plugin(s), each in its own confined worker")
        elif isolate:
            print(f"isolated: {len(report.loaded)} plugin(s), each in its own worker process")
        for name, reason in editor.skipped:
            if not any(name == path.name for path, _ in report.failed):
                print(f"skipped {name}: {reason}")
        try:
            buffer = editor.open(args.file)
        except EditorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"--- {buffer.path.name} ({buffer.format or 'plain text'}, "
              f"{len(buffer.lines)} lines) ---")
        print(buffer.text, end="" if buffer.text.endswith("\n") else "\n")
        if args.append:
            text = buffer.text
            if text and not text.endswith("\n"):
                text += "\n"
            buffer.replace(text + "".join(line + "\n" for line in args.append))
        try:
            diagnostics = editor.save(buffer, args.save_as)
        except EditorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"--- saved {buffer.path.name}: {len(diagnostics)} diagnostic(s) ---")
        for d in diagnostics:
            print(f"{buffer.path.name}:{d}")
        return 1 if diagnostics else 0


if __name__ == "__main__":
    sys.exit(main())
