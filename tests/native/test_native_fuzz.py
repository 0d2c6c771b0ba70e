"""Fuzzing the native loader with hypothesis, in a child process.

tests/native/native_fuzz_child.py mutates a real plugin (the relocs plugin, with
both hash tables and DT_RELR where the linker can) where the loader reads
it, and parses, maps and relocates each result without running its code.
Running it in a child means a crash of the interpreter is caught and
reported here (with the input that caused it saved), not fatal to pytest.

MINILDR_FUZZ_EXAMPLES (default 2000 in make test, times MINILDR_FUZZ_SCALE in make fuzz) and MINILDR_FUZZ_SEED (default 0)
change the budget and the sequence; about 2 ms per example.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from helpers import ROOT, stress
from native_util import HERE, build_relocs, linker_supports, native_host

pytestmark = [native_host, pytest.mark.fuzz]
# 500 mutants in make test (a few seconds), 40,000 in make fuzz.
EXAMPLES = int(os.environ.get("MINILDR_FUZZ_EXAMPLES", str(stress(500, 40_000))))
SEED = int(os.environ.get("MINILDR_FUZZ_SEED", "0"))


def run_fuzzer(script, base, examples: int, seed: int, last, kept):
    """Run the child; its counts, or a failure naming the signal and where the input is kept."""
    proc = subprocess.run([sys.executable, str(script), str(base), str(examples), str(seed),
                           str(last)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode < 0:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(last, kept)
        pytest.fail(f"the fuzzing process died of {signal.Signals(-proc.returncode).name}; the "
                    f"input that killed it is saved in {kept.name} under {kept.parent.name}/"
                    f"\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"FUZZED (\d+) accepted=(\d+) refused=(\d+)", proc.stdout)
    assert found, proc.stdout
    return tuple(map(int, found.groups()))


def test_fuzzed_files_never_crash_the_loader(tmp_path):
    flags = ["-Wl,--hash-style=both"]
    if linker_supports("pack-relative-relocs"):
        flags.append("-Wl,-z,pack-relative-relocs")
    base = build_relocs(tmp_path / "base", flags)
    total, accepted, refused = run_fuzzer(HERE / "native_fuzz_child.py", base, EXAMPLES, SEED,
                                          tmp_path / "last-input.so",
                                          ROOT / ".pytest_cache" / "native-fuzz-crash.so")
    assert total >= EXAMPLES
    assert accepted > 0 and refused > 0          # both sides exercised: mapped and refused


def test_the_fuzzer_reports_a_crash(tmp_path):
    """The harness itself: a child killed by a signal fails the test, its input kept."""
    child = tmp_path / "child.py"
    child.write_text("import os, signal, sys\nopen(sys.argv[4], 'wb').write(b'boom')\n"
                     "os.kill(os.getpid(), signal.SIGSEGV)\n")
    kept = tmp_path / "kept" / "crash.so"
    with pytest.raises(pytest.fail.Exception, match="died of SIGSEGV"):
        run_fuzzer(child, "base.so", 1, 0, tmp_path / "last", kept)
    assert kept.read_bytes() == b"boom"
