"""What many tests share: the repository's folders, and building small plugins from C text.

Test files import these (`from helpers import write_plugin`); pytest's
fixtures stay in conftest.py, which pytest alone imports.
"""
from __future__ import annotations

import os
from pathlib import Path

import minildr

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
EXAMPLES = ROOT / "examples"

# Fuzzers run short in `make test` and long in `make fuzz` (MINILDR_FUZZ_SCALE=20).
FUZZ_SCALE = max(1, int(os.environ.get("MINILDR_FUZZ_SCALE", "1")))


def fuzz_examples(short: int) -> int:
    """How many examples a fuzzer tries: `short` in make test, scaled up in make fuzz."""
    return short * FUZZ_SCALE


def build_example(name: str, out_dir: Path, **kwargs) -> Path:
    folder = EXAMPLES / name
    return minildr.build(sorted(folder.glob("*.c")), name=name,
                         exports=folder / f"{name}.h", out_dir=out_dir, **kwargs)


def write_plugin(tmp_path: Path, name: str, source: str, header: str, **kwargs) -> Path:
    """Build a plugin from C text (one source, one exports header) into tmp_path/out."""
    src_dir = tmp_path / f"src-{name}"
    src_dir.mkdir(exist_ok=True)
    (src_dir / f"{name}.c").write_text(source)
    (src_dir / f"{name}.h").write_text(header)
    return minildr.build([src_dir / f"{name}.c"], name=name, exports=src_dir / f"{name}.h",
                         out_dir=tmp_path / "out", **kwargs)
