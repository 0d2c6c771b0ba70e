"""What many tests share: the repository's folders, and building small plugins from C text.

Test files import these (`from helpers import write_plugin`); pytest's
fixtures stay in conftest.py, which pytest alone imports.
"""
from __future__ import annotations

import os
import subprocess
import sys
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


def run_python(code: str, *args: object, timeout: float = 120,
               memory_limit: "int | None" = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python (this venv) with `args`, within `timeout` seconds.

    For what could hang, exhaust memory or crash the test process when the
    promise it checks is broken: the child takes the blow, the test reads its
    output. `memory_limit` caps the child's address space (RLIMIT_AS, POSIX).
    A child still running after `timeout` is killed: `returncode` is then None.
    """
    def limit() -> None:
        import resource             # POSIX only
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    try:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], text=True,
                              capture_output=True, timeout=timeout, cwd=ROOT,
                              preexec_fn=limit if memory_limit else None)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, None, exc.stdout or "", exc.stderr or "")
