"""Lines of code of the native loader's steps: what a learner has to read.

    python tools/loc_native.py          # a table per module, and the total

A line counts when it holds Python code: blank lines, comment-only lines and
the lines of docstrings (the string that opens a module, class or function)
do not. A statement spread over three physical lines counts three. Counted
with `tokenize` (which tokens sit on which line) and `ast` (which strings are
docstrings), so the figure does not depend on formatting tools.

The core steps are the modules a learner reads in the order a load runs
them: parse, resolve, map, relocate with the relocation classes and the two
per-architecture tables, init/fini, look up, and the trace, plus `libc.py`
(the C functions those steps call). Beside the core, counted apart:
`validate.py` (step 1b, what a loader that trusts nothing checks) and the
modules of the features a first reading can skip (thread-local storage,
unwinding). Not counted: `library.py` (the steps in order plus the object a
user holds) and `__init__.py` (the public names); listed below the total.
`tests/native/test_native_readable.py` keeps the core under a ceiling.
"""
from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path
from typing import Dict, Set, Tuple

NATIVE = Path(__file__).resolve().parents[1] / "minildr" / "native"
CORE = ["parse.py", "resolve.py", "mapping.py", "relocate.py", "classes.py", "x86_64.py",
        "aarch64.py", "initfini.py", "lookup.py", "trace.py", "libc.py"]
BESIDE = ["validate.py", "tls.py", "unwind.py", "initstack.py", "sparse.py", "bulk.py"]
REST = ["library.py", "__init__.py"]
NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}


def docstring_lines(tree: ast.AST) -> Set[int]:
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def count(path: Path) -> Tuple[int, int]:
    """(code lines, all lines) of one Python file."""
    text = path.read_text()
    code: Set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in NOT_CODE:
            code.update(range(tok.start[0], tok.end[0] + 1))
    return len(code - docstring_lines(ast.parse(text))), len(text.splitlines())


def core_lines() -> Dict[str, Tuple[int, int]]:
    return {name: count(NATIVE / name) for name in CORE}


def main() -> None:
    print(f"{'module':<14} {'code':>5} {'total':>6}")
    core = core_lines()
    for name, (code, total) in core.items():
        print(f"{name:<14} {code:>5} {total:>6}")
    print(f"{'core steps':<14} {sum(c for c, _ in core.values()):>5} "
          f"{sum(t for _, t in core.values()):>6}")
    for name in BESIDE:
        code, total = count(NATIVE / name)
        print(f"{name:<14} {code:>5} {total:>6}   (beside the core)")
    for name in REST:
        code, total = count(NATIVE / name)
        print(f"{'(' + name + ')':<14} {code:>5} {total:>6}")


if __name__ == "__main__":
    sys.exit(main())
